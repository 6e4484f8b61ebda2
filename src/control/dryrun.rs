//! A dry run: the placement rules of the simulated backend, and a log of the exact NVML calls
//! (function, profile constant and id, placement) the NVML backend would make.

use crate::gpu::{GpuModel, Instance, Layout};

use super::nvml::ci_profile_index;
use super::simulated::SimulatedGpus;
use super::{ControlError, GpuControl, GpuInfo, GpuProcess, Mps};

/// `calls` holds one line per NVML call; with `echo` each is also printed to stderr as it is
/// made (the agent's `--backend dry-run`).
pub struct DryRun {
    inner: SimulatedGpus,
    pub calls: Vec<String>,
    pub echo: bool,
}

impl DryRun {
    /// GPUs of `model` whose layouts are `layouts` now.
    pub fn new(model: &'static GpuModel, layouts: Vec<Layout>) -> DryRun {
        let mut inner = SimulatedGpus::new(model, layouts.len());
        inner.layouts = layouts;
        DryRun {
            inner,
            calls: Vec::new(),
            echo: false,
        }
    }
}

impl DryRun {
    fn note(&mut self, lines: impl IntoIterator<Item = String>) {
        for l in lines {
            if self.echo {
                eprintln!("dry-run: {l}");
            }
            self.calls.push(l);
        }
    }
}

impl GpuControl for DryRun {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError> {
        self.inner.list_gpus()
    }

    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError> {
        self.inner.layout(gpu)
    }

    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let m = self.inner.model;
        let p = &m.profiles[inst.profile as usize];
        self.inner.create(gpu, inst)?;
        let ci = ci_profile_index(p.compute_slices);
        self.note([
            format!("nvmlDeviceGetGpuInstanceProfileInfo(device={gpu}, profile={}) -> id {}  # {}", p.nvml_profile_index, p.nvml_id, p.name),
            format!("nvmlDeviceCreateGpuInstanceWithPlacement(device={gpu}, profileId={}, placement={{start={}, size={}}}) -> gi", p.nvml_id, inst.start, p.memory_slices),
            format!("nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, profile={ci}, engProfile=NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED) -> ci profile id"),
            "nvmlGpuInstanceCreateComputeInstance(gi, profileId=<ci profile id>) -> ci".to_string(),
        ]);
        Ok(())
    }

    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let m = self.inner.model;
        let p = &m.profiles[inst.profile as usize];
        self.inner.destroy(gpu, inst)?;
        self.note([
            format!("nvmlDeviceGetGpuInstances(device={gpu}, profileId={}) -> the gi whose nvmlGpuInstanceGetInfo placement.start = {}  # {}", p.nvml_id, inst.start, inst.label(m)),
            "nvmlGpuInstanceGetComputeInstances(gi, <each ci profile id>) -> cis; nvmlComputeInstanceDestroy(ci) for each".to_string(),
            "nvmlGpuInstanceDestroy(gi)".to_string(),
        ]);
        Ok(())
    }

    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        self.inner.processes(gpu)
    }

    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError> {
        let id = self.inner.device_id(gpu, inst)?;
        self.note([match inst {
            None => format!("nvmlDeviceGetUUID(device={gpu})"),
            Some(i) => format!(
                "nvmlDeviceGetMigDeviceHandleByIndex(device={gpu}, i) for each i; the one whose nvmlDeviceGetGpuInstanceId = id of {} -> nvmlDeviceGetUUID",
                i.label(self.inner.model)
            ),
        }]);
        Ok(id)
    }

    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError> {
        self.device_id(gpu, inst)?;
        let m = self.inner.start_mps(gpu, inst)?;
        let env: Vec<String> = m.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.note([format!("{} nvidia-cuda-mps-control -d", env.join(" "))]);
        Ok(m)
    }

    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError> {
        self.inner.stop_mps(mps)?;
        let env: Vec<String> = mps.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.note([format!(
            "echo quit | {} nvidia-cuda-mps-control",
            env.join(" ")
        )]);
        Ok(())
    }
}
