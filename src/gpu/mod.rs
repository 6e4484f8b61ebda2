//! GPU models, MIG profiles and placed layouts: the geometry everything else builds on.
//!
//! This module knows nothing of jobs, time or NVML: it says which instances a GPU can hold
//! where, enumerates layouts, diffs them, and reads/writes mig-parted configs.

mod catalog;
mod diff;
mod layout;
pub mod migparted;

pub use catalog::{find_gpu, gpu_names, nvml_index, GpuModel, Profile, GPUS};
pub use diff::{DiffView, LayoutDiff};
pub use layout::{
    all_layouts, enumerate, maximal, model_index, place_counts, Instance, InstanceView, Layout,
    MAX_MODELS,
};

/// Errors from reading GPU names, profiles and layouts. Each message names the bad value and
/// what is allowed instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GpuError {
    #[error("unknown GPU `{name}` (allowed: {allowed})")]
    UnknownGpu { name: String, allowed: String },
    #[error("unknown profile `{name}` for {gpu} (allowed: {allowed})")]
    UnknownProfile {
        name: String,
        gpu: String,
        allowed: String,
    },
    #[error("bad instance `{input}`: {reason}")]
    Syntax { input: String, reason: String },
    #[error(
        "{instance}: start is not a placement of this profile on {gpu} (allowed starts: {allowed})"
    )]
    BadStart {
        instance: String,
        gpu: String,
        allowed: String,
    },
    #[error("{instance} overlaps {other} (they share memory slices)")]
    Overlap { instance: String, other: String },
    #[error("{count} instances of {profile}: at most {max} fit one GPU")]
    TooMany {
        profile: String,
        count: u32,
        max: u32,
    },
    #[error("layout {layout} uses {used} compute slices: the GPU has {max}")]
    ComputeBudget { used: u32, max: u32, layout: String },
    #[error("mig-parted config: {reason}")]
    MigParted { reason: String },
}

impl GpuError {
    pub fn unknown_profile(gpu: &GpuModel, name: &str) -> GpuError {
        GpuError::UnknownProfile {
            name: name.trim().to_string(),
            gpu: gpu.name.to_string(),
            allowed: gpu.profile_names().join(", "),
        }
    }
}

/// Look a GPU model up by any of its names, or say which names exist.
pub fn gpu(name: &str) -> Result<&'static GpuModel, GpuError> {
    find_gpu(name).ok_or_else(|| GpuError::UnknownGpu {
        name: name.to_string(),
        allowed: gpu_names().join(", "),
    })
}

/// Parse a layout and check it against the placement rules in one step.
pub fn parse_valid_layout(gpu: &GpuModel, text: &str) -> Result<Layout, GpuError> {
    let l = Layout::parse(gpu, text)?;
    l.validate(gpu)?;
    Ok(l)
}

#[cfg(test)]
mod tests;
