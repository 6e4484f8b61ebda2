//! Where simulated MPS measurements come from: the MISO data, never the targets. A GPU's mix is
//! looked up among the measured mixes (same multiset of workloads → that sample's matrix); when
//! no measured mix matches, the matrix is assembled column by column: each job's column comes
//! from a measured mix with the same number of real jobs that contains its workload (seeded
//! choice), and filler slots take the dummy column of such a mix.
//!
//! Also the speeds of co-located jobs under MPS (the MPS baseline, MISO's profiling phase):
//! each job's column of the measured mix gives its latency at 100/50/14 % active threads *with
//! its co-runners*, normalised to the slowest of the three; anchored at 14 % to the job's
//! measured solo latency there (7 jobs × 14 % do not oversubscribe the GPU), it becomes a speed
//! relative to the whole GPU, interpolated to the thread share.

use std::collections::HashMap;

/// How the speed of co-located jobs under MPS is modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MpsSpeeds {
    /// The measured MISO mixes (interference with the actual co-runners).
    Mixes,
    /// Solo thread scaling slowed 15 % per co-runner (the only MPS model in the artifact's
    /// code, `MPS_GPU_Status.eval_degradation`).
    Penalty,
    /// Solo thread scaling, no interference (optimistic).
    Solo,
}

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::perf::{self, MpsMatrix, SLOTS};
use crate::predictor::Dataset;

/// Measured MPS matrices indexed for lookup.
pub struct MpsSource {
    /// Sorted workload indexes of a mix → sample matrix (first permutation) and the workload
    /// in each slot.
    exact: HashMap<Vec<usize>, (MpsMatrix, [Option<usize>; SLOTS])>,
    /// (real jobs in the mix, workload) → columns [100, 50, 14] measured for it.
    columns: HashMap<(usize, usize), Vec<[f64; 3]>>,
    /// Real jobs in the mix → dummy columns measured there.
    dummies: HashMap<usize, Vec<[f64; 3]>>,
    /// Per workload: speed alone at 100, 50, 14 % active threads, relative to 100 %.
    solo: Vec<Option<[f64; 3]>>,
    rng: ChaCha8Rng,
    /// Mean column per (real jobs in the mix, workload).
    mean_columns: HashMap<(usize, usize), [f64; 3]>,
    cache: HashMap<(Vec<usize>, u64, MpsSpeeds), Vec<f64>>,
}

impl MpsSource {
    pub fn new(ds: &Dataset, seed: u64) -> MpsSource {
        // Dataset label index → catalog index.
        let cat = perf::catalog();
        let to_cat: Vec<Option<usize>> = ds
            .labels
            .iter()
            .map(|l| cat.iter().position(|w| w.name == l.name))
            .collect();
        let mut exact = HashMap::new();
        let mut columns: HashMap<(usize, usize), Vec<[f64; 3]>> = HashMap::new();
        let mut dummies: HashMap<usize, Vec<[f64; 3]>> = HashMap::new();
        let mut solo_sum: Vec<([f64; 3], usize)> = vec![([0.0; 3], 0); cat.len()];
        let mut seen = std::collections::HashSet::new();
        for s in &ds.samples {
            if !seen.insert(s.mix) {
                continue;
            }
            let k = s.mps.real.iter().filter(|r| **r).count();
            let mut key = Vec::new();
            let mut slot_w = [None; SLOTS];
            for slot in 0..SLOTS {
                let col = [
                    s.mps.values[0][slot],
                    s.mps.values[1][slot],
                    s.mps.values[2][slot],
                ];
                match (s.mps.real[slot], to_cat[s.slots[slot] as usize]) {
                    (true, Some(w)) => {
                        key.push(w);
                        slot_w[slot] = Some(w);
                        columns.entry((k, w)).or_default().push(col);
                        if k == 1 {
                            let e = &mut solo_sum[w];
                            for l in 0..3 {
                                e.0[l] += col[0] / col[l];
                            }
                            e.1 += 1;
                        }
                    }
                    _ => dummies.entry(k).or_default().push(col),
                }
            }
            key.sort_unstable();
            exact.entry(key).or_insert_with(|| (s.mps.clone(), slot_w));
        }
        let solo = solo_sum
            .iter()
            .map(|(s, n)| {
                if *n > 0 {
                    Some(s.map(|v| v / *n as f64))
                } else {
                    None
                }
            })
            .collect();
        let mean_columns = columns
            .iter()
            .map(|(k, v)| {
                let mut m = [0.0; 3];
                for c in v {
                    for l in 0..3 {
                        m[l] += c[l] / v.len() as f64;
                    }
                }
                (*k, m)
            })
            .collect();
        MpsSource {
            mean_columns,
            cache: HashMap::new(),
            exact,
            columns,
            dummies,
            solo,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The MPS matrix measured for (or assembled for) these workloads, and which slot holds
    /// which of them (`slot_of[i]` for `workloads[i]`).
    pub fn matrix(&mut self, workloads: &[usize]) -> (MpsMatrix, Vec<usize>) {
        let mut key: Vec<usize> = workloads.to_vec();
        key.sort_unstable();
        if let Some((m, slot_w)) = self.exact.get(&key) {
            // Each job takes a distinct slot holding its workload.
            let mut used = [false; SLOTS];
            let slot_of: Option<Vec<usize>> = workloads
                .iter()
                .map(|w| {
                    let s = (0..SLOTS).find(|&s| !used[s] && slot_w[s] == Some(*w))?;
                    used[s] = true;
                    Some(s)
                })
                .collect();
            if let Some(slot_of) = slot_of {
                return (m.clone(), slot_of);
            }
        }
        let k = workloads.len().clamp(1, SLOTS);
        let mut values = [[0.0; SLOTS]; 3];
        let mut real = [false; SLOTS];
        let mut slot_of = Vec::with_capacity(workloads.len());
        for (i, &w) in workloads.iter().enumerate().take(SLOTS) {
            let col = self
                .pick((k, w))
                .or_else(|| self.nearest_k(k, w))
                .unwrap_or([1.0, 1.0, 1.0]);
            for l in 0..3 {
                values[l][i] = col[l];
            }
            real[i] = true;
            slot_of.push(i);
        }
        for i in workloads.len().min(SLOTS)..SLOTS {
            let col = self
                .dummies
                .get(&k)
                .filter(|v| !v.is_empty())
                .map(|v| v[self.rng.random_range(0..v.len())])
                .unwrap_or([1.0; 3]);
            for l in 0..3 {
                values[l][i] = col[l];
            }
        }
        (MpsMatrix { values, real }, slot_of)
    }

    fn pick(&mut self, key: (usize, usize)) -> Option<[f64; 3]> {
        let v = self.columns.get(&key).filter(|v| !v.is_empty())?;
        Some(v[self.rng.random_range(0..v.len())])
    }

    /// A column of workload `w` from the mix size closest to `k`.
    fn nearest_k(&mut self, k: usize, w: usize) -> Option<[f64; 3]> {
        let best = (1..=SLOTS)
            .filter(|kk| self.columns.contains_key(&(*kk, w)))
            .min_by_key(|kk| kk.abs_diff(k))?;
        self.pick((best, w))
    }

    /// A workload's speed alone at `pct` % active threads relative to 100 % (linear between the
    /// measured 100/50/14 % points; 1.0 when never measured alone).
    pub fn solo_speed(&self, workload: usize, pct: f64) -> f64 {
        let Some(s) = self.solo.get(workload).copied().flatten() else {
            return 1.0;
        };
        interpolate([(100.0, s[0]), (50.0, s[1]), (14.0, s[2])], pct)
    }

    /// Speeds relative to the whole GPU of co-located jobs (`workloads`, in order) when each
    /// gets `pct` % of the active threads.
    pub fn speeds(&mut self, workloads: &[usize], pct: f64, how: MpsSpeeds) -> Vec<f64> {
        let key = (workloads.to_vec(), pct.to_bits(), how);
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let k = workloads.len();
        let v: Vec<f64> = match how {
            MpsSpeeds::Solo => workloads.iter().map(|&w| self.solo_speed(w, pct)).collect(),
            MpsSpeeds::Penalty => workloads
                .iter()
                .map(|&w| self.solo_speed(w, pct) / (1.0 + 0.15 * (k.max(1) - 1) as f64))
                .collect(),
            MpsSpeeds::Mixes => {
                let cols = self.mix_columns(workloads);
                workloads
                    .iter()
                    .zip(cols)
                    .map(|(&w, col)| {
                        let solo14 = self.solo.get(w).copied().flatten().map_or(0.3, |s| s[2]);
                        let lvl = col.map(|v| solo14 * col[2] / v.max(1e-9));
                        interpolate([(100.0, lvl[0]), (50.0, lvl[1]), (14.0, lvl[2])], pct)
                    })
                    .collect()
            }
        };
        self.cache.insert(key, v.clone());
        v
    }

    /// Each job's [100, 50, 14] column in a measured mix of exactly these workloads, else the
    /// mean column of its workload in measured mixes of the same size (nearest size if none).
    fn mix_columns(&self, workloads: &[usize]) -> Vec<[f64; 3]> {
        let mut key: Vec<usize> = workloads.to_vec();
        key.sort_unstable();
        if let Some((m, slot_w)) = self.exact.get(&key) {
            let mut used = [false; SLOTS];
            let cols: Option<Vec<[f64; 3]>> = workloads
                .iter()
                .map(|w| {
                    let s = (0..SLOTS).find(|&s| !used[s] && slot_w[s] == Some(*w))?;
                    used[s] = true;
                    Some([m.values[0][s], m.values[1][s], m.values[2][s]])
                })
                .collect();
            if let Some(c) = cols {
                return c;
            }
        }
        let k = workloads.len().clamp(1, SLOTS);
        workloads
            .iter()
            .map(|&w| {
                (1..=SLOTS)
                    .filter(|kk| self.mean_columns.contains_key(&(*kk, w)))
                    .min_by_key(|kk| (kk.abs_diff(k), *kk))
                    .and_then(|kk| self.mean_columns.get(&(kk, w)).copied())
                    .unwrap_or([1.0; 3])
            })
            .collect()
    }
}

/// Piecewise-linear in the thread percentage through (pct, value) points, clamped at the ends.
fn interpolate(pts: [(f64, f64); 3], pct: f64) -> f64 {
    let p = pct.clamp(pts[2].0, pts[0].0);
    for w in pts.windows(2) {
        let ((p0, v0), (p1, v1)) = (w[0], w[1]);
        if p <= p0 && p >= p1 {
            return v1 + (v0 - v1) * (p - p1) / (p0 - p1);
        }
    }
    pts[0].1
}
