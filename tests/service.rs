//! The controller over loopback: auth, validation that stores nothing on bad input, the job and
//! sample lifecycle, recommendations, metrics, and durability across a SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &std::path::Path, extra: &[&str]) -> Server {
    let tf = dir.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("miso.db"))
        .arg("--token-file")
        .arg(&tf)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.contains(TOKEN), "the token is never printed");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    Server { child, addr }
}

fn req(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let b = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n", b.len());
    // Written while the reply is read, as real clients do: a server that answers early (413 on
    // an announced length) and closes must not lose its reply behind a blocked write.
    let mut w = c.try_clone().unwrap();
    let body = b.to_string();
    let writer = std::thread::spawn(move || {
        let _ = w
            .write_all(head.as_bytes())
            .and_then(|_| w.write_all(body.as_bytes()));
    });
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let _ = writer.join();
    let out = String::from_utf8_lossy(&raw).to_string();
    let code: u16 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("miso-svc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn api_lifecycle_auth_and_validation() {
    let dir = tmpdir("api");
    let s = start(&dir);
    assert_eq!(req(&s, "GET", "/healthz", None, None).0, 200);
    // Unauthenticated or wrong token: 401, nothing stored.
    let job = r#"{"id":"a","workload":"bert_train8"}"#;
    assert_eq!(req(&s, "POST", "/v1/jobs", None, Some(job)).0, 401);
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/jobs",
            Some("wrong-token-wrong-token"),
            Some(job)
        )
        .0,
        401
    );
    assert_eq!(req(&s, "GET", "/v1/jobs", None, None).0, 401);
    // Bad bodies: 400 naming the field, nothing stored.
    let (c, b) = req(
        &s,
        "POST",
        "/v1/jobs",
        Some(TOKEN),
        Some(r#"{"id":"b","workload":"llama_train1"}"#),
    );
    assert_eq!(c, 400);
    assert!(b.contains("workload") && b.contains("llama_train1"), "{b}");
    let (c, b) = req(
        &s,
        "POST",
        "/v1/jobs",
        Some(TOKEN),
        Some(r#"{"id":"b","workload":"bert_train8","colour":2}"#),
    );
    assert_eq!(c, 400);
    assert!(b.contains("colour"), "{b}");
    assert_eq!(
        req(&s, "POST", "/v1/jobs", Some(TOKEN), Some("{not json")).0,
        400
    );
    let (_, jobs) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
    assert_eq!(jobs.trim(), "[]");
    // The job lifecycle.
    assert_eq!(req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(job)).0, 201);
    assert_eq!(
        req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(job)).0,
        409,
        "duplicate id"
    );
    assert_eq!(
        req(&s, "POST", "/v1/jobs/a/finish", Some(TOKEN), None).0,
        200
    );
    assert_eq!(
        req(&s, "POST", "/v1/jobs/zz/finish", Some(TOKEN), None).0,
        404
    );
    let (_, jobs) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
    assert!(jobs.contains("\"finished\""), "{jobs}");
    // Nodes and samples.
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/nodes",
            Some(TOKEN),
            Some(r#"{"name":"n1","gpus":[{"index":0,"model":"NVIDIA H200"}]}"#)
        )
        .0,
        201
    );
    let (c, b) = req(
        &s,
        "POST",
        "/v1/nodes",
        Some(TOKEN),
        Some(r#"{"name":"n2","gpus":[{"index":0,"model":"V100"}]}"#),
    );
    assert!(c == 400 && b.contains("gpus[0].model"), "{b}");
    let sample = r#"{"format":"miso-mps-sample/1","gpu":"A100-SXM4-40GB","mix":0,"slots":[{"label":"bert_train8","mps":[0.5,0.7,1.0]}]}"#;
    assert_eq!(
        req(&s, "POST", "/v1/samples", Some(TOKEN), Some(sample)).0,
        201
    );
    let (c, b) = req(
        &s,
        "POST",
        "/v1/samples",
        Some(TOKEN),
        Some(&sample.replace("0.7", "-1")),
    );
    assert!(c == 400 && b.contains("slots[0].mps[1]"), "{b}");
    // A recommendation, applied nowhere.
    let (c, b) = req(
        &s,
        "POST",
        "/v1/recommend",
        Some(TOKEN),
        Some(
            r#"{"gpu":"a100-40gb","jobs":[{"id":"x","workload":"bert_train8"},{"id":"y","workload":"cyclegan_train4"}]}"#,
        ),
    );
    assert_eq!(c, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["layout"][0]["profile"], "4g.20gb");
    assert_eq!(v["objective"]["name"], "mean-slowdown");
    let (c, b) = req(
        &s,
        "POST",
        "/v1/recommend",
        Some(TOKEN),
        Some(r#"{"jobs":[{"id":"x","speeds":{"3g.20gb":-1}}]}"#),
    );
    assert!(c == 400 && b.contains("jobs[0].speeds.3g.20gb"), "{b}");
    // Oversized bodies are refused.
    let big = format!(
        r#"{{"id":"big","workload":"bert_train8","pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&big)).0, 413);
    let (c, m) = req(&s, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(c, 200);
    assert!(
        m.contains("miso_jobs 1")
            && m.contains("miso_samples 1")
            && m.contains("miso_requests_total{route=\"/v1/recommend\",status=\"200\"} 1")
            && m.contains("miso_requests_total{route=\"/v1/recommend\",status=\"400\"} 1")
            && m.contains("route=\"/v1/jobs/{id}/finish\""),
        "{m}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tmpdir("kill");
    let mut s = start(&dir);
    for i in 0..25 {
        let (c, _) = req(
            &s,
            "POST",
            "/v1/jobs",
            Some(TOKEN),
            Some(&format!(r#"{{"id":"j{i}","workload":"resnet_train64"}}"#)),
        );
        assert_eq!(c, 201);
    }
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    let s2 = start(&dir);
    let (_, jobs) = req(&s2, "GET", "/v1/jobs", Some(TOKEN), None);
    let v: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        25,
        "every acknowledged job is there"
    );
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

/// An agent process, killed when the test ends, failed or not (it would otherwise keep
/// reconciling, and loading the machine, after a failed test).
struct Agent(Child);

impl std::ops::Deref for Agent {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(s: &Server, dir: &std::path::Path, extra: &[&str]) -> Agent {
    Agent(
        Command::new(env!("CARGO_BIN_EXE_miso"))
            .args([
                "agent",
                "--controller",
                &format!("http://{}", s.addr),
                "--name",
                "n1",
                "--backend",
                "simulated",
                "--gpu",
                "a100-40gb",
            ])
            .arg("--token-file")
            .arg(dir.join("token"))
            .arg("--sim-state")
            .arg(dir.join("gpus.json"))
            .arg("--state-dir")
            .arg(dir.join("agent"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(agent_log(dir))
            .spawn()
            .unwrap(),
    )
}

/// The agents' stderr, appended to `<dir>/agent.log` (read it when a test fails).
fn agent_log(dir: &std::path::Path) -> Stdio {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
    {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

#[test]
fn plan_applied_by_the_agent_and_convergence_after_a_kill_mid_plan() {
    let dir = tmpdir("agent");
    let s = start(&dir);
    // Jobs → recommendation → desired layout → the agent applies it → state reported.
    let rec = r#"{"gpu":"a100-40gb","jobs":[{"id":"x","workload":"bert_train8"},{"id":"y","workload":"cyclegan_train4"}]}"#;
    let (_, b) = req(&s, "POST", "/v1/recommend", Some(TOKEN), Some(rec));
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let layout: Vec<String> = v["layout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}@{}", i["profile"].as_str().unwrap(), i["start"]))
        .collect();
    let layout = layout.join(",");
    assert_eq!(layout, "4g.20gb@0,3g.20gb@4");
    assert_eq!(
        agent(&s, &dir, &["--once"]).wait().unwrap().code(),
        Some(0),
        "registers"
    );
    let put = |l: &str| {
        req(
            &s,
            "PUT",
            "/v1/nodes/n1/gpus/0/desired",
            Some(TOKEN),
            Some(&format!(r#"{{"layout":"{l}"}}"#)),
        )
    };
    assert_eq!(put(&layout).0, 200);
    assert_eq!(put("3g.20gb@2").0, 400, "invalid layouts are refused");
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert!(st.contains("4g.20gb@0,3g.20gb@4"), "{st}");
    // A plan of 5 steps at 300 ms each; kill the agent part-way.
    let target = "1g.5gb@0,1g.5gb@1,1g.5gb@2,1g.5gb@3,3g.20gb@4";
    assert_eq!(put(target).0, 200);
    let mut a = agent(
        &s,
        &dir,
        &["--step-delay-ms", "300", "--interval-ms", "100"],
    );
    std::thread::sleep(std::time::Duration::from_millis(800));
    a.kill().unwrap();
    a.wait().unwrap();
    let mid: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gpus.json")).unwrap()).unwrap();
    assert_ne!(mid[0], target, "killed before the end");
    let g = miso::gpu::gpu("a100-40gb").unwrap();
    assert!(
        miso::gpu::parse_valid_layout(g, &mid[0]).is_ok(),
        "valid after the kill: {}",
        mid[0]
    );
    // Restarted, it converges.
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    let done: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gpus.json")).unwrap()).unwrap();
    assert_eq!(done[0], target);
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert!(st.contains(target), "{st}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn models_list_predict_retrain_and_hot_swap() {
    let dir = tmpdir("models");
    let models = dir.join("models");
    std::fs::create_dir_all(models.join("default")).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in std::fs::read_dir(repo.join("models/default")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, models.join("default").join(p.file_name().unwrap())).unwrap();
    }
    let s = start_with(&dir, &["--models", models.to_str().unwrap()]);
    let (c, b) = req(&s, "GET", "/v1/models", Some(TOKEN), None);
    assert_eq!(c, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v[0]["name"], "default");
    assert_eq!(v[0]["active"], true, "{b}");
    // Predict with the active model from one MISO sample (real data).
    let ds = miso::predictor::data::load(&repo.join("../shared/datasets/miso-a100")).unwrap();
    let recs = ds.to_records();
    let one = serde_json::to_string(&recs[0]).unwrap();
    let (c, b) = req(&s, "POST", "/v1/predict", Some(TOKEN), Some(&one));
    assert_eq!(c, 200, "{b}");
    let p: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(p["model"], "default");
    assert!(
        (p["jobs"][0]["speeds"]["7g"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{b}"
    );
    // The default model is calibrated: each speed lies within its range.
    for j in p["jobs"].as_array().unwrap() {
        for (k, v) in j["speeds"].as_object().unwrap() {
            let r = &j["speed_range"][k];
            let (lo, hi, v) = (
                r[0].as_f64().unwrap(),
                r[1].as_f64().unwrap(),
                v.as_f64().unwrap(),
            );
            assert!(lo <= v + 1e-9 && v <= hi + 1e-9, "{k}: {lo} {v} {hi}: {b}");
        }
    }
    // Retraining needs samples; then it trains, saves, and swaps the model in.
    let rt = r#"{"name":"site","arch":"linear"}"#;
    assert_eq!(
        req(&s, "POST", "/v1/models/retrain", Some(TOKEN), Some(rt)).0,
        409
    );
    for r in recs.iter().step_by(5).take(300) {
        assert_eq!(
            req(
                &s,
                "POST",
                "/v1/samples",
                Some(TOKEN),
                Some(&serde_json::to_string(r).unwrap())
            )
            .0,
            201
        );
    }
    assert_eq!(req(&s, "POST", "/v1/models/retrain", None, Some(rt)).0, 401);
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/models/retrain",
            Some(TOKEN),
            Some(r#"{"name":"../x"}"#)
        )
        .0,
        400
    );
    let (c, b) = req(&s, "POST", "/v1/models/retrain", Some(TOKEN), Some(rt));
    assert_eq!(c, 201, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["active"], "site");
    assert!(v["mae"].as_f64().unwrap() < 0.06, "{b}");
    assert!(models.join("site/model.json").exists());
    let (_, b) = req(&s, "POST", "/v1/predict", Some(TOKEN), Some(&one));
    assert!(b.contains("\"model\":\"site\""), "{b}");
    assert!(
        !b.contains("speed_range"),
        "an uncalibrated model gives no range: {b}"
    );
    // The registry is durable: a SIGKILLed controller comes back with `site` active, not the
    // start-up default.
    drop(s);
    let s = start_with(&dir, &["--models", models.to_str().unwrap()]);
    let (_, b) = req(&s, "GET", "/v1/models", Some(TOKEN), None);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let site = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "site")
        .unwrap();
    assert_eq!(site["active"], true, "{b}");
    assert_eq!(
        site["registered"]["how"], "active before the restart",
        "{b}"
    );
    // And back, without a restart.
    assert_eq!(
        req(&s, "POST", "/v1/models/default/activate", Some(TOKEN), None).0,
        200
    );
    assert_eq!(
        req(&s, "POST", "/v1/models/nope/activate", Some(TOKEN), None).0,
        404
    );
    let (_, b) = req(&s, "GET", "/v1/models", Some(TOKEN), None);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["active"] == true)
            .map(|m| m["name"].clone())
            .collect::<Vec<_>>(),
        vec![serde_json::json!("default")]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `miso profile --no-mps` of two jobs (bert_train8, resnet_train64) that report iteration
/// times over the line protocol, slower at fewer MPS threads and in the later slot; the sample
/// goes to the controller.
fn profile_two(
    s: &Server,
    dir: &std::path::Path,
    seconds: &str,
    extra: &[&str],
) -> std::process::Output {
    let job = dir.join("report.sh");
    std::fs::write(&job, "exec 3<>/dev/tcp/$MISO_REPORT_HOST/$MISO_REPORT_PORT\nwhile true; do echo \"$MISO_JOB 0.$(( 1000 / CUDA_MPS_ACTIVE_THREAD_PERCENTAGE + 100 * MISO_JOB ))\" >&3; sleep 0.03; done\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_miso"))
        .args([
            "profile",
            "--no-mps",
            "--seconds",
            seconds,
            "--controller",
            &format!("http://{}", s.addr),
            "--token-file",
        ])
        .arg(dir.join("token"))
        .args(extra)
        .arg("--job")
        .arg(format!("bert_train8=bash {}", job.display()))
        .arg("--job")
        .arg(format!("resnet_train64=bash {}", job.display()))
        .output()
        .unwrap()
}

#[test]
fn mps_profiling_collects_a_sample_and_stores_it() {
    // Jobs report iteration times over the line protocol; here a shell loop whose iteration
    // time depends on its MPS thread share (no GPU needed: --no-mps).
    let dir = tmpdir("profile");
    let s = start(&dir);
    let out = profile_two(&s, &dir, "0.6", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["format"], "miso-mps-sample/1");
    let mps: Vec<f64> = rec["slots"][0]["mps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (mps[0] - 0.10).abs() < 1e-9
            && (mps[1] - 0.20).abs() < 1e-9
            && (mps[2] - 0.71).abs() < 1e-9,
        "{mps:?}"
    );
    assert_eq!(rec["slots"][1]["label"], "resnet_train64");
    let (_, m) = req(&s, "GET", "/metrics", Some(TOKEN), None);
    assert!(m.contains("miso_samples 1"), "{m}");
    // A job that never reports is an error naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args([
            "profile",
            "--no-mps",
            "--seconds",
            "0.3",
            "--job",
            "x=sleep 5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reported no iteration"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Poll `f` every 100 ms for up to 30 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(30) {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Job `id` as `GET /v1/jobs` lists it.
fn job(s: &Server, id: &str) -> serde_json::Value {
    let (_, jobs) = req(s, "GET", "/v1/jobs", Some(TOKEN), None);
    json(&jobs)
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no job `{id}` in {jobs}"))
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The agent's report for GPU 0: job id → (instance, pid, starts, state).
fn reported_jobs(s: &Server) -> std::collections::BTreeMap<String, (String, u64, u64, String)> {
    let (_, st) = req(s, "GET", "/v1/state", Some(TOKEN), None);
    let st = json(&st);
    let mut out = std::collections::BTreeMap::new();
    for g in st["gpus"].as_array().unwrap() {
        for j in g["report"]["jobs"].as_array().into_iter().flatten() {
            out.insert(
                j["id"].as_str().unwrap().to_string(),
                (
                    j["instance"].as_str().unwrap().to_string(),
                    j["pid"].as_u64().unwrap_or(0),
                    j["starts"].as_u64().unwrap_or(0),
                    j["state"].as_str().unwrap().to_string(),
                ),
            );
        }
    }
    out
}

/// Kill the process groups of the jobs the agent reported (they outlive the agent).
fn kill_jobs(s: &Server) {
    for (_, (_, pid, _, _)) in reported_jobs(s) {
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .unwrap();
    }
}

/// job id → instance of a plan reply.
fn assignment(plan: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    plan["layout"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["job"].is_null())
        .map(|i| {
            (
                i["job"].as_str().unwrap().to_string(),
                format!("{}@{}", i["profile"].as_str().unwrap(), i["start"]),
            )
        })
        .collect()
}

/// A job that counts steps every 50 ms up to $1, logs its starts (once its SIGTERM handler is
/// installed, so a test that saw the line may signal it), and on SIGTERM saves its step
/// to $MISO_CHECKPOINT_DIR and exits (the checkpoint protocol); it resumes from that step. Under
/// profiling it reports each step over the line protocol, slower at fewer MPS threads.
fn job_script(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("job.sh");
    std::fs::write(
        &p,
        format!(
            "LOG={}\nstep=$(cat \"$MISO_CHECKPOINT_DIR/step\" 2>/dev/null || echo 0)\n\
             trap 'echo $step > \"$MISO_CHECKPOINT_DIR/step\"; echo \"checkpoint $MISO_JOB $step\" >> $LOG; exit 0' TERM\n\
             echo \"start $MISO_JOB $MISO_INSTANCE $CUDA_VISIBLE_DEVICES restart=$MISO_RESTART step=$step mps=${{CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-none}}\" >> $LOG\n\
             if [ -n \"$MISO_REPORT_PORT\" ]; then exec 3<>/dev/tcp/$MISO_REPORT_HOST/$MISO_REPORT_PORT; fi\n\
             while [ $step -lt $1 ]; do step=$((step+1)); \
             if [ -n \"$MISO_REPORT_PORT\" ]; then echo \"$MISO_JOB 0.0$(( 100 / ${{CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-50}} + 1 ))\" >&3; fi; \
             sleep 0.05; done\n",
            dir.join("jobs.log").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn jobs_profiled_planned_run_checkpointed_moved_finished_and_restarted() {
    let dir = tmpdir("jobs");
    let s = start(&dir);
    let script = job_script(&dir);
    let cmd = |n: u32| format!("bash {} {n}", script.display());
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    // x has no speeds: it is profiled; y is a catalog workload.
    let submit =
        |b: serde_json::Value| req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&b.to_string())).0;
    assert_eq!(
        submit(serde_json::json!({"id": "x", "command": cmd(100000)})),
        201
    );
    assert_eq!(
        submit(
            serde_json::json!({"id": "y", "workload": "resnet_train64", "command": cmd(100000)})
        ),
        201
    );
    assert_eq!(
        submit(serde_json::json!({"id": "bad id", "command": "true"})),
        400
    );
    let plan = |ids: &str| {
        req(
            &s,
            "POST",
            "/v1/nodes/n1/gpus/0/plan",
            Some(TOKEN),
            Some(&format!(r#"{{"jobs":{ids}}}"#)),
        )
    };
    let (c, b) = plan(r#"["x","y"]"#);
    assert_eq!(
        c, 202,
        "x has no speeds: the GPU profiles the mix first: {b}"
    );
    assert_eq!(json(&b)["unknown"], serde_json::json!(["x"]));
    // Profiling sample for x (slot 0) through `miso profile --for-jobs`.
    let out = profile_two(&s, &dir, "1.0", &["--for-jobs", "x,-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Recommendation applied: the plan becomes the GPU's desired state.
    let (c, b) = plan(r#"["x","y"]"#);
    assert_eq!(c, 201, "{b}");
    let p1 = json(&b);
    assert_eq!(
        p1["speeds"][0]["source"]["slot"], 0,
        "x's speeds predicted from its sample"
    );
    assert_eq!(p1["speeds"][1]["source"]["given"], true);
    let a1 = assignment(&p1);
    assert_eq!(a1.len(), 2);
    let (_, jobs) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
    assert_eq!(json(&jobs)[0]["state"], "running");
    // The agent applies it and starts both jobs on their instances.
    let mut a = agent(
        &s,
        &dir,
        &["--interval-ms", "100", "--checkpoint-grace-s", "5"],
    );
    wait_for("x and y running where planned", || {
        let r = reported_jobs(&s);
        a1.iter()
            .all(|(id, inst)| r.get(id).is_some_and(|j| &j.0 == inst && j.3 == "running"))
    });
    let log_has =
        |what: &str| std::fs::read_to_string(dir.join("jobs.log")).is_ok_and(|l| l.contains(what));
    wait_for("both jobs started (handlers installed)", || {
        log_has("start x ") && log_has("start y ")
    });
    std::thread::sleep(std::time::Duration::from_millis(300)); // some progress to checkpoint
    let log = std::fs::read_to_string(dir.join("jobs.log")).unwrap();
    assert!(
        log.contains(&format!("start x {} MIG-sim-0000-", a1["x"])),
        "{log}"
    );
    // A third job: the layout changes; jobs whose instance goes are checkpointed and restarted
    // on their new instance with MISO_RESTART=1; z finishes on its own after ~1 s.
    assert_eq!(
        submit(serde_json::json!({"id": "z", "workload": "bert_train8", "command": cmd(20)})),
        201
    );
    let (c, b) = plan(r#"["x","y","z"]"#);
    assert_eq!(c, 201, "{b}");
    let a2 = assignment(&json(&b));
    let moved: Vec<&String> = a1.keys().filter(|id| a1[*id] != a2[*id]).collect();
    assert!(
        !moved.is_empty(),
        "three jobs need a new layout: {a1:?} → {a2:?}"
    );
    wait_for("x, y, z where the second plan put them", || {
        let r = reported_jobs(&s);
        a2.iter()
            .all(|(id, inst)| r.get(id).is_some_and(|j| &j.0 == inst))
    });
    // The agent reports a job running as soon as it started it; the job's own log line
    // follows when its shell gets to it.
    wait_for("the moved jobs log their restart", || {
        let log = std::fs::read_to_string(dir.join("jobs.log")).unwrap_or_default();
        moved
            .iter()
            .all(|id| log.contains(&format!("start {id} {} MIG-sim-0000-", a2[*id])))
    });
    let log = std::fs::read_to_string(dir.join("jobs.log")).unwrap();
    for id in &moved {
        assert!(
            log.contains(&format!("checkpoint {id} ")),
            "{id} checkpointed: {log}"
        );
        assert!(
            log.contains(&format!("start {id} {} MIG-sim-0000-", a2[*id])),
            "{log}"
        );
        let restart = log
            .lines()
            .rfind(|l| l.starts_with(&format!("start {id} ")))
            .unwrap();
        assert!(
            restart.contains("restart=1") && !restart.contains("step=0"),
            "resumed: {restart}"
        );
    }
    // z exits 0: the agent reports it finished; the controller re-plans x and y.
    wait_for("z finished and x, y re-planned", || {
        let (_, j) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
        let j = json(&j);
        let z = j
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == "z")
            .unwrap();
        let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
        z["state"] == "finished" && json(&d)[0]["jobs"].as_array().unwrap().len() == 2
    });
    // x's process is lost (SIGKILL): the agent restarts it from its checkpoint.
    let before = reported_jobs(&s)["x"].clone();
    Command::new("kill")
        .args(["-KILL", &before.1.to_string()])
        .status()
        .unwrap();
    wait_for("x restarted after its loss", || {
        reported_jobs(&s)
            .get("x")
            .is_some_and(|j| j.2 > before.2 && j.1 != before.1 && j.3 == "running")
    });
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    let g = miso::gpu::gpu("a100-40gb").unwrap();
    let layout = json(&st)["gpus"][0]["report"]["layout"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(miso::gpu::parse_valid_layout(g, &layout).is_ok());
    a.kill().unwrap();
    a.wait().unwrap();
    // The jobs outlive the agent (own process groups); clean them up.
    kill_jobs(&s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn agent_lost_at_every_step_of_a_plan_converges_with_its_jobs() {
    // Lose the process: the simulated GPU kills the agent right after its k-th NVML call took
    // effect. Each run gets one call further; every layout in between is valid, and in the end
    // the GPU has the planned layout with every job running once on its planned instance.
    let dir = tmpdir("crash");
    let s = start(&dir);
    let script = job_script(&dir);
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    let speeds = |x: f64| serde_json::json!({"1g.5gb": 0.2 * x, "2g.10gb": 0.35 * x, "3g.20gb": 0.5, "4g.20gb": 0.6, "7g.40gb": 1.0});
    for (id, x) in [("a", 1.0), ("b", 1.2), ("c", 0.8)] {
        let b = serde_json::json!({"id": id, "speeds": speeds(x), "command": format!("bash {} 100000", script.display())});
        assert_eq!(
            req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&b.to_string())).0,
            201
        );
    }
    let g = miso::gpu::gpu("a100-40gb").unwrap();
    let mut crashes = 0;
    for ids in [r#"["a","b"]"#, r#"["a","b","c"]"#, r#"["c"]"#] {
        let (c, b) = req(
            &s,
            "POST",
            "/v1/nodes/n1/gpus/0/plan",
            Some(TOKEN),
            Some(&format!(r#"{{"jobs":{ids}}}"#)),
        );
        assert_eq!(c, 201, "{b}");
        let want = assignment(&json(&b));
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs < 20, "does not converge");
            let code = agent(
                &s,
                &dir,
                &[
                    "--once",
                    "--sim-fault",
                    "crash:1",
                    "--checkpoint-grace-s",
                    "5",
                ],
            )
            .wait()
            .unwrap()
            .code();
            let now: Vec<String> = serde_json::from_str(
                &std::fs::read_to_string(dir.join("gpus.json")).unwrap_or("[\"empty\"]".into()),
            )
            .unwrap();
            assert!(
                miso::gpu::parse_valid_layout(g, &now[0]).is_ok(),
                "valid after a crash: {}",
                now[0]
            );
            if code == Some(137) {
                crashes += 1;
                continue;
            }
            assert_eq!(code, Some(0));
            break;
        }
        let r = reported_jobs(&s);
        assert_eq!(r.len(), want.len(), "{r:?} vs {want:?}");
        for (id, inst) in &want {
            assert_eq!(&r[id].0, inst, "{id}");
        }
    }
    assert!(
        crashes >= 3,
        "the plans made NVML calls ({crashes} crashes)"
    );
    // Each job runs exactly once (no duplicates left by the crashes).
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let n = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.starts_with("bash ") && l.contains(&script.display().to_string()))
        .count();
    assert_eq!(n, 1, "only c is left running");
    kill_jobs(&s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plans_samples_desired_and_finish_reject_bad_input_and_store_nothing() {
    let dir = tmpdir("badplan");
    let s = start(&dir);
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    for b in [
        r#"{"id":"j1","workload":"bert_train8"}"#,
        r#"{"id":"j2","workload":"resnet_train64"}"#,
    ] {
        assert_eq!(req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(b)).0, 201);
    }
    let path = "/v1/nodes/n1/gpus/0/plan";
    let cases: [(Option<&str>, &str, u16, &str); 7] = [
        (None, r#"{"jobs":["j1"]}"#, 401, "token"),
        (Some(TOKEN), r#"{"jobs":["j1"],"speed":1}"#, 400, "speed"),
        (Some(TOKEN), r#"{"jobs":["j1","j1"]}"#, 400, "jobs[1]"),
        (
            Some(TOKEN),
            r#"{"jobs":["nope"]}"#,
            404,
            "jobs[0]: no job `nope`",
        ),
        (
            Some(TOKEN),
            r#"{"jobs":["j1"],"objective":"fastest"}"#,
            400,
            "fastest",
        ),
        (Some(TOKEN), r#"{"jobs":"j1"}"#, 400, "jobs"),
        (Some(TOKEN), "[", 400, "error"),
    ];
    for (tok, body, code, text) in cases {
        let (c, b) = req(&s, "POST", path, tok, Some(body));
        assert_eq!(c, code, "{body}: {b}");
        assert!(
            b.contains(text) && b.starts_with("{\"error\""),
            "{body}: {b}"
        );
    }
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/nodes/n9/gpus/0/plan",
            Some(TOKEN),
            Some(r#"{"jobs":["j1"]}"#)
        )
        .0,
        404
    );
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/nodes/n1/gpus/3/plan",
            Some(TOKEN),
            Some(r#"{"jobs":["j1"]}"#)
        )
        .0,
        404
    );
    let desired = || req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None).1;
    assert_eq!(desired(), "[]", "nothing planned");
    let (_, jobs) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
    assert!(!jobs.contains("running"), "{jobs}");
    // Samples: the job list must match the slots and name known jobs.
    let sample = |jobs: &str| {
        format!(
            r#"{{"format":"miso-mps-sample/1","gpu":"A100","mix":0,"slots":[{{"label":"a","mps":[0.1,0.2,0.3]}}],"jobs":{jobs}}}"#
        )
    };
    for (j, text) in [
        (r#"["j1","j2"]"#, "2 ids for 1 slots"),
        (r#"["zz"]"#, "jobs[0]: no job `zz`"),
        (r#"[3]"#, "jobs[0]"),
        (r#""j1""#, "jobs:"),
    ] {
        let (c, b) = req(&s, "POST", "/v1/samples", Some(TOKEN), Some(&sample(j)));
        assert_eq!(c, 400, "{b}");
        assert!(b.contains(text), "{b}");
    }
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/samples",
            Some(TOKEN),
            Some(&sample(r#"[null]"#))
        )
        .0,
        201
    );
    // Desired with jobs: instances must be in the layout, each job once.
    let put = |b: &str| {
        req(
            &s,
            "PUT",
            "/v1/nodes/n1/gpus/0/desired",
            Some(TOKEN),
            Some(b),
        )
    };
    let (c, b) =
        put(r#"{"layout":"4g.20gb@0,3g.20gb@4","jobs":[{"id":"j1","instance":"2g.10gb@4"}]}"#);
    assert_eq!(c, 400);
    assert!(b.contains("jobs[0].instance"), "{b}");
    let (c, b) = put(
        r#"{"layout":"4g.20gb@0,3g.20gb@4","jobs":[{"id":"j1","instance":"4g.20gb@0"},{"id":"j2","instance":"4g.20gb@0"}]}"#,
    );
    assert_eq!(c, 400);
    assert!(b.contains("jobs[1].instance"), "{b}");
    assert_eq!(desired(), "[]");
    // A valid plan, then finishing with a malformed body changes nothing.
    let (c, b) = req(
        &s,
        "POST",
        path,
        Some(TOKEN),
        Some(r#"{"jobs":["j1","j2"]}"#),
    );
    assert_eq!(c, 201, "{b}");
    let before = desired();
    // The desired layouts for the cluster's own tools.
    let layout = json(&before)[0]["layout"].as_str().unwrap().to_string();
    let (c, b) = req(&s, "GET", "/v1/nodes/n1/export", Some(TOKEN), None);
    assert_eq!(c, 200, "{b}");
    assert!(
        b.contains("miso-n1:") && b.contains(&format!("all GPUs (A100-SXM4-40GB): {layout}")),
        "{b}"
    );
    let (c, b) = req(
        &s,
        "GET",
        "/v1/nodes/n1/export?format=gpu-operator",
        Some(TOKEN),
        None,
    );
    assert_eq!(c, 200);
    assert!(
        b.contains("nvidia.com/mig.config=miso-n1") && b.contains("kind: ConfigMap"),
        "{b}"
    );
    let (c, b) = req(
        &s,
        "GET",
        "/v1/nodes/n1/export?format=slurm",
        Some(TOKEN),
        None,
    );
    assert_eq!(c, 200);
    assert!(b.contains("AutoDetect=nvml"), "{b}");
    let (c, b) = req(
        &s,
        "GET",
        "/v1/nodes/n1/export?format=yaml",
        Some(TOKEN),
        None,
    );
    assert_eq!(c, 400);
    assert!(b.contains("format: `yaml`"), "{b}");
    assert_eq!(
        req(&s, "GET", "/v1/nodes/zz/export", Some(TOKEN), None).0,
        404
    );
    assert_eq!(req(&s, "GET", "/v1/nodes/n1/export", None, None).0, 401);
    let (c, b) = req(
        &s,
        "POST",
        "/v1/jobs/j1/finish",
        Some(TOKEN),
        Some(r#"{"err":"x"}"#),
    );
    assert_eq!(c, 400, "{b}");
    assert_eq!(desired(), before);
    // Finishing j1 takes it off the GPU and re-plans j2 alone.
    let (c, b) = req(&s, "POST", "/v1/jobs/j1/finish", Some(TOKEN), None);
    assert_eq!(c, 200, "{b}");
    assert!(json(&b)["replanned"]["decision"].is_number(), "{b}");
    let d = json(&desired());
    assert_eq!(d[0]["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(d[0]["jobs"][0]["id"], "j2");
    // A failed job records its error.
    let (c, _) = req(
        &s,
        "POST",
        "/v1/jobs/j2/finish",
        Some(TOKEN),
        Some(r#"{"error":"lost 3 times"}"#),
    );
    assert_eq!(c, 200);
    let (_, jobs) = req(&s, "GET", "/v1/jobs", Some(TOKEN), None);
    let j2 = json(&jobs)
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "j2")
        .cloned()
        .unwrap();
    assert_eq!(
        (j2["state"].as_str(), j2["error"].as_str()),
        (Some("failed"), Some("lost 3 times"))
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_new_job_is_profiled_by_the_agent_under_mps_then_planned_and_run() {
    // MISO's online loop: a job with unknown speeds arrives → the GPU goes to its whole-GPU
    // instance and the agent runs the mix there under MPS at 100/50/14 % → the sample goes to
    // the controller → the active model predicts the speeds → the plan is committed → the
    // agent partitions the GPU and resumes every job from its checkpoint on its instance.
    let dir = tmpdir("mpsloop");
    let s = start(&dir);
    let script = job_script(&dir);
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    let submit =
        |b: serde_json::Value| req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&b.to_string())).0;
    let cmd = format!("bash {} 100000", script.display());
    assert_eq!(submit(serde_json::json!({"id": "x", "command": cmd})), 201);
    assert_eq!(
        submit(serde_json::json!({"id": "y", "workload": "resnet_train64", "command": cmd})),
        201
    );
    assert_eq!(submit(serde_json::json!({"id": "nocmd"})), 201);
    let plan = |b: &str| req(&s, "POST", "/v1/nodes/n1/gpus/0/plan", Some(TOKEN), Some(b));
    let (c, b) = plan(r#"{"jobs":["x","nocmd"]}"#);
    assert_eq!(c, 409, "{b}");
    assert!(b.contains("no `command`"), "{b}");
    let (c, b) = plan(r#"{"jobs":["x","y"],"profile_seconds":0}"#);
    assert_eq!(c, 400, "{b}");
    let (c, b) = plan(r#"{"jobs":["x","y"],"profile_seconds":0.5}"#);
    assert_eq!(c, 202, "{b}");
    let p = json(&b);
    assert_eq!(p["layout"], "7g.40gb@0");
    assert_eq!(p["unknown"], serde_json::json!(["x"]));
    let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
    let d = json(&d);
    assert_eq!(d[0]["profile"]["jobs"][1]["label"], "resnet_train64");
    assert_eq!(d[0]["profile"]["levels"], serde_json::json!([100, 50, 14]));
    let mut a = agent(
        &s,
        &dir,
        &["--interval-ms", "100", "--checkpoint-grace-s", "5"],
    );
    let mut want = std::collections::BTreeMap::new();
    wait_for("the plan after profiling, applied", || {
        let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
        let d = json(&d);
        if !d[0]["profile"].is_null() {
            return false;
        }
        want = d[0]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["id"].as_str().unwrap().to_string(),
                    j["instance"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let r = reported_jobs(&s);
        want.len() == 2
            && want
                .iter()
                .all(|(id, i)| r.get(id).is_some_and(|j| &j.0 == i))
    });
    let (_, m) = req(&s, "GET", "/metrics", Some(TOKEN), None);
    for line in [
        "miso_gpus_converged 1",
        "miso_gpus_profiling 0",
        "miso_jobs_state{state=\"running\"} 2",
        "miso_jobs_state{state=\"queued\"} 1",
    ] {
        assert!(m.contains(line), "{line}: {m}");
    }
    // Running on their instances, the jobs report iterations: the agent sends what each
    // showed there (learning from runs).
    wait_for("an observation of each job on its instance", || {
        let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
        json(&st)["observations"] == 2
    });
    a.kill().unwrap();
    a.wait().unwrap();
    let alog = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        alog.contains(&format!("job x on {}: 0.0300 s per iteration", want["x"])),
        "{alog}"
    );
    // One sample, with the job ids, measured under MPS on the whole-GPU instance.
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert_eq!(json(&st)["samples"], 1);
    let log = std::fs::read_to_string(dir.join("jobs.log")).unwrap();
    for id in ["x", "y"] {
        let starts: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("start {id} ")))
            .collect();
        assert_eq!(
            starts.len(),
            4,
            "three MPS levels, then its instance: {log}"
        );
        for (k, lvl) in ["mps=100", "mps=50", "mps=14"].iter().enumerate() {
            assert!(
                starts[k].contains("7g.40gb@0 MIG-sim-0000-") && starts[k].ends_with(lvl),
                "{}",
                starts[k]
            );
        }
        assert!(
            starts[3].contains(&format!("{} MIG-sim-0000-", want[id]))
                && starts[3].ends_with("mps=none"),
            "{}",
            starts[3]
        );
        assert!(
            !starts[3].contains("step=0 "),
            "resumed from the profiling checkpoint: {}",
            starts[3]
        );
    }
    kill_jobs(&s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn schedule_with_the_learned_policy() {
    // Without --scheduler rl, `placement: rl` is refused and names the flag.
    let dir = tmpdir("schedule-rules");
    let s = start(&dir);
    let (c, b) = req(
        &s,
        "POST",
        "/v1/schedule",
        Some(TOKEN),
        Some(r#"{"placement":"rl"}"#),
    );
    assert_eq!(c, 400, "{b}");
    assert!(b.contains("--scheduler rl"), "{b}");
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
    // With it, /v1/schedule uses the learned policy by default: known jobs spread over the
    // two idle GPUs first (an empty GPU never makes the head job wait).
    let dir = tmpdir("schedule-rl");
    let s = start_with(&dir, &["--scheduler", "rl"]);
    assert_eq!(
        agent(&s, &dir, &["--once", "--sim-gpus", "2"])
            .wait()
            .unwrap()
            .code(),
        Some(0)
    );
    for (id, w) in [
        ("a", "bert_train8"),
        ("b", "resnet_train64"),
        ("c", "cyclegan_train4"),
    ] {
        let b = serde_json::json!({"id": id, "workload": w});
        assert_eq!(
            req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&b.to_string())).0,
            201
        );
    }
    let (c, b) = req(&s, "POST", "/v1/schedule", Some(TOKEN), Some("{}"));
    assert_eq!(c, 200, "{b}");
    let v = json(&b);
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{b}");
    let at: Vec<Option<u64>> = jobs.iter().map(|j| j["index"].as_u64()).collect();
    assert!(at[0].is_some() && at[1].is_some() && at[0] != at[1], "{b}");
    // The third is placed (or left queued by the policy, with the reason).
    assert!(
        jobs[2]["index"].is_u64()
            || jobs[2]["queued"]
                .as_str()
                .is_some_and(|q| q.contains("waits")),
        "{b}"
    );
    drop(s);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn schedule_places_queued_jobs_across_gpus_with_the_optimizers_rule() {
    let dir = tmpdir("schedule");
    let s = start(&dir);
    assert_eq!(
        agent(&s, &dir, &["--once", "--sim-gpus", "2"])
            .wait()
            .unwrap()
            .code(),
        Some(0)
    );
    for (id, w) in [
        ("a", "bert_train8"),
        ("b", "resnet_train64"),
        ("c", "cyclegan_train4"),
    ] {
        let b = serde_json::json!({"id": id, "workload": w});
        assert_eq!(
            req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&b.to_string())).0,
            201
        );
    }
    let sched = |b: &str| req(&s, "POST", "/v1/schedule", Some(TOKEN), Some(b));
    assert_eq!(sched(r#"{"placement":"random"}"#).0, 400);
    assert_eq!(sched(r#"{"jobs":["a","zz"]}"#).0, 404);
    assert_eq!(req(&s, "POST", "/v1/schedule", None, Some("{}")).0, 401);
    let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
    assert_eq!(d, "[]", "bad requests placed nothing");
    // MISO's rule: the GPU with the fewest jobs, lowest index on a tie.
    let (c, b) = sched("{}");
    assert_eq!(c, 200, "{b}");
    let v = json(&b);
    let at: Vec<(String, u64)> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().to_string(),
                j["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        at,
        vec![("a".into(), 0), ("b".into(), 1), ("c".into(), 0)],
        "{b}"
    );
    let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
    let d = json(&d);
    assert_eq!(d[0]["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(d[1]["jobs"].as_array().unwrap().len(), 1);
    // `miso status` shows it (human table and JSON).
    let status = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_miso"))
            .args([
                "status",
                "--controller",
                &format!("http://{}", s.addr),
                "--token-file",
            ])
            .arg(dir.join("token"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(st["gpus"].as_array().unwrap().len(), 2);
    assert_eq!(st["gpus"][1]["assigned"][0]["id"], "b");
    assert_eq!(
        st["gpus"][0]["converged"], false,
        "no agent ran since the plan"
    );
    let out = String::from_utf8_lossy(&status(&[]).stdout).to_string();
    assert!(out.contains("converging") && out.contains(": b"), "{out}");
    // Nothing queued is left; scheduling again changes nothing.
    let (_, b) = sched("{}");
    assert_eq!(json(&b)["jobs"], serde_json::json!([]));
    // A job with unknown speeds goes to the emptier GPU, which profiles its mix (b has no
    // command, so the agent cannot profile that mix: the job stays queued, with the reason).
    let x = serde_json::json!({"id": "x", "command": "true"});
    assert_eq!(
        req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(&x.to_string())).0,
        201
    );
    let (_, b) = sched("{}");
    let v = json(&b);
    assert!(
        v["jobs"][0]["queued"]
            .as_str()
            .unwrap()
            .contains("no `command`"),
        "{b}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_ids_names_double_placement_and_huge_lists_are_refused() {
    // Issue 11, items 1-3 and 5: each case was accepted (or stalled the controller) before.
    let dir = tmpdir("hostile");
    let s = start(&dir);
    let post = |path: &str, body: &str| req(&s, "POST", path, Some(TOKEN), Some(body));
    let put = |path: &str, body: &str| req(&s, "PUT", path, Some(TOKEN), Some(body));
    // Job ids that name the agent's own folders, or read like flags.
    for id in [".", "..", "...", ".hidden", "-x", "a/b", "a b", ""] {
        let (c, b) = post(
            "/v1/jobs",
            &format!(r#"{{"id":"{id}","workload":"bert_train8"}}"#),
        );
        assert_eq!(c, 400, "job id `{id}`: {b}");
        assert!(b.contains("id"), "{b}");
    }
    // A type error names the field, nested ones with their path.
    let (c, b) = post(
        "/v1/jobs",
        r#"{"id":"t","workload":"bert_train8","remaining_s":"soon"}"#,
    );
    assert!(c == 400 && b.contains("remaining_s"), "{c} {b}");
    let (c, b) = post(
        "/v1/nodes",
        r#"{"name":"n1","gpus":[{"index":-1,"model":"a100"}]}"#,
    );
    assert!(c == 400 && b.contains("gpus[0].index"), "{c} {b}");
    // Node names and GPU lists.
    let gpus = r#"[{"index":0,"model":"a100-40gb"},{"index":1,"model":"a100-40gb"}]"#;
    let long = "n".repeat(5000);
    for name in ["../etc", "a/b", long.as_str(), "a\\nb", "."] {
        let (c, b) = post(
            "/v1/nodes",
            &format!(r#"{{"name":"{name}","gpus":{gpus}}}"#),
        );
        assert_eq!(c, 400, "node name {}: {b}", &name[..name.len().min(20)]);
        assert!(b.contains("name"), "{b}");
    }
    let (c, b) = post(
        "/v1/nodes",
        r#"{"name":"n1","gpus":[{"index":0,"model":"a100-40gb"},{"index":0,"model":"a100-40gb"}]}"#,
    );
    assert!(c == 400 && b.contains("given twice"), "{c} {b}");
    let many: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"index":{i},"model":"a100-40gb"}}"#))
        .collect();
    let (c, b) = post(
        "/v1/nodes",
        &format!(r#"{{"name":"n1","gpus":[{}]}}"#, many.join(",")),
    );
    assert!(c == 400 && b.contains("at most 64"), "{c} {b}");
    let (_, nodes) = req(&s, "GET", "/v1/nodes", Some(TOKEN), None);
    assert_eq!(nodes.trim(), "[]", "nothing stored");

    // A job placed by a plan cannot be placed on another GPU through PUT desired.
    assert_eq!(
        post("/v1/nodes", &format!(r#"{{"name":"n1","gpus":{gpus}}}"#)).0,
        201
    );
    assert_eq!(
        post("/v1/jobs", r#"{"id":"a","workload":"bert_train8"}"#).0,
        201
    );
    assert_eq!(
        post("/v1/jobs", r#"{"id":"b","workload":"resnet_train64"}"#).0,
        201
    );
    let (c, b) = post("/v1/nodes/n1/gpus/0/plan", r#"{"jobs":["a"]}"#);
    assert_eq!(c, 201, "{b}");
    let (c, b) = put(
        "/v1/nodes/n1/gpus/1/desired",
        r#"{"layout":"7g.40gb@0","jobs":[{"id":"a","instance":"7g.40gb@0"}]}"#,
    );
    assert_eq!(c, 409, "placed twice: {b}");
    assert!(b.contains("runs on GPU 0"), "{b}");
    // A job assigned through PUT desired is running, as after a plan; one that loses its
    // instance is queued again.
    let (c, b) = put(
        "/v1/nodes/n1/gpus/1/desired",
        r#"{"layout":"3g.20gb@0","jobs":[{"id":"b","instance":"3g.20gb@0"}]}"#,
    );
    assert_eq!(c, 200, "{b}");
    let state = |id: &str| {
        job(&s, id)["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(state("b"), "running");
    let (c, b) = put("/v1/nodes/n1/gpus/1/desired", r#"{"layout":"4g.20gb@0"}"#);
    assert_eq!(c, 200, "{b}");
    assert_eq!(state("b"), "queued");
    // An empty layout string does not wipe a GPU.
    let (c, b) = put("/v1/nodes/n1/gpus/0/desired", r#"{"layout":""}"#);
    assert!(c == 400 && b.contains("empty"), "{c} {b}");

    // A report naming a job or an instance the controller does not know is refused.
    let (c, b) = post(
        "/v1/nodes/n1/report",
        r#"{"gpus":[{"index":0,"layout":"7g.40gb@0","jobs":[{"id":"ghost","instance":"7g.40gb@0","state":"running"}]}]}"#,
    );
    assert!(c == 400 && b.contains("ghost"), "{c} {b}");
    let (c, b) = post(
        "/v1/nodes/n1/report",
        r#"{"gpus":[{"index":0,"layout":"7g.40gb@0","jobs":[{"id":"a","instance":"3g.20gb@4","state":"running"}]}]}"#,
    );
    assert!(c == 400 && b.contains("3g.20gb@4"), "{c} {b}");

    // Re-registering GPU 0 as another model drops its old plan (no lasting 500s) and queues
    // its job again.
    let (c, b) = post(
        "/v1/nodes",
        r#"{"name":"n1","gpus":[{"index":0,"model":"h100-80gb"},{"index":1,"model":"a100-40gb"}]}"#,
    );
    assert!(c == 201 && b.contains("reset_gpus"), "{c} {b}");
    assert_eq!(state("a"), "queued");
    let (c, b) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
    assert_eq!(c, 200, "{b}");
    let (c, b) = post("/v1/nodes/n1/gpus/0/plan", r#"{"jobs":["a"]}"#);
    assert_eq!(c, 201, "plans on the new model: {b}");

    // A plan body of 110,000 ids is refused at once, in linear time.
    let ids: Vec<String> = (0..110_000).map(|i| format!("\"j{i}\"")).collect();
    let t = std::time::Instant::now();
    let (c, b) = post(
        "/v1/nodes/n1/gpus/1/plan",
        &format!(r#"{{"jobs":[{}]}}"#, ids.join(",")),
    );
    assert!(
        c == 400 && b.contains("at most"),
        "{c} {}",
        &b[..b.len().min(200)]
    );
    eprintln!("110k-id plan refused in {:?}", t.elapsed());
}

#[test]
fn retrain_samples_metrics_and_shutdown_hygiene() {
    // Issue 11, items 4 and 6: each case below was accepted (or misbehaved) before.
    let dir = tmpdir("hygiene");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let s = start_with(&dir, &["--models", models.to_str().unwrap()]);
    // With no model folder, the built-in model is listed as `default`, active.
    let (_, b) = req(&s, "GET", "/v1/models", Some(TOKEN), None);
    let v = json(&b);
    assert_eq!(v[0]["name"], "default", "{b}");
    assert_eq!(v[0]["built_in"], true, "{b}");
    assert_eq!(v[0]["active"], true, "{b}");
    assert_eq!(v[0]["arch"], "mlp", "{b}");
    // Retraining may not overwrite the shipped model, nor run for 1e12 epochs.
    for (body, want) in [
        (r#"{"name":"default","arch":"linear"}"#, "shipped model"),
        (r#"{"name":"x","epochs":1000000000000}"#, "epochs"),
    ] {
        let (c, b) = req(&s, "POST", "/v1/models/retrain", Some(TOKEN), Some(body));
        assert!(c == 400 && b.contains(want), "{body}: {c} {b}");
    }
    // A sample that retraining could not read is refused, not stored.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = miso::predictor::data::load(&repo.join("../shared/datasets/miso-a100")).unwrap();
    let mut rec = serde_json::to_value(&ds.to_records()[0]).unwrap();
    rec["slots"][0]["mig"] = serde_json::json!({"5g": 0.5});
    let (c, b) = req(
        &s,
        "POST",
        "/v1/samples",
        Some(TOKEN),
        Some(&rec.to_string()),
    );
    assert!(c == 400 && b.contains("unknown kind"), "{c} {b}");
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert_eq!(json(&st)["samples"], 0, "nothing stored");
    // Metrics need the token like every other read.
    assert_eq!(req(&s, "GET", "/metrics", None, None).0, 401);
    assert_eq!(req(&s, "GET", "/metrics", Some(TOKEN), None).0, 200);
    // Errors never show the server's folders.
    let (c, b) = req(&s, "POST", "/v1/models/nope/activate", Some(TOKEN), None);
    assert_eq!(c, 404);
    assert!(
        !b.contains(&std::env::current_dir().unwrap().display().to_string()) && !b.contains("/tmp"),
        "{b}"
    );
    // SIGTERM is a graceful stop: the controller exits 0.
    let mut s = s;
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGTERM);
    }
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed().as_secs() < 10,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    // A token file other users can read gets a warning.
    let tf = dir.join("open-token");
    std::fs::write(&tf, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("other.db"))
        .arg("--token-file")
        .arg(&tf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The access log: a line per request, never the token; replies counted by status.
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .unwrap()
        .to_string();
    let other = Server {
        child: Command::new("true").spawn().unwrap(),
        addr,
    };
    assert_eq!(req(&other, "GET", "/v1/jobs", Some(TOKEN), None).0, 200);
    assert_eq!(req(&other, "GET", "/v1/jobs?token=x", None, None).0, 401);
    let (_, m) = req(&other, "GET", "/metrics", Some(TOKEN), None);
    assert!(
        m.contains("miso_requests_total{route=\"/v1/jobs\",status=\"401\"} 1"),
        "{m}"
    );
    let _ = c.kill();
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be read by other users"), "{err}");
    assert!(
        err.contains("access method=GET path=/v1/jobs route=/v1/jobs status=200"),
        "{err}"
    );
    assert!(
        err.contains("access method=GET path=/v1/jobs route=/v1/jobs status=401"),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !err.contains("token=x"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_profiling_phase_whose_job_never_reports_fails_it_and_plans_the_rest() {
    // Issue 11, item 7: the GPU stayed "profiling" with no error in `miso status`.
    let dir = tmpdir("silent");
    let s = start(&dir);
    let mut a = agent(&s, &dir, &["--interval-ms", "200"]);
    wait_for("the agent registers", || {
        req(&s, "GET", "/v1/nodes", Some(TOKEN), None)
            .1
            .contains("n1")
    });
    let post = |path: &str, body: &str| req(&s, "POST", path, Some(TOKEN), Some(body));
    // x never reports an iteration; y is a known workload.
    assert_eq!(
        post("/v1/jobs", r#"{"id":"x","command":"sleep 600"}"#).0,
        201
    );
    assert_eq!(
        post(
            "/v1/jobs",
            r#"{"id":"y","workload":"resnet_train64","command":"sleep 600"}"#
        )
        .0,
        201
    );
    let (c, b) = post(
        "/v1/nodes/n1/gpus/0/plan",
        r#"{"jobs":["x","y"],"profile_seconds":1}"#,
    );
    assert_eq!(c, 202, "{b}");
    let job = |id: &str| job(&s, id);
    wait_for("x fails with the reason", || job("x")["state"] == "failed");
    let why = job("x")["error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("reported no iteration"), "{why}");
    // The rest of the mix is planned and runs: y on its own instance, no profiling phase left.
    wait_for("y runs on its instance", || {
        reported_jobs(&s).get("y").is_some_and(|j| j.3 == "running")
    });
    let (_, d) = req(&s, "GET", "/v1/nodes/n1/desired", Some(TOKEN), None);
    let d = json(&d);
    assert!(d[0]["profile"].is_null(), "{d}");
    assert_eq!(d[0]["jobs"][0]["id"], "y", "{d}");
    // `miso status` shows why x failed.
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args([
            "status",
            "--controller",
            &format!("http://{}", s.addr),
            "--token-file",
        ])
        .arg(dir.join("token"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reported no iteration"), "{text}");
    kill_jobs(&s);
    let _ = a.kill();
    let _ = a.wait();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn half_open_and_idle_connections_are_closed_and_never_stall_others() {
    // Issue 11, item 6: connections that never finish their headers were held forever.
    let dir = tmpdir("idle");
    let s = start_with(&dir, &["--header-timeout-s", "1"]);
    let mut held = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        if i % 2 == 1 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        held.push(c);
    }
    // Meanwhile a normal client is served.
    assert_eq!(req(&s, "GET", "/healthz", None, None).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // The server closed every one of them: reads see the end of the stream (or a reset).
    for (i, c) in held.iter_mut().enumerate() {
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    n == 0 || text.contains("408"),
                    "connection {i} still open: {text}"
                );
            }
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut,
                "connection {i} still open"
            ),
        }
    }
    assert_eq!(req(&s, "GET", "/healthz", None, None).0, 200);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn open_reads_open_reads_only() {
    // With --open-reads, reads (GET, /v1/recommend, /v1/predict) need no token; writes still do.
    let dir = tmpdir("openreads");
    let s = start_with(&dir, &["--open-reads"]);
    assert_eq!(req(&s, "GET", "/v1/jobs", None, None).0, 200);
    assert_eq!(req(&s, "GET", "/metrics", None, None).0, 200);
    let rec = r#"{"gpu":"a100-40gb","jobs":[{"id":"a","workload":"bert_train8"}]}"#;
    assert_eq!(req(&s, "POST", "/v1/recommend", None, Some(rec)).0, 200);
    let job = r#"{"id":"a","workload":"bert_train8"}"#;
    assert_eq!(req(&s, "POST", "/v1/jobs", None, Some(job)).0, 401);
    assert_eq!(req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(job)).0, 201);
    assert_eq!(
        req(&s, "POST", "/v1/jobs/a/finish", None, Some("{}")).0,
        401
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A throwaway CA, and a server certificate it signed for 127.0.0.1 and localhost, as PEM files
/// in `dir`: (ca.pem, cert.pem, key.pem).
fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let (a, c, k) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&a, ca_cert.pem()).unwrap();
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (a, c, k)
}

/// `miso status` against `url` with extra flags: (exit success, stdout + stderr).
fn status(dir: &std::path::Path, url: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(["status", "--controller", url, "--token-file"])
        .arg(dir.join("token"))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tls_serves_https_and_clients_verify_the_certificate() {
    // Issue 11, item 6: the agent's hand-written client sent the token over plain TCP.
    let dir = tmpdir("tls");
    let (ca, cert, key) = tls_files(&dir);
    let mut child = {
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        Command::new(env!("CARGO_BIN_EXE_miso"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.join("miso.db"))
            .arg("--token-file")
            .arg(dir.join("token"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server {
        child,
        addr: String::new(),
    };
    assert!(line.contains("https://"), "{line}");
    let port = line
        .rsplit(':')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let https = format!("https://127.0.0.1:{port}");
    let ca_s = ca.to_str().unwrap();
    // Verified against the CA: works, by address and by name.
    let (ok, out) = status(&dir, &https, &["--ca-file", ca_s]);
    assert!(ok, "{out}");
    let (ok, out) = status(
        &dir,
        &format!("https://localhost:{port}"),
        &["--ca-file", ca_s],
    );
    assert!(ok, "{out}");
    // Not verified (the public roots do not know our CA): refused, with the flag to pass.
    let (ok, out) = status(&dir, &https, &[]);
    assert!(!ok && out.contains("--ca-file"), "{out}");
    // A CA file that is not PEM: the flag and the file are named.
    let (ok, out) = status(
        &dir,
        &https,
        &["--ca-file", dir.join("token").to_str().unwrap()],
    );
    assert!(
        !ok && out.contains("--ca-file") && out.contains("no PEM certificate"),
        "{out}"
    );
    // Plain HTTP to the TLS port: an error, not a hang.
    let (ok, out) = status(&dir, &format!("http://127.0.0.1:{port}"), &[]);
    assert!(!ok, "{out}");
    // A raw TCP client that never starts the handshake does not hold the server.
    let _idle = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let (ok, out) = status(&dir, &https, &["--ca-file", ca_s]);
    assert!(ok, "{out}");
    // An agent registers over TLS.
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args([
            "agent",
            "--name",
            "tls1",
            "--backend",
            "simulated",
            "--once",
            "--controller",
        ])
        .arg(&https)
        .arg("--ca-file")
        .arg(&ca)
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = status(&dir, &https, &["--ca-file", ca_s]);
    assert!(ok && out.contains("tls1"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plain_http_outside_loopback_is_refused_on_both_ends() {
    let dir = tmpdir("plain");
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(dir.join("miso.db"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tls-cert"), "{err}");
    assert!(!dir.join("miso.db").exists(), "nothing created");
    let (ok, out) = status(&dir, "http://192.0.2.1:7450", &[]);
    assert!(!ok && out.contains("--allow-plain-http"), "{out}");
    let (ok, out) = status(&dir, "ftp://127.0.0.1:7450", &[]);
    assert!(!ok && out.contains("--controller"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_served_openapi_document_is_the_committed_one_and_every_route_in_it_answers() {
    let dir = tmpdir("openapi");
    let s = start(&dir);
    let (c, doc) = req(&s, "GET", "/openapi.json", Some(TOKEN), None);
    assert_eq!(c, 200);
    let served: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        served == committed,
        "docs/openapi.json is stale: run `miso openapi > docs/openapi.json`"
    );
    // Every path and method of the document reaches a handler: the reply is never the router's
    // own 404 or 405 (a handler may still say 404 for an unknown node or job).
    let paths = served["paths"].as_object().unwrap();
    assert!(paths.len() >= 18, "{}", paths.len());
    for (path, ops) in paths {
        let concrete = path
            .replace("{name}", "n1")
            .replace("{index}", "0")
            .replace("{id}", "j1");
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            let body = if m == "GET" { None } else { Some("{}") };
            let (c, b) = req(&s, &m, &concrete, Some(TOKEN), body);
            assert!(c != 405 && !b.contains("no route"), "{m} {path}: {c} {b}");
        }
    }
    // And the router has no route the document lacks: unknown ones get the router's 404 (JSON).
    let (c, b) = req(&s, "GET", "/v1/nope", Some(TOKEN), None);
    assert_eq!(c, 404);
    assert!(b.contains("no route GET /v1/nope"), "{b}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_error_is_json_also_those_of_the_layers() {
    let dir = tmpdir("errjson");
    let s = start(&dir);
    // A body announced larger than 1 MiB: 413 before a byte of it is read.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    write!(c, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2000000\r\n\r\n{{").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        out.contains(r#"{"error":"body: larger than 1048576 bytes"}"#),
        "{out}"
    );
    for (m, p, b, code) in [
        ("DELETE", "/v1/jobs", None, 405),
        ("GET", "/v2/anything", None, 404),
        ("POST", "/v1/jobs", Some("{"), 400),
    ] {
        let (c, body) = req(&s, m, p, Some(TOKEN), b);
        assert_eq!(c, code, "{m} {p}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{m} {p}: {e}: {body}"));
        assert!(v["error"].is_string(), "{body}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_held_node_keeps_its_layout_until_released_and_bad_holds_change_nothing() {
    let dir = tmpdir("hold");
    let s = start(&dir);
    assert_eq!(
        agent(&s, &dir, &["--once"]).wait().unwrap().code(),
        Some(0),
        "registers"
    );
    let hold = |body: &str| req(&s, "PUT", "/v1/nodes/n1/hold", Some(TOKEN), Some(body));
    let (code, b) = hold(r#"{"hold": true, "reason": "maintenance"}"#);
    assert_eq!(code, 200, "{b}");
    assert_eq!(json(&b)["reason"], "maintenance");
    let (_, nodes) = req(&s, "GET", "/v1/nodes", Some(TOKEN), None);
    assert_eq!(json(&nodes)[0]["hold"], "maintenance");
    // Planned while held: the desired state changes, the GPU does not.
    let put = req(
        &s,
        "PUT",
        "/v1/nodes/n1/gpus/0/desired",
        Some(TOKEN),
        Some(r#"{"layout":"4g.20gb@0,3g.20gb@4"}"#),
    );
    assert_eq!(put.0, 200, "{}", put.1);
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    // The simulated GPU's state file is written on the first change only.
    let gpus: Vec<String> = std::fs::read_to_string(dir.join("gpus.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|_| vec!["empty".into()]);
    assert_eq!(gpus[0], "empty", "a held node's agent changes nothing");
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert_eq!(json(&st)["gpus"][0]["report"]["held"], true, "{st}");
    // Bad holds are refused by field and change nothing.
    for (body, code) in [
        (r#"{"hold": "yes"}"#, 400),
        (r#"{"hold": true, "reason": 5}"#, 400),
        (r#"{"hold": true, "extra": 1}"#, 400),
        (
            &format!(r#"{{"hold": true, "reason": "{}"}}"#, "x".repeat(201)) as &str,
            400,
        ),
        (r#"{"hold": true, "reason": "a\u0007b"}"#, 400),
        ("not json", 400),
    ] {
        let (c, b) = hold(body);
        assert_eq!(c, code, "{body}: {b}");
        assert!(json(&b)["error"].is_string(), "{b}");
    }
    let (c, _) = req(
        &s,
        "PUT",
        "/v1/nodes/n9/hold",
        Some(TOKEN),
        Some(r#"{"hold": true}"#),
    );
    assert_eq!(c, 404, "no such node");
    let (c, _) = req(
        &s,
        "PUT",
        "/v1/nodes/n1/hold",
        None,
        Some(r#"{"hold": false}"#),
    );
    assert_eq!(c, 401, "a write needs the token");
    let (_, nodes) = req(&s, "GET", "/v1/nodes", Some(TOKEN), None);
    assert_eq!(json(&nodes)[0]["hold"], "maintenance", "still held");
    // Released: the agent applies the layout.
    let (code, b) = hold(r#"{"hold": false}"#);
    assert_eq!(code, 200, "{b}");
    assert_eq!(json(&b)["hold"], false);
    assert_eq!(agent(&s, &dir, &["--once"]).wait().unwrap().code(), Some(0));
    let gpus: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gpus.json")).unwrap()).unwrap();
    assert_eq!(gpus[0], "4g.20gb@0,3g.20gb@4");
    // Re-registering keeps the hold flag as it is (released here).
    let (_, nodes) = req(&s, "GET", "/v1/nodes", Some(TOKEN), None);
    assert!(json(&nodes)[0].get("hold").is_none(), "{nodes}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn observations_of_jobs_on_their_instances_teach_retraining() {
    let dir = tmpdir("observe");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let s = start_with(&dir, &["--models", models.to_str().unwrap()]);
    for j in [
        r#"{"id":"p1"}"#,
        r#"{"id":"p2"}"#,
        r#"{"id":"k","workload":"bert_train8"}"#,
    ] {
        let (c, b) = req(&s, "POST", "/v1/jobs", Some(TOKEN), Some(j));
        assert_eq!(c, 201, "{j}: {b}");
    }
    // Twelve measured mixes; the first profiled p1 (a site's own workload) and p2.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = miso::predictor::data::load(&repo.join("../shared/datasets/miso-a100")).unwrap();
    let recs = ds.to_records();
    for (i, r) in recs.iter().step_by(5).take(12).enumerate() {
        let mut v = serde_json::to_value(r).unwrap();
        if i == 0 {
            v["slots"][0]["label"] = serde_json::json!("sitejob_train1");
            v["slots"][0].as_object_mut().unwrap().remove("mig");
            let n = v["slots"].as_array().unwrap().len();
            let mut jobs = vec![serde_json::Value::Null; n];
            jobs[0] = serde_json::json!("p1");
            jobs[1] = serde_json::json!("p2");
            v["jobs"] = serde_json::Value::Array(jobs);
        }
        let (c, b) = req(&s, "POST", "/v1/samples", Some(TOKEN), Some(&v.to_string()));
        assert_eq!(c, 201, "{b}");
    }
    // What p1 showed on two instance kinds.
    let post = |id: &str, body: &str| {
        req(
            &s,
            "POST",
            &format!("/v1/jobs/{id}/observations"),
            Some(TOKEN),
            Some(body),
        )
    };
    let (c, b) = post(
        "p1",
        r#"{"profile":"3g.20gb","iter_s":0.21,"iterations":50}"#,
    );
    assert_eq!(c, 201, "{b}");
    let v = json(&b);
    assert_eq!(v["label"], "sitejob_train1");
    assert_eq!(v["kind"], "3g");
    assert_eq!(post("p1", r#"{"profile":"7g","iter_s":0.1}"#).0, 201);
    // Wrong input is refused, naming the field, and stores nothing.
    for (id, body, code, want) in [
        (
            "p1",
            r#"{"profile":"9g.99gb","iter_s":0.1}"#,
            400,
            "profile",
        ),
        (
            "p1",
            r#"{"profile":"../../etc","iter_s":0.1}"#,
            400,
            "profile",
        ),
        ("p1", r#"{"profile":"3g","iter_s":-1}"#, 400, "iter_s"),
        ("p1", r#"{"profile":"3g","iter_s":"fast"}"#, 400, "iter_s"),
        (
            "p1",
            r#"{"profile":"3g","iter_s":0.1,"speed":2}"#,
            400,
            "speed",
        ),
        ("p1", "[]", 400, ""),
        ("nobody", r#"{"profile":"3g","iter_s":0.1}"#, 404, "nobody"),
        (
            "k",
            r#"{"profile":"3g","iter_s":0.1}"#,
            409,
            "never profiled",
        ),
    ] {
        let (c, b) = post(id, body);
        assert!(c == code && b.contains(want), "{id} {body}: {c} {b}");
    }
    assert_eq!(
        req(
            &s,
            "POST",
            "/v1/jobs/p1/observations",
            None,
            Some(r#"{"profile":"3g","iter_s":0.1}"#)
        )
        .0,
        401
    );
    let (_, st) = req(&s, "GET", "/v1/state", Some(TOKEN), None);
    assert_eq!(json(&st)["observations"], 2, "{st}");
    // Retraining learns the site's workload from them.
    let (c, b) = req(
        &s,
        "POST",
        "/v1/models/retrain",
        Some(TOKEN),
        Some(r#"{"name":"learned","arch":"linear"}"#),
    );
    assert_eq!(c, 201, "{b}");
    let v = json(&b);
    assert_eq!(v["observations"], 2, "{b}");
    assert_eq!(v["samples"], 12, "{b}");
    // The planner's speed estimate is a flag of the controller; a wrong one is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args(["serve", "--estimate", "best", "--insecure-no-auth"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--estimate"));
    std::fs::create_dir_all(dir.join("e")).unwrap();
    let e = start_with(&dir.join("e"), &["--estimate", "expected"]);
    assert_eq!(req(&e, "GET", "/v1/jobs", Some(TOKEN), None).0, 200);
    std::fs::remove_dir_all(&dir).ok();
}
