//! An in-memory MIG GPU that enforces the same placement rules as the hardware, with fault
//! injection for tests: fail the k-th call, hang (report a timeout), lose the calling process
//! (it dies right after the k-th call took effect, as an agent killed mid-plan does).

use std::collections::{BTreeMap, BTreeSet};

use crate::gpu::{GpuModel, Instance, Layout};

use super::{ControlError, GpuControl, GpuInfo, GpuProcess, Mps};

/// A fault to inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The k-th mutating call (create or destroy; counted from 1) fails.
    FailCall(u64),
    /// The k-th mutating call hangs: it reports a timeout and has no effect.
    HangCall(u64),
    /// Lose the process: the k-th mutating call takes effect (and is persisted), then the
    /// calling process exits at once with status 137, like a SIGKILL, before it can report.
    Crash(u64),
}

/// Exit status of a process lost by [`Fault::Crash`].
pub const CRASH_EXIT: i32 = 137;

/// Whether process `pid` still runs: it exists (signal 0 checks without sending anything) and
/// is not a zombie that has exited but was not reaped yet.
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the pid exists.
    if pid == 0 || unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    // /proc/<pid>/stat: "pid (comm) S ..."; the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => st
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

/// Simulated GPUs of one model.
pub struct SimulatedGpus {
    pub model: &'static GpuModel,
    pub layouts: Vec<Layout>,
    pub mig_enabled: Vec<bool>,
    /// Processes: (gpu, pid) → instance.
    pub procs: BTreeMap<(u32, u32), Instance>,
    /// Processes the caller reported through `started`: real pids, forgotten once they exit
    /// (as the driver forgets a process that ended).
    watched: BTreeSet<(u32, u32)>,
    /// Running MPS daemons: (gpu, instance).
    pub mps: BTreeSet<(u32, Option<Instance>)>,
    crash_after: bool,
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
            watched: BTreeSet::new(),
            mps: BTreeSet::new(),
            crash_after: false,
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

    /// Forget watched processes that have exited.
    fn prune(&mut self) {
        let dead: Vec<(u32, u32)> = self
            .watched
            .iter()
            .copied()
            .filter(|(_, pid)| !alive(*pid))
            .collect();
        for k in dead {
            self.watched.remove(&k);
            self.procs.remove(&k);
        }
    }

    /// After a call took effect: die here if the call was to lose the process.
    fn maybe_crash(&self) {
        if self.crash_after {
            std::process::exit(CRASH_EXIT);
        }
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
        self.crash_after = false;
        let k = self.calls;
        for f in self.faults.clone() {
            match f {
                Fault::FailCall(n) if n == k => {
                    return Err(ControlError::Call {
                        gpu: 0,
                        call: call.into(),
                        reason: format!("injected failure (call {k})"),
                    })
                }
                Fault::HangCall(n) if n == k => {
                    return Err(ControlError::Timeout(format!(
                        "{call} (injected hang, call {k})"
                    )))
                }
                Fault::Crash(n) if n == k => self.crash_after = true,
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
        self.maybe_crash();
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
        if self.mps.contains(&(gpu, Some(inst))) {
            return Err(ControlError::Call {
                gpu,
                call: format!("nvmlGpuInstanceDestroy({label})"),
                reason: "NVML_ERROR_IN_USE (an MPS daemon serves it)".into(),
            });
        }
        self.prune();
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
        self.maybe_crash();
        Ok(())
    }

    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        self.check(gpu)?;
        self.prune();
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

    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError> {
        let Some(inst) = inst else {
            if (gpu as usize) < self.layouts.len() {
                return Ok(format!("GPU-sim-{gpu:04}"));
            }
            return Err(ControlError::NoSuchGpu(gpu));
        };
        let g = self.check(gpu)?;
        if !self.layouts[g].instances().contains(&inst) {
            return Err(ControlError::Call {
                gpu,
                call: format!("nvmlDeviceGetGpuInstances({})", inst.label(self.model)),
                reason: "NVML_ERROR_NOT_FOUND".into(),
            });
        }
        Ok(format!("MIG-sim-{gpu:04}-{}-{}", inst.profile, inst.start))
    }

    /// Ids as a driver numbers them: GPU minor = index, GPU-instance ids 1, 2, ... in placement
    /// order, one compute instance (id 0) each.
    fn mig_ids(&mut self, gpu: u32, inst: Instance) -> Result<super::MigIds, ControlError> {
        let g = self.check(gpu)?;
        let k = self.layouts[g]
            .instances()
            .iter()
            .position(|i| *i == inst)
            .ok_or_else(|| ControlError::Call {
                gpu,
                call: format!("nvmlDeviceGetGpuInstances({})", inst.label(self.model)),
                reason: "NVML_ERROR_NOT_FOUND".into(),
            })?;
        Ok(super::MigIds {
            minor: gpu,
            gi: k as u32 + 1,
            ci: 0,
        })
    }

    /// Records the daemon (no process is started: there is no GPU to serve).
    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError> {
        let device = self.device_id(gpu, inst)?;
        if !self.mps.insert((gpu, inst)) {
            return Err(ControlError::Call {
                gpu,
                call: "nvidia-cuda-mps-control -d".into(),
                reason: format!("an MPS daemon already serves {device}"),
            });
        }
        Ok(Mps::new(gpu, inst, device))
    }

    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError> {
        if !self.mps.remove(&(mps.gpu, mps.instance)) {
            return Err(ControlError::Call {
                gpu: mps.gpu,
                call: "echo quit | nvidia-cuda-mps-control".into(),
                reason: format!("no MPS daemon serves {}", mps.device),
            });
        }
        Ok(())
    }

    fn started(&mut self, gpu: u32, inst: Instance, pid: u32) {
        self.procs.insert((gpu, pid), inst);
        self.watched.insert((gpu, pid));
    }
}
