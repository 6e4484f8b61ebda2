//! The simulation report as a reader sees it: written by `miso simulate --report`, opened in
//! headless Chromium, every chart loads, the page logs no error, and each chart carries its axis
//! titles and legend. Skipped with a notice where Chromium is absent, unless
//! MISO_REQUIRE_CHROMIUM=1 (set by .ci/run, which installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn headless(bin: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

#[test]
fn report_renders_in_headless_chromium_with_every_chart() {
    let dir = std::env::temp_dir().join(format!("miso-report-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_miso"))
        .args([
            "simulate",
            "--policy",
            "nopart,static,miso,ours",
            "--report",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The charts themselves: axis titles with units, a legend naming every policy, a key.
    let cdf = std::fs::read_to_string(dir.join("jct_cdf.svg")).unwrap();
    for want in [
        "job completion time (s, log scale)",
        "share of jobs finished",
        "nopart (avg",
        "ours (avg",
    ] {
        assert!(cdf.contains(want), "jct_cdf.svg lacks `{want}`");
    }
    let stp = std::fs::read_to_string(dir.join("stp.svg")).unwrap();
    for want in [
        "time since the experiment start (s)",
        "STP (sum of job speeds)",
        "miso (mean",
    ] {
        assert!(stp.contains(want), "stp.svg lacks `{want}`");
    }
    let occ = std::fs::read_to_string(dir.join("occupancy_ours.svg")).unwrap();
    for want in [
        "jobs on GPU",
        "idle",
        "time since the experiment start (s)",
        "GPU",
    ] {
        assert!(occ.contains(want), "occupancy_ours.svg lacks `{want}`");
    }
    // One shared time axis: every occupancy chart ends at the same tick labels.
    let ticks = |s: &str| -> Vec<String> {
        s.split("<text")
            .filter_map(|t| t.split('>').nth(1))
            .map(|t| t.trim().to_string())
            .filter(|t| t.parse::<f64>().is_ok())
            .collect()
    };
    let occ_nopart = std::fs::read_to_string(dir.join("occupancy_nopart.svg")).unwrap();
    assert_eq!(ticks(&occ), ticks(&occ_nopart), "same time axis");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    for want in [
        "\"seed\": 1",
        "\"static_layout\": \"2g.10gb@0,2g.10gb@2,3g.20gb@4\"",
        "lower is better",
    ] {
        assert!(html.contains(want), "index.html lacks `{want}`");
    }

    let Some(bin) = chromium() else {
        assert!(
            std::env::var("MISO_REQUIRE_CHROMIUM").is_err(),
            "MISO_REQUIRE_CHROMIUM is set but no chromium is on PATH"
        );
        eprintln!("chromium not found: skipping the headless rendering (install it to run)");
        return;
    };
    // A checker page loads the report in a frame and writes into its title how many images
    // decoded and how many did not.
    std::fs::write(
        dir.join("check.html"),
        r#"<!doctype html><title>pending</title><iframe id=f src="index.html" width=1200 height=3000></iframe>
<script>
document.getElementById('f').addEventListener('load', () => {
  const imgs = [...document.getElementById('f').contentDocument.images];
  Promise.all(imgs.map(i => i.decode().then(() => 1, () => 0))).then(ok => {
    const good = ok.reduce((a, b) => a + b, 0);
    document.title = 'images ' + good + ' of ' + imgs.length;
  });
});
</script>"#,
    )
    .unwrap();
    let url = format!("file://{}", dir.join("check.html").display());
    let out = headless(&bin, &["--virtual-time-budget=10000", "--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_default()
        .to_string();
    // 2 charts + one occupancy chart per policy.
    assert_eq!(
        title,
        "images 6 of 6",
        "chromium says: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    for bad in ["Uncaught", "Failed to load", "ERR_FILE_NOT_FOUND"] {
        assert!(!log.contains(bad), "chromium logged `{bad}`: {log}");
    }
    // And a screenshot of the whole page is a real picture, not an empty page.
    let png = dir.join("report.png");
    let url = format!("file://{}", dir.join("index.html").display());
    let shot = format!("--screenshot={}", png.display());
    headless(
        &bin,
        &["--hide-scrollbars", "--window-size=1200,2600", &shot, &url],
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        bytes.len() > 50_000,
        "a page with charts, not a blank one: {} bytes",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
