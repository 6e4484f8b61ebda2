//! MPS profiling of a co-located mix, as MISO does it: all jobs of the mix run together under
//! one MPS daemon at each active-thread level (100/50/14 % by default); each job reports its
//! iteration times over a line protocol; the mean latency per job and level becomes one sample
//! in the project's format (`miso-mps-sample/1`).
//!
//! Line protocol: a job gets `MISO_REPORT_HOST`, `MISO_REPORT_PORT` and `MISO_JOB` (its slot for
//! `miso profile`, its job id when the agent profiles) in its environment, connects over TCP and
//! writes one line per finished iteration: `<MISO_JOB> <seconds of that iteration>\n`. The first
//! iteration of each job is dropped (warm-up). At the end of each level a job gets the
//! checkpoint signal (SIGTERM to its process group; SIGKILL after the grace period), so a real
//! training job keeps its progress across the levels.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::runner::{group_alive, signal_group};
use crate::control::{GpuControl, Mps};
use crate::gpu::Instance;
use crate::predictor::data::{SampleRecord, SlotRecord, SAMPLE_FORMAT};

/// One job of the mix: its label (workload name, recorded in the sample), the command that runs
/// it, the `MISO_JOB` it reports under, and more environment (checkpoint folder, restarts).
#[derive(Clone, Debug)]
pub struct ProfileJob {
    pub label: String,
    pub command: String,
    pub key: String,
    pub env: Vec<(String, String)>,
}

/// Where to profile under MPS: a GPU (MIG off) or one of its instances (MISO profiles on the
/// whole-GPU instance, e.g. `7g.40gb@0`), through a backend that starts and stops the daemon.
pub struct MpsTarget<'a> {
    pub ctl: &'a mut dyn GpuControl,
    pub gpu: u32,
    pub instance: Option<Instance>,
}

/// Stop each job's whole process group (the job's `sh -c` and everything it started): SIGTERM,
/// then SIGKILL to what is left after `grace` (groups still saving their checkpoint are waited
/// for, not only the leaders).
fn stop_all(children: &mut [Child], grace: Duration) {
    for c in children.iter() {
        signal_group(c.id(), libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)) || group_alive(c.id()))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in children.iter_mut() {
        signal_group(c.id(), libc::SIGKILL);
        let _ = c.wait();
    }
}

/// Run the mix at each level for `seconds` and return the sample. `mps`: where the daemon is
/// started and stopped around the runs (`None`: jobs run without MPS, for tests without a GPU).
pub fn profile_mix(
    jobs: &[ProfileJob],
    levels: &[u32],
    seconds: f64,
    mps: Option<MpsTarget<'_>>,
    gpu_name: &str,
    mix: usize,
    grace: Duration,
) -> Result<SampleRecord, String> {
    if jobs.is_empty() || jobs.len() > crate::perf::SLOTS {
        return Err(format!("{} jobs given: a mix has 1..=7", jobs.len()));
    }
    if levels.len() != 3 || levels.iter().any(|l| *l == 0 || *l > 100) {
        return Err("three MPS levels in 1..=100 are needed (default 100,50,14)".into());
    }
    let daemon = match mps {
        Some(t) => {
            let d = t
                .ctl
                .start_mps(t.gpu, t.instance)
                .map_err(|e| e.to_string())?;
            Some((t.ctl, d))
        }
        None => None,
    };
    let m = daemon.as_ref().map(|(_, d)| d);
    let result: Result<Vec<[f64; 3]>, String> = (|| {
        let mut lat = vec![[0.0f64; 3]; jobs.len()];
        for (li, &level) in levels.iter().enumerate() {
            let means = run_level(jobs, level, seconds, m, grace)?;
            for (j, m) in means.iter().enumerate() {
                lat[j][li] = m.ok_or_else(|| {
                    format!(
                        "job {} (`{}`) reported no iteration at {level}% within {seconds} s",
                        j, jobs[j].label
                    )
                })?;
            }
        }
        Ok(lat)
    })();
    if let Some((ctl, d)) = daemon {
        ctl.stop_mps(&d).map_err(|e| e.to_string())?;
    }
    let lat = result?;
    Ok(SampleRecord {
        format: SAMPLE_FORMAT.to_string(),
        gpu: gpu_name.to_string(),
        mix,
        slots: jobs
            .iter()
            .zip(lat)
            .map(|(j, l)| SlotRecord {
                label: j.label.clone(),
                mps: l,
                mig: BTreeMap::new(),
            })
            .collect(),
    })
}

/// One level: start every job, collect iteration times, stop them; mean latency per job.
fn run_level(
    jobs: &[ProfileJob],
    level: u32,
    seconds: f64,
    mps: Option<&Mps>,
    grace: Duration,
) -> Result<Vec<Option<f64>>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let samples: Arc<Mutex<Vec<Vec<f64>>>> = Arc::new(Mutex::new(vec![Vec::new(); jobs.len()]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut children = Vec::new();
    for (k, j) in jobs.iter().enumerate() {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&j.command);
        // Its own process group, so that stopping the job stops all it started.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.env("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", level.to_string())
            .env("MISO_REPORT_HOST", "127.0.0.1")
            .env("MISO_REPORT_PORT", port.to_string())
            .env("MISO_JOB", &j.key)
            .envs(j.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(d) = mps {
            c.envs(d.env());
        }
        match c.spawn() {
            Ok(ch) => children.push(ch),
            Err(e) => {
                stop_all(&mut children, grace);
                return Err(format!("cannot start job {k} (`{}`): {e}", j.command));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut readers = Vec::new();
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let samples = samples.clone();
                let stop = stop.clone();
                let keys: Vec<String> = jobs.iter().map(|j| j.key.clone()).collect();
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                readers.push(std::thread::spawn(move || {
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) => break,
                            Ok(_) => {
                                let mut it = line.split_whitespace();
                                let (Some(slot), Some(v)) = (
                                    it.next().and_then(|s| keys.iter().position(|k| k == s)),
                                    it.next().and_then(|s| s.parse::<f64>().ok()),
                                ) else {
                                    continue; // not our protocol: ignore the line
                                };
                                if v.is_finite() && v > 0.0 {
                                    if let Ok(mut s) = samples.lock() {
                                        s[slot].push(v);
                                    }
                                }
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    stop_all(&mut children, grace);
    drop(listener);
    for r in readers {
        let _ = r.join();
    }
    let s = samples
        .lock()
        .map_err(|_| "sample lock poisoned".to_string())?;
    Ok(s.iter()
        .map(|v| {
            let v = if v.len() > 1 { &v[1..] } else { &v[..] };
            if v.is_empty() {
                None
            } else {
                Some(v.iter().sum::<f64>() / v.len() as f64)
            }
        })
        .collect())
}
