//! Learning-curve PNGs for `nexttile eval`: one panel per pool, side by side; in each,
//! one line per query strategy of the mean score over seeds against the number of
//! labelled samples, with a shaded band of mean ± standard deviation, an optional dashed
//! reference line (the target score) and one legend shared by all panels below them.
//! Drawn with plotters' bitmap backend; text needs a TrueType font found by fontconfig.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One strategy's curve: `x` = labelled samples per round; `mean` and `std` of the
/// metric over seeds at each `x`. The three vectors must have the same length; points
/// whose `x` or `mean` is NaN are skipped; a NaN `std` counts as 0 (the band pinches).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend label (the strategy); the same label gets the same colour in every panel.
    pub label: String,
    /// Labelled samples at each round.
    pub x: Vec<f64>,
    /// Mean of the metric over seeds.
    pub mean: Vec<f64>,
    /// Standard deviation of the metric over seeds.
    pub std: Vec<f64>,
}

/// One panel (e.g. "balanced pool") of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Its curves, at least one.
    pub curves: Vec<Curve>,
}

/// Error drawing a plot: which file could not be written and why.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing to draw (no panel, a panel without curves, only NaN values) or a curve
    /// whose vectors differ in length.
    #[error("cannot plot {path}: {message}")]
    Data {
        /// The PNG that was not written.
        path: PathBuf,
        /// What is wrong with the data.
        message: String,
    },
    /// No TrueType font could be loaded for the text.
    #[error(
        "cannot write {path}: no font for the plot's text ({message}); install a TrueType font \
         that fontconfig finds, on Debian/Ubuntu: apt-get install fonts-dejavu-core libfontconfig1"
    )]
    Font {
        /// The PNG that was not written.
        path: PathBuf,
        /// The font loader's message.
        message: String,
    },
    /// The backend failed to draw or to write the PNG (missing folder, no permission…).
    #[error("cannot write {path}: {message}")]
    Draw {
        /// The PNG that was not written.
        path: PathBuf,
        /// The backend's or the file system's message.
        message: String,
    },
}

/// Width and height of one panel, pixels.
const PANEL: (u32, u32) = (640, 480);
/// The y range is rounded out to multiples of this.
const Y_STEP: f64 = 0.05;
/// Font family of all text.
const FONT: &str = "sans-serif";
/// Legend: font size, row height, padding, width of a line sample, gap after the sample,
/// space between entries.
const LEGEND_FONT: u32 = 15;
const LEGEND_ROW: u32 = 24;
const LEGEND_PAD: u32 = 10;
const LEGEND_SAMPLE: i32 = 30;
const LEGEND_GAP: i32 = 6;
const LEGEND_SPACE: i32 = 26;

/// Colour of the `index`-th label (tab10), cycling after ten.
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

/// `v` with at most three decimals and no trailing zeros ("0.9", "128", "0.875").
fn short(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// The y range: `lo` rounded down and `hi` rounded up to [`Y_STEP`], clamped to [0, 1],
/// at least one step tall.
fn y_range(lo: f64, hi: f64) -> (f64, f64) {
    // The epsilon keeps 0.9 / 0.05 = 17.999… from rounding 0.9 down to 0.85.
    let mut lo = (((lo / Y_STEP) + 1e-9).floor() * Y_STEP).clamp(0.0, 1.0);
    let mut hi = (((hi / Y_STEP) - 1e-9).ceil() * Y_STEP).clamp(0.0, 1.0);
    if hi - lo < Y_STEP / 2.0 {
        if lo + Y_STEP <= 1.0 {
            hi = lo + Y_STEP;
        } else {
            lo = hi - Y_STEP;
        }
    }
    (lo, hi)
}

/// A point of a curve: (x, mean, std).
type Point = (f64, f64, f64);

/// The finite points of a curve, a non-finite std read as 0.
fn points(curve: &Curve) -> Vec<Point> {
    curve
        .x
        .iter()
        .zip(&curve.mean)
        .zip(&curve.std)
        .filter(|((x, m), _)| x.is_finite() && m.is_finite())
        .map(|((&x, &m), &s)| (x, m, if s.is_finite() { s.abs() } else { 0.0 }))
        .collect()
}

/// One legend entry: a sample and its text.
enum Entry {
    /// A strategy's line over its band.
    Curve(RGBColor),
    /// The dashed reference line.
    Reference,
    /// Text only.
    Note,
}

/// A legend entry, its text and its width in pixels (sample included).
type LegendItem = (Entry, String, i32);

/// Everything [`draw`] needs besides the data.
struct Layout<'a> {
    /// Labels in order of first appearance, which fixes their colours.
    labels: Vec<&'a str>,
    /// x range of every panel.
    x: (f64, f64),
    /// y range of every panel.
    y: (f64, f64),
    /// The reference line, when it is finite and inside the y range.
    reference: Option<f64>,
    /// Legend entries with their text widths, wrapped into rows.
    legend: Vec<Vec<LegendItem>>,
}

/// Draws `panels` side by side (one row) into a PNG at `path`, y axis labelled `y_label`
/// (e.g. "accuracy"), x axis "labelled samples", one legend shared by the panels
/// below them, and a horizontal dashed line at `reference` (e.g. 0.9), labelled with its
/// value, when given. Each panel is 640 × 480 pixels; all panels share the x and y
/// ranges; the y range runs from min(mean − std) rounded down to 0.05 to max(mean + std)
/// (or the reference, if higher) rounded up, clamped to [0, 1]. NaN values are skipped.
/// The PNG is written to a temporary file beside `path` and renamed, so a failed call
/// leaves no partial image.
///
/// # Errors
///
/// [`PlotError::Data`] when there is no panel, a panel has no curve, a curve's vectors
/// differ in length or every value is NaN; [`PlotError::Font`] when no font can be
/// loaded; [`PlotError::Draw`] when the image cannot be drawn or written.
pub fn plot_learning_curves(
    path: &Path,
    panels: &[Panel],
    y_label: &str,
    reference: Option<f64>,
) -> Result<(), PlotError> {
    let data_err = |message: String| PlotError::Data {
        path: path.to_path_buf(),
        message,
    };
    if panels.is_empty() {
        return Err(data_err("no panel to draw".into()));
    }
    let mut labels: Vec<&str> = Vec::new();
    let (mut x_min, mut x_max) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for panel in panels {
        if panel.curves.is_empty() {
            return Err(data_err(format!("panel \"{}\" has no curve", panel.title)));
        }
        for c in &panel.curves {
            if c.x.len() != c.mean.len() || c.x.len() != c.std.len() {
                return Err(data_err(format!(
                    "curve \"{}\" in panel \"{}\" has {} x, {} mean and {} std values",
                    c.label,
                    panel.title,
                    c.x.len(),
                    c.mean.len(),
                    c.std.len()
                )));
            }
            if !labels.contains(&c.label.as_str()) {
                labels.push(&c.label);
            }
            for (x, m, s) in points(c) {
                x_min = x_min.min(x);
                x_max = x_max.max(x);
                y_min = y_min.min(m - s);
                y_max = y_max.max(m + s);
            }
        }
    }
    if x_min > x_max {
        return Err(data_err("every value is NaN or infinite".into()));
    }
    let reference = reference.filter(|r| r.is_finite());
    if let Some(r) = reference.filter(|r| (0.0..=1.0).contains(r)) {
        y_max = y_max.max(r);
    }
    let y = y_range(y_min, y_max);
    let reference = reference.filter(|r| *r >= y.0 && *r <= y.1);
    let pad = if x_max > x_min {
        (x_max - x_min) * 0.03
    } else {
        (x_min.abs() * 0.1).max(1.0)
    };
    let mut x = (x_min - pad, x_max + pad);
    if x_min >= 0.0 {
        x.0 = x.0.max(0.0);
    }

    // Fail on a missing font before touching the file system.
    let font = (FONT, LEGEND_FONT as f64).into_font();
    let width_of = |text: &str| {
        font.box_size(text)
            .map(|(w, _)| w as i32)
            .map_err(|e| PlotError::Font {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    };
    let mut entries: Vec<(Entry, String)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (Entry::Curve(colour(i)), (*l).to_string()))
        .collect();
    if let Some(r) = reference {
        entries.push((Entry::Reference, format!("reference {}", short(r))));
    }
    entries.push((Entry::Note, "line: mean over seeds, band: ± std".into()));
    let total = (PANEL.0 as usize * panels.len()) as u32;
    let mut legend: Vec<Vec<LegendItem>> = Vec::new();
    let mut row_width = 0;
    for (entry, text) in entries {
        let sample = match entry {
            Entry::Note => 0,
            _ => LEGEND_SAMPLE + LEGEND_GAP,
        };
        let w = sample + width_of(&text)?;
        let fits = row_width + LEGEND_SPACE + w <= total as i32 - 2 * LEGEND_PAD as i32;
        match legend.last_mut() {
            Some(row) if fits => {
                row_width += LEGEND_SPACE + w;
                row.push((entry, text, w));
            }
            _ => {
                row_width = w;
                legend.push(vec![(entry, text, w)]);
            }
        }
    }
    let layout = Layout {
        labels,
        x,
        y,
        reference,
        legend,
    };

    let Some(name) = path.file_name().filter(|_| !path.is_dir()) else {
        return Err(PlotError::Draw {
            path: path.to_path_buf(),
            message: "the path names a folder, not a file".into(),
        });
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp.png",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Creating the file first gives a plain message for a missing folder or a denied
    // permission (the image encoder's own is a Debug dump).
    std::fs::File::create(&tmp).map_err(|e| PlotError::Draw {
        path: path.to_path_buf(),
        message: format!("cannot create {}: {e}", tmp.display()),
    })?;
    let drawn = draw(&tmp, path, panels, y_label, &layout);
    // Every plotters object is dropped by now (a dropped bitmap backend saves what it
    // has, so a failed drawing may have left a partial image).
    let result = drawn.and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| PlotError::Draw {
            path: path.to_path_buf(),
            message: format!("renaming {} to it: {e}", tmp.display()),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Maps a plotters error to a [`PlotError`] about `path`, trimming plotters' prefixes.
fn backend_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| {
        let full = e.to_string();
        let mut message = full.as_str();
        for prefix in ["backend error: ", "Drawing backend error: "] {
            message = message.strip_prefix(prefix).unwrap_or(message);
        }
        let path = path.to_path_buf();
        match message.strip_prefix("Font loading error: ") {
            Some(m) => PlotError::Font {
                path,
                message: m.to_string(),
            },
            None => PlotError::Draw {
                path,
                message: message.to_string(),
            },
        }
    }
}

/// Draws the figure into the PNG `file`; errors name `path`, the file the caller asked for.
fn draw(
    file: &Path,
    path: &Path,
    panels: &[Panel],
    y_label: &str,
    layout: &Layout,
) -> Result<(), PlotError> {
    let fail = backend_err(path);
    let legend_height = LEGEND_ROW * layout.legend.len() as u32 + 2 * LEGEND_PAD;
    let size = (PANEL.0 * panels.len() as u32, PANEL.1 + legend_height);
    let root = BitMapBackend::new(file, size).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let (top, bottom) = root.split_vertically(PANEL.1);
    let (x_lo, x_hi) = layout.x;
    let (y_lo, y_hi) = layout.y;
    let colour_of =
        |label: &str| colour(layout.labels.iter().position(|l| *l == label).unwrap_or(0));
    for (panel, area) in panels.iter().zip(top.split_evenly((1, panels.len()))) {
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, (FONT, 22))
            .margin(10)
            .margin_right(20)
            .x_label_area_size(46)
            .y_label_area_size(62)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
            .map_err(&fail)?;
        chart
            .configure_mesh()
            .x_desc("labelled samples")
            .y_desc(y_label)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .x_labels(8)
            .y_labels(10)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(&fail)?;
        let curves: Vec<(RGBColor, Vec<Point>)> = panel
            .curves
            .iter()
            .map(|c| (colour_of(&c.label), points(c)))
            .collect();
        // Bands first, so that no band tints another curve's line.
        for (c, pts) in &curves {
            let clamp = |v: f64| v.clamp(y_lo, y_hi);
            if pts.len() == 1 {
                let (px, m, s) = pts[0];
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(px, clamp(m - s)), (px, clamp(m + s))],
                        c.mix(0.4).stroke_width(2),
                    )))
                    .map_err(&fail)?;
            } else if pts.len() > 1 {
                let mut band: Vec<(f64, f64)> =
                    pts.iter().map(|&(px, m, s)| (px, clamp(m + s))).collect();
                band.extend(pts.iter().rev().map(|&(px, m, s)| (px, clamp(m - s))));
                chart
                    .draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))
                    .map_err(&fail)?;
            }
        }
        if let Some(r) = layout.reference {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_lo, r), (x_hi, r)],
                    7,
                    5,
                    BLACK.mix(0.6).stroke_width(1),
                ))
                .map_err(&fail)?;
            let style = (FONT, 14)
                .into_font()
                .color(&BLACK.mix(0.75))
                .pos(Pos::new(HPos::Left, VPos::Bottom));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x_lo, r)) + Text::new(short(r), (6, -3), style),
                ))
                .map_err(&fail)?;
        }
        for (c, pts) in &curves {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(px, m, _)| (px, m)),
                    c.stroke_width(2),
                ))
                .map_err(&fail)?;
            chart
                .draw_series(
                    pts.iter()
                        .filter(|&&(_, m, _)| m >= y_lo && m <= y_hi)
                        .map(|&(px, m, _)| Circle::new((px, m), 3, c.filled())),
                )
                .map_err(&fail)?;
        }
    }
    draw_legend(&bottom, &layout.legend).map_err(&fail)?;
    root.present().map_err(&fail)?;
    Ok(())
}

/// Draws the shared legend, each row centred, into `area`.
fn draw_legend(
    area: &DrawingArea<BitMapBackend, Shift>,
    rows: &[Vec<LegendItem>],
) -> Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>> {
    let (width, _) = area.dim_in_pixel();
    let style = (FONT, LEGEND_FONT)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let grey = BLACK.mix(0.6);
    let note = style.color(&grey);
    for (i, row) in rows.iter().enumerate() {
        let row_width: i32 =
            row.iter().map(|(_, _, w)| w).sum::<i32>() + LEGEND_SPACE * (row.len() as i32 - 1);
        let mut x = ((width as i32 - row_width) / 2).max(LEGEND_PAD as i32);
        let y = (LEGEND_PAD + LEGEND_ROW * i as u32 + LEGEND_ROW / 2) as i32;
        for (entry, text, w) in row {
            let text_x = match entry {
                Entry::Curve(c) => {
                    area.draw(&Rectangle::new(
                        [(x, y - 7), (x + LEGEND_SAMPLE, y + 7)],
                        c.mix(0.15).filled(),
                    ))?;
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + LEGEND_SAMPLE, y)],
                        c.stroke_width(2),
                    ))?;
                    area.draw(&Circle::new((x + LEGEND_SAMPLE / 2, y), 3, c.filled()))?;
                    x + LEGEND_SAMPLE + LEGEND_GAP
                }
                Entry::Reference => {
                    for start in [0, 12, 24] {
                        area.draw(&PathElement::new(
                            vec![(x + start, y), (x + (start + 7).min(LEGEND_SAMPLE), y)],
                            BLACK.mix(0.6).stroke_width(1),
                        ))?;
                    }
                    x + LEGEND_SAMPLE + LEGEND_GAP
                }
                Entry::Note => x,
            };
            let text_style = match entry {
                Entry::Note => &note,
                _ => &style,
            };
            area.draw(&Text::new(text.as_str(), (text_x, y), text_style.clone()))?;
            x += w + LEGEND_SPACE;
        }
    }
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

    /// Width and height from a PNG's IHDR chunk, after checking the signature.
    fn png_size(png: &[u8]) -> (u32, u32) {
        assert!(png.len() > 24, "{} bytes", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        (width, height)
    }

    #[test]
    fn writes_a_png_of_the_expected_width() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let mut with_nan = curve("bald", 9);
        with_nan.mean[4] = f64::NAN;
        with_nan.std[5] = f64::NAN;
        let panels = vec![
            Panel {
                title: "balanced pool".into(),
                curves: vec![curve("random", 9), curve("bald", 9)],
            },
            Panel {
                title: "long-tail pool".into(),
                curves: vec![with_nan, curve("single round", 1)],
            },
        ];
        plot_learning_curves(&path, &panels, "test accuracy", Some(0.9)).unwrap();
        let (width, height) = png_size(&std::fs::read(&path).unwrap());
        assert_eq!(width, 2 * PANEL.0);
        assert!(height > PANEL.1, "room for the legend: {height}");
        // Only the PNG: the temporary file was renamed.
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut bad = curve("random", 3);
        bad.std.pop();
        let panels = vec![Panel {
            title: "p".into(),
            curves: vec![curve("bald", 3), bad],
        }];
        let err = plot_learning_curves(&path, &panels, "y", None).unwrap_err();
        assert!(matches!(err, PlotError::Data { .. }), "{err}");
        assert!(err.to_string().contains("random"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let empty = Panel {
            title: "p".into(),
            curves: Vec::new(),
        };
        let nan = Panel {
            title: "p".into(),
            curves: vec![Curve {
                label: "random".into(),
                x: vec![1.0, f64::NAN],
                mean: vec![f64::NAN, 0.5],
                std: vec![0.1, 0.1],
            }],
        };
        for panels in [vec![], vec![empty], vec![nan]] {
            let err = plot_learning_curves(&path, &panels, "y", None).unwrap_err();
            assert!(matches!(err, PlotError::Data { .. }), "{err}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn an_unwritable_path_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.png");
        let panels = vec![Panel {
            title: "p".into(),
            curves: vec![curve("random", 3)],
        }];
        let err = plot_learning_curves(&path, &panels, "y", None).unwrap_err();
        assert!(matches!(err, PlotError::Draw { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn y_range_rounds_out_to_twentieths_within_zero_and_one() {
        let close = |(a, b): (f64, f64), (c, d): (f64, f64)| {
            assert!(
                (a - c).abs() < 1e-9 && (b - d).abs() < 1e-9,
                "{a}..{b} vs {c}..{d}"
            );
        };
        close(y_range(0.9, 0.95), (0.9, 0.95));
        close(y_range(0.512, 0.871), (0.5, 0.9));
        close(y_range(-0.2, 1.3), (0.0, 1.0));
        close(y_range(1.0, 1.0), (0.95, 1.0));
        close(y_range(0.3, 0.3), (0.3, 0.35));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.9), "0.9");
        assert_eq!(short(128.0), "128");
        assert_eq!(short(0.875), "0.875");
        assert_eq!(short(-0.0001), "0");
    }
}
