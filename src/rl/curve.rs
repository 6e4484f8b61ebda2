//! The learning curve as a chart (SVG) and a table (CSV).

use super::CurvePoint;

/// The learning curve as SVG: validation JCT relative to ours, and the training return.
pub fn curve_svg(curve: &[CurvePoint]) -> Result<String, String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(260);
        let last = curve.last().map_or(1, |p| p.iteration.max(1));
        let range = |v: Vec<f64>| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.1).max(0.5);
            (lo - pad)..(hi + pad)
        };
        let panels: [(
            &plotters::drawing::DrawingArea<SVGBackend, _>,
            &str,
            &str,
            Vec<f64>,
        ); 2] = [
            (
                &top,
                "Validation: greedy policy's average JCT vs ours",
                "JCT vs ours (%)",
                curve.iter().map(|p| p.validation_vs_ours_pct).collect(),
            ),
            (
                &bottom,
                "Training: reward (−total JCT, in units of ours' on the same trace)",
                "reward",
                curve.iter().map(|p| p.reward).collect(),
            ),
        ];
        for (area, title, ylabel, ys) in panels {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..last as f64, range(ys.clone()))
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("PPO iteration")
                .y_desc(ylabel)
                .draw()
                .map_err(|e| e.to_string())?;
            let pts: Vec<(f64, f64)> = curve
                .iter()
                .zip(&ys)
                .map(|(p, y)| (p.iteration as f64, *y))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(ylabel)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
            if title.starts_with("Validation") {
                chart
                    .draw_series(LineSeries::new(
                        vec![(0.0, 0.0), (last as f64, 0.0)],
                        BLACK.mix(0.5),
                    ))
                    .map_err(|e| e.to_string())?
                    .label("ours (the rule)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The curve as CSV.
pub fn curve_csv(curve: &[CurvePoint]) -> String {
    let mut s = String::from(
        "iteration,reward,train_jct_s,validation_vs_ours_pct,policy_loss,value_loss,entropy\n",
    );
    for p in curve {
        s += &format!(
            "{},{:.4},{:.1},{:.3},{:.5},{:.5},{:.5}\n",
            p.iteration,
            p.reward,
            p.train_jct_s,
            p.validation_vs_ours_pct,
            p.policy_loss,
            p.value_loss,
            p.entropy
        );
    }
    s
}
