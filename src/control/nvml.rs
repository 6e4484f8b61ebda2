//! The NVML backend. Discovery and MIG mode through nvml-wrapper's safe API; GPU-instance and
//! compute-instance calls through the raw bindings (`Nvml::lib()` + the device handle), since
//! the safe API lacks them (and its placement query returns nothing). Loads libnvidia-ml.so.1 at
//! run time: without a driver `NvmlControl::new` returns `NvmlUnavailable`, no panic.

use std::mem;

use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings as sys;

use crate::gpu::{find_gpu, GpuModel, Instance, Layout};

use super::{ControlError, GpuControl, GpuInfo, GpuProcess, Mps};

/// `NVML_COMPUTE_INSTANCE_PROFILE_*` for a compute instance spanning `slices` compute slices.
pub fn ci_profile_index(slices: u8) -> u32 {
    match slices {
        1 => sys::NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE,
        2 => sys::NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE,
        3 => sys::NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE,
        4 => sys::NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE,
        6 => sys::NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE,
        _ => sys::NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE,
    }
}

/// Real GPUs through NVML.
pub struct NvmlControl {
    nvml: Nvml,
}

fn ok(gpu: u32, call: &str, r: sys::nvmlReturn_t) -> Result<(), ControlError> {
    if r == sys::nvmlReturn_enum_NVML_SUCCESS {
        Ok(())
    } else {
        Err(ControlError::Call {
            gpu,
            call: call.to_string(),
            reason: format!("nvmlReturn {r}"),
        })
    }
}

impl NvmlControl {
    pub fn new() -> Result<NvmlControl, ControlError> {
        Nvml::init()
            .map(|nvml| NvmlControl { nvml })
            .map_err(|e| ControlError::NvmlUnavailable(e.to_string()))
    }

    /// GPU `gpu` and miso's model for it.
    fn known_device(
        &self,
        gpu: u32,
    ) -> Result<(nvml_wrapper::Device<'_>, &'static GpuModel), ControlError> {
        let d = self
            .nvml
            .device_by_index(gpu)
            .map_err(|_| ControlError::NoSuchGpu(gpu))?;
        let name = d.name().unwrap_or_default();
        let model = find_gpu(&name).ok_or(ControlError::UnknownModel { gpu, name })?;
        Ok((d, model))
    }

    fn device(&self, gpu: u32) -> Result<(sys::nvmlDevice_t, &'static GpuModel), ControlError> {
        let (d, model) = self.known_device(gpu)?;
        let mode = d.mig_mode().map_err(|e| ControlError::Call {
            gpu,
            call: "nvmlDeviceGetMigMode".into(),
            reason: e.to_string(),
        })?;
        if mode.current != 1 {
            return Err(ControlError::MigDisabled(gpu));
        }
        // SAFETY: the handle stays valid while `self.nvml` lives; it is used only with it.
        Ok((unsafe { d.handle() }, model))
    }

    /// NVML profile id of catalog profile `p`, as the driver reports it.
    fn profile_id(
        &self,
        gpu: u32,
        dev: sys::nvmlDevice_t,
        model: &GpuModel,
        p: usize,
    ) -> Result<u32, ControlError> {
        let lib = self.nvml.lib();
        // SAFETY: `info` is a plain C struct NVML fills; `dev` is a live handle.
        unsafe {
            let mut info: sys::nvmlGpuInstanceProfileInfo_t = mem::zeroed();
            ok(
                gpu,
                "nvmlDeviceGetGpuInstanceProfileInfo",
                lib.nvmlDeviceGetGpuInstanceProfileInfo(
                    dev,
                    model.profiles[p].nvml_profile_index,
                    &mut info,
                ),
            )?;
            Ok(info.id)
        }
    }

    /// The GPU instances of profile `p` with their placement start and handle.
    fn instances(
        &self,
        gpu: u32,
        dev: sys::nvmlDevice_t,
        model: &GpuModel,
        p: usize,
    ) -> Result<Vec<(u8, sys::nvmlGpuInstance_t)>, ControlError> {
        let id = match self.profile_id(gpu, dev, model, p) {
            Ok(id) => id,
            Err(_) => return Ok(Vec::new()), // profile not offered by this driver/GPU
        };
        let lib = self.nvml.lib();
        let mut out = Vec::new();
        // SAFETY: the buffer has room for `count` handles as NVML requires.
        unsafe {
            let mut buf: [sys::nvmlGpuInstance_t; 8] = mem::zeroed();
            let mut count: u32 = 0;
            ok(
                gpu,
                "nvmlDeviceGetGpuInstances",
                lib.nvmlDeviceGetGpuInstances(dev, id, buf.as_mut_ptr(), &mut count),
            )?;
            for gi in buf.iter().take(count as usize) {
                let mut info: sys::nvmlGpuInstanceInfo_t = mem::zeroed();
                ok(
                    gpu,
                    "nvmlGpuInstanceGetInfo",
                    lib.nvmlGpuInstanceGetInfo(*gi, &mut info),
                )?;
                out.push((info.placement.start as u8, *gi));
            }
        }
        Ok(out)
    }
}

fn nvml_call(gpu: u32, call: &str, e: nvml_wrapper::error::NvmlError) -> ControlError {
    ControlError::Call {
        gpu,
        call: call.into(),
        reason: e.to_string(),
    }
}

impl NvmlControl {
    /// The GPU-instance id of placed instance `inst` of `gpu`, and its MIG device.
    fn mig_device(
        &self,
        gpu: u32,
        inst: Instance,
    ) -> Result<(u32, nvml_wrapper::Device<'_>), ControlError> {
        let (dev, model) = self.device(gpu)?;
        let label = inst.label(model);
        let lib = self.nvml.lib();
        // The GPU-instance id of the placed instance ...
        let gi = self
            .instances(gpu, dev, model, inst.profile as usize)?
            .into_iter()
            .find(|(start, _)| *start == inst.start)
            .map(|(_, gi)| gi)
            .ok_or_else(|| ControlError::Call {
                gpu,
                call: format!("nvmlDeviceGetGpuInstances({label})"),
                reason: "NVML_ERROR_NOT_FOUND".into(),
            })?;
        // SAFETY: `gi` is a live handle; `info` a plain C struct NVML fills.
        let mut info: sys::nvmlGpuInstanceInfo_t = unsafe { mem::zeroed() };
        ok(gpu, "nvmlGpuInstanceGetInfo", unsafe {
            lib.nvmlGpuInstanceGetInfo(gi, &mut info)
        })?;
        // ... and the MIG device whose GPU-instance id it is.
        let d = self
            .nvml
            .device_by_index(gpu)
            .map_err(|_| ControlError::NoSuchGpu(gpu))?;
        let n = d
            .mig_device_count()
            .map_err(|e| nvml_call(gpu, "nvmlDeviceGetMaxMigDeviceCount", e))?;
        for i in 0..n {
            let Ok(m) = d.mig_device_by_index(i) else {
                continue; // an unused MIG device slot
            };
            let mut id: u32 = 0;
            // SAFETY: `m`'s handle is live while `self.nvml` lives.
            let r = unsafe { lib.nvmlDeviceGetGpuInstanceId(m.handle(), &mut id) };
            if r == sys::nvmlReturn_enum_NVML_SUCCESS && id == info.id {
                return Ok((info.id, m));
            }
        }
        Err(ControlError::Call {
            gpu,
            call: format!("nvmlDeviceGetMigDeviceHandleByIndex({label})"),
            reason: format!("no MIG device has GPU instance id {}", info.id),
        })
    }
}

/// One catalog profile compared with what the driver reports for it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileCheck {
    pub profile: String,
    pub nvml_profile_index: u32,
    /// (catalog, driver) pairs; `None` from the driver when it does not offer the profile.
    pub nvml_id: (u32, Option<u32>),
    pub memory_mb: (u32, Option<u64>),
    pub sm_count: (u32, Option<u32>),
    pub max_count: (u8, Option<u32>),
    pub matches: bool,
}

impl NvmlControl {
    /// Compare the catalog's profiles of GPU `gpu`'s model with the driver's profile table
    /// (works with MIG mode off; changes nothing).
    pub fn check_profiles(&self, gpu: u32) -> Result<Vec<ProfileCheck>, ControlError> {
        let (d, model) = self.known_device(gpu)?;
        // SAFETY: the handle stays valid while `self.nvml` lives.
        let dev = unsafe { d.handle() };
        let lib = self.nvml.lib();
        Ok(model
            .profiles
            .iter()
            .map(|p| {
                // SAFETY: plain C struct NVML fills.
                let mut info: sys::nvmlGpuInstanceProfileInfo_t = unsafe { mem::zeroed() };
                let got = unsafe {
                    lib.nvmlDeviceGetGpuInstanceProfileInfo(dev, p.nvml_profile_index, &mut info)
                } == sys::nvmlReturn_enum_NVML_SUCCESS;
                let id = got.then_some(info.id);
                let mem = got.then_some(info.memorySizeMB);
                let sm = got.then_some(info.multiprocessorCount);
                let max = got.then_some(info.instanceCount);
                ProfileCheck {
                    profile: p.name.to_string(),
                    nvml_profile_index: p.nvml_profile_index,
                    nvml_id: (p.nvml_id, id),
                    memory_mb: (p.memory_mb, mem),
                    sm_count: (p.sm_count, sm),
                    max_count: (p.max_count, max),
                    matches: id == Some(p.nvml_id)
                        && mem == Some(p.memory_mb as u64)
                        && sm == Some(p.sm_count)
                        && max == Some(p.max_count as u32),
                }
            })
            .collect())
    }
}

impl GpuControl for NvmlControl {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError> {
        let n = self
            .nvml
            .device_count()
            .map_err(|e| ControlError::NvmlUnavailable(e.to_string()))?;
        let mut v = Vec::new();
        for i in 0..n {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| ControlError::Call {
                    gpu: i,
                    call: "nvmlDeviceGetHandleByIndex".into(),
                    reason: e.to_string(),
                })?;
            let name = d.name().unwrap_or_default();
            let model = find_gpu(&name);
            let mode = d.mig_mode().ok();
            v.push(GpuInfo {
                index: i,
                uuid: d.uuid().unwrap_or_default(),
                name,
                model,
                model_short: model.map(|m| m.short.to_string()),
                mig_enabled: mode.as_ref().is_some_and(|m| m.current == 1),
                mig_pending: mode.as_ref().is_some_and(|m| m.pending == 1),
            });
        }
        Ok(v)
    }

    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError> {
        let (dev, model) = self.device(gpu)?;
        let mut v = Vec::new();
        for p in 0..model.profiles.len() {
            for (start, _) in self.instances(gpu, dev, model, p)? {
                v.push(Instance::new(p, start));
            }
        }
        Ok(Layout::new(v))
    }

    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let (dev, model) = self.device(gpu)?;
        let p = &model.profiles[inst.profile as usize];
        let id = self.profile_id(gpu, dev, model, inst.profile as usize)?;
        let lib = self.nvml.lib();
        // SAFETY: plain C structs and handles NVML fills; `dev` is live.
        unsafe {
            let placement = sys::nvmlGpuInstancePlacement_t {
                start: inst.start as u32,
                size: p.memory_slices as u32,
            };
            let mut gi: sys::nvmlGpuInstance_t = mem::zeroed();
            ok(
                gpu,
                "nvmlDeviceCreateGpuInstanceWithPlacement",
                lib.nvmlDeviceCreateGpuInstanceWithPlacement(dev, id, &placement, &mut gi),
            )?;
            let mut ci_info: sys::nvmlComputeInstanceProfileInfo_t = mem::zeroed();
            let mut ci: sys::nvmlComputeInstance_t = mem::zeroed();
            let r = ok(
                gpu,
                "nvmlGpuInstanceGetComputeInstanceProfileInfo",
                lib.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi,
                    ci_profile_index(p.compute_slices),
                    sys::NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                    &mut ci_info,
                ),
            )
            .and_then(|_| {
                ok(
                    gpu,
                    "nvmlGpuInstanceCreateComputeInstance",
                    lib.nvmlGpuInstanceCreateComputeInstance(gi, ci_info.id, &mut ci),
                )
            });
            if let Err(e) = r {
                // Leave no half-made instance behind.
                lib.nvmlGpuInstanceDestroy(gi);
                return Err(e);
            }
        }
        Ok(())
    }

    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        let (dev, model) = self.device(gpu)?;
        let gi = self
            .instances(gpu, dev, model, inst.profile as usize)?
            .into_iter()
            .find(|(s, _)| *s == inst.start)
            .map(|(_, gi)| gi)
            .ok_or_else(|| ControlError::Call {
                gpu,
                call: "nvmlDeviceGetGpuInstances".into(),
                reason: format!("no instance {}", inst.label(model)),
            })?;
        let lib = self.nvml.lib();
        // SAFETY: handles come from NVML above; buffers are sized as NVML requires.
        unsafe {
            for ci_idx in 0..8u32 {
                let mut info: sys::nvmlComputeInstanceProfileInfo_t = mem::zeroed();
                if lib.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi,
                    ci_idx,
                    sys::NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                    &mut info,
                ) != sys::nvmlReturn_enum_NVML_SUCCESS
                {
                    continue;
                }
                let mut buf: [sys::nvmlComputeInstance_t; 8] = mem::zeroed();
                let mut count: u32 = 0;
                if lib.nvmlGpuInstanceGetComputeInstances(gi, info.id, buf.as_mut_ptr(), &mut count)
                    != sys::nvmlReturn_enum_NVML_SUCCESS
                {
                    continue;
                }
                for ci in buf.iter().take(count as usize) {
                    ok(
                        gpu,
                        "nvmlComputeInstanceDestroy",
                        lib.nvmlComputeInstanceDestroy(*ci),
                    )?;
                }
            }
            ok(
                gpu,
                "nvmlGpuInstanceDestroy",
                lib.nvmlGpuInstanceDestroy(gi),
            )
        }
    }

    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError> {
        let Some(inst) = inst else {
            let d = self
                .nvml
                .device_by_index(gpu)
                .map_err(|_| ControlError::NoSuchGpu(gpu))?;
            return d.uuid().map_err(|e| nvml_call(gpu, "nvmlDeviceGetUUID", e));
        };
        let (_, m) = self.mig_device(gpu, inst)?;
        m.uuid().map_err(|e| nvml_call(gpu, "nvmlDeviceGetUUID", e))
    }

    fn mig_ids(&mut self, gpu: u32, inst: Instance) -> Result<super::MigIds, ControlError> {
        let (gi, m) = self.mig_device(gpu, inst)?;
        let mut ci = 0u32;
        // SAFETY: `m`'s handle is live while `self.nvml` lives.
        ok(gpu, "nvmlDeviceGetComputeInstanceId", unsafe {
            self.nvml
                .lib()
                .nvmlDeviceGetComputeInstanceId(m.handle(), &mut ci)
        })?;
        let minor = self
            .nvml
            .device_by_index(gpu)
            .map_err(|_| ControlError::NoSuchGpu(gpu))?
            .minor_number()
            .map_err(|e| nvml_call(gpu, "nvmlDeviceGetMinorNumber", e))?;
        Ok(super::MigIds { minor, gi, ci })
    }

    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError> {
        let m = Mps::new(gpu, inst, self.device_id(gpu, inst)?);
        m.start_daemon()?;
        Ok(m)
    }

    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError> {
        mps.stop_daemon()
    }

    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        let d = self
            .nvml
            .device_by_index(gpu)
            .map_err(|_| ControlError::NoSuchGpu(gpu))?;
        let procs = d
            .running_compute_processes()
            .map_err(|e| ControlError::Call {
                gpu,
                call: "nvmlDeviceGetComputeRunningProcesses".into(),
                reason: e.to_string(),
            })?;
        // Map GPU-instance ids to placed instances when MIG is on.
        let mut by_id = Vec::new();
        if let Ok((dev, model)) = self.device(gpu) {
            let lib = self.nvml.lib();
            for p in 0..model.profiles.len() {
                for (start, gi) in self.instances(gpu, dev, model, p)? {
                    // SAFETY: `gi` is a live handle from NVML.
                    let mut info: sys::nvmlGpuInstanceInfo_t = unsafe { mem::zeroed() };
                    if unsafe { lib.nvmlGpuInstanceGetInfo(gi, &mut info) }
                        == sys::nvmlReturn_enum_NVML_SUCCESS
                    {
                        by_id.push((info.id, Instance::new(p, start)));
                    }
                }
            }
        }
        Ok(procs
            .into_iter()
            .map(|pi| GpuProcess {
                pid: pi.pid,
                instance: pi
                    .gpu_instance_id
                    .and_then(|id| by_id.iter().find(|(i, _)| *i == id).map(|(_, inst)| *inst)),
            })
            .collect())
    }
}
