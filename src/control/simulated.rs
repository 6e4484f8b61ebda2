//! An in-memory MIG GPU that enforces the same placement rules as the hardware, with fault
//! injection for tests: fail the k-th call, hang (report a timeout), lose a process.

use std::collections::BTreeMap;

use crate::gpu::{GpuModel, Instance, Layout};

use super::{ControlError, GpuControl, GpuInfo, GpuProcess};

/// A fault to inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The k-th mutating call (create or destroy; counted from 1) fails.
    FailCall(u64),
    /// The k-th mutating call hangs: it reports a timeout and has no effect.
    HangCall(u64),
}

/// Simulated GPUs of one model.
pub struct SimulatedGpus {
    pub model: &'static GpuModel,
    pub layouts: Vec<Layout>,
    pub mig_enabled: Vec<bool>,
    /// Processes: (gpu, pid) → instance.
    pub procs: BTreeMap<(u32, u32), Instance>,
    pub faults: Vec<Fault>,
    calls: u64,
    /// Every mutating call, in order, for tests.
    pub log: Vec<String>,
    /// Where the layouts persist after every change (so a killed agent's GPU keeps its state).
    pub state_file: Option<std::path::PathBuf>,
    /// Time each mutating call takes (NVML calls take a while on real GPUs).
    pub step_delay: std::time::Duration,
}

impl SimulatedGpus {
    pub fn new(model: &'static GpuModel, n: usize) -> SimulatedGpus {
        SimulatedGpus {
            model,
            layouts: vec![Layout::empty(); n],
            mig_enabled: vec![true; n],
            procs: BTreeMap::new(),
            faults: Vec::new(),
            calls: 0,
            log: Vec::new(),
            state_file: None,
            step_delay: std::time::Duration::ZERO,
        }
    }

    /// GPUs whose layouts persist in `path` (read when it exists: one layout label per GPU,
    /// JSON array).
    pub fn persistent(
        model: &'static GpuModel,
        n: usize,
        path: &std::path::Path,
    ) -> Result<SimulatedGpus, ControlError> {
        let mut s = SimulatedGpus::new(model, n);
        s.state_file = Some(path.to_path_buf());
        if let Ok(text) = std::fs::read_to_string(path) {
            let bad = |e: String| ControlError::Call {
                gpu: 0,
                call: "load simulated state".into(),
                reason: format!("{}: {e}", path.display()),
            };
            let labels: Vec<String> =
                serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            for (i, l) in labels.iter().enumerate().take(n) {
                s.layouts[i] =
                    crate::gpu::parse_valid_layout(model, l).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(s)
    }

    fn persist(&self) {
        if let Some(p) = &self.state_file {
            let labels: Vec<String> = self.layouts.iter().map(|l| l.label(self.model)).collect();
            let tmp = p.with_extension("tmp");
            if std::fs::write(&tmp, serde_json::to_string(&labels).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, p);
            }
        }
    }

    /// A process `pid` starts on an instance of `gpu`.
    pub fn spawn(&mut self, gpu: u32, pid: u32, inst: Instance) {
        self.procs.insert((gpu, pid), inst);
    }

    /// The process disappears (crash, checkpoint, or a lost process).
    pub fn kill(&mut self, gpu: u32, pid: u32) {
        self.procs.remove(&(gpu, pid));
    }

    fn check(&self, gpu: u32) -> Result<usize, ControlError> {
        let g = gpu as usize;
        if g >= self.layouts.len() {
            return Err(ControlError::NoSuchGpu(gpu));
        }
        if !self.mig_enabled[g] {
            return Err(ControlError::MigDisabled(gpu));
        }
        Ok(g)
    }

    fn fault(&mut self, call: &str) -> Result<(), ControlError> {
        if !self.step_delay.is_zero() {
            std::thread::sleep(self.step_delay);
        }
        self.calls += 1;
        let k = self.calls;
        for f in &self.faults {
            match f {
                Fault::FailCall(n) if *n == k => {
                    return Err(ControlError::Call {
                        gpu: 0,
                        call: call.into(),
                        reason: format!("injected failure (call {k})"),
                    })
                }
                Fault::HangCall(n) if *n == k => {
                    return Err(ControlError::Timeout(format!(
                        "{call} (injected hang, call {k})"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl GpuControl for SimulatedGpus {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError> {
        Ok((0..self.layouts.len())
            .map(|i| GpuInfo {
                index: i as u32,
                uuid: format!("GPU-sim-{i:04}"),
                name: format!("NVIDIA {}", self.model.name),
                model: Some(self.model),
                model_short: Some(self.model.short.to_string()),
                mig_enabled: self.mig_enabled[i],
                mig_pending: self.mig_enabled[i],
            })
            .collect())
    }

    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError> {
        let g = self.check(gpu)?;
        Ok(self.layouts[g].clone())
    }

    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let g = self.check(gpu)?;
        let label = inst.label(self.model);
        self.fault(&format!("create {label}"))?;
        let mut v = self.layouts[g].instances().to_vec();
        v.push(inst);
        let next = Layout::new(v);
        next.validate(self.model).map_err(|e| ControlError::Call {
            gpu,
            call: format!("nvmlDeviceCreateGpuInstanceWithPlacement({label})"),
            reason: format!("NVML_ERROR_INSUFFICIENT_RESOURCES: {e}"),
        })?;
        self.layouts[g] = next;
        self.persist();
        self.log.push(format!("gpu{gpu} create {label}"));
        Ok(())
    }

    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let g = self.check(gpu)?;
        let label = inst.label(self.model);
        self.fault(&format!("destroy {label}"))?;
        if !self.layouts[g].instances().contains(&inst) {
            return Err(ControlError::Call {
                gpu,
                call: format!("nvmlGpuInstanceDestroy({label})"),
                reason: "NVML_ERROR_NOT_FOUND".into(),
            });
        }
        if let Some((&(_, pid), _)) = self
            .procs
            .iter()
            .find(|(&(pg, _), i)| pg == gpu && **i == inst)
        {
            return Err(ControlError::Call {
                gpu,
                call: format!("nvmlGpuInstanceDestroy({label})"),
                reason: format!("NVML_ERROR_IN_USE (pid {pid})"),
            });
        }
        let v: Vec<Instance> = self.layouts[g]
            .instances()
            .iter()
            .copied()
            .filter(|i| *i != inst)
            .collect();
        self.layouts[g] = Layout::new(v);
        self.persist();
        self.log.push(format!("gpu{gpu} destroy {label}"));
        Ok(())
    }

    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        self.check(gpu)?;
        Ok(self
            .procs
            .iter()
            .filter(|((g, _), _)| *g == gpu)
            .map(|((_, pid), i)| GpuProcess {
                pid: *pid,
                instance: Some(*i),
            })
            .collect())
    }
}
