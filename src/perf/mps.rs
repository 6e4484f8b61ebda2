//! The MPS measurement of one co-located mix, as MISO takes it: every job of the mix runs
//! under MPS at each active-thread level (100 %, 50 %, 14 %); a job's column holds its mean
//! iteration latency at each level divided by the largest of the three. Up to 7 slots; slots
//! without a real job hold the small `dummy` filler job.

/// MPS active-thread percentages of the three rows, in row order.
pub const MPS_LEVELS_PCT: [u32; 3] = [100, 50, 14];
/// Job slots per matrix (the most jobs one A100 takes).
pub const SLOTS: usize = 7;
/// Version of [`job_features`]: a model trained on one version refuses another.
pub const FEATURE_VERSION: u32 = 1;
/// Length of [`job_features`].
pub const JOB_FEATURES: usize = 34;

/// One mix's MPS matrix: `values[level][slot]`, and which slots hold real jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct MpsMatrix {
    pub values: [[f64; SLOTS]; 3],
    pub real: [bool; SLOTS],
}

impl MpsMatrix {
    /// Check shape-independent facts: finite, positive, each real column's max is 1 (within
    /// rounding), at least one real job. `what` names the sample in errors.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if !self.real.iter().any(|r| *r) {
            return Err(format!("{what}: no real job in the mix"));
        }
        for s in 0..SLOTS {
            for l in 0..3 {
                let v = self.values[l][s];
                if !(v.is_finite() && v > 0.0 && v <= 1.0 + 1e-6) {
                    return Err(format!(
                        "{what}: slot {s}, level {}%: value {v} is not in (0, 1]",
                        MPS_LEVELS_PCT[l]
                    ));
                }
            }
        }
        Ok(())
    }

    /// Normalise raw latencies (any unit) column by column, as the MISO features are.
    pub fn from_latencies(lat: [[f64; SLOTS]; 3], real: [bool; SLOTS]) -> MpsMatrix {
        let mut values = lat;
        for s in 0..SLOTS {
            let m = (0..3).map(|l| lat[l][s]).fold(f64::MIN, f64::max);
            for row in values.iter_mut() {
                row[s] = if m > 0.0 { row[s] / m } else { row[s] };
            }
        }
        MpsMatrix { values, real }
    }

    fn column(&self, s: usize) -> [f64; 3] {
        [self.values[0][s], self.values[1][s], self.values[2][s]]
    }

    /// Per-job features of the job in `slot` (version [`FEATURE_VERSION`]): its own three
    /// values; the number of real co-runners; the mean, min and max of the co-runners' values
    /// per level (1.0 when alone); the mean of the dummy slots per level (0 when none); the
    /// co-runners' columns sorted (zero-padded to 6). Invariant to the order of the slots.
    pub fn job_features(&self, slot: usize) -> [f64; JOB_FEATURES] {
        let mut f = [0.0; JOB_FEATURES];
        f[..3].copy_from_slice(&self.column(slot));
        let others: Vec<usize> = (0..SLOTS).filter(|&k| k != slot && self.real[k]).collect();
        let dummies: Vec<usize> = (0..SLOTS).filter(|&k| k != slot && !self.real[k]).collect();
        f[3] = others.len() as f64;
        for l in 0..3 {
            let vals: Vec<f64> = others.iter().map(|&k| self.values[l][k]).collect();
            let (mean, min, max) = if vals.is_empty() {
                (1.0, 1.0, 1.0)
            } else {
                (
                    vals.iter().sum::<f64>() / vals.len() as f64,
                    vals.iter().cloned().fold(f64::MAX, f64::min),
                    vals.iter().cloned().fold(f64::MIN, f64::max),
                )
            };
            f[4 + l] = mean;
            f[7 + l] = min;
            f[10 + l] = max;
            f[13 + l] = if dummies.is_empty() {
                0.0
            } else {
                dummies.iter().map(|&k| self.values[l][k]).sum::<f64>() / dummies.len() as f64
            };
        }
        let mut cols: Vec<[f64; 3]> = others.iter().map(|&k| self.column(k)).collect();
        cols.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        for (i, c) in cols.iter().enumerate().take(6) {
            f[16 + 3 * i..19 + 3 * i].copy_from_slice(c);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_ignore_slot_order() {
        let mut m = MpsMatrix {
            values: [
                [0.4, 1.0, 0.9, 1.0, 1.0, 1.0, 1.0],
                [0.5, 0.8, 1.0, 0.9, 0.9, 0.9, 0.9],
                [1.0, 0.9, 0.7, 0.8, 0.8, 0.8, 0.8],
            ],
            real: [true, true, true, false, false, false, false],
        };
        let f0 = m.job_features(0);
        assert_eq!(f0[3], 2.0);
        // Swap slots 1 and 2: job 0's features do not change.
        for row in m.values.iter_mut() {
            row.swap(1, 2);
        }
        assert_eq!(m.job_features(0), f0);
        assert!(m.validate("x").is_ok());
        m.values[0][0] = f64::NAN;
        assert!(m
            .validate("sample 3")
            .unwrap_err()
            .contains("sample 3: slot 0"));
    }
}
