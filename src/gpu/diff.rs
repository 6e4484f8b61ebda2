//! From the layout a GPU has to the one it should have: which instances stay untouched, which
//! are destroyed, which are created. Jobs on kept instances keep running; this is what lets a
//! re-partition leave them alone.

use serde::Serialize;

use super::catalog::GpuModel;
use super::layout::{Instance, InstanceView, Layout};

/// The steps that turn one placed layout into another.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LayoutDiff {
    /// Present in both layouts at the same placement: not touched.
    pub keep: Vec<Instance>,
    /// Present now, absent from the target: destroyed first (smaller ones first).
    pub destroy: Vec<Instance>,
    /// Absent now, present in the target: created after the destroys, larger instances first
    /// (the order NVML accepts without fragmenting the GPU).
    pub create: Vec<Instance>,
}

impl LayoutDiff {
    pub fn between(gpu: &GpuModel, from: &Layout, to: &Layout) -> LayoutDiff {
        let mut keep = Vec::new();
        let mut destroy = Vec::new();
        let mut target: Vec<Instance> = to.instances().to_vec();
        for inst in from.instances() {
            if let Some(pos) = target.iter().position(|t| t == inst) {
                keep.push(*inst);
                target.remove(pos);
            } else {
                destroy.push(*inst);
            }
        }
        let size = |i: &Instance| {
            let p = &gpu.profiles[i.profile as usize];
            (p.memory_slices, p.compute_slices)
        };
        destroy.sort_by_key(|i| (size(i), i.start));
        target.sort_by_key(|i| (std::cmp::Reverse(size(i)), i.start));
        LayoutDiff {
            keep,
            destroy,
            create: target,
        }
    }

    /// True when the layouts are the same.
    pub fn is_noop(&self) -> bool {
        self.destroy.is_empty() && self.create.is_empty()
    }

    pub fn view(&self, gpu: &GpuModel) -> DiffView {
        let v = |xs: &[Instance]| xs.iter().map(|i| i.view(gpu)).collect();
        DiffView {
            keep: v(&self.keep),
            destroy: v(&self.destroy),
            create: v(&self.create),
        }
    }
}

/// JSON form of a [`LayoutDiff`].
#[derive(Clone, Debug, Serialize)]
pub struct DiffView {
    pub keep: Vec<InstanceView>,
    pub destroy: Vec<InstanceView>,
    pub create: Vec<InstanceView>,
}
