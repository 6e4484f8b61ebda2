//! MPS control daemons. MPS is not part of NVML: a daemon (`nvidia-cuda-mps-control -d`) serves
//! the CUDA clients of one GPU (MIG off) or of one MIG instance, found through
//! `CUDA_VISIBLE_DEVICES` and its pipe directory. Backends start and stop daemons through
//! [`super::GpuControl::start_mps`]; this file holds what every backend shares: where a
//! daemon lives, the environment its clients need, and the real start/stop commands.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::gpu::Instance;

use super::ControlError;

/// One MPS control daemon and how its clients reach it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mps {
    pub gpu: u32,
    /// The MIG instance it serves; `None`: the whole GPU (MIG off).
    #[serde(skip)]
    pub instance: Option<Instance>,
    /// `CUDA_VISIBLE_DEVICES` of the daemon and its clients (GPU index/UUID or MIG UUID).
    pub device: String,
    /// Holds `pipe/` (`CUDA_MPS_PIPE_DIRECTORY`) and `log/` (`CUDA_MPS_LOG_DIRECTORY`).
    pub dir: PathBuf,
}

impl Mps {
    /// A daemon for `device` with its folders under `/tmp/miso-mps-<gpu>[-<profile>-<start>]`.
    pub fn new(gpu: u32, instance: Option<Instance>, device: String) -> Mps {
        let name = match instance {
            None => format!("miso-mps-{gpu}"),
            Some(i) => format!("miso-mps-{gpu}-{}-{}", i.profile, i.start),
        };
        Mps {
            gpu,
            instance,
            device,
            dir: std::env::temp_dir().join(name),
        }
    }

    /// What a client process (and the daemon) needs in its environment.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CUDA_VISIBLE_DEVICES", self.device.clone()),
            (
                "CUDA_MPS_PIPE_DIRECTORY",
                self.dir.join("pipe").display().to_string(),
            ),
            (
                "CUDA_MPS_LOG_DIRECTORY",
                self.dir.join("log").display().to_string(),
            ),
        ]
    }

    fn command(&self) -> Command {
        let mut c = Command::new("nvidia-cuda-mps-control");
        c.envs(self.env());
        c
    }

    fn err(&self, call: &str, reason: String) -> ControlError {
        ControlError::Call {
            gpu: self.gpu,
            call: call.into(),
            reason,
        }
    }

    /// `nvidia-cuda-mps-control -d` (the real daemon).
    pub fn start_daemon(&self) -> Result<(), ControlError> {
        for sub in ["pipe", "log"] {
            std::fs::create_dir_all(self.dir.join(sub))
                .map_err(|e| self.err("mkdir", format!("{}: {e}", self.dir.display())))?;
        }
        let call = "nvidia-cuda-mps-control -d";
        let st = self
            .command()
            .arg("-d")
            .status()
            .map_err(|e| self.err(call, e.to_string()))?;
        if !st.success() {
            return Err(self.err(call, format!("exited with {st}")));
        }
        Ok(())
    }

    /// `echo quit | nvidia-cuda-mps-control` (the real daemon).
    pub fn stop_daemon(&self) -> Result<(), ControlError> {
        let call = "echo quit | nvidia-cuda-mps-control";
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| self.err(call, e.to_string()))?;
        if let Some(mut i) = child.stdin.take() {
            use std::io::Write;
            let _ = writeln!(i, "quit");
        }
        let st = child.wait().map_err(|e| self.err(call, e.to_string()))?;
        if !st.success() {
            return Err(self.err(call, format!("exited with {st}")));
        }
        Ok(())
    }
}
