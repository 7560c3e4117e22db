//! Charts drawn by the server as inline SVG: no script, no library, and the same picture
//! in a screenshot as in the browser. Every text they hold is data (days, flows, agency
//! codes), escaped here; the labels around them come from the catalogues.

use std::collections::BTreeMap;
use std::fmt::Write as _;

const PALETTE: [&str; 8] = [
    "#2f6fb0", "#17803d", "#d97706", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f", "#98a2b3",
];
const OPEN: &str = "#2f6fb0";
const OVERDUE: &str = "#d92d20";

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Stacked columns: one per day, one colour per series, with a legend.
pub fn stacked_columns(days: &[String], counts: &BTreeMap<(String, String), u64>) -> String {
    let series: Vec<&String> = {
        let mut s: Vec<&String> = counts.keys().map(|(_, series)| series).collect();
        s.sort();
        s.dedup();
        s
    };
    let total = |day: &String| -> u64 {
        counts
            .iter()
            .filter(|((d, _), _)| d == day)
            .map(|(_, n)| *n)
            .sum()
    };
    let max = days.iter().map(total).max().unwrap_or(0).max(1);
    let (width, height, left, bottom, top) = (420.0_f64, 200.0_f64, 30.0, 30.0, 10.0);
    let plot = height - bottom - top;
    let slot = (width - left - 10.0) / days.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" id=\"chart-per-day\" viewBox=\"0 0 {width} {}\" width=\"100%\" role=\"img\">",
        height + 18.0 * series.len().div_ceil(3) as f64
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#98a2b3\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        height - bottom,
        left - 4.0,
        top + 8.0,
        left - 4.0,
        height - bottom
    );
    for (i, day) in days.iter().enumerate() {
        let x = left + 4.0 + slot * i as f64;
        let mut y = height - bottom;
        for (k, name) in series.iter().enumerate() {
            let n = counts
                .get(&(day.clone(), (*name).clone()))
                .copied()
                .unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = plot * n as f64 / max as f64;
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}: {n}</title></rect>",
                (slot - 6.0).max(2.0),
                PALETTE[k % PALETTE.len()],
                escape(day),
                escape(name)
            );
        }
        // Every other day labelled (and the last), so that labels never overlap.
        if !(days.len() - 1 - i).is_multiple_of(2) {
            continue;
        }
        let label = day.get(5..).unwrap_or(day);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + slot / 2.0 - 3.0,
            height - bottom + 14.0,
            escape(label)
        );
    }
    for (k, name) in series.iter().enumerate() {
        let (col, row) = (k % 3, k / 3);
        let (x, y) = (left + 130.0 * col as f64, height + 18.0 * row as f64 - 6.0);
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{}</text>",
            y - 9.0,
            PALETTE[k % PALETTE.len()],
            x + 14.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Paired horizontal bars per agency: open cases and overdue ones.
pub fn agency_bars(rows: &[(String, u64, u64)]) -> String {
    let max = rows
        .iter()
        .map(|(_, open, overdue)| (*open).max(*overdue))
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, left, row_height) = (420.0_f64, 100.0_f64, 30.0_f64);
    let height = row_height * rows.len().max(1) as f64 + 8.0;
    let span = width - left - 50.0;
    let mut svg = format!(
        "<svg class=\"chart\" id=\"chart-cases\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\">"
    );
    for (i, (agency, open, overdue)) in rows.iter().enumerate() {
        let y = 4.0 + row_height * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 16.0,
            escape(agency)
        );
        for (k, (n, colour)) in [(*open, OPEN), (*overdue, OVERDUE)].iter().enumerate() {
            let w = span * *n as f64 / max as f64;
            let yy = y + 12.0 * k as f64;
            let _ = write!(
                svg,
                "<rect x=\"{left}\" y=\"{yy}\" width=\"{w:.1}\" height=\"11\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{n}</text>",
                left + w + 4.0,
                yy + 10.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The timeline of a case: a lane per agency, an arrow per delivery of each message from
/// its sender's lane to its recipient's, coloured by the delivery's state, each linking
/// to its message.
pub struct Arrow {
    pub message: String,
    pub label: String,
    pub from: usize,
    pub to: usize,
    /// `delivered`, `acknowledged`, `late` or `pending`.
    pub state: &'static str,
}

pub struct Step {
    pub at: String,
    pub arrows: Vec<Arrow>,
}

pub fn timeline(lanes: &[String], steps: &[Step]) -> String {
    let (lane_width, top, step_height) = (150.0_f64, 36.0_f64, 46.0_f64);
    let left = 150.0;
    let width = left + lane_width * lanes.len() as f64 + 20.0;
    let height = top + step_height * steps.len().max(1) as f64 + 10.0;
    let lane_x = |i: usize| left + lane_width * i as f64 + lane_width / 2.0;
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\">\
         <defs>"
    );
    for (state, colour) in [
        ("delivered", OPEN),
        ("acknowledged", "#17803d"),
        ("late", OVERDUE),
        ("pending", "#98a2b3"),
    ] {
        let _ = write!(
            svg,
            "<marker id=\"head-{state}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{colour}\"/></marker>"
        );
    }
    svg.push_str("</defs>");
    for (i, lane) in lanes.iter().enumerate() {
        let x = lane_x(i);
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"16\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
             <line x1=\"{x}\" y1=\"24\" x2=\"{x}\" y2=\"{}\" stroke=\"#c0c7d0\" stroke-dasharray=\"4 3\"/>",
            escape(lane),
            height - 4.0
        );
    }
    for (s, step) in steps.iter().enumerate() {
        let y0 = top + step_height * s as f64;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">{}</text>",
            y0 + 16.0,
            escape(&step.at)
        );
        let n = step.arrows.len().max(1) as f64;
        for (k, arrow) in step.arrows.iter().enumerate() {
            let y = y0 + 8.0 + (step_height - 16.0) * k as f64 / n;
            let colour = match arrow.state {
                "acknowledged" => "#17803d",
                "late" => OVERDUE,
                "pending" => "#98a2b3",
                _ => OPEN,
            };
            let (x1, x2) = (lane_x(arrow.from), lane_x(arrow.to));
            let _ = write!(
                svg,
                "<a href=\"/console/messages/{}\" class=\"step {}\"><title>{}</title>\
                 <line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2.5\" marker-end=\"url(#head-{})\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></a>",
                escape(&arrow.message),
                arrow.state,
                escape(&arrow.label),
                arrow.state,
                (x1 + x2) / 2.0,
                y - 3.0,
                escape(&arrow.label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}
