//! A watchdog around any backend: every call runs on one worker thread that owns the backend,
//! and the caller waits at most `timeout`. A driver call that hangs (NVML has no timeout of its
//! own) then costs the agent one `Timeout` error instead of its whole loop; while the hung call
//! is still running, later calls fail at once, and they work again when it returns.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ControlError, GpuControl, GpuInfo, GpuProcess, Mps};
use crate::gpu::{Instance, Layout};

type Call = Box<dyn FnOnce(&mut dyn GpuControl) + Send>;

pub struct Watchdog {
    calls: mpsc::Sender<Call>,
    timeout: Duration,
    /// A call that timed out: its name, when it began, and the signal that it returned.
    stuck: Option<(String, Instant, mpsc::Receiver<()>)>,
}

impl Watchdog {
    /// Build the backend with `make` on the worker thread (so it never crosses threads) and
    /// guard every call with `timeout`.
    pub fn new<C, F>(make: F, timeout: Duration) -> Result<Watchdog, ControlError>
    where
        C: GpuControl + 'static,
        F: FnOnce() -> Result<C, ControlError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Call>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("gpu-control".into())
            .spawn(move || {
                let mut ctl = match make() {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for call in rx {
                    call(&mut ctl);
                }
            })
            .map_err(|e| ControlError::Timeout(format!("cannot start the GPU thread: {e}")))?;
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ControlError::Timeout(format!(
                    "the GPU backend did not start within {:.0} s",
                    timeout.as_secs_f64()
                )))
            }
        }
        Ok(Watchdog {
            calls: tx,
            timeout,
            stuck: None,
        })
    }

    fn call<R: Send + 'static>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut dyn GpuControl) -> Result<R, ControlError> + Send + 'static,
    ) -> Result<R, ControlError> {
        if let Some((what, since, done)) = &self.stuck {
            match done.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    return Err(ControlError::Timeout(format!(
                        "{name}: the driver has not returned from {what} for {:.0} s",
                        since.elapsed().as_secs_f64()
                    )))
                }
                _ => self.stuck = None,
            }
        }
        let (res_tx, res_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let job: Call = Box::new(move |ctl| {
            let _ = res_tx.send(f(ctl));
            let _ = done_tx.send(());
        });
        self.calls
            .send(job)
            .map_err(|_| ControlError::Timeout(format!("{name}: the GPU thread is gone")))?;
        match res_rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stuck = Some((name.to_string(), Instant::now(), done_rx));
                Err(ControlError::Timeout(format!(
                    "{name}: no answer from the driver within {:.1} s",
                    self.timeout.as_secs_f64()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ControlError::Timeout(format!(
                "{name}: the GPU thread is gone"
            ))),
        }
    }
}

impl GpuControl for Watchdog {
    fn list_gpus(&mut self) -> Result<Vec<GpuInfo>, ControlError> {
        self.call("list GPUs", |c| c.list_gpus())
    }
    fn layout(&mut self, gpu: u32) -> Result<Layout, ControlError> {
        self.call("read the layout", move |c| c.layout(gpu))
    }
    fn create(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        self.call("create an instance", move |c| c.create(gpu, inst))
    }
    fn destroy(&mut self, gpu: u32, inst: Instance) -> Result<(), ControlError> {
        self.call("destroy an instance", move |c| c.destroy(gpu, inst))
    }
    fn processes(&mut self, gpu: u32) -> Result<Vec<GpuProcess>, ControlError> {
        self.call("list processes", move |c| c.processes(gpu))
    }
    fn device_id(&mut self, gpu: u32, inst: Option<Instance>) -> Result<String, ControlError> {
        self.call("read a device id", move |c| c.device_id(gpu, inst))
    }
    fn start_mps(&mut self, gpu: u32, inst: Option<Instance>) -> Result<Mps, ControlError> {
        self.call("start MPS", move |c| c.start_mps(gpu, inst))
    }
    fn stop_mps(&mut self, mps: &Mps) -> Result<(), ControlError> {
        let mps = mps.clone();
        self.call("stop MPS", move |c| c.stop_mps(&mps))
    }
    fn mig_ids(&mut self, gpu: u32, inst: Instance) -> Result<super::MigIds, ControlError> {
        self.call("read MIG ids", move |c| c.mig_ids(gpu, inst))
    }
    fn started(&mut self, gpu: u32, inst: Instance, pid: u32) {
        let _ = self.call("record a process", move |c| {
            c.started(gpu, inst, pid);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::simulated::SimulatedGpus;

    #[test]
    fn a_hung_call_times_out_later_calls_fail_fast_then_it_recovers() {
        let g = crate::gpu::gpu("a100-40gb").unwrap();
        let mut w = Watchdog::new(
            move || {
                let mut s = SimulatedGpus::new(g, 1);
                s.step_delay = Duration::from_millis(1500);
                Ok(s)
            },
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(w.list_gpus().unwrap().len(), 1, "quick calls pass through");
        let whole = Instance::parse(g, "7g.40gb@0").unwrap();
        let t = Instant::now();
        let e = w.create(0, whole).unwrap_err().to_string();
        assert!(e.contains("no answer from the driver"), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(1400),
            "did not wait for the hang"
        );
        let e = w.layout(0).unwrap_err().to_string();
        assert!(
            e.contains("has not returned from create an instance"),
            "{e}"
        );
        // The hung call returns (it did create the instance); calls work again.
        std::thread::sleep(Duration::from_millis(1600));
        assert_eq!(w.layout(0).unwrap().label(g), "7g.40gb@0");
    }

    #[test]
    fn a_backend_that_cannot_start_says_why() {
        let e = Watchdog::new(
            || -> Result<SimulatedGpus, ControlError> {
                Err(ControlError::Timeout("no driver here".into()))
            },
            Duration::from_secs(1),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("no driver here"), "{e}");
    }
}
