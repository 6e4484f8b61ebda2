//! Job traces: the MISO artifact's 100-job trace, any CSV trace through a column mapping (the
//! Microsoft Philly week and the Alibaba openb pods are two named mappings), and a synthetic
//! generator. Every job gets an arrival time, an amount of work (seconds on a whole GPU), a MISO
//! workload (speed per slice, memory need), how many GPUs it asks for (gang) and, for a
//! fractional job, the share of one GPU it asked for.
//!
//! Neither public trace names the model a job trains: unless a `workload` column says, jobs are
//! mapped onto the 32 measured MISO workloads uniformly at random with the run's seed
//! (`--seed`), documented and reproducible.

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Poisson};

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
    /// GPUs the job asks for; 2 or more: a gang of whole GPUs started together.
    pub gpus: u32,
    /// A fractional job's share of one GPU (0 < share < 1): its floor of compute and memory
    /// on a MIG slice. `None`: a whole-GPU job (MIG policies may still give it a slice).
    pub share: Option<f64>,
}

impl TraceJob {
    pub fn new(name: impl Into<String>, arrival_s: f64, work_s: f64, workload: usize) -> TraceJob {
        TraceJob {
            name: name.into(),
            arrival_s,
            work_s,
            workload,
            gpus: 1,
            share: None,
        }
    }
}

/// What a trace file held besides its jobs: rows left out, by reason.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// Rows without a positive duration.
    pub no_duration: usize,
    /// Rows asking for no GPU.
    pub no_gpu: usize,
    /// Pods still running at the end of the trace (their duration is unknown).
    pub running_at_end: usize,
    /// Pods never scheduled (they never ran).
    pub never_scheduled: usize,
    /// Rows of a QoS class not selected by `--qos`.
    pub other_qos: usize,
}

/// A loaded trace.
#[derive(Clone, Debug)]
pub struct Trace {
    pub jobs: Vec<TraceJob>,
    pub skipped: Skipped,
}

/// Trace errors name the file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}:{line}: column `{column}`: {reason}")]
    Row {
        file: String,
        line: u64,
        column: String,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("--columns: {0}")]
    Mapping(String),
}

/// Trace formats `miso simulate --format` reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// `trace_100.json` (job → run time on a whole GPU); `job_models.json` beside it.
    Miso,
    /// Any CSV with a header, read through a column mapping.
    Csv(Columns),
}

impl Format {
    /// The Philly CSV: `job_id, submit_time, duration, num_gpus, …`.
    pub fn philly() -> Format {
        Format::Csv(
            Columns::parse("id=job_id,arrival=submit_time,work=duration,gpus=num_gpus")
                .expect("fixed mapping"),
        )
    }

    /// The Alibaba openb pods CSV: arrival = creation, work = deletion − scheduling, `num_gpu`
    /// GPUs or `gpu_milli`/1000 of one, `qos` class, and `pod_phase` (Running pods had not
    /// ended when the trace was cut; Pending pods never ran).
    pub fn openb() -> Format {
        Format::Csv(
            Columns::parse(
                "id=name,arrival=creation_time,start=scheduled_time,end=deletion_time,gpus=num_gpu,gpu_milli=gpu_milli,qos=qos,phase=pod_phase",
            )
            .expect("fixed mapping"),
        )
    }
}

/// Which CSV column holds what (`--columns arrival=COL,work=COL,...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    pub arrival: String,
    /// Work as a duration column …
    pub work: Option<String>,
    /// … or as end − start.
    pub start: Option<String>,
    pub end: Option<String>,
    pub gpus: Option<String>,
    /// Share of one GPU, 0..1.
    pub gpu_fraction: Option<String>,
    /// Share of one GPU ×1000 (openb's `gpu_milli`).
    pub gpu_milli: Option<String>,
    pub workload: Option<String>,
    pub id: Option<String>,
    pub qos: Option<String>,
    /// Kubernetes pod phase: `Running` (not ended) and `Pending` (never ran) rows are skipped.
    pub phase: Option<String>,
}

const KEYS: &str =
    "arrival, work, start, end, gpus, gpu_fraction, gpu_milli, workload, id, qos, phase";

impl Columns {
    /// Parse `key=COLUMN,...`; `arrival` and either `work` or `start`+`end` are required.
    pub fn parse(spec: &str) -> Result<Columns, TraceError> {
        let mut c = Columns::default();
        let mut arrival = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                TraceError::Mapping(format!("`{part}` is not key=COLUMN (keys: {KEYS})"))
            })?;
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err(TraceError::Mapping(format!("`{k}` names no column")));
            }
            let slot = match k.trim() {
                "arrival" => &mut arrival,
                "work" | "duration" => &mut c.work,
                "start" => &mut c.start,
                "end" => &mut c.end,
                "gpus" => &mut c.gpus,
                "gpu_fraction" => &mut c.gpu_fraction,
                "gpu_milli" => &mut c.gpu_milli,
                "workload" => &mut c.workload,
                "id" => &mut c.id,
                "qos" => &mut c.qos,
                "phase" => &mut c.phase,
                other => {
                    return Err(TraceError::Mapping(format!(
                        "unknown key `{other}` (keys: {KEYS})"
                    )))
                }
            };
            if slot.is_some() {
                return Err(TraceError::Mapping(format!("`{k}` given twice")));
            }
            *slot = Some(v);
        }
        c.arrival = arrival
            .ok_or_else(|| TraceError::Mapping("`arrival=COLUMN` is required".to_string()))?;
        match (&c.work, &c.start, &c.end) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => {
                return Err(TraceError::Mapping(
                    "give the work as `work=COLUMN` or as `start=COLUMN,end=COLUMN`".to_string(),
                ))
            }
        }
        if c.gpu_fraction.is_some() && c.gpu_milli.is_some() {
            return Err(TraceError::Mapping(
                "give `gpu_fraction` or `gpu_milli`, not both".to_string(),
            ));
        }
        Ok(c)
    }
}

/// How a trace is read.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub seed: u64,
    /// Multiplies CSV durations.
    pub time_scale: f64,
    /// MISO trace: mean inter-arrival seconds (the first third arrives twice as fast).
    pub mean_interarrival_s: f64,
    /// MISO trace: arrivals in a seeded random order of the jobs, as `exp_full.py` does (else
    /// in job-id order, which is sorted by run time: shortest first).
    pub shuffle: bool,
    /// QoS classes kept when the mapping has a `qos` column (empty: all).
    pub qos: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            seed: 1,
            time_scale: 1.0,
            mean_interarrival_s: 60.0,
            shuffle: true,
            qos: Vec::new(),
        }
    }
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

/// Load a trace of any format.
pub fn load(path: &Path, format: &Format, o: &LoadOptions) -> Result<Trace, TraceError> {
    match format {
        Format::Miso => Ok(Trace {
            jobs: load_miso(path, o)?,
            skipped: Skipped::default(),
        }),
        Format::Csv(cols) => load_csv(path, cols, o),
    }
}

/// The MISO artifact's arrival process (`exp_full.py`): integer Poisson gaps with mean
/// `mean_s`, the first `n/3 + 1` jobs at half that mean; the first job arrives after one gap.
pub fn miso_arrivals(n: usize, mean_s: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
    let fast = Poisson::new(mean_s / 2.0).ok();
    let slow = Poisson::new(mean_s).ok();
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            let d = if i <= n / 3 { fast } else { slow };
            t += d.map(|d| d.sample(&mut rng)).unwrap_or(mean_s).round();
            t
        })
        .collect()
}

/// Load the MISO trace (`trace_100.json` with `job_models.json` in the same folder). Run times
/// are whole seconds, as the artifact reads them (`int(...)`).
pub fn load_miso(path: &Path, o: &LoadOptions) -> Result<Vec<TraceJob>, TraceError> {
    let times: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read(path)?)
        .map_err(|e| file_err(path, format!("not a JSON object of job → seconds: {e}")))?;
    let mp = path.with_file_name("job_models.json");
    let models: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read(&mp)?)
        .map_err(|e| file_err(&mp, format!("not a JSON object of job → workload: {e}")))?;
    let mut rows = Vec::with_capacity(times.len());
    for (k, t) in &times {
        let id: u64 = k
            .parse()
            .map_err(|_| file_err(path, format!("job id `{k}` is not a number")))?;
        let work = t
            .as_f64()
            .filter(|w| w.is_finite() && w.trunc() > 0.0)
            .ok_or_else(|| {
                file_err(
                    path,
                    format!("job {k}: run time {t} is not a positive number of seconds"),
                )
            })?;
        let w = models
            .get(k)
            .and_then(|v| v.as_str())
            .ok_or_else(|| file_err(&mp, format!("job {k}: no workload")))?;
        let wi = workload_index(w).map_err(|e| file_err(&mp, format!("job {k}: {e}")))?;
        rows.push((id, work, wi));
    }
    if rows.is_empty() {
        return Err(file_err(path, "no jobs"));
    }
    Ok(miso_jobs(rows, o))
}

/// The MISO artifact's 100-job trace compiled in ([`super::miso_trace`]), with the arrivals of
/// [`load_miso`]: the same jobs for the same seed as from the files.
pub fn builtin_miso(o: &LoadOptions) -> Vec<TraceJob> {
    let rows = super::miso_trace::MISO_TRACE_100
        .iter()
        .map(|&(id, work, w)| (id, work, workload_index(w).unwrap_or(0)))
        .collect();
    miso_jobs(rows, o)
}

/// (job id, run time, workload index) rows in id order, optionally shuffled, with the artifact's
/// arrivals; run times truncated to whole seconds.
fn miso_jobs(mut rows: Vec<(u64, f64, usize)>, o: &LoadOptions) -> Vec<TraceJob> {
    rows.sort_by_key(|r| r.0);
    if o.shuffle {
        rows.shuffle(&mut ChaCha8Rng::seed_from_u64(o.seed));
    }
    let arrivals = miso_arrivals(rows.len(), o.mean_interarrival_s, o.seed);
    rows.iter()
        .zip(arrivals)
        .map(|(&(id, work, wi), at)| TraceJob::new(format!("job{id}"), at, work.trunc(), wi))
        .collect()
}

fn workload_index(name: &str) -> Result<usize, perf::PerfError> {
    let w = perf::workload(name)?;
    Ok(perf::catalog()
        .iter()
        .position(|x| x.name == w.name)
        .unwrap_or(0))
}

/// Seconds since 1970-01-01 UTC of `YYYY-MM-DD HH:MM:SS` (or with a `T`).
fn parse_datetime(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T'])?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<f64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || t[0] >= 24.0
        || t[1] >= 60.0
        || t[2] >= 61.0
    {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2])
}

/// A CSV trace through a column mapping. Rows in any order; rows without a positive duration,
/// asking for no GPU, still running or never scheduled (with a `phase` column), or of another
/// QoS class are skipped and counted. Arrivals become seconds from the first arrival.
pub fn load_csv(path: &Path, cols: &Columns, o: &LoadOptions) -> Result<Trace, TraceError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| file_err(path, format!("no header: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let idx = |name: &Option<String>| -> Result<Option<usize>, TraceError> {
        match name {
            None => Ok(None),
            Some(n) => header.iter().position(|h| h == n).map(Some).ok_or_else(|| {
                file_err(
                    path,
                    format!(
                        "no column `{n}` in the header (columns: {})",
                        header.join(", ")
                    ),
                )
            }),
        }
    };
    let ia = idx(&Some(cols.arrival.clone()))?.unwrap_or(0);
    let (iw, is, ie) = (idx(&cols.work)?, idx(&cols.start)?, idx(&cols.end)?);
    let (ig, ifr, im) = (
        idx(&cols.gpus)?,
        idx(&cols.gpu_fraction)?,
        idx(&cols.gpu_milli)?,
    );
    let (iwl, iid, iq, ip) = (
        idx(&cols.workload)?,
        idx(&cols.id)?,
        idx(&cols.qos)?,
        idx(&cols.phase)?,
    );
    let file = path.display().to_string();
    let mut jobs = Vec::new();
    let mut skipped = Skipped::default();
    let mut has_workload = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            TraceError::Row {
                file: file.clone(),
                line,
                column: "(row)".into(),
                reason: e.to_string(),
            }
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(str::is_empty) {
            continue;
        }
        let bad = |col: usize, reason: String| TraceError::Row {
            file: file.clone(),
            line,
            column: header[col].clone(),
            reason,
        };
        let field = |col: usize| -> Result<&str, TraceError> {
            rec.get(col)
                .ok_or_else(|| bad(col, format!("missing (the row has {} fields)", rec.len())))
        };
        let num = |col: usize| -> Result<f64, TraceError> {
            let s = field(col)?;
            let v: f64 = s
                .parse()
                .map_err(|_| bad(col, format!("`{s}` is not a number")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad(col, format!("{v} is not a non-negative number")));
            }
            Ok(v)
        };
        if let Some(c) = ip {
            match field(c)? {
                "Running" => {
                    skipped.running_at_end += 1;
                    continue;
                }
                "Pending" => {
                    skipped.never_scheduled += 1;
                    continue;
                }
                _ => {}
            }
        }
        if let Some(c) = iq {
            let q = field(c)?;
            if !o.qos.is_empty() && !o.qos.iter().any(|x| x == q) {
                skipped.other_qos += 1;
                continue;
            }
        }
        let gpus = match ig {
            Some(c) => {
                let g = num(c)?;
                if g.fract() != 0.0 || g > 1024.0 {
                    return Err(bad(
                        c,
                        format!("{g} is not a whole number of GPUs (0..1024)"),
                    ));
                }
                g as u32
            }
            None => 1,
        };
        // An empty share means a whole GPU.
        let share = match (ifr, im) {
            (Some(c), _) if !field(c)?.is_empty() => Some(num(c)?),
            (_, Some(c)) if !field(c)?.is_empty() => Some(num(c)? / 1000.0),
            _ => None,
        };
        if gpus == 0 || share == Some(0.0) {
            skipped.no_gpu += 1;
            continue;
        }
        if let Some(s) = share {
            if s > 1.0 && gpus <= 1 {
                let c = ifr.or(im).unwrap_or(0);
                return Err(bad(c, format!("a share of {s} GPUs is more than one GPU")));
            }
        }
        let arrival = {
            let s = field(ia)?;
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => parse_datetime(s).ok_or_else(|| {
                    bad(
                        ia,
                        format!(
                            "`{s}` is neither seconds nor a UTC datetime like 2017-10-09 07:01:55"
                        ),
                    )
                })?,
            }
        };
        let work = match (iw, is, ie) {
            (Some(c), _, _) => {
                if field(c)?.is_empty() {
                    skipped.no_duration += 1;
                    continue;
                }
                num(c)?
            }
            (None, Some(s), Some(e)) => {
                if field(s)?.is_empty() || field(e)?.is_empty() {
                    skipped.no_duration += 1;
                    continue;
                }
                num(e)? - num(s)?
            }
            _ => unreachable!("Columns::parse requires work or start+end"),
        } * o.time_scale;
        if !(work > 0.0) {
            skipped.no_duration += 1;
            continue;
        }
        let workload = match iwl {
            Some(c) => {
                let s = field(c)?;
                if s.is_empty() {
                    None
                } else {
                    Some(workload_index(s).map_err(|e| bad(c, e.to_string()))?)
                }
            }
            None => None,
        };
        let name = match iid {
            Some(c) => field(c)?.to_string(),
            None => format!("line{line}"),
        };
        has_workload.push(workload.is_some());
        jobs.push(TraceJob {
            name,
            arrival_s: arrival,
            work_s: work,
            workload: workload.unwrap_or(0),
            gpus: gpus.max(1),
            share: share.filter(|s| *s < 1.0 && gpus <= 1),
        });
    }
    if jobs.is_empty() {
        return Err(file_err(
            path,
            format!("no job with a GPU and a positive duration (skipped: {skipped:?})"),
        ));
    }
    // Seeded workloads for rows that name none, in file order (independent of sorting).
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed ^ 0x5eed_0f_3a11);
    let n = perf::catalog().len();
    for (j, named) in jobs.iter_mut().zip(has_workload) {
        let w = rng.random_range(0..n);
        if !named {
            j.workload = w;
        }
    }
    jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let t0 = jobs[0].arrival_s;
    for j in jobs.iter_mut() {
        j.arrival_s -= t0;
    }
    Ok(Trace { jobs, skipped })
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
            TraceJob::new(format!("syn{i}"), at, work, rng.random_range(0..nw))
        })
        .collect()
}

/// Jobs by group for reports: single-GPU (whole or fractional) and multi-GPU (gang).
pub fn groups(jobs: &[TraceJob]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for j in jobs {
        *m.entry(if j.gpus > 1 {
            "multi_gpu"
        } else {
            "single_gpu"
        })
        .or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_utc_seconds() {
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse_datetime("2017-10-09 07:01:55"), Some(1_507_532_515.0));
        assert_eq!(parse_datetime("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_datetime("2017-13-09 07:01:55"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn mappings_name_their_mistakes() {
        for (spec, want) in [
            ("work=d", "`arrival=COLUMN` is required"),
            ("arrival=a", "give the work"),
            ("arrival=a,work=d,start=s,end=e", "give the work"),
            ("arrival=a,work=d,colour=x", "unknown key `colour`"),
            ("arrival=a,arrival=b,work=d", "given twice"),
            ("arrival=a,work", "is not key=COLUMN"),
        ] {
            let e = Columns::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
        assert!(Columns::parse("arrival=a,start=s,end=e,gpus=g,gpu_milli=m").is_ok());
    }

    #[test]
    fn miso_arrivals_are_whole_seconds_and_the_first_third_is_faster() {
        let a = miso_arrivals(300, 60.0, 9);
        assert_eq!(a, miso_arrivals(300, 60.0, 9));
        assert!(a.iter().all(|t| t.fract() == 0.0));
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        let first = a[100] / 101.0;
        let rest = (a[299] - a[100]) / 199.0;
        assert!(
            first < rest,
            "first third arrives faster: {first} vs {rest}"
        );
        assert!((rest - 60.0).abs() < 10.0, "{rest}");
    }

    #[test]
    fn built_in_miso_trace_is_the_artifact_files() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/datasets/miso-a100/trace_100.json");
        for (seed, shuffle) in [(1, true), (7, true), (1, false)] {
            let o = LoadOptions {
                seed,
                shuffle,
                ..LoadOptions::default()
            };
            let files = load_miso(&path, &o).unwrap();
            let built = builtin_miso(&o);
            assert_eq!(files.len(), 100);
            assert_eq!(format!("{files:?}"), format!("{built:?}"), "seed {seed}");
        }
    }
}
