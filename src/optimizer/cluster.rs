//! Across GPUs: which GPU a new job joins. Re-planning a GPU after a job finishes is
//! [`super::plan`] on the jobs that remain (it closes the idle gap).

use crate::gpu::{GpuModel, Layout};

use super::{optimize, OptJob, Options};

/// One GPU of a cluster as the optimizer sees it.
#[derive(Clone, Debug)]
pub struct GpuState {
    pub gpu: &'static GpuModel,
    pub layout: Layout,
    pub jobs: Vec<OptJob>,
}

/// How to pick a GPU for a new job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// MISO's rule: the GPU with the fewest jobs that can still take the job (lowest index on
    /// a tie).
    #[default]
    FewestJobs,
    /// The GPU where adding the job raises the summed objective cost least.
    BestGain,
}

/// For each GPU of `cluster` where a layout fits the job beside its jobs: (index, how much the
/// summed objective cost rises). The ranking [`Placement::BestGain`] takes the least of.
pub fn placement_gains(cluster: &[GpuState], job: &OptJob, opts: &Options) -> Vec<(usize, f64)> {
    cluster
        .iter()
        .enumerate()
        .filter_map(|(g, st)| {
            let mut jobs = st.jobs.clone();
            jobs.push(OptJob {
                current: None,
                ..job.clone()
            });
            let after = optimize(st.gpu, &jobs, &st.layout, opts).ok()?;
            let before = optimize(st.gpu, &st.jobs, &st.layout, opts)
                .map(|d| d.cost)
                .unwrap_or(0.0);
            Some((g, after.cost - before))
        })
        .collect()
}

/// The GPU (index into `cluster`) the job should join, or `None` when no GPU can take it.
pub fn choose_gpu(
    cluster: &[GpuState],
    job: &OptJob,
    how: Placement,
    opts: &Options,
) -> Option<usize> {
    if how == Placement::BestGain {
        // The least rise, the lowest index on a tie.
        return placement_gains(cluster, job, opts)
            .into_iter()
            .reduce(|b, x| if x.1 < b.1 { x } else { b })
            .map(|(g, _)| g);
    }
    let mut best: Option<(usize, usize)> = None;
    for (g, st) in cluster.iter().enumerate() {
        // A GPU with no fewer jobs than the best so far cannot win.
        if best.is_some_and(|(_, b)| st.jobs.len() >= b) {
            continue;
        }
        let mut jobs = st.jobs.clone();
        jobs.push(OptJob {
            current: None,
            ..job.clone()
        });
        if optimize(st.gpu, &jobs, &st.layout, opts).is_ok() {
            best = Some((g, st.jobs.len()));
        }
    }
    best.map(|(g, _)| g)
}
