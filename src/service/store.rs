//! The controller's durable state in SQLite (WAL, synchronous=FULL): nodes, jobs, profiling
//! samples, desired/actual GPU states, decisions, and the model registry (which model is
//! active, how each was made; the weights stay in `models/<name>/`). Every write is committed before the API replies, so an acknowledged
//! request survives a SIGKILL.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Schema(String),
}

pub struct Store {
    conn: Connection,
}

/// Where a job is in its life; stored as its lowercase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Submitted, on no GPU.
    Queued,
    /// Placed by a plan (or a profiling phase) on a GPU.
    Running,
    Finished,
    /// Ended with an error (the reason is in the job's `error`).
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
        }
    }

    /// The stored name; anything else (a database edited by hand) reads as queued.
    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "finished" => JobState::Finished,
            "failed" => JobState::Failed,
            _ => JobState::Queued,
        }
    }

    /// Finished or failed: it will not run again.
    pub fn ended(self) -> bool {
        matches!(self, JobState::Finished | JobState::Failed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a node's GPU should have.
#[derive(Clone, Debug)]
pub struct Desired {
    pub node: String,
    pub index: u32,
    pub layout: String,
    /// Which job runs on which instance.
    pub jobs: Vec<Assignment>,
    /// While the GPU profiles its mix under MPS; the plan follows when the sample arrives.
    pub profile: Option<ProfileRequest>,
}

/// Job `id` runs on instance `instance` (`3g.20gb@4`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub instance: String,
}

/// A profiling phase: the GPU runs `jobs` together under MPS at `levels` (active-thread %),
/// `seconds` each; the plan made with `options` follows the first sample newer than
/// `after_sample` that covers them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileRequest {
    /// `node/index/nanos`: names this phase in the agent's report.
    pub request: String,
    /// Unix seconds (0 in phases stored before it was recorded: they expire at once).
    #[serde(default)]
    pub started_at: f64,
    pub jobs: Vec<String>,
    pub levels: [u32; 3],
    pub seconds: f64,
    #[serde(default)]
    pub after_sample: i64,
    #[serde(default)]
    pub options: PlanOptions,
}

/// The optimizer options a plan was asked with, kept until the plan is made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanOptions {
    #[serde(default)]
    pub objective: Option<crate::optimizer::Objective>,
    #[serde(default)]
    pub spare: bool,
    #[serde(default)]
    pub cost_aware: bool,
}

impl Desired {
    /// Ids of the jobs assigned to instances.
    pub fn assigned(&self) -> Vec<String> {
        self.jobs.iter().map(|a| a.id.clone()).collect()
    }

    /// Ids of the jobs being profiled.
    pub fn profiled(&self) -> Vec<String> {
        self.profile
            .as_ref()
            .map(|p| p.jobs.clone())
            .unwrap_or_default()
    }

    /// The GPU's jobs: assigned or being profiled.
    pub fn job_ids(&self) -> Vec<String> {
        let mut v = self.assigned();
        v.extend(self.profiled());
        v
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, body TEXT NOT NULL, registered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL, submitted_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, received_at REAL NOT NULL, jobs TEXT);
CREATE TABLE IF NOT EXISTS desired (node TEXT NOT NULL, idx INTEGER NOT NULL, layout TEXT NOT NULL, jobs TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (node, idx));
CREATE TABLE IF NOT EXISTS actual (node TEXT NOT NULL, idx INTEGER NOT NULL, body TEXT NOT NULL, reported_at REAL NOT NULL, PRIMARY KEY (node, idx));
CREATE TABLE IF NOT EXISTS decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, made_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, body TEXT NOT NULL, registered_at REAL NOT NULL, active INTEGER NOT NULL DEFAULT 0);
";

/// The schema version this miso writes (see `Store::migrate`).
pub const SCHEMA_VERSION: i64 = 3;

/// Add `col` to `table` when a database made before it lacks it.
fn ensure_column(conn: &Connection, table: &str, col: &str, decl: &str) -> Result<(), StoreError> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if !names.iter().any(|n| n == col) {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {col} {decl}"))?;
    }
    Ok(())
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Store {
    /// Open (or create) the database file; `:memory:` for tests.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let s = Store { conn };
        s.migrate()?;
        Ok(s)
    }

    /// Bring the schema to [`SCHEMA_VERSION`] (`PRAGMA user_version` counts the migrations
    /// applied), each step in one transaction; a database from a newer miso is refused rather
    /// than written with an older layout.
    fn migrate(&self) -> Result<(), StoreError> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "the database has schema version {v}, newer than this miso's {SCHEMA_VERSION}: use a newer miso"
            )));
        }
        if v < 1 {
            // 1: the tables; databases made before versioning may lack the later columns.
            let tx = self.conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            for (table, col, decl) in [
                ("desired", "jobs", "TEXT NOT NULL DEFAULT '[]'"),
                ("samples", "jobs", "TEXT"),
                ("desired", "profile", "TEXT"),
            ] {
                ensure_column(&tx, table, col, decl)?;
            }
            tx.pragma_update(None, "user_version", 1)?;
            tx.commit()?;
        }
        if v < 2 {
            // 2: a node can be held (its agents keep the layout they have).
            let tx = self.conn.unchecked_transaction()?;
            ensure_column(&tx, "nodes", "hold", "TEXT")?;
            tx.pragma_update(None, "user_version", 2)?;
            tx.commit()?;
        }
        if v < 3 {
            // 3: observations, what jobs showed on the instances they ran on (learning from runs).
            let tx = self.conn.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS observations (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL);",
            )?;
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// A second connection to the same database for reads: under WAL it reads the last
    /// committed state while the writer holds a transaction, so reads never wait for a long
    /// write. `None` for an in-memory database.
    pub fn reader(&self) -> Option<Store> {
        let path = self.conn.path().filter(|p| !p.is_empty())?;
        let conn = Connection::open(path).ok()?;
        conn.pragma_update(None, "query_only", true).ok()?;
        Some(Store { conn })
    }

    /// Register (or re-register) a node. A GPU whose model changed, or that is gone, loses its
    /// desired and reported state (made for the old hardware), and the jobs it held are queued
    /// again; all in one transaction. Returns the indexes of the GPUs reset.
    pub fn put_node(&self, name: &str, body: &Value) -> Result<Vec<u32>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let old: Option<String> = tx
            .query_row(
                "SELECT body FROM nodes WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let models = |v: &Value| -> Vec<(u64, String)> {
            v["gpus"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| Some((g["index"].as_u64()?, g["model"].as_str()?.to_string())))
                .collect()
        };
        let now = models(body);
        let mut reset = Vec::new();
        if let Some(old) = old.and_then(|o| serde_json::from_str::<Value>(&o).ok()) {
            for (idx, model) in models(&old) {
                if now.iter().any(|(i, m)| *i == idx && *m == model) {
                    continue;
                }
                let idx = idx as u32;
                if let Some(d) = desired_rows(&tx, Some(name))?
                    .into_iter()
                    .find(|d| d.index == idx)
                {
                    for id in d.job_ids() {
                        tx.execute(
                            "UPDATE jobs SET state = 'queued' WHERE id = ?1 AND state = 'running'",
                            params![id],
                        )?;
                    }
                }
                tx.execute(
                    "DELETE FROM desired WHERE node = ?1 AND idx = ?2",
                    params![name, idx],
                )?;
                tx.execute(
                    "DELETE FROM actual WHERE node = ?1 AND idx = ?2",
                    params![name, idx],
                )?;
                reset.push(idx);
            }
        }
        tx.execute(
            "INSERT INTO nodes (name, body, registered_at) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
            params![name, body.to_string(), now_s()],
        )?;
        tx.commit()?;
        Ok(reset)
    }

    pub fn nodes(&self) -> Result<Vec<Value>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT body, hold FROM nodes ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (body, hold) = row?;
            let mut v: Value = serde_json::from_str(&body)
                .map_err(|e| StoreError::Schema(format!("nodes.body: {e}")))?;
            if let Some(h) = hold {
                v["hold"] = Value::String(h);
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Hold a node (`Some(reason)`: its agents keep the layout they have and start nothing new
    /// until released) or release it (`None`). Returns false when there is no such node.
    pub fn set_hold(&self, name: &str, reason: Option<&str>) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE nodes SET hold = ?2 WHERE name = ?1",
            params![name, reason],
        )?;
        Ok(n > 0)
    }

    /// Why a node is held, if it is.
    pub fn hold(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT hold FROM nodes WHERE name = ?1",
                params![name],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Insert a new job; an id already used is a conflict (nothing changes).
    pub fn add_job(&self, id: &str, body: &Value) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "INSERT INTO jobs (id, body, state, submitted_at) VALUES (?1, ?2, 'queued', ?3) ON CONFLICT(id) DO NOTHING",
            params![id, body.to_string(), now_s()],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("job `{id}` exists already")));
        }
        Ok(())
    }

    /// Mark a job finished (or failed, with the reason) and take it off the GPU it was
    /// assigned to, in one transaction. Returns that GPU (node, index), if any.
    pub fn finish_job(
        &self,
        id: &str,
        failed: Option<&str>,
    ) -> Result<Option<(String, u32)>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let state = if failed.is_some() {
            JobState::Failed
        } else {
            JobState::Finished
        }
        .as_str();
        let n = tx.execute(
            "UPDATE jobs SET state = ?2, finished_at = ?3, body = CASE WHEN ?4 IS NULL THEN body ELSE json_set(body, '$.error', ?4) END WHERE id = ?1 AND state NOT IN ('finished', 'failed')",
            params![id, state, now_s(), failed],
        )?;
        if n == 0 {
            let exists: Option<String> = tx
                .query_row("SELECT state FROM jobs WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()?;
            return Err(match exists {
                Some(s) => StoreError::Conflict(format!("job `{id}` has {s} already")),
                None => StoreError::NotFound(format!("no job `{id}`")),
            });
        }
        let mut on = None;
        for d in desired_rows(&tx, None)? {
            if !d.job_ids().iter().any(|j| j == id) {
                continue;
            }
            let kept: Vec<&Assignment> = d.jobs.iter().filter(|j| j.id != id).collect();
            let profile = d.profile.clone().and_then(|mut p| {
                p.jobs.retain(|j| j != id);
                (!p.jobs.is_empty()).then_some(p)
            });
            tx.execute(
                "UPDATE desired SET jobs = ?3, profile = ?4 WHERE node = ?1 AND idx = ?2",
                params![
                    d.node,
                    d.index,
                    to_json(&kept)?,
                    profile.map(|p| to_json(&p)).transpose()?
                ],
            )?;
            on = Some((d.node, d.index));
        }
        tx.commit()?;
        Ok(on)
    }

    /// One job's body and state.
    pub fn job(&self, id: &str) -> Result<Option<(Value, JobState)>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT body, state FROM jobs WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(b, s)| {
            (
                serde_json::from_str(&b).unwrap_or(Value::Null),
                JobState::parse(&s),
            )
        }))
    }

    /// Jobs with their state, in submission order.
    pub fn jobs(&self) -> Result<Vec<Value>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT body, state FROM jobs ORDER BY submitted_at, id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (body, state) = row?;
            let mut v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("state".into(), Value::String(state));
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Store a sample; `jobs`: the controller job of each slot (JSON array, `null` for none).
    pub fn add_sample(&self, body: &Value, jobs: Option<&Value>) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO samples (body, received_at, jobs) VALUES (?1, ?2, ?3)",
            params![body.to_string(), now_s(), jobs.map(|j| j.to_string())],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest sample's number (0 when none).
    pub fn last_sample_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM samples", [], |r| {
                r.get(0)
            })?)
    }

    /// Store an observation of job `id` (a `miso-observation/1` body); its number.
    pub fn add_observation(&self, id: &str, body: &Value) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO observations (job, body, received_at) VALUES (?1, ?2, ?3)",
            params![id, body.to_string(), now_s()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every stored observation, oldest first.
    pub fn observations(&self) -> Result<Vec<Value>, StoreError> {
        self.list("SELECT body FROM observations ORDER BY seq")
    }

    pub fn samples(&self) -> Result<Vec<Value>, StoreError> {
        self.list("SELECT body FROM samples ORDER BY seq")
    }

    /// The newest sample that profiled job `id`: (seq, sample, slot of the job).
    pub fn latest_sample_for(&self, id: &str) -> Result<Option<(i64, Value, usize)>, StoreError> {
        let row: Option<(i64, String, i64)> = self
            .conn
            .query_row(
                "SELECT s.seq, s.body, j.key FROM samples s, json_each(s.jobs) j WHERE s.jobs IS NOT NULL AND j.value = ?1 ORDER BY s.seq DESC LIMIT 1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.map(|(q, b, k)| {
            (
                q,
                serde_json::from_str(&b).unwrap_or(Value::Null),
                k as usize,
            )
        }))
    }

    /// What GPU `idx` of `node` should have: its layout and which job runs on which instance.
    /// Ends a profiling phase.
    pub fn set_desired(
        &self,
        node: &str,
        idx: u32,
        layout: &str,
        jobs: &[Assignment],
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO desired (node, idx, layout, jobs, profile) VALUES (?1, ?2, ?3, ?4, NULL) ON CONFLICT(node, idx) DO UPDATE SET layout = excluded.layout, jobs = excluded.jobs, profile = NULL",
            params![node, idx, layout, to_json(&jobs)?],
        )?;
        Ok(())
    }

    /// The desired state of each GPU of a node.
    pub fn desired(&self, node: &str) -> Result<Vec<Desired>, StoreError> {
        desired_rows(&self.conn, Some(node))
    }

    /// The desired state of GPU `idx` of `node`, if it has one.
    pub fn desired_gpu(&self, node: &str, idx: u32) -> Result<Option<Desired>, StoreError> {
        Ok(self.desired(node)?.into_iter().find(|d| d.index == idx))
    }

    /// Every GPU's desired state.
    pub fn desired_all(&self) -> Result<Vec<Desired>, StoreError> {
        desired_rows(&self.conn, None)
    }

    /// Commit a plan for GPU `idx` of `node` in one transaction: the decision, the new layout
    /// and assignment (ending any profiling phase), assigned jobs marked running and `dropped`
    /// ones queued again.
    pub fn apply_plan(
        &self,
        node: &str,
        idx: u32,
        layout: &str,
        jobs: &[Assignment],
        decision: &Value,
        dropped: &[String],
    ) -> Result<i64, StoreError> {
        self.commit_gpu(node, idx, layout, jobs, None, decision, dropped)
    }

    /// Start a profiling phase on GPU `idx` of `node`: the whole-GPU `layout`, no assignment,
    /// and the profile request; its jobs are marked running and `dropped` ones queued again.
    pub fn start_profile(
        &self,
        node: &str,
        idx: u32,
        layout: &str,
        profile: &ProfileRequest,
        dropped: &[String],
    ) -> Result<i64, StoreError> {
        let decision = serde_json::json!({"node": node, "index": idx, "profile": profile});
        self.commit_gpu(node, idx, layout, &[], Some(profile), &decision, dropped)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_gpu(
        &self,
        node: &str,
        idx: u32,
        layout: &str,
        jobs: &[Assignment],
        profile: Option<&ProfileRequest>,
        decision: &Value,
        dropped: &[String],
    ) -> Result<i64, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO decisions (body, made_at) VALUES (?1, ?2)",
            params![decision.to_string(), now_s()],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO desired (node, idx, layout, jobs, profile) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(node, idx) DO UPDATE SET layout = excluded.layout, jobs = excluded.jobs, profile = excluded.profile",
            params![node, idx, layout, to_json(&jobs)?, profile.map(to_json).transpose()?],
        )?;
        let d = Desired {
            node: node.into(),
            index: idx,
            layout: layout.into(),
            jobs: jobs.to_vec(),
            profile: profile.cloned(),
        };
        for id in d.job_ids() {
            tx.execute(
                "UPDATE jobs SET state = 'running' WHERE id = ?1 AND state = 'queued'",
                params![id],
            )?;
        }
        for id in dropped {
            tx.execute(
                "UPDATE jobs SET state = 'queued' WHERE id = ?1 AND state = 'running'",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(seq)
    }

    /// What the agent reports a GPU has.
    pub fn set_actual(&self, node: &str, idx: u32, body: &Value) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO actual (node, idx, body, reported_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(node, idx) DO UPDATE SET body = excluded.body, reported_at = excluded.reported_at",
            params![node, idx, body.to_string(), now_s()],
        )?;
        Ok(())
    }

    pub fn actual(&self) -> Result<Vec<Value>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT node, idx, body FROM actual ORDER BY node, idx")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (n, i, b) = r?;
            out.push(serde_json::json!({"node": n, "index": i, "report": serde_json::from_str::<Value>(&b).unwrap_or(Value::Null)}));
        }
        Ok(out)
    }

    /// A registered node's body.
    pub fn node(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let b: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM nodes WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(b.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Register model `name` (its metadata) and make it the active one, in one transaction.
    pub fn activate_model(&self, name: &str, body: &Value) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("UPDATE models SET active = 0 WHERE active = 1", [])?;
        tx.execute(
            "INSERT INTO models (name, body, registered_at, active) VALUES (?1, ?2, ?3, 1) ON CONFLICT(name) DO UPDATE SET body = excluded.body, active = 1",
            params![name, body.to_string(), now_s()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The active model's name, if one was activated.
    pub fn active_model(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT name FROM models WHERE active = 1", [], |r| r.get(0))
            .optional()?)
    }

    /// Registered models: name → (metadata, registered at, unix seconds).
    pub fn models(&self) -> Result<BTreeMap<String, (Value, f64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT name, body, registered_at FROM models")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (n, b, t) = r?;
            out.insert(n, (serde_json::from_str(&b).unwrap_or(Value::Null), t));
        }
        Ok(out)
    }

    /// Number of jobs in each state.
    pub fn jobs_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn count(&self, table: &str) -> Result<i64, StoreError> {
        let sql = match table {
            "nodes" => "SELECT COUNT(*) FROM nodes",
            "jobs" => "SELECT COUNT(*) FROM jobs",
            "samples" => "SELECT COUNT(*) FROM samples",
            "observations" => "SELECT COUNT(*) FROM observations",
            _ => "SELECT COUNT(*) FROM decisions",
        };
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    fn list(&self, sql: &str) -> Result<Vec<Value>, StoreError> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(serde_json::from_str(&r?).unwrap_or(Value::Null));
        }
        Ok(out)
    }
}

/// Rows of the desired table, of one node or all.
fn desired_rows(conn: &Connection, node: Option<&str>) -> Result<Vec<Desired>, StoreError> {
    let mut st = conn.prepare(
        "SELECT node, idx, layout, jobs, profile FROM desired WHERE ?1 IS NULL OR node = ?1 ORDER BY node, idx",
    )?;
    let rows = st.query_map(params![node], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (node, index, layout, j, p) = r?;
        // A row this version cannot read is an error that names it, never a silent empty GPU.
        let bad = |what: &str, e: serde_json::Error| {
            StoreError::Schema(format!("desired state of {node}/{index}: {what}: {e}"))
        };
        let jobs = serde_json::from_str(&j).map_err(|e| bad("jobs", e))?;
        let profile = match p {
            Some(p) => Some(serde_json::from_str(&p).map_err(|e| bad("profile", e))?),
            None => None,
        };
        out.push(Desired {
            node,
            index,
            layout,
            jobs,
            profile,
        });
    }
    Ok(out)
}

/// A value as stored JSON text.
fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Schema(format!("cannot store a record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("miso-store-{}-{name}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn schema_is_versioned_old_databases_migrate_newer_ones_are_refused() {
        // A database from before versioning: version 0, `desired` without its later columns.
        let old = tmp("old");
        {
            let c = Connection::open(&old).unwrap();
            c.execute_batch(
                "CREATE TABLE desired (node TEXT NOT NULL, idx INTEGER NOT NULL, layout TEXT NOT NULL, PRIMARY KEY (node, idx));
                 INSERT INTO desired VALUES ('n1', 0, '7g.40gb@0');",
            )
            .unwrap();
        }
        let s = Store::open(&old).unwrap();
        let v: i64 = s
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let d = s.desired("n1").unwrap();
        assert_eq!(d[0].layout, "7g.40gb@0", "rows kept");
        assert!(d[0].jobs.is_empty() && d[0].profile.is_none());
        drop(s);
        assert!(Store::open(&old).is_ok(), "opening again changes nothing");
        // One from a newer miso is refused, and left as it was.
        let newer = tmp("newer");
        {
            let c = Connection::open(&newer).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let e = Store::open(&newer)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("newer than this miso"), "{e}");
        let c = Connection::open(&newer).unwrap();
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "nothing created");
        let _ = std::fs::remove_file(&old);
        let _ = std::fs::remove_file(&newer);
    }
}
