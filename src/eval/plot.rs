//! Learning-curve PNGs: per panel (pool), the mean score over seeds against the number of
//! labelled samples for each query, with a shaded mean ± std band, drawn with plotters.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// One query's curve: `x` = labelled samples per round; mean and std of the score over
/// seeds at each `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Labelled samples.
    pub x: Vec<f64>,
    /// Mean score.
    pub mean: Vec<f64>,
    /// Standard deviation of the score.
    pub std: Vec<f64>,
}

/// One panel of a figure (e.g. "balanced pool").
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Its curves.
    pub curves: Vec<Curve>,
}

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to draw, or vectors of different lengths.
    #[error("cannot plot: {0}")]
    Data(String),
    /// The backend failed (file not writable, no font).
    #[error(
        "cannot draw {path}: {message} (text needs a TrueType font through fontconfig: install fonts-dejavu-core and libfontconfig1)"
    )]
    Draw {
        /// The PNG.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

/// Width and height of one panel, pixels.
const PANEL: (u32, u32) = (640, 480);

/// A colour per label, stable across panels: labels are numbered in order of first
/// appearance.
fn colour(index: usize) -> RGBColor {
    const COLOURS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLOURS[index % COLOURS.len()]
}

/// Draws `panels` side by side into the PNG at `path`: y axis `y_label`, x axis
/// "labelled samples", a legend per panel, and a dashed horizontal line at `reference`
/// (e.g. the 0.9 target) when given. NaN points are skipped.
///
/// # Errors
///
/// [`PlotError::Data`] when there is nothing to draw or a curve's vectors differ in
/// length, [`PlotError::Draw`] when the file or the font fails.
pub fn plot_learning_curves(
    path: &Path,
    panels: &[Panel],
    y_label: &str,
    reference: Option<f64>,
) -> Result<(), PlotError> {
    if panels.is_empty() || panels.iter().all(|p| p.curves.is_empty()) {
        return Err(PlotError::Data("no curves".into()));
    }
    let mut labels: Vec<&str> = Vec::new();
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in panels.iter().flat_map(|p| &p.curves) {
        if c.x.len() != c.mean.len() || c.x.len() != c.std.len() {
            return Err(PlotError::Data(format!(
                "curve {} has {} x, {} mean and {} std values",
                c.label,
                c.x.len(),
                c.mean.len(),
                c.std.len()
            )));
        }
        if !labels.contains(&c.label.as_str()) {
            labels.push(&c.label);
        }
        for ((&x, &m), &s) in c.x.iter().zip(&c.mean).zip(&c.std) {
            if x.is_finite() && m.is_finite() && s.is_finite() {
                x_min = x_min.min(x);
                x_max = x_max.max(x);
                y_min = y_min.min(m - s);
                y_max = y_max.max(m + s);
            }
        }
    }
    if x_min > x_max {
        return Err(PlotError::Data("every value is NaN".into()));
    }
    if let Some(r) = reference.filter(|r| r.is_finite()) {
        y_max = y_max.max(r);
    }
    let y_lo = ((y_min / 0.05).floor() * 0.05).clamp(0.0, 1.0);
    let mut y_hi = ((y_max / 0.05).ceil() * 0.05).clamp(0.0, 1.0);
    if y_hi <= y_lo {
        y_hi = (y_lo + 0.05).min(1.0);
    }
    let pad = ((x_max - x_min) * 0.03).max(1.0);
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let size = (PANEL.0 * panels.len() as u32, PANEL.1);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let areas = root.split_evenly((1, panels.len()));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d((x_min - pad)..(x_max + pad), y_lo..y_hi)
            .map_err(|e| draw_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("labelled samples")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| draw_err(&e))?;
        for curve in &panel.curves {
            let c = colour(labels.iter().position(|l| *l == curve.label).unwrap_or(0));
            let pts: Vec<(f64, f64, f64)> = curve
                .x
                .iter()
                .zip(&curve.mean)
                .zip(&curve.std)
                .filter(|((x, m), s)| x.is_finite() && m.is_finite() && s.is_finite())
                .map(|((&x, &m), &s)| (x, m, s))
                .collect();
            let mut band: Vec<(f64, f64)> = pts.iter().map(|&(x, m, s)| (x, m + s)).collect();
            band.extend(pts.iter().rev().map(|&(x, m, s)| (x, m - s)));
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))
                .map_err(|e| draw_err(&e))?;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, m, _)| (x, m)),
                    c.stroke_width(2),
                ))
                .map_err(|e| draw_err(&e))?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, m, _)| Circle::new((x, m), 3, c.filled())),
                )
                .map_err(|e| draw_err(&e))?;
        }
        if let Some(r) = reference.filter(|r| r.is_finite() && *r >= y_lo && *r <= y_hi) {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_min - pad, r), (x_max + pad, r)],
                    6,
                    4,
                    BLACK.mix(0.6).stroke_width(1),
                ))
                .map_err(|e| draw_err(&e))?
                .label(format!("target {r:.2}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| draw_err(&e))?;
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(label: &str, n: usize) -> Curve {
        Curve {
            label: label.into(),
            x: (0..n).map(|i| 64.0 * (i + 1) as f64).collect(),
            mean: (0..n).map(|i| 0.5 + 0.04 * i as f64).collect(),
            std: vec![0.02; n],
        }
    }

    #[test]
    fn writes_a_png_of_the_expected_width() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let panels = vec![
            Panel {
                title: "balanced pool".into(),
                curves: vec![curve("random", 9), curve("bald", 9)],
            },
            Panel {
                title: "unbalanced pool".into(),
                curves: vec![curve("bald", 9)],
            },
        ];
        plot_learning_curves(&path, &panels, "test accuracy", Some(0.9)).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!((width, height), (2 * PANEL.0, PANEL.1));
    }

    #[test]
    fn mismatched_or_empty_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut bad = curve("random", 3);
        bad.std.pop();
        let panels = vec![Panel {
            title: "p".into(),
            curves: vec![bad],
        }];
        assert!(matches!(
            plot_learning_curves(&path, &panels, "y", None),
            Err(PlotError::Data(_))
        ));
        assert!(matches!(
            plot_learning_curves(&path, &[], "y", None),
            Err(PlotError::Data(_))
        ));
    }
}
