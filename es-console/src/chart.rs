//! Small charts as inline SVG, drawn on the server from numbers: no chart library, no script.

use std::fmt::Write as _;

use maud::{html, Markup, PreEscaped};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;
const PAD: f64 = 4.0;

/// A bar chart of `values` (one bar each, oldest left), labelled by `caption`.
pub(crate) fn bars(id: &str, caption: &str, values: &[u64]) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    #[allow(clippy::cast_precision_loss)] // chart geometry
    if !values.is_empty() {
        let slot = (WIDTH - 2.0 * PAD) / values.len() as f64;
        for (i, &value) in values.iter().enumerate() {
            let height = (HEIGHT - 2.0 * PAD) * value as f64 / max as f64;
            let x = PAD + slot * i as f64;
            let y = HEIGHT - PAD - height;
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}"><title>{value}</title></rect>"#,
                (slot - 1.0).max(1.0)
            );
        }
    }
    frame(id, caption, max, &svg)
}

/// A line chart of one or more named series sampled at the same instants (oldest left).
pub(crate) fn lines(id: &str, caption: &str, series: &[(String, Vec<u64>)]) -> Markup {
    let max = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::new();
    #[allow(clippy::cast_precision_loss)] // chart geometry
    for (index, (_, values)) in series.iter().enumerate() {
        if values.is_empty() {
            continue;
        }
        let step = (WIDTH - 2.0 * PAD) / (values.len().max(2) - 1) as f64;
        let mut points = String::new();
        for (i, &value) in values.iter().enumerate() {
            let x = PAD + step * i as f64;
            let y = HEIGHT - PAD - (HEIGHT - 2.0 * PAD) * value as f64 / max as f64;
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            svg,
            r#"<polyline class="series series-{}" points="{}"/>"#,
            index % 6,
            points.trim_end()
        );
    }
    let legend = html! {
        ul.legend {
            @for (index, (name, values)) in series.iter().enumerate() {
                li class={ "series-" (index % 6) } {
                    (name) ": " (values.last().copied().unwrap_or(0))
                }
            }
        }
    };
    html! {
        (frame(id, caption, max, &svg))
        (legend)
    }
}

/// The SVG element around `inner` (markup built above from numbers and fixed text only).
fn frame(id: &str, caption: &str, max: u64, inner: &str) -> Markup {
    html! {
        figure.chart id=(id) {
            figcaption { (caption) " (max " (max) ")" }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none"
                role="img" aria-label=(caption) {
                line.axis x1=(PAD) y1=(HEIGHT - PAD) x2=(WIDTH - PAD) y2=(HEIGHT - PAD) {}
                (PreEscaped(inner))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_highest_value() {
        let svg = bars("c", "events", &[0, 5, 10]).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"height="112.0""#), "{svg}");
        assert!(svg.contains("(max 10)"));
    }

    #[test]
    fn lines_draw_one_polyline_per_series_and_escape_names() {
        let series = vec![
            ("a<b>".to_owned(), vec![1, 2, 3]),
            ("c".to_owned(), vec![3, 2, 1]),
        ];
        let svg = lines("l", "lag", &series).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b&gt;: 3"));
        assert!(!svg.contains("a<b>"));
    }

    #[test]
    fn empty_charts_render() {
        assert!(bars("c", "x", &[]).into_string().contains("<svg"));
        assert!(lines("l", "x", &[]).into_string().contains("<svg"));
    }
}
