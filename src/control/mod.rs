//! Driving real GPUs: the `GpuControl` trait (list GPUs, read MIG mode and the placed layout,
//! create/destroy instances at a placement, name an instance for `CUDA_VISIBLE_DEVICES`,
//! start/stop MPS, list processes per instance) with three backends:
//! NVML (`nvml.rs`), an in-memory simulated GPU with fault injection (`simulated.rs`) and a
//! dry run that prints the exact NVML calls a plan would make (`dryrun.rs`). Applying a layout
//! diff step by step keeps the GPU valid after every step, so a failure part-way leaves a valid
//! layout that a later reconcile converges from.
//!
//! Depends on `gpu` only; never decides what layout to have.

pub mod dryrun;
pub mod mps;
pub mod nvml;
pub mod simulated;
pub mod watchdog;

use serde::Serialize;

use crate::gpu::{GpuModel, Instance, Layout, LayoutDiff};

pub use mps::Mps;

/// One GPU as a backend sees it.
#[derive(Clone, Debug, Serialize)]
pub struct GpuInfo {
    pub index: u32,
    pub uuid: String,
    /// The name the driver reports (`NVIDIA H200`).
    pub name: String,
    /// miso's model for it, when known (`h200-141gb`).
    #[serde(skip)]
    pub model: Option<&'static GpuModel>,
    pub model_short: Option<String>,
    pub mig_enabled: bool,
    pub mig_pending: bool,
}

/// A process running on an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuProcess {
    pub pid: u32,
    /// The instance it runs on, `None` when MIG is off.
    #[serde(skip)]
    pub instance: Option<Instance>,
}

/// The driver's ids of one MIG instance: what its device files are named after
/// (`/proc/driver/nvidia-caps/mig-minors`: `gpu<minor>/gi<gi>/access`,
/// `gpu<minor>/gi<gi>/ci<ci>/access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MigIds {
    /// The GPU's minor number (`/dev/nvidia<minor>`).
    pub minor: u32,
    /// GPU-instance id.
    pub gi: u32,
    /// Compute-instance id (miso creates one spanning the instance).
    pub ci: u32,
}

/// Errors of a backend.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("NVML not available: {0}")]
    NvmlUnavailable(String),
    #[error("GPU {0} does not exist")]
    NoSuchGpu(u32),
    #[error("GPU {gpu} ({name}) is not a MIG-capable model miso knows")]
    UnknownModel { gpu: u32, name: String },
    #[error("MIG mode is off on GPU {0}; enable it once with `nvidia-smi -i {0} -mig 1` (Ampere resets the GPU)")]
    MigDisabled(u32),
    #[error("{call} failed on GPU {gpu}: {reason}")]
    Call {
        gpu: u32,
        call: String,
        reason: String,
    },
    #[error(
        "instance {instance} on GPU {gpu} is busy (processes {pids:?}): checkpoint them first"
    )]
    Busy {
        gpu: u32,
        instance: String,
        pids: Vec<u32>,
    },
    #[error("the call timed out: {0}")]
    Timeout(String),
}

/// What every backend offers.
pub trait GpuControl {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError>;
    /// The placed layout of GPU instances on `gpu`.
    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError>;
    /// Create a GPU instance at the placement, with one compute instance spanning it.
    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError>;
    /// Destroy the compute instances of the GPU instance, then the GPU instance.
    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError>;
    /// Processes on `gpu` and the instance each runs on.
    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError>;
    /// What a process puts in `CUDA_VISIBLE_DEVICES` to run on `inst` of `gpu` (the MIG
    /// device UUID), or on the whole GPU when `inst` is `None`.
    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError>;
    /// Start an MPS control daemon for `gpu` (MIG off) or for one of its instances.
    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError>;
    /// Stop a daemon `start_mps` started.
    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError>;
    /// The caller started process `pid` on `inst`. The driver sees such processes by itself
    /// once they open a CUDA context (NVML ignores this); the simulated GPU records it.
    fn started(&mut self, _gpu: u32, _inst: Instance, _pid: u32) {}
    /// The driver's ids of instance `inst` of `gpu` (for the device files Slurm must name).
    fn mig_ids(&mut self, gpu: u32, inst: Instance) -> Result<MigIds, ControlError> {
        let _ = inst;
        Err(ControlError::Call {
            gpu,
            call: "nvmlGpuInstanceGetInfo".into(),
            reason: "this backend has no MIG device files".into(),
        })
    }
}

/// A boxed backend is a backend (the agent picks one at run time).
impl<T: GpuControl + ?Sized> GpuControl for Box<T> {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError> {
        (**self).list_gpus()
    }
    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError> {
        (**self).layout(gpu)
    }
    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        (**self).create(gpu, inst)
    }
    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        (**self).destroy(gpu, inst)
    }
    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        (**self).processes(gpu)
    }
    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError> {
        (**self).device_id(gpu, inst)
    }
    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError> {
        (**self).start_mps(gpu, inst)
    }
    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError> {
        (**self).stop_mps(mps)
    }
    fn started(&mut self, gpu: u32, inst: Instance, pid: u32) {
        (**self).started(gpu, inst, pid)
    }
    fn mig_ids(&mut self, gpu: u32, inst: Instance) -> Result<MigIds, ControlError> {
        (**self).mig_ids(gpu, inst)
    }
}

/// How far an application of a diff got.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyReport {
    pub destroyed: Vec<Instance>,
    pub created: Vec<Instance>,
    /// The step that failed, if any; the GPU is left in the valid layout reached before it.
    pub failed: Option<(String, ControlError)>,
}

/// Apply `diff` to GPU `gpu`: destroy (refusing busy instances), then create largest first.
/// Stops at the first error; every state it passes through is a valid layout.
pub fn apply(
    ctl: &mut dyn GpuControl,
    model: &GpuModel,
    gpu: u32,
    diff: &LayoutDiff,
) -> ApplyReport {
    let mut r = ApplyReport {
        destroyed: Vec::new(),
        created: Vec::new(),
        failed: None,
    };
    let busy = match ctl.processes(gpu) {
        Ok(p) => p,
        Err(e) => {
            r.failed = Some(("list processes".into(), e));
            return r;
        }
    };
    for inst in &diff.destroy {
        let pids: Vec<u32> = busy
            .iter()
            .filter(|p| p.instance == Some(*inst))
            .map(|p| p.pid)
            .collect();
        if !pids.is_empty() {
            r.failed = Some((
                format!("destroy {}", inst.label(model)),
                ControlError::Busy {
                    gpu,
                    instance: inst.label(model),
                    pids,
                },
            ));
            return r;
        }
        if let Err(e) = ctl.destroy(gpu, *inst) {
            r.failed = Some((format!("destroy {}", inst.label(model)), e));
            return r;
        }
        r.destroyed.push(*inst);
    }
    for inst in &diff.create {
        if let Err(e) = ctl.create(gpu, *inst) {
            r.failed = Some((format!("create {}", inst.label(model)), e));
            return r;
        }
        r.created.push(*inst);
    }
    r
}

/// Level-triggered reconcile: read the GPU's layout, diff against `desired`, apply.
pub fn reconcile(
    ctl: &mut dyn GpuControl,
    model: &GpuModel,
    gpu: u32,
    desired: &Layout,
) -> Result<ApplyReport, ControlError> {
    let now = ctl.layout(gpu)?;
    let diff = LayoutDiff::between(model, &now, desired);
    Ok(apply(ctl, model, gpu, &diff))
}

#[cfg(test)]
mod tests;
