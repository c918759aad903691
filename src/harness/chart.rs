//! SVG charts of a comparison, for the guide (plotters, SVG backend only:
//! no font files, no system libraries, text left to the browser).
//!
//! One chart per workload configuration, one bar per backend: ns/op for the
//! throughput workloads, p50 and p99 latency for `pingpong`, `conns` and
//! `mixed` (its instant calls), whose point is latency, and value
//! throughput for `sizes`. A bar is the median of its rounds, and a
//! whisker across it spans the interval over rounds (see
//! [`stats`](super::stats)). Each axis says its unit and which way is
//! better; the sweep's lines keep their legend beside the plot, and a line
//! that stops before the others says so where it stops.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::size;
use super::row::Row;

/// What a chart plots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Metric {
    /// ns per call (lower is better).
    NsPerOp,
    /// p50 and p99 latency (lower is better).
    Latency,
    /// Response value bytes per second (higher is better).
    Throughput,
}

/// A number with thousands separators, `decimals` after the point.
fn human(x: f64, decimals: usize) -> String {
    super::report::number(x, decimals)
}

/// Draws one chart per configuration in `rows` into `dir` (created if
/// missing); returns the files written.
pub fn draw(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    let mut written = Vec::new();
    let sweep: Vec<&Row> = rows.iter().filter(|r| r.workload == "sweep").collect();
    if !sweep.is_empty() {
        for (name, metric) in [("sweep-throughput", SweepMetric::CallsPerSecond), ("sweep-p99", SweepMetric::P99)] {
            let path = dir.join(format!("{name}.svg"));
            lines(&path, &sweep, metric).map_err(|e| format!("drawing {}: {e}", path.display()))?;
            written.push(path);
        }
    }
    for row in rows.iter().filter(|r| r.workload != "sweep") {
        let mut key = format!(
            "{}-{}-c{}-d{}-{}",
            row.workload,
            row.compress,
            row.connections,
            row.depth,
            size(row.value_size).replace(' ', "")
        );
        // Servers alone and clients alone get charts of their own.
        if row.role != "both" {
            key = format!("{key}-{}", row.role);
        }
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    for (key, members) in groups {
        let metric = match members[0].workload.as_str() {
            "pingpong" | "conns" | "mixed" | "mixed-base" => Metric::Latency,
            w if super::workload::Phase::is_phase(w) => Metric::Latency,
            "sizes" => Metric::Throughput,
            _ => Metric::NsPerOp,
        };
        let path = dir.join(format!("{key}.svg"));
        bars(&path, &members, metric).map_err(|e| format!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn title(row: &Row) -> String {
    let role = match row.role.as_str() {
        "server" => " (servers alone, loaded by the blaster)",
        "client" => " (clients alone, against the floor server)",
        _ => "",
    };
    format!(
        "{}{role}: {} conns × {} deep, {} values, {}",
        row.workload,
        row.connections,
        row.depth,
        size(row.value_size),
        row.compress
    )
}

/// What a sweep chart plots against connections.
#[derive(Clone, Copy)]
enum SweepMetric {
    CallsPerSecond,
    P99,
}

/// The sweep: one line per backend, connections on a log axis.
fn lines(path: &Path, rows: &[&Row], metric: SweepMetric) -> Result<(), Box<dyn std::error::Error>> {
    let value = |r: &Row| match metric {
        SweepMetric::CallsPerSecond => 1e9 / r.ns_per_op,
        SweepMetric::P99 => r.p99_ns.map_or(f64::NAN, |ns| ns as f64 / 1e3),
    };
    let mut backends: Vec<&str> = Vec::new();
    for r in rows {
        if !backends.contains(&r.backend.as_str()) {
            backends.push(&r.backend);
        }
    }
    let max_x = rows.iter().map(|r| r.connections).max().unwrap_or(1).max(10) as f64;
    let values: Vec<f64> = rows.iter().map(|r| value(r)).filter(|v| v.is_finite() && *v > 0.0).collect();
    let (lo, hi) = values.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (caption, y_desc) = match metric {
        SweepMetric::CallsPerSecond => {
            ("sweep: calls/s by connections (one 100-byte call in flight each)", "calls per second (higher is better)")
        }
        SweepMetric::P99 => (
            "sweep: p99 latency by connections (one 100-byte call in flight each)",
            "p99 latency, µs, log scale (lower is better)",
        ),
    };
    let root = SVGBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    // The legend gets a column of its own, clear of the lines.
    let (plot, legend) = root.split_horizontally(760);
    let mut builder = ChartBuilder::on(&plot);
    builder.caption(caption, ("sans-serif", 15)).margin(14).x_label_area_size(40).y_label_area_size(80);
    let palette = [
        RGBColor(46, 94, 170),
        RGBColor(200, 80, 40),
        RGBColor(60, 150, 70),
        RGBColor(140, 70, 160),
        RGBColor(190, 150, 20),
        RGBColor(30, 150, 160),
        RGBColor(120, 120, 120),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("client connections, log scale")
                .y_desc(y_desc)
                .x_label_formatter(&|x| human(*x, 0))
                .y_label_formatter(&|y| human(*y, 0))
                .draw()?;
            for (i, backend) in backends.iter().enumerate() {
                let color = palette[i % palette.len()];
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.backend == *backend)
                    .map(|r| (r.connections as f64, value(r)))
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .collect();
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
                // A line that stops short of the others says so where it stops.
                if let Some(&(x, y)) = points.last().filter(|(x, _)| *x < max_x) {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{backend} stops at {}", human(x, 0)),
                        (x, y),
                        ("sans-serif", 11).into_font().color(&color),
                    )))?;
                }
                let y = 40 + 22 * i as i32;
                legend.draw(&PathElement::new(vec![(8, y), (30, y)], color.stroke_width(3)))?;
                legend.draw(&Text::new(backend.to_string(), (36, y - 7), ("sans-serif", 13).into_font()))?;
            }
        }};
    }
    match metric {
        SweepMetric::CallsPerSecond => {
            draw!(builder.build_cartesian_2d((1f64..max_x * 1.5).log_scale(), 0f64..hi.max(1.0) * 1.15)?)
        }
        SweepMetric::P99 => {
            draw!(builder
                .build_cartesian_2d((1f64..max_x * 1.5).log_scale(), (lo.min(hi) * 0.8..hi * 1.3).log_scale())?)
        }
    }
    root.present()?;
    Ok(())
}

fn bars(path: &Path, rows: &[&Row], metric: Metric) -> Result<(), Box<dyn std::error::Error>> {
    // Nanoseconds, shown in the unit that keeps the numbers short.
    let slowest = rows.iter().filter_map(|r| r.p99_ns.or(r.p50_ns)).max().unwrap_or(0) as f64;
    let (ns_per_unit, unit) = if slowest >= 2e6 { (1e6, "ms") } else { (1e3, "µs") };
    let fastest = rows.iter().map(|r| r.mb_per_s).fold(0.0f64, f64::max);
    let (mb_per_unit, rate) = if fastest >= 1000.0 { (1000.0, "GB/s") } else { (1.0, "MB/s") };
    // (label, main value, secondary value drawn behind it)
    let values: Vec<(String, f64, Option<f64>)> = rows
        .iter()
        .map(|r| match metric {
            Metric::NsPerOp => (r.backend.clone(), r.ns_per_op, None),
            Metric::Latency => (
                r.backend.clone(),
                r.p50_ns.map_or(f64::NAN, |v| v as f64 / ns_per_unit),
                r.p99_ns.map(|v| v as f64 / ns_per_unit),
            ),
            Metric::Throughput => (r.backend.clone(), r.mb_per_s / mb_per_unit, None),
        })
        .collect();
    // The main value's interval over rounds, drawn as a whisker (none for
    // throughput, whose rounds are summarised as ns/op).
    let intervals: Vec<Option<(f64, f64)>> = rows
        .iter()
        .map(|r| {
            let s = r.summary.as_ref()?;
            match metric {
                Metric::NsPerOp => Some((s.ns_per_op.low, s.ns_per_op.high)),
                Metric::Latency => s.p50_ns.map(|i| (i.low / ns_per_unit, i.high / ns_per_unit)),
                Metric::Throughput => None,
            }
        })
        .collect();
    let max = values
        .iter()
        .zip(&intervals)
        .flat_map(|((_, a, b), i)| [Some(*a), *b, i.map(|i| i.1)])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let x_desc = match metric {
        Metric::NsPerOp => "ns per call: wall time / calls (lower is better; |-|: the interval over rounds)".to_owned(),
        Metric::Latency => format!("call latency, {unit} (lower is better; |-|: the p50's interval)"),
        Metric::Throughput => format!("response values, {rate} (higher is better)"),
    };
    let height = 110 + 34 * values.len() as u32;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = values.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title(rows[0]), ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(110)
        // One segment per bar: a segmented range 0..k has k + 1 of them.
        .build_cartesian_2d(0.0..max * 1.25, (0..n - 1).into_segmented())?;
    let decimals = if max < 10.0 { 1 } else { 0 };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => values.get(*i).map(|v| v.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc(x_desc)
        .x_label_formatter(&|x| human(*x, decimals))
        .draw()?;
    if metric == Metric::Latency {
        // The legend of the two shades, in the bottom right corner, beside
        // the axis title and clear of the bars.
        let (width, height) = root.dim_in_pixel();
        let (x, y) = (width as i32 - 185, height as i32 - 22);
        for (i, (color, what)) in
            [(RGBColor(46, 94, 170), "p50 (median)"), (RGBColor(160, 190, 230), "p99")].into_iter().enumerate()
        {
            let x = x + 100 * i as i32;
            root.draw(&Rectangle::new([(x, y), (x + 14, y + 12)], color.filled()))?;
            root.draw(&Text::new(what, (x + 19, y), ("sans-serif", 12).into_font()))?;
        }
    }
    let dark = RGBColor(46, 94, 170);
    let light = RGBColor(160, 190, 230);
    let floor = RGBColor(120, 120, 120);
    for (i, (label, main, secondary)) in values.iter().enumerate() {
        let color = if label == "floor" { floor } else { dark };
        if let Some(s) = secondary.filter(|s| s.is_finite()) {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (s, SegmentValue::Exact(i + 1))],
                light.filled(),
            )))?;
        }
        if main.is_finite() {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (*main, SegmentValue::Exact(i + 1))],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (max * 1.25, SegmentValue::Exact(i + 1))],
                WHITE.stroke_width(3),
            )))?;
            if let Some((low, high)) = intervals[i].filter(|(l, h)| h > l) {
                let at = || SegmentValue::CenterOf(i);
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(low, at()), (high, at())],
                    BLACK.stroke_width(2),
                )))?;
                let cap = TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
                for end in [low, high] {
                    chart.draw_series(std::iter::once(Text::new("|", (end, at()), cap.clone())))?;
                }
            }
            let text = match metric {
                Metric::NsPerOp => human(*main, 1),
                Metric::Latency => match secondary {
                    Some(s) => format!("{} / {} {unit}", human(*main, 1), human(*s, 1)),
                    None => format!("{} {unit}", human(*main, 1)),
                },
                Metric::Throughput => format!("{} {rate}", human(*main, if mb_per_unit > 1.0 { 2 } else { 1 })),
            };
            let interval_end = intervals[i].map_or(*main, |(_, high)| high);
            let at = secondary.filter(|s| s.is_finite()).map_or(*main, |s| s.max(*main)).max(interval_end);
            chart.draw_series(std::iter::once(Text::new(
                format!(" {text}"),
                (at, SegmentValue::CenterOf(i)),
                ("sans-serif", 12).into_font(),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}
