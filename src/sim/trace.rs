//! Job traces: the MISO artifact's 100-job trace, the Microsoft Philly week, the Alibaba openb
//! pods, and a synthetic generator. Every job gets an arrival time, an amount of work (seconds
//! on a whole GPU) and a MISO workload (speed per slice, memory need).
//!
//! Neither public trace names the model a job trains: jobs are mapped onto the 32 measured MISO
//! workloads uniformly at random with the run's seed (`--seed`), documented and reproducible.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::perf;

/// One job of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceJob {
    pub name: String,
    pub arrival_s: f64,
    /// Work in seconds on a whole GPU.
    pub work_s: f64,
    /// Index into `perf::catalog()`.
    pub workload: usize,
}

/// Trace errors name the file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}:{line}: column `{column}`: {reason}")]
    Row {
        file: String,
        line: usize,
        column: String,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// Trace formats `miso simulate --format` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `trace_100.json` (job → run time on a whole GPU); `job_models.json` beside it.
    Miso,
    /// Philly CSV: `job_id, submit_time, duration, num_gpus, …` (single-GPU jobs kept).
    Philly,
    /// Alibaba openb pods CSV: `name, …, num_gpu, gpu_milli, …, creation_time, deletion_time,
    /// scheduled_time` (pods with one GPU or a fraction of one kept).
    Openb,
}

fn file_err(path: &Path, reason: impl Into<String>) -> TraceError {
    TraceError::File {
        file: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<String, TraceError> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

/// The MISO paper's arrival process: Poisson with mean inter-arrival `mean_s`, the first third
/// of the jobs arriving at twice that rate.
pub fn miso_arrivals(n: usize, mean_s: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fast = Exp::new(2.0 / mean_s).ok();
    let slow = Exp::new(1.0 / mean_s).ok();
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            let at = t;
            let d = if i < n / 3 { fast } else { slow };
            t += d.map(|d| d.sample(&mut rng)).unwrap_or(mean_s);
            at
        })
        .collect()
}

/// Load the MISO trace (`trace_100.json` with `job_models.json` in the same folder).
pub fn load_miso(
    path: &Path,
    mean_interarrival_s: f64,
    seed: u64,
) -> Result<Vec<TraceJob>, TraceError> {
    let times: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read(path)?)
        .map_err(|e| file_err(path, format!("not a JSON object of job → seconds: {e}")))?;
    let mp = path.with_file_name("job_models.json");
    let models: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read(&mp)?)
        .map_err(|e| file_err(&mp, format!("not a JSON object of job → workload: {e}")))?;
    let mut ids: Vec<(u64, String)> = Vec::new();
    for k in times.keys() {
        let n: u64 = k
            .parse()
            .map_err(|_| file_err(path, format!("job id `{k}` is not a number")))?;
        ids.push((n, k.clone()));
    }
    ids.sort();
    let arrivals = miso_arrivals(ids.len(), mean_interarrival_s, seed);
    ids.iter()
        .zip(arrivals)
        .map(|((_, k), at)| {
            let work = times[k]
                .as_f64()
                .filter(|w| w.is_finite() && *w > 0.0)
                .ok_or_else(|| {
                    file_err(
                        path,
                        format!(
                            "job {k}: run time {} is not a positive number of seconds",
                            times[k]
                        ),
                    )
                })?;
            let w = models
                .get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| file_err(&mp, format!("job {k}: no workload")))?;
            let wi = workload_index(w).map_err(|e| file_err(&mp, format!("job {k}: {e}")))?;
            Ok(TraceJob {
                name: format!("job{k}"),
                arrival_s: at,
                work_s: work,
                workload: wi,
            })
        })
        .collect()
}

fn workload_index(name: &str) -> Result<usize, perf::PerfError> {
    let w = perf::workload(name)?;
    Ok(perf::catalog()
        .iter()
        .position(|x| x.name == w.name)
        .unwrap_or(0))
}

/// A CSV with a header; returns the header and rows with their 1-based line numbers.
fn csv_rows(path: &Path) -> Result<(Vec<String>, Vec<(usize, Vec<String>)>), TraceError> {
    let text = read(path)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h.split(',').map(|s| s.trim().to_string()).collect(),
        None => return Err(file_err(path, "empty file")),
    };
    let rows = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split(',').map(|s| s.trim().to_string()).collect()))
        .collect();
    Ok((header, rows))
}

struct Cols<'a> {
    path: &'a Path,
    header: Vec<String>,
}

impl Cols<'_> {
    fn idx(&self, name: &str) -> Result<usize, TraceError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            file_err(
                self.path,
                format!(
                    "no column `{name}` in the header (columns: {})",
                    self.header.join(", ")
                ),
            )
        })
    }

    fn num(&self, row: &(usize, Vec<String>), col: usize) -> Result<f64, TraceError> {
        let bad = |reason: String| TraceError::Row {
            file: self.path.display().to_string(),
            line: row.0,
            column: self.header[col].clone(),
            reason,
        };
        let s = row
            .1
            .get(col)
            .ok_or_else(|| bad(format!("missing (the row has {} fields)", row.1.len())))?;
        let v: f64 = s
            .parse()
            .map_err(|_| bad(format!("`{s}` is not a number")))?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad(format!("{v} is not a non-negative number")));
        }
        Ok(v)
    }
}

/// Map jobs onto MISO workloads, seeded.
fn assign_workloads(jobs: &mut [TraceJob], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f_3a11);
    let n = perf::catalog().len();
    for j in jobs {
        j.workload = rng.random_range(0..n);
    }
}

/// Philly single-GPU jobs: arrival = submit_time, work = duration × `time_scale`.
pub fn load_philly(path: &Path, seed: u64, time_scale: f64) -> Result<Vec<TraceJob>, TraceError> {
    let (header, rows) = csv_rows(path)?;
    let c = Cols { path, header };
    let (ij, is, id, ig) = (
        c.idx("job_id")?,
        c.idx("submit_time")?,
        c.idx("duration")?,
        c.idx("num_gpus")?,
    );
    let mut jobs = Vec::new();
    for r in &rows {
        let gpus = c.num(r, ig)?;
        let submit = c.num(r, is)?;
        let dur = c.num(r, id)?;
        if gpus != 1.0 || dur <= 0.0 {
            continue;
        }
        let name = r.1.get(ij).cloned().unwrap_or_default();
        jobs.push(TraceJob {
            name: format!("philly-{name}"),
            arrival_s: submit,
            work_s: dur * time_scale,
            workload: 0,
        });
    }
    finish(path, jobs, seed)
}

/// openb pods asking for one GPU or a fraction of one: arrival = creation_time, work =
/// (deletion_time − scheduled_time) × `time_scale`. Pods never scheduled (empty
/// `scheduled_time`, phase Pending) are left out.
pub fn load_openb(path: &Path, seed: u64, time_scale: f64) -> Result<Vec<TraceJob>, TraceError> {
    let (header, rows) = csv_rows(path)?;
    let c = Cols { path, header };
    let (iname, ig, ic, id, isch) = (
        c.idx("name")?,
        c.idx("num_gpu")?,
        c.idx("creation_time")?,
        c.idx("deletion_time")?,
        c.idx("scheduled_time")?,
    );
    let mut jobs = Vec::new();
    for r in &rows {
        let gpus = c.num(r, ig)?;
        // Pods that were never scheduled (phase Pending: empty scheduled_time) never ran.
        let never_ran = r.1.get(isch).is_none_or(|s| s.is_empty());
        if gpus != 1.0 || never_ran {
            continue;
        }
        let (created, deleted, sched) = (c.num(r, ic)?, c.num(r, id)?, c.num(r, isch)?);
        let dur = deleted - sched;
        if dur <= 0.0 {
            continue;
        }
        jobs.push(TraceJob {
            name: r.1.get(iname).cloned().unwrap_or_default(),
            arrival_s: created,
            work_s: dur * time_scale,
            workload: 0,
        });
    }
    finish(path, jobs, seed)
}

fn finish(path: &Path, mut jobs: Vec<TraceJob>, seed: u64) -> Result<Vec<TraceJob>, TraceError> {
    if jobs.is_empty() {
        return Err(file_err(path, "no single-GPU job in the trace"));
    }
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let t0 = jobs[0].arrival_s;
    for j in jobs.iter_mut() {
        j.arrival_s -= t0;
    }
    assign_workloads(&mut jobs, seed);
    Ok(jobs)
}

/// A synthetic trace: `n` jobs, Poisson arrivals with mean inter-arrival `mean_s`, work drawn
/// log-uniformly between `min_work_s` and `max_work_s`, workloads uniform over the catalog.
pub fn synthetic(
    n: usize,
    mean_s: f64,
    min_work_s: f64,
    max_work_s: f64,
    seed: u64,
) -> Vec<TraceJob> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let exp = Exp::new(1.0 / mean_s.max(1e-9)).ok();
    let mut t = 0.0;
    let nw = perf::catalog().len();
    (0..n)
        .map(|i| {
            let at = t;
            t += exp.map(|d| d.sample(&mut rng)).unwrap_or(mean_s);
            let u: f64 = rng.random();
            let work = (min_work_s.ln() + u * (max_work_s.ln() - min_work_s.ln())).exp();
            TraceJob {
                name: format!("syn{i}"),
                arrival_s: at,
                work_s: work,
                workload: rng.random_range(0..nw),
            }
        })
        .collect()
}
