//! Latency CDFs as SVG: one chart per scenario, one line per method, log
//! scale in ms on x. Text is left to the SVG viewer's fonts (plotters'
//! built-in size estimate, no font library).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::cdf;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
    #[error("{0}: nothing to plot")]
    Empty(String),
}

/// Pixels right of the plot for the legend.
const LEGEND_WIDTH: u32 = 200;

/// Colour-blind-safe (Okabe-Ito) colours, one per line.
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// The decade-aligned x range, in ms, that holds every positive sample.
pub fn x_range_ms(series: &[(&str, &[u64])]) -> Option<(f64, f64)> {
    let values = series
        .iter()
        .flat_map(|(_, samples)| samples.iter())
        .filter(|&&ns| ns > 0)
        .map(|&ns| ns as f64 / 1e6);
    let (lo, hi) = values.fold(None, |acc: Option<(f64, f64)>, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })?;
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    Some((lo, hi))
}

/// A tick label in ms: as few digits as the value needs.
pub fn ms_label(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{}", (ms * 1000.0).round() / 1000.0)
    } else {
        // Up to three significant digits below 1 ms (0.001, 0.02, 0.5, ...).
        let digits = (-ms.log10().floor()) as usize + 2;
        let text = format!("{ms:.digits$}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Writes the CDF of each `(name, samples in ns)` to `path`.
pub fn cdf_svg(path: &Path, title: &str, series: &[(&str, &[u64])]) -> Result<(), PlotError> {
    let shown = path.display().to_string();
    let (lo, hi) = x_range_ms(series).ok_or_else(|| PlotError::Empty(shown.clone()))?;
    let draw_error = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: shown.clone(),
        message: e.to_string(),
    };
    let root = SVGBackend::new(path, (1100, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(&e))?;
    let body = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| draw_error(&e))?;
    // The legend goes beside the plot, where no line can hide under it.
    let (plot, legend) = body.split_horizontally(1100 - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(|e| draw_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("barrier latency (ms, log scale)")
        .y_desc("fraction of barriers completed")
        .x_label_formatter(&|v| ms_label(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(|e| draw_error(&e))?;
    let mut row = 0;
    for (i, (name, samples)) in series.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        // A step function: each sample raises the curve at its value.
        let mut points = Vec::with_capacity(2 * samples.len());
        let mut below = 0.0;
        for (ns, fraction) in cdf(samples) {
            let x = (ns as f64 / 1e6).max(lo);
            points.push((x, below));
            points.push((x, fraction));
            below = fraction;
        }
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| draw_error(&e))?;
        let y = 40 + 28 * row;
        legend
            .draw(&PathElement::new(
                vec![(4, y), (34, y)],
                colour.stroke_width(3),
            ))
            .map_err(|e| draw_error(&e))?;
        legend
            .draw(&Text::new(
                name.to_string(),
                (42, y),
                ("sans-serif", 15)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(|e| draw_error(&e))?;
        row += 1;
    }
    root.present().map_err(|e| draw_error(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_spans_whole_decades() {
        let a: &[u64] = &[30_000, 2_500_000];
        let b: &[u64] = &[0, 25_000_000];
        assert_eq!(x_range_ms(&[("a", a), ("b", b)]), Some((0.01, 100.0)));
        let c: &[u64] = &[1_000_000];
        assert_eq!(x_range_ms(&[("c", c)]), Some((1.0, 10.0)));
        assert_eq!(x_range_ms(&[("none", &[])]), None);
    }

    #[test]
    fn labels() {
        assert_eq!(ms_label(0.01), "0.01");
        assert_eq!(ms_label(0.02), "0.02");
        assert_eq!(ms_label(0.5), "0.5");
        assert_eq!(ms_label(0.25), "0.25");
        assert_eq!(ms_label(1.0), "1");
        assert_eq!(ms_label(20.0), "20");
        assert_eq!(ms_label(2.5), "2.5");
    }

    #[test]
    fn writes_an_svg_with_every_line() {
        let dir = std::env::temp_dir().join(format!("barrierd-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cdf.svg");
        let a: Vec<u64> = (1..=100).map(|i| i * 10_000).collect();
        let b: Vec<u64> = (1..=100).map(|i| i * 300_000).collect();
        cdf_svg(&path, "test", &[("alpha", &a), ("beta", &b)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("alpha") && svg.contains("beta"));
        // Each line and its legend key, in the line's colour.
        assert_eq!(svg.matches("stroke=\"#0072B2\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("stroke=\"#D55E00\"").count(), 2, "{svg}");
    }
}
