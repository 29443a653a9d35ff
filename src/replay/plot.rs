//! Each strategy's window use against its limits over the replay, as SVG (plotters): one line
//! per limit (its share of the limit: 1 = the limit), the limit and each warn ratio as
//! horizontal lines, trips (red) and resets (green) marked on the limit's line.

use plotters::prelude::*;

use crate::risk::engine::DecisionKind;

use super::Report;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
];

/// The SVG of `strategy`'s limits over the report's span; `None` when it has no limits.
pub fn strategy_svg(report: &Report, strategy: &str) -> Result<Option<String>, String> {
    let traces: Vec<_> = report
        .outcome
        .traces
        .iter()
        .filter(|t| t.strategy == strategy)
        .collect();
    if traces.is_empty() {
        return Ok(None);
    }
    let (Some(from), Some(to)) = (report.from_ms, report.to_ms) else {
        return Ok(None);
    };
    // The plot ends at the last fill or the last decision after it (a reset once the windows
    // drained).
    let to = report
        .outcome
        .decisions
        .iter()
        .map(|d| d.ts_ms)
        .fold(to, i64::max);
    let (unit, unit_ms) = match to - from {
        span if span <= 120_000 => ("seconds", 1_000.0),
        span if span <= 3 * 3_600_000 => ("minutes", 60_000.0),
        span if span <= 3 * 86_400_000 => ("hours", 3_600_000.0),
        _ => ("days", 86_400_000.0),
    };
    let at = |ms: i64| (ms - from) as f64 / unit_ms;
    let x_end = at(to).max(1.0) * 1.01;
    let y_top = traces
        .iter()
        .flat_map(|t| t.points.iter().map(|p| p.1))
        .fold(1.2f64, f64::max)
        * 1.05;
    let err = |e: DrawingAreaErrorKind<std::io::Error>| format!("plotting {strategy}: {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{strategy}: window use against each limit (1 = the limit)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..x_end, 0f64..y_top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("{unit} since {}", super::time(from)))
            .y_desc("share of the limit")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 1.0), (x_end, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label("the limit")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        for (i, t) in traces.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let warn = f64::from(t.spec.warn_ratio.ppm()) / 1e6;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, warn), (x_end, warn)],
                    4,
                    4,
                    colour.stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(
                    t.points.iter().map(|&(ms, v)| (at(ms), v)),
                    colour.stroke_width(1),
                ))
                .map_err(err)?
                .label(format!(
                    "{} ({}; warn {:.0} %)",
                    t.spec.name,
                    humantime::format_duration(std::time::Duration::from_millis(
                        t.spec.window_ms.max(0) as u64
                    )),
                    warn * 100.0
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        let marks = |kind: DecisionKind| {
            report
                .outcome
                .decisions
                .iter()
                .filter(move |d| d.event == kind && d.strategy.as_deref() == Some(strategy))
                .map(move |d| at(d.ts_ms))
        };
        chart
            .draw_series(
                marks(DecisionKind::Trip).map(|x| TriangleMarker::new((x, 1.0), 7, RED.filled())),
            )
            .map_err(err)?
            .label("trip")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, RED.filled()));
        chart
            .draw_series(
                marks(DecisionKind::Reset).map(|x| Circle::new((x, 1.0), 5, GREEN.filled())),
            )
            .map_err(err)?
            .label("reset")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, GREEN.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}
