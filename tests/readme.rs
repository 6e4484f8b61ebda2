//! Every shell block of README.md runs as written: each ```sh block not marked
//! `<!-- not run: REASON -->` on the line before it runs under `bash -euo pipefail` with the
//! built `miso` first on PATH, in a scratch folder laid out like the repository (examples/,
//! scripts/, a copy of models/, and ../shared beside it), and must exit 0. Background processes
//! a block starts are killed with its process group. A block marked `<!-- root: REASON -->`
//! runs only as root (skipped with a note otherwise, unless MISO_REQUIRE_SLURM=1), and a Slurm
//! cluster it left under `slurm/` is stopped after it. The test prints each block it ran.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Block {
    line: usize,
    text: String,
    skip: Option<String>,
    root: bool,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```") {
            let lang = lines[i]
                .trim_start()
                .trim_start_matches('`')
                .trim()
                .to_string();
            let start = i;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push(lines[i]);
                i += 1;
            }
            if lang == "sh" {
                let before = start.checked_sub(1).map(|p| lines[p].trim());
                let skip = before
                    .and_then(|l| l.strip_prefix("<!-- not run:"))
                    .map(|r| r.trim_end_matches("-->").trim().to_string());
                let root = before.is_some_and(|l| l.starts_with("<!-- root:"));
                out.push(Block {
                    line: start + 1,
                    text: body.join("\n"),
                    skip,
                    root,
                });
            }
        }
        i += 1;
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn every_runnable_readme_block_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let all = blocks(&readme);
    assert!(all.len() >= 6, "README has its shell blocks");
    for b in &all {
        if let Some(r) = &b.skip {
            assert!(
                !r.is_empty(),
                "README.md:{}: a skipped block says why",
                b.line
            );
        }
    }

    let scratch = std::env::temp_dir().join(format!("miso-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let repo = scratch.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::symlink(root.join("examples"), repo.join("examples")).unwrap();
    std::os::unix::fs::symlink(root.join("docs"), repo.join("docs")).unwrap();
    std::os::unix::fs::symlink(root.join("scripts"), repo.join("scripts")).unwrap();
    copy_dir(&root.join("models"), &repo.join("models"));
    let shared = root.join("../shared");
    if shared.exists() {
        std::os::unix::fs::symlink(shared.canonicalize().unwrap(), scratch.join("shared")).unwrap();
    }
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_miso"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut ran = Vec::new();
    for b in &all {
        let first = b.text.lines().next().unwrap_or_default();
        if let Some(reason) = &b.skip {
            eprintln!("README.md:{:<4} not run ({reason}): {first}", b.line);
            continue;
        }
        // SAFETY: geteuid has no preconditions.
        if b.root && unsafe { libc::geteuid() } != 0 {
            let required = std::env::var("MISO_REQUIRE_SLURM").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "README.md:{}: MISO_REQUIRE_SLURM=1 but not root",
                b.line
            );
            eprintln!("README.md:{:<4} not run (needs root): {first}", b.line);
            continue;
        }
        let t = Instant::now();
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &b.text])
            .current_dir(&repo)
            .env("PATH", &path)
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // Read output on threads so a chatty block never blocks on a full pipe.
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let out_t = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut so, &mut s).ok();
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut se, &mut s).ok();
            s
        });
        let limit = Duration::from_secs(600);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The block's background processes (a controller, an agent, its jobs) go with it.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
        if repo.join("slurm/run").exists() {
            // A Slurm cluster the block started (its daemons leave the process group).
            let _ = Command::new(repo.join("scripts/slurm-cluster"))
                .args(["down", "--dir"])
                .arg(repo.join("slurm"))
                .env("PATH", &path)
                .output();
        }
        let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
        let ok = status.is_some_and(|s| s.success());
        assert!(
            ok,
            "README.md:{} failed ({}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            b.line,
            status.map_or("timed out".to_string(), |s| s.to_string()),
            b.text
        );
        eprintln!(
            "README.md:{:<4} ran in {:>5.1} s: {first}",
            b.line,
            t.elapsed().as_secs_f64()
        );
        ran.push(b.line);
    }
    assert!(ran.len() >= 5, "most blocks run: {ran:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}
