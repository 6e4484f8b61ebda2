//! Exact single-GPU search: every placed layout of the standard profiles with one instance per
//! job (or more, with spare instances), the optimal assignment for each by dynamic programming
//! over job subsets, and least disruption among the layouts within tolerance of the optimum.
//!
//! Layouts are grouped by their profile multiset (the objective depends only on which profiles
//! the jobs get, not where they sit), so the assignment DP runs once per multiset; placement
//! only matters for disruption and is decided among the best multisets' placed layouts.

use std::sync::OnceLock;

use crate::gpu::{all_layouts, model_index, GpuModel, Instance, Layout, MAX_MODELS};

use super::{cost_row, OptError, OptJob, Options};

/// A chosen layout and assignment for one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub layout: Layout,
    /// For each instance of `layout` (same order), the index of the job assigned to it.
    pub assignment: Vec<Option<usize>>,
    /// Summed objective cost (what the search minimises).
    pub cost: f64,
    /// The objective's reported value (e.g. mean slowdown).
    pub value: f64,
    /// Jobs that stay on their current instance.
    pub kept_jobs: usize,
}

impl Decision {
    /// The instance job `j` is assigned to.
    pub fn instance_of(&self, j: usize) -> Option<Instance> {
        self.assignment
            .iter()
            .position(|a| *a == Some(j))
            .map(|i| self.layout.instances()[i])
    }
}

/// Layouts of one profile multiset.
struct Group {
    /// Profile of each instance, in the order of every layout's instances after sorting by
    /// profile (used by the DP, which does not care where instances sit).
    profiles: Vec<u8>,
    layouts: Vec<&'static Layout>,
}

/// Standard-profile layouts grouped by multiset, in enumeration order, computed once per GPU.
fn groups(gpu: &'static GpuModel) -> &'static [Group] {
    static CACHE: [OnceLock<Vec<Group>>; MAX_MODELS] = [const { OnceLock::new() }; MAX_MODELS];
    let build = || {
        let mut out: Vec<Group> = Vec::new();
        for l in all_layouts(gpu, false) {
            let mut profiles: Vec<u8> = l.instances().iter().map(|i| i.profile).collect();
            profiles.sort_unstable();
            match out.iter_mut().find(|g| g.profiles == profiles) {
                Some(g) => g.layouts.push(l),
                None => out.push(Group {
                    profiles,
                    layouts: vec![l],
                }),
            }
        }
        out
    };
    match model_index(gpu) {
        Some(i) => CACHE[i].get_or_init(build),
        None => Box::leak(build().into_boxed_slice()),
    }
}

const EMPTY: u8 = u8::MAX;

/// Minimum-cost assignment of `n` jobs to the `m >= n` instances whose profiles are
/// `inst_profiles`, counting how many jobs land on the instance they run on now (`keep[i]` is
/// the job currently on instance `i`). Returns, for each number of kept jobs `k`, the best cost
/// and the assignment (per instance, the job or `None`).
fn assign(
    costs: &[Vec<f64>],
    inst_profiles: &[u8],
    keep: &[Option<usize>],
) -> Vec<Option<(f64, Vec<Option<usize>>)>> {
    let n = costs.len();
    let m = inst_profiles.len();
    let kdim = 1 + keep.iter().filter(|k| k.is_some()).count();
    let s = 1usize << n;
    let idx = |i: usize, mask: usize, k: usize| (i * s + mask) * kdim + k;
    let mut val = vec![f64::INFINITY; (m + 1) * s * kdim];
    let mut choice = vec![EMPTY; (m + 1) * s * kdim];
    val[idx(0, 0, 0)] = 0.0;
    for i in 0..m {
        let p = inst_profiles[i] as usize;
        for mask in 0..s {
            let used = mask.count_ones() as usize;
            if used > i {
                continue;
            }
            let empties = i - used;
            for k in 0..kdim {
                let v = val[idx(i, mask, k)];
                if v == f64::INFINITY {
                    continue;
                }
                if empties < m - n {
                    let t = idx(i + 1, mask, k);
                    if v < val[t] {
                        val[t] = v;
                        choice[t] = EMPTY;
                    }
                }
                for (j, row) in costs.iter().enumerate() {
                    if mask & (1 << j) != 0 || row[p] == f64::INFINITY {
                        continue;
                    }
                    let k2 = k + (keep[i] == Some(j)) as usize;
                    let t = idx(i + 1, mask | (1 << j), k2);
                    let c = v + row[p];
                    if c < val[t] {
                        val[t] = c;
                        choice[t] = j as u8;
                    }
                }
            }
        }
    }
    let full = s - 1;
    (0..kdim)
        .map(|k| {
            let v = val[idx(m, full, k)];
            if v == f64::INFINITY {
                return None;
            }
            let mut a = vec![None; m];
            let (mut mask, mut kk) = (full, k);
            for i in (1..=m).rev() {
                let ch = choice[idx(i, mask, kk)];
                if ch != EMPTY {
                    let j = ch as usize;
                    a[i - 1] = Some(j);
                    mask ^= 1 << j;
                    if keep[i - 1] == Some(j) {
                        kk -= 1;
                    }
                }
            }
            Some((v, a))
        })
        .collect()
}

/// The best layout and assignment for `jobs` on one GPU whose layout is `current` (the jobs'
/// `current` instances refer to it). Exact: equals [`brute_force`] on the objective.
pub fn optimize(
    gpu: &'static GpuModel,
    jobs: &[OptJob],
    current: &Layout,
    opts: &Options,
) -> Result<Decision, OptError> {
    let n = jobs.len();
    let max = gpu
        .profile_set(false)
        .iter()
        .map(|&p| gpu.profiles[p].max_count as usize)
        .max()
        .unwrap_or(0);
    if n == 0 {
        return Ok(Decision {
            layout: current.clone(),
            assignment: vec![None; current.len()],
            cost: 0.0,
            value: opts.objective.value(0.0, 0),
            kept_jobs: 0,
        });
    }
    if n > max {
        return Err(OptError::TooManyJobs {
            jobs: n,
            gpu: gpu.name.to_string(),
            max,
        });
    }
    let costs = jobs
        .iter()
        .map(|j| cost_row(gpu, j, opts.objective))
        .collect::<Result<Vec<_>, _>>()?;
    let size_ok = |m: usize| m == n || (opts.spare && m > n);

    // Phase 1: the best cost of each multiset (placement does not change it).
    let gs = groups(gpu);
    let none = vec![None; 8];
    let mut best = f64::INFINITY;
    let mut group_cost = vec![f64::INFINITY; gs.len()];
    for (gi, g) in gs.iter().enumerate() {
        if !size_ok(g.profiles.len()) {
            continue;
        }
        if let Some((c, _)) = &assign(&costs, &g.profiles, &none[..g.profiles.len()])[0] {
            group_cost[gi] = *c;
            best = best.min(*c);
        }
    }
    if best == f64::INFINITY {
        let unfit: Vec<&str> = jobs
            .iter()
            .zip(&costs)
            .filter(|(_, row)| {
                gpu.profile_set(false)
                    .iter()
                    .all(|&p| row[p] == f64::INFINITY)
            })
            .map(|(j, _)| j.id.as_str())
            .collect();
        let detail = if unfit.is_empty() {
            " together (not enough large slices for the jobs' memory)".to_string()
        } else {
            format!(": {} fit(s) no profile", unfit.join(", "))
        };
        return Err(OptError::NoFit {
            gpu: gpu.name.to_string(),
            detail,
        });
    }
    let threshold = best + opts.tolerance * best.abs().max(1.0);

    // Phase 2: among placed layouts of the multisets within tolerance, keep the most running
    // jobs in place, then the most existing instances, then the lowest cost.
    let mut chosen: Option<(usize, usize, f64, &'static Layout, Vec<Option<usize>>)> = None;
    for (gi, g) in gs.iter().enumerate() {
        if group_cost[gi] > threshold {
            continue;
        }
        for &l in &g.layouts {
            let insts = l.instances();
            let keep: Vec<Option<usize>> = insts
                .iter()
                .map(|i| jobs.iter().position(|j| j.current == Some(*i)))
                .collect();
            let kept_insts = insts
                .iter()
                .filter(|i| current.instances().contains(i))
                .count();
            let profiles: Vec<u8> = insts.iter().map(|i| i.profile).collect();
            let per_k = assign(&costs, &profiles, &keep);
            let Some((k, (c, a))) = per_k
                .into_iter()
                .enumerate()
                .rev()
                .find_map(|(k, r)| r.filter(|(c, _)| *c <= threshold).map(|r| (k, r)))
            else {
                continue;
            };
            let better = match &chosen {
                None => true,
                Some((bk, bi, bc, _, _)) => {
                    (k, kept_insts) > (*bk, *bi) || ((k, kept_insts) == (*bk, *bi) && c < *bc)
                }
            };
            if better {
                chosen = Some((k, kept_insts, c, l, a));
            }
        }
    }
    let (kept_jobs, _, cost, layout, assignment) = chosen.ok_or_else(|| OptError::NoFit {
        gpu: gpu.name.to_string(),
        detail: String::new(),
    })?;
    Ok(Decision {
        layout: layout.clone(),
        assignment,
        cost,
        value: opts.objective.value(cost, n),
        kept_jobs,
    })
}

/// Reference search for tests: every layout of the right size, every injective assignment.
/// Returns the best summed cost (infinite when nothing fits).
pub fn brute_force(
    gpu: &'static GpuModel,
    jobs: &[OptJob],
    opts: &Options,
) -> Result<f64, OptError> {
    let costs = jobs
        .iter()
        .map(|j| cost_row(gpu, j, opts.objective))
        .collect::<Result<Vec<_>, _>>()?;
    let n = jobs.len();
    let mut best = f64::INFINITY;
    for l in all_layouts(gpu, false) {
        let m = l.len();
        if !(m == n || (opts.spare && m > n)) {
            continue;
        }
        let mut used = vec![false; m];
        rec(&costs, l.instances(), 0, 0.0, &mut used, &mut best);
    }
    Ok(best)
}

fn rec(
    costs: &[Vec<f64>],
    insts: &[Instance],
    j: usize,
    acc: f64,
    used: &mut [bool],
    best: &mut f64,
) {
    if j == costs.len() {
        *best = best.min(acc);
        return;
    }
    for i in 0..insts.len() {
        if used[i] {
            continue;
        }
        let c = costs[j][insts[i].profile as usize];
        if c == f64::INFINITY {
            continue;
        }
        used[i] = true;
        rec(costs, insts, j + 1, acc + c, used, best);
        used[i] = false;
    }
}
