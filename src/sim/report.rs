//! The simulation report: an HTML page with the run's parameters, the metrics table, and three
//! kinds of chart drawn with plotters' SVG backend: the JCT CDF of every policy, system
//! throughput over time, and per-GPU occupancy per policy. Every chart has axis titles with
//! units and a legend or key; time charts share one time axis so policies compare at a glance.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::Outcome;

/// One colour per policy (Tableau 10), in outcome order.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn color(k: usize) -> RGBColor {
    COLORS[k % COLORS.len()]
}

/// Earlier policies draw wider, so identical curves stay visible under later ones.
fn stroke(k: usize, n: usize) -> u32 {
    (1 + 2 * n.saturating_sub(k + 1) / n.max(1)).max(1) as u32 + 1
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw the chart: {e}")
}

/// Cumulative share of jobs finished within each JCT (log-scaled seconds), one line per policy.
pub fn jct_cdf_svg(outcomes: &[Outcome]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let all = outcomes.iter().flat_map(|o| o.jct_s.iter().copied());
        let lo = all
            .clone()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let hi = all.fold(1.0, f64::max);
        let lo = if lo.is_finite() { lo.max(1.0) } else { 1.0 };
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Job completion time CDF (further left is better)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("job completion time (s, log scale)")
            .y_desc("share of jobs finished")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .draw()
            .map_err(err)?;
        for (k, o) in outcomes.iter().enumerate() {
            let mut v = o.jct_s.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len().max(1) as f64;
            let pts = v
                .iter()
                .enumerate()
                .map(|(i, t)| (t.max(lo), (i + 1) as f64 / n));
            let label = format!("{} (avg {:.0} s)", o.policy, o.metrics.avg_jct_s);
            policy_line(&mut chart, pts, k, outcomes.len(), label)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Policy `k` of `n` as a line in its colour, with its legend entry.
fn policy_line<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    pts: impl IntoIterator<Item = (X::ValueType, Y::ValueType)>,
    k: usize,
    n: usize,
    label: String,
) -> DrawResult
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    let c = color(k);
    chart
        .draw_series(LineSeries::new(pts, c.stroke_width(stroke(k, n))))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> DrawResult
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

/// The latest finish over all outcomes: the shared time axis of the time charts.
fn time_end(outcomes: &[Outcome]) -> f64 {
    outcomes
        .iter()
        .map(|o| o.metrics.makespan_s)
        .fold(1.0, f64::max)
}

/// System throughput over time (summed speed of running jobs, 1 = one job at whole-GPU speed)
/// of every outcome on one shared time axis.
pub fn stp_svg(outcomes: &[Outcome]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let end = time_end(outcomes);
        let top = outcomes
            .iter()
            .flat_map(|o| o.stp.iter().map(|p| p.1))
            .fold(1.0, f64::max)
            * 1.08;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "System throughput over time (higher is better)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since the experiment start (s)")
            .y_desc("STP (sum of job speeds)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        for (k, o) in outcomes.iter().enumerate() {
            // A step line: each interval's value held until the next point.
            let mut pts = Vec::with_capacity(2 * o.stp.len());
            let mut last = 0.0;
            for &(t, v) in &o.stp {
                pts.push((t, last));
                pts.push((t, v));
                last = v;
            }
            let label = format!("{} (mean {:.2})", o.policy, o.metrics.avg_stp);
            policy_line(&mut chart, pts, k, outcomes.len(), label)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Shade of the occupancy key for `n` jobs on a GPU (0 = idle).
fn occupancy_color(n: usize) -> RGBColor {
    const SHADES: [RGBColor; 8] = [
        RGBColor(245, 245, 245),
        RGBColor(198, 219, 239),
        RGBColor(158, 202, 225),
        RGBColor(107, 174, 214),
        RGBColor(66, 146, 198),
        RGBColor(33, 113, 181),
        RGBColor(8, 81, 156),
        RGBColor(8, 48, 107),
    ];
    SHADES[n.min(7)]
}

/// Jobs on each GPU over time for one outcome: a row per GPU (at most 64 drawn), time on the
/// shared axis `0..end`, a key of job counts.
pub fn occupancy_svg(o: &Outcome, gpus: usize, end: f64) -> Result<String, String> {
    let rows = gpus.clamp(1, 64);
    let height = (120 + 14 * rows as u32).clamp(220, 1000);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (chart_area, key_area) = root.split_horizontally(640);
        let title = if gpus > rows {
            format!(
                "{}: jobs on each GPU (first {rows} of {gpus} GPUs)",
                o.policy
            )
        } else {
            format!("{}: jobs on each GPU", o.policy)
        };
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..end, -0.5..rows as f64 - 0.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("time since the experiment start (s)")
            .y_desc("GPU")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_labels(rows.min(16))
            .y_label_formatter(&|v| format!("{}", v.round() as usize))
            .draw()
            .map_err(err)?;
        let mut state: Vec<(f64, usize)> = vec![(0.0, 0); rows];
        let mut bars = Vec::new();
        for &(t, g, n) in &o.occupancy {
            if g < rows {
                bars.push((g, state[g].0, t, state[g].1));
                state[g] = (t, n);
            }
        }
        for (g, &(t0, n0)) in state.iter().enumerate() {
            bars.push((g, t0, o.metrics.makespan_s.max(t0), n0));
        }
        chart
            .draw_series(bars.into_iter().filter(|b| b.3 > 0 && b.2 > b.1).map(
                |(g, from, to, n)| {
                    Rectangle::new(
                        [(from, g as f64 - 0.4), (to, g as f64 + 0.4)],
                        occupancy_color(n).filled(),
                    )
                },
            ))
            .map_err(err)?;
        // The key: one swatch per job count.
        let key = key_area.margin(40, 10, 4, 4);
        key.draw(&Text::new("jobs on GPU", (0, 0), ("sans-serif", 13)))
            .map_err(err)?;
        for n in 0..=7usize {
            let y = 22 + 20 * n as i32;
            key.draw(&Rectangle::new(
                [(0, y), (18, y + 14)],
                occupancy_color(n).filled(),
            ))
            .map_err(err)?;
            key.draw(&Rectangle::new(
                [(0, y), (18, y + 14)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
            let label = if n == 0 {
                "idle".to_string()
            } else if n == 7 {
                "7+".to_string()
            } else {
                n.to_string()
            };
            key.draw(&Text::new(label, (26, y + 1), ("sans-serif", 12)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A chart made elsewhere (a learned policy's learning curve): heading, file name, SVG.
pub struct Figure {
    pub heading: String,
    pub file: String,
    pub svg: String,
}

/// Write `index.html`, `jct_cdf.svg`, `stp.svg`, `occupancy_<policy>.svg` and the extra
/// figures into `dir`.
pub fn write(
    dir: &Path,
    title: &str,
    params: &serde_json::Value,
    details: &[String],
    outcomes: &[Outcome],
    gpus: usize,
    extra: &[Figure],
) -> std::io::Result<()> {
    let io = |e: String| std::io::Error::other(e);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("jct_cdf.svg"), jct_cdf_svg(outcomes).map_err(io)?)?;
    std::fs::write(dir.join("stp.svg"), stp_svg(outcomes).map_err(io)?)?;
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title>\
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #999;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}\
pre{{background:#f6f6f6;padding:8px}}</style><h1>{0}</h1>\
<table><tr><th>policy<th>avg JCT s<th>median<th>p95<th>avg JRT s<th>avg queue s<th>makespan s\
<th>jobs/h<th>mean STP<th>GPU util<th>reconfigs<th>restarts/job<th>profiling s/job",
        esc(title)
    );
    for o in outcomes {
        let m = &o.metrics;
        let _ = write!(html, "<tr><td>{}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.0}<td>{:.1}<td>{:.2}<td>{:.1}%<td>{}<td>{:.2}<td>{:.1}", esc(&o.policy), m.avg_jct_s, m.median_jct_s, m.p95_jct_s, m.avg_jrt_s, m.avg_queue_s, m.makespan_s, m.throughput_jobs_per_h, m.avg_stp, 100.0 * m.gpu_utilization, m.reconfigurations, m.restarts_per_job, m.profiling_s_per_job);
    }
    html.push_str(
        "</table><p>Times in seconds; lower is better except jobs/h, STP and utilisation. \
JCT = completion − arrival, JRT = completion − start; reconfigs = MIG layout changes; \
restarts = checkpoint/restarts per job.</p>",
    );
    for d in details {
        let _ = write!(html, "<p>{}</p>", esc(d));
    }
    let _ = write!(
        html,
        "<h2>Parameters</h2><pre>{}</pre><h2>Job completion times</h2><p><img src=jct_cdf.svg alt=\"JCT CDF\"></p>\
<h2>Throughput</h2><p><img src=stp.svg alt=\"STP over time\"></p><h2>Occupancy</h2>",
        esc(&serde_json::to_string_pretty(params).unwrap_or_default())
    );
    let end = time_end(outcomes);
    for o in outcomes {
        let f = format!(
            "occupancy_{}.svg",
            o.policy.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        std::fs::write(dir.join(&f), occupancy_svg(o, gpus, end).map_err(io)?)?;
        let _ = write!(
            html,
            "<p><img src={f} alt=\"occupancy of {}\"></p>",
            esc(&o.policy)
        );
    }
    for f in extra {
        let file = f
            .file
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_");
        std::fs::write(dir.join(&file), &f.svg)?;
        let _ = write!(
            html,
            "<h2>{0}</h2><p><img src={file} alt=\"{0}\"></p>",
            esc(&f.heading)
        );
    }
    std::fs::write(dir.join("index.html"), html)
}
