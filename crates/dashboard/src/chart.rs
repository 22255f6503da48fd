//! Charts drawn on the server as SVG from the monitor's points: a sparkline (a line and its
//! area, scaled to the window's maximum) with a text alternative for screen readers. Pure.

use maud::{html, Markup};

/// The drawing area, in SVG user units (the element scales with its box).
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 48.0;

/// The span a page's charts cover: the last hour, day or week (`?window=1h|24h|7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    #[default]
    Hour,
    Day,
    Week,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Week];

    /// The query's value; anything else is the last hour.
    pub fn parse(param: Option<&str>) -> Window {
        match param {
            Some("24h") => Window::Day,
            Some("7d") => Window::Week,
            _ => Window::Hour,
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }

    pub fn secs(self) -> u64 {
        match self {
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Week => 7 * 86_400,
        }
    }

    /// "last hour", as a chart's caption says it.
    pub fn label(self) -> &'static str {
        match self {
            Window::Hour => "last hour",
            Window::Day => "last 24 hours",
            Window::Week => "last 7 days",
        }
    }
}

/// Links to the same page over each window, the current one marked.
pub fn window_picker(current: Window) -> Markup {
    html! {
        nav.windows aria-label="Chart window" {
            ul {
                @for w in Window::ALL {
                    li {
                        @if w == current {
                            a href={ "?window=" (w.param()) } aria-current="true" { (w.param()) }
                        } @else {
                            a href={ "?window=" (w.param()) } { (w.param()) }
                        }
                    }
                }
            }
        }
    }
}

/// A sparkline of `points` (unix seconds, value) over `[since, until]`, labelled `label`,
/// each value shown with `unit`.
pub fn sparkline(label: &str, unit: &str, points: &[(u64, f64)], since: u64, until: u64) -> Markup {
    let last = points.last().map(|p| p.1);
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let summary = match last {
        Some(v) => format!(
            "{label}: now {}{unit}, peak {}{unit}",
            figure(v),
            figure(max)
        ),
        None => format!("{label}: no samples yet"),
    };
    let (line, area) = paths(points, since, until, max);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none" role="img" aria-label=(summary) {
                title { (summary) }
                @if !area.is_empty() {
                    path.area d=(area) {}
                    path.line d=(line) {}
                }
            }
            figcaption { (summary) }
        }
    }
}

/// The line and the closed area under it, as SVG path data.
fn paths(points: &[(u64, f64)], since: u64, until: u64, max: f64) -> (String, String) {
    if points.is_empty() {
        return (String::new(), String::new());
    }
    let span = until.saturating_sub(since).max(1) as f64;
    let top = if max > 0.0 { max } else { 1.0 };
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|&(t, v)| {
            let x = (t.saturating_sub(since) as f64 / span).clamp(0.0, 1.0) * WIDTH;
            let y = HEIGHT - (v.max(0.0) / top).min(1.0) * (HEIGHT - 2.0) - 1.0;
            (x, y)
        })
        .collect();
    let mut line = String::new();
    for (i, (x, y)) in xy.iter().enumerate() {
        line.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" }));
    }
    let (first, last) = (xy[0].0, xy[xy.len() - 1].0);
    let area = format!("{line} L{last:.1},{HEIGHT:.1} L{first:.1},{HEIGHT:.1} Z");
    (line, area)
}

/// A value with the precision a glance needs.
pub fn figure(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_from_the_query_and_default_to_the_last_hour() {
        assert_eq!(Window::parse(None), Window::Hour);
        assert_eq!(Window::parse(Some("24h")), Window::Day);
        assert_eq!(Window::parse(Some("7d")).secs(), 7 * 86_400);
        assert_eq!(Window::parse(Some("1y")), Window::Hour);
        for w in Window::ALL {
            assert_eq!(Window::parse(Some(w.param())), w);
        }
        let picker = window_picker(Window::Day).into_string();
        assert!(
            picker.contains(r#"href="?window=24h" aria-current="true""#),
            "{picker}"
        );
    }

    #[test]
    fn points_span_the_window_and_the_maximum_reaches_the_top() {
        let (line, area) = paths(&[(100, 0.0), (150, 5.0), (200, 10.0)], 100, 200, 10.0);
        assert_eq!(line, "M0.0,47.0 L150.0,24.0 L300.0,1.0");
        assert!(area.ends_with("L300.0,48.0 L0.0,48.0 Z"), "{area}");
    }

    #[test]
    fn an_empty_series_says_so_in_words() {
        let svg = sparkline("Requests/s", "/s", &[], 0, 60).into_string();
        assert!(svg.contains("Requests/s: no samples yet"), "{svg}");
        assert!(!svg.contains("<path"), "{svg}");
    }

    #[test]
    fn the_text_alternative_gives_the_last_value_and_the_peak() {
        let svg = sparkline(
            "Requests/s",
            "/s",
            &[(0, 2.5), (30, 12.0), (60, 3.0)],
            0,
            60,
        )
        .into_string();
        assert!(svg.contains("now 3/s, peak 12/s"), "{svg}");
    }
}
