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

/// The GPU (index into `cluster`) the job should join, or `None` when no GPU can take it.
pub fn choose_gpu(
    cluster: &[GpuState],
    job: &OptJob,
    how: Placement,
    opts: &Options,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (g, st) in cluster.iter().enumerate() {
        if let (Placement::FewestJobs, Some((_, b))) = (how, best) {
            // A GPU with no fewer jobs than the best so far cannot win.
            if st.jobs.len() as f64 >= b {
                continue;
            }
        }
        let mut jobs = st.jobs.clone();
        jobs.push(OptJob {
            current: None,
            ..job.clone()
        });
        let Ok(after) = optimize(st.gpu, &jobs, &st.layout, opts) else {
            continue;
        };
        let score = match how {
            Placement::FewestJobs => st.jobs.len() as f64,
            Placement::BestGain => {
                let before = optimize(st.gpu, &st.jobs, &st.layout, opts)
                    .map(|d| d.cost)
                    .unwrap_or(0.0);
                after.cost - before
            }
        };
        if best.is_none_or(|(_, b)| score < b) {
            best = Some((g, score));
        }
    }
    best.map(|(g, _)| g)
}
