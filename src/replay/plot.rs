//! Each strategy's window use against its limits over the replay, as SVG and PNG (plotters):
//! one line per limit (its share of the limit: 1 = the limit), the limit and each warn ratio as
//! horizontal lines, trips (red) and resets (green) marked on the limit's line. The PNG's text
//! is drawn with DejaVu Sans, embedded (assets/fonts, with its licence).

use std::sync::OnceLock;

use plotters::coord::Shift;
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

/// The plot's size in pixels.
const SIZE: (u32, u32) = (1000, 420);

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font as plotters' `sans-serif`, once.
fn font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
                .map_err(|_| "the embedded font cannot be read".to_owned())
        })
        .clone()
}

/// The SVG of `strategy`'s limits over the report's span; `None` when it has no limits.
pub fn strategy_svg(report: &Report, strategy: &str) -> Result<Option<String>, String> {
    font()?;
    let mut svg = String::new();
    let drawn = draw(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        report,
        strategy,
    )?;
    Ok(drawn.then_some(svg))
}

/// The same plot as a PNG file's bytes.
pub fn strategy_png(report: &Report, strategy: &str) -> Result<Option<Vec<u8>>, String> {
    font()?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    let drawn = draw(
        BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        report,
        strategy,
    )?;
    if !drawn {
        return Ok(None);
    }
    let mut png = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut png, w, h);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&rgb))
        .map_err(|e| format!("encoding the PNG of {strategy}: {e}"))?;
    Ok(Some(png))
}

/// Draws `strategy`'s plot on `root`; false when there is nothing to draw.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    report: &Report,
    strategy: &str,
) -> Result<bool, String> {
    let traces: Vec<_> = report
        .outcome
        .traces
        .iter()
        .filter(|t| t.strategy == strategy)
        .collect();
    if traces.is_empty() {
        return Ok(false);
    }
    let (Some(from), Some(to)) = (report.from_ms, report.to_ms) else {
        return Ok(false);
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
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plotting {strategy}: {e}");
    {
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
    Ok(true)
}
