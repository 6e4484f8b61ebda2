//! The simulation report: an HTML page with the metrics table, a JCT CDF of every policy and
//! per-GPU occupancy over time per policy, drawn as plain SVG (no plotting dependency).

use std::fmt::Write as _;
use std::path::Path;

use super::Outcome;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// JCT CDF of each outcome (log-scaled time axis).
pub fn jct_cdf_svg(outcomes: &[Outcome]) -> String {
    let (w, h, ml, mb) = (640.0, 360.0, 60.0, 40.0);
    let all: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.jct_s.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        .log10()
        .floor();
    let hi = all
        .iter()
        .cloned()
        .fold(1.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |v: f64| ml + (v.max(1.0).log10() - lo) / (hi - lo) * (w - ml - 20.0);
    let y = |p: f64| h - mb - p * (h - mb - 20.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{}" y="14" text-anchor="middle">Job completion time CDF</text>"#,
        w / 2.0
    );
    for e in (lo as i32)..=(hi as i32) {
        let xv = x(10f64.powi(e));
        let _ = write!(
            s,
            r##"<line x1="{xv}" y1="20" x2="{xv}" y2="{}" stroke="#ddd"/><text x="{xv}" y="{}" text-anchor="middle">1e{e} s</text>"##,
            h - mb,
            h - mb + 16.0
        );
    }
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{p}</text>"#,
            ml - 6.0,
            y(p) + 4.0
        );
    }
    for (k, o) in outcomes.iter().enumerate() {
        let mut v = o.jct_s.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{:.1},{:.1}", x(*t), y((i + 1) as f64 / n)))
            .collect();
        let c = COLORS[k % COLORS.len()];
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
            ml + 10.0,
            36.0 + 14.0 * k as f64,
            esc(&o.policy)
        );
    }
    s.push_str("</svg>");
    s
}

/// Jobs per GPU over time, one row per GPU (darker = more jobs).
pub fn occupancy_svg(o: &Outcome, gpus: usize) -> String {
    let rows = gpus.min(64);
    let (w, row_h, ml) = (640.0, 8.0f64.max(240.0 / rows as f64).min(24.0), 60.0);
    let h = 40.0 + rows as f64 * row_h;
    let end = o.metrics.makespan_s.max(1.0);
    let x = |t: f64| ml + t / end * (w - ml - 10.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{}" y="14" text-anchor="middle">{}: jobs per GPU over {:.0} s{}</text>"#,
        w / 2.0,
        esc(&o.policy),
        end,
        if gpus > rows {
            format!(" (first {rows} of {gpus} GPUs)")
        } else {
            String::new()
        }
    );
    let mut state: Vec<(f64, usize)> = vec![(0.0, 0); rows];
    let draw = |s: &mut String, g: usize, from: f64, to: f64, n: usize| {
        if n == 0 || to <= from {
            return;
        }
        let a = (0.15 + 0.85 * n as f64 / 7.0).min(1.0);
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="rgba(31,119,180,{a:.2})"/>"#,
            x(from),
            24.0 + g as f64 * row_h,
            (x(to) - x(from)).max(0.3),
            row_h - 1.0
        );
    };
    for &(t, g, n) in &o.occupancy {
        if g >= rows {
            continue;
        }
        let (t0, n0) = state[g];
        draw(&mut s, g, t0, t, n0);
        state[g] = (t, n);
    }
    for (g, &(t0, n0)) in state.iter().enumerate() {
        draw(&mut s, g, t0, end, n0);
        if rows <= 16 || g % 8 == 0 {
            let _ = write!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">GPU {g}</text>"#,
                ml - 4.0,
                24.0 + (g as f64 + 0.8) * row_h
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// System throughput over time (summed speed of running jobs, 1 = one job at whole-GPU speed)
/// of every outcome on one shared time axis, with a legend.
pub fn stp_svg(outcomes: &[Outcome]) -> String {
    let (w, h, ml, mb, mr) = (720.0, 360.0, 60.0, 46.0, 130.0);
    let end = outcomes
        .iter()
        .map(|o| o.metrics.makespan_s)
        .fold(1.0, f64::max);
    let top = outcomes
        .iter()
        .flat_map(|o| o.stp.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.05;
    let x = |t: f64| ml + t / end * (w - ml - mr);
    let y = |v: f64| h - mb - v / top * (h - mb - 24.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="{w}" height="{h}" fill="white"/><text x="{}" y="14" text-anchor="middle">System throughput over time (higher is better)</text>"#,
        (w - mr) / 2.0
    );
    for i in 0..=5 {
        let t = end * i as f64 / 5.0;
        let v = top * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="24" x2="{0:.1}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3:.0}</text><text x="{4}" y="{5:.1}" text-anchor="end">{6:.1}</text>"##,
            x(t),
            h - mb,
            h - mb + 16.0,
            t,
            ml - 6.0,
            y(v) + 4.0,
            v
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time since the experiment start (s)</text><text transform="translate(16,{}) rotate(-90)" text-anchor="middle">STP (sum of job speeds)</text>"#,
        (w - mr + ml) / 2.0,
        h - 8.0,
        (h - mb) / 2.0
    );
    for (k, o) in outcomes.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let pts: Vec<String> = o
            .stp
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/><line x1="{2}" y1="{3}" x2="{4}" y2="{3}" stroke="{c}" stroke-width="3"/><text x="{5}" y="{6}">{1}</text>"#,
            pts.join(" "),
            esc(&o.policy),
            w - mr + 10.0,
            30.0 + 16.0 * k as f64,
            w - mr + 30.0,
            w - mr + 36.0,
            34.0 + 16.0 * k as f64
        );
    }
    s.push_str("</svg>");
    s
}

/// Write `index.html`, `jct_cdf.svg`, `stp.svg` and `occupancy_<policy>.svg` into `dir`.
pub fn write(
    dir: &Path,
    title: &str,
    params: &serde_json::Value,
    details: &[String],
    outcomes: &[Outcome],
    gpus: usize,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("jct_cdf.svg"), jct_cdf_svg(outcomes))?;
    std::fs::write(dir.join("stp.svg"), stp_svg(outcomes))?;
    let mut html = format!("<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><table border=1 cellpadding=4><tr><th>policy<th>avg JCT s<th>median<th>p95<th>avg JRT s<th>avg queue s<th>makespan s<th>jobs/h<th>mean STP<th>GPU util<th>reconfigs<th>restarts/job<th>profiling s/job", esc(title));
    for o in outcomes {
        let m = &o.metrics;
        let _ = write!(html, "<tr><td>{}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.1}<td>{:.2}<td>{:.1}%<td>{}<td>{:.2}<td>{:.1}", esc(&o.policy), m.avg_jct_s, m.median_jct_s, m.p95_jct_s, m.avg_jrt_s, m.avg_queue_s, m.makespan_s, m.throughput_jobs_per_h, m.avg_stp, 100.0 * m.gpu_utilization, m.reconfigurations, m.restarts_per_job, m.profiling_s_per_job);
    }
    html.push_str(
        "</table><p>Times in seconds; lower is better except jobs/h, STP and utilisation.</p>",
    );
    for d in details {
        let _ = write!(html, "<p>{}</p>", esc(d));
    }
    let _ = write!(
        html,
        "<h2>Parameters</h2><pre>{}</pre><p><img src=jct_cdf.svg></p><p><img src=stp.svg></p>",
        esc(&serde_json::to_string_pretty(params).unwrap_or_default())
    );
    for o in outcomes {
        let f = format!(
            "occupancy_{}.svg",
            o.policy.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        std::fs::write(dir.join(&f), occupancy_svg(o, gpus))?;
        let _ = write!(html, "<p><img src={f}></p>");
    }
    std::fs::write(dir.join("index.html"), html)
}
