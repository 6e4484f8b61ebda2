//! The controller's durable state in SQLite (WAL, synchronous=FULL): nodes, jobs, profiling
//! samples, decisions. Every write is committed before the API replies, so an acknowledged
//! request survives a SIGKILL.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
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
}

pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, body TEXT NOT NULL, registered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL, submitted_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS samples (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS desired (node TEXT NOT NULL, idx INTEGER NOT NULL, layout TEXT NOT NULL, PRIMARY KEY (node, idx));
CREATE TABLE IF NOT EXISTS actual (node TEXT NOT NULL, idx INTEGER NOT NULL, body TEXT NOT NULL, reported_at REAL NOT NULL, PRIMARY KEY (node, idx));
CREATE TABLE IF NOT EXISTS decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, made_at REAL NOT NULL);
";

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
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    pub fn put_node(&self, name: &str, body: &Value) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO nodes (name, body, registered_at) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
            params![name, body.to_string(), now_s()],
        )?;
        Ok(())
    }

    pub fn nodes(&self) -> Result<Vec<Value>, StoreError> {
        self.list("SELECT body FROM nodes ORDER BY name")
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

    pub fn finish_job(&self, id: &str) -> Result<(), StoreError> {
        let n = self.conn.execute("UPDATE jobs SET state = 'finished', finished_at = ?2 WHERE id = ?1 AND state != 'finished'", params![id, now_s()])?;
        if n == 0 {
            let exists: Option<String> = self
                .conn
                .query_row("SELECT state FROM jobs WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()?;
            return Err(match exists {
                Some(_) => StoreError::Conflict(format!("job `{id}` has finished already")),
                None => StoreError::NotFound(format!("no job `{id}`")),
            });
        }
        Ok(())
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

    pub fn add_sample(&self, body: &Value) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO samples (body, received_at) VALUES (?1, ?2)",
            params![body.to_string(), now_s()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn samples(&self) -> Result<Vec<Value>, StoreError> {
        self.list("SELECT body FROM samples ORDER BY seq")
    }

    /// The layout GPU `idx` of `node` should have.
    pub fn set_desired(&self, node: &str, idx: u32, layout: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO desired (node, idx, layout) VALUES (?1, ?2, ?3) ON CONFLICT(node, idx) DO UPDATE SET layout = excluded.layout",
            params![node, idx, layout],
        )?;
        Ok(())
    }

    /// (gpu index, desired layout) of a node.
    pub fn desired(&self, node: &str) -> Result<Vec<(u32, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT idx, layout FROM desired WHERE node = ?1 ORDER BY idx")?;
        let rows = st.query_map(params![node], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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

    pub fn add_decision(&self, body: &Value) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO decisions (body, made_at) VALUES (?1, ?2)",
            params![body.to_string(), now_s()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn count(&self, table: &str) -> Result<i64, StoreError> {
        let sql = match table {
            "nodes" => "SELECT COUNT(*) FROM nodes",
            "jobs" => "SELECT COUNT(*) FROM jobs",
            "samples" => "SELECT COUNT(*) FROM samples",
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
