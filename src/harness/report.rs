//! Results as rows, and the rows as a table, Markdown and JSON.

use super::row::Row;
pub use super::row::FLOOR;
use super::stats::{self, Interval, Standing};

/// Nanoseconds in a unit that keeps three digits or so.
pub fn duration(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 10_000 => format!("{ns} ns"),
        Some(ns) if ns < 1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        Some(ns) => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// A byte count as people write it: 16 B, 1 KiB, 64 KiB, 1 MiB.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

pub(crate) fn number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        // Thousands separators for the integer part, so that 2,773 reads at a glance.
        let s = format!("{x:.decimals$}");
        let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
        let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        match frac {
            Some(f) => format!("{sign}{grouped}.{f}"),
            None => format!("{sign}{grouped}"),
        }
    } else {
        "-".into()
    }
}

pub(crate) fn allocs(a: Option<f64>) -> String {
    match a {
        None => "-".into(),
        Some(a) if !a.is_finite() => "-".into(),
        Some(0.0) => "0".into(),
        Some(a) if a < 0.01 => format!("{a:.4}"),
        Some(a) => format!("{a:.2}"),
    }
}

/// The columns of the table, in order.
pub const COLUMNS: [&str; 19] = [
    "backend",
    "role",
    "workload",
    "compress",
    "conns",
    "depth",
    "value",
    "ns/op",
    "MB/s",
    "allocs/op",
    "p50",
    "p99",
    "p99.9",
    "max",
    "vs floor",
    "srv cpu/op",
    "srv RSS",
    "verdict",
    "note",
];

/// Text columns (left-aligned): the first four and the last two.
fn is_text(column: usize) -> bool {
    column < 4 || column >= COLUMNS.len() - 2
}

/// ` ±4%`: how far the interval reaches from the median, or nothing
/// without an interval.
pub fn spread(interval: Option<&Interval>) -> String {
    interval.map_or(String::new(), |i| format!(" ±{:.0}%", 100.0 * i.half_width()))
}

/// A row's verdict in a table cell.
pub fn verdict_cell(row: &Row) -> String {
    match &row.verdict {
        None => "-".into(),
        Some(v) => match v.standing {
            Standing::Best => "best".into(),
            Standing::Tied => "tied".into(),
            Standing::Slower => v.vs_best.map_or("slower".into(), |r| format!("slower {}", r.ratio_text())),
        },
    }
}

fn cells(row: &Row) -> [String; 19] {
    let summary = row.summary.as_ref();
    [
        row.backend.clone(),
        row.role.clone(),
        row.workload.clone(),
        row.compress.clone(),
        number(row.connections as f64, 0),
        number(row.depth as f64, 0),
        size(row.value_size),
        number(row.ns_per_op, 1) + &spread(summary.map(|s| &s.ns_per_op)),
        number(row.mb_per_s, 1),
        allocs(row.allocs_per_op),
        duration(row.p50_ns) + &spread(summary.and_then(|s| s.p50_ns.as_ref())),
        duration(row.p99_ns) + &spread(summary.and_then(|s| s.p99_ns.as_ref())),
        duration(row.p999_ns) + &spread(summary.and_then(|s| s.p999_ns.as_ref())),
        duration(row.max_ns),
        summary.and_then(|s| s.vs_floor).map_or("-".into(), |i| i.ratio_text()),
        row.server_cpu_ns_per_op.map_or("-".into(), |ns| format!("{} ns", number(ns, 0))),
        row.server_rss_bytes.map_or("-".into(), |b| format!("{} MiB", number(b as f64 / (1 << 20) as f64, 1))),
        verdict_cell(row),
        summary.map_or("", |s| s.spread.flag()).to_owned(),
    ]
}

/// A configuration as the verdict lines name it.
pub fn describe(row: &Row) -> String {
    let compress = if row.compress == "none" { String::new() } else { format!(", {}", row.compress) };
    format!(
        "{} {} ({} conns x {}, {}{compress})",
        row.workload,
        row.role,
        number(row.connections as f64, 0),
        number(row.depth as f64, 0),
        size(row.value_size)
    )
}

/// One configuration's judged rows by standing, in the order they came.
pub struct Standings<'a> {
    /// The row with the lowest median.
    pub best: &'a Row,
    /// The rows tied with it.
    pub tied: Vec<&'a str>,
    /// The slower rows with their paired ratio to the best, nearest first.
    pub slower: Vec<(&'a str, Interval)>,
}

impl<'a> Standings<'a> {
    /// The standings of `rows` (one configuration), if any was judged.
    pub fn of(rows: &[&'a Row]) -> Option<Standings<'a>> {
        let standing = |r: &Row| r.verdict.as_ref().map(|v| v.standing);
        let best = rows.iter().copied().find(|r| standing(r) == Some(Standing::Best))?;
        let tied = rows.iter().filter(|r| standing(r) == Some(Standing::Tied)).map(|r| r.backend.as_str()).collect();
        let mut slower: Vec<(&str, Interval)> = rows
            .iter()
            .filter(|r| standing(r) == Some(Standing::Slower))
            .filter_map(|r| Some((r.backend.as_str(), r.verdict.as_ref()?.vs_best?)))
            .collect();
        slower.sort_by(|a, b| a.1.median.total_cmp(&b.1.median));
        Some(Standings { best, tied, slower })
    }
}

/// The verdict of one configuration in one line: the best, those tied
/// with it, and the slower ones with the interval of their paired ratio.
pub fn verdict_line(rows: &[&Row]) -> Option<String> {
    let Standings { best, tied, slower } = Standings::of(rows)?;
    let mut line = format!("{}, {}: {} best", describe(best), best.figure_name(), best.backend);
    if !tied.is_empty() {
        line += &format!("; tied with it: {}", tied.join(", "));
    }
    if !slower.is_empty() {
        let list: Vec<String> = slower.iter().map(|(b, i)| format!("{b} {}", i.ratio_text())).collect();
        line += &format!("; slower: {}", list.join(", "));
    }
    Some(line)
}

/// The rows grouped by configuration, in the order they came.
pub fn configurations(rows: &[Row]) -> Vec<Vec<&Row>> {
    let mut groups: Vec<Vec<&Row>> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|g| g[0].same_configuration(row)) {
            Some(g) => g.push(row),
            None => groups.push(vec![row]),
        }
    }
    groups
}

/// Floors some backend beat beyond its interval: the whole interval of its
/// ratio to the floor below 1 (a `spread` row's reference is no floor:
/// three servers may well beat two).
pub fn beaten_floors(rows: &[Row]) -> Vec<&Row> {
    rows.iter()
        .filter(|r| !super::workload::Phase::is_phase(&r.workload))
        .filter(|r| r.summary.as_ref().and_then(|s| s.vs_floor).is_some_and(|i| i.below(1.0)))
        .collect()
}

/// What the `spread` rows say, one line per backend and phase: each
/// server's share, the failed calls, a killed server's calls after its
/// restart, and the p99 against the same client over the two fast servers
/// alone.
pub fn spread_lines(rows: &[Row]) -> String {
    use super::spread::{self, Part};
    let mut out = String::new();
    for row in rows.iter() {
        let Some(servers) = &row.servers else { continue };
        let shares: Vec<String> =
            servers.iter().map(|s| format!("{} {:.1}%", s.part.name(), 100.0 * s.share)).collect();
        let mut line = format!("  {} {}: shares {}", row.workload, row.backend, shares.join(", "));
        line += &format!("; {} failed", number(spread::failed(servers) as f64, 0));
        if let Some(killed) = servers.iter().find(|s| s.part == Part::Killed) {
            line += &format!(
                " ({} on the killed server); {} calls on it after its restart",
                number(killed.failed as f64, 0),
                number(killed.after_restart.unwrap_or(0) as f64, 0)
            );
        }
        if let Some(i) = row.summary.as_ref().and_then(|s| s.vs_floor) {
            line += &format!("; p99 {} of the two fast servers alone", i.ratio_text());
        }
        out += &line;
        out += "\n";
    }
    out
}

/// The verdict lines printed under the table: one per configuration with
/// two or more backends, then any floor that was beaten.
pub fn verdicts(rows: &[Row]) -> String {
    let rounds = rows.iter().map(|r| r.rounds.len()).max().unwrap_or(0);
    let mut out = format!(
        "Verdicts: each backend's figure over the best's, paired round by round, as a median and {:.0}% interval \
         over {rounds} round{} (order statistics); slower: the whole interval beyond {:.2}x, else tied.\n",
        100.0 * stats::CONFIDENCE,
        if rounds == 1 { "" } else { "s" },
        1.0 + stats::NOISE
    );
    for group in configurations(rows) {
        if group.iter().filter(|r| r.verdict.is_some()).count() >= 2 {
            if let Some(line) = verdict_line(&group) {
                out += &format!("  {line}\n");
            }
        }
    }
    out += &spread_lines(rows);
    for row in beaten_floors(rows) {
        let i = row.summary.as_ref().and_then(|s| s.vs_floor).expect("beaten floors have a ratio");
        out += &format!("  floor beaten: {} {} at {} of it\n", row.backend, describe(row), i.ratio_text());
    }
    let wide = rows.iter().filter(|r| r.summary.as_ref().is_some_and(|s| s.spread != stats::Spread::Steady)).count();
    if wide > 0 {
        let (rows, have) = if wide == 1 { ("row", "has") } else { ("rows", "have") };
        out += &format!(
            "  {wide} {rows} {have} an interval wider than ±{:.0}% (see the note column): rank them with care\n",
            100.0 * stats::WIDE
        );
    }
    out
}

/// A plain-text table, columns aligned (text left, numbers right).
pub fn table(rows: &[Row]) -> String {
    let all: Vec<[String; 19]> = rows.iter().map(cells).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| all.iter().map(|r| r[i].chars().count()).chain([COLUMNS[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(
                |(i, c)| {
                    if is_text(i) {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                },
            )
            .collect();
        parts.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&COLUMNS.map(str::to_owned));
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in &all {
        out += &line(r);
    }
    out
}

/// A Markdown table (GitHub flavour), numbers right-aligned.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out += &format!(
        "|{}\n",
        COLUMNS.iter().enumerate().map(|(i, _)| if is_text(i) { " --- |" } else { " ---: |" }).collect::<String>()
    );
    for row in rows {
        out += &format!("| {} |\n", cells(row).join(" | "));
    }
    out
}

/// The environment shared by all rows, as Markdown (each row's thread
/// layout is listed by backend).
pub fn markdown_env(rows: &[Row]) -> String {
    let Some(first) = rows.first() else { return String::new() };
    let e = &first.env;
    let mut out = format!(
        "- machine: {} CPUs ({}), {}, kernel {}\n- build: {} ({}), commit {}\n- date: {}\n- server and load in one process: {}\n",
        e.cpus,
        e.cpu_model,
        e.os,
        e.kernel,
        e.rustc,
        e.build,
        e.commit,
        e.date,
        match (rows.iter().all(|r| r.env.same_process), rows.iter().any(|r| r.env.same_process)) {
            (true, _) => "yes",
            (false, true) => "yes, but for the rows with a server CPU time (their server had a process of its own)",
            (false, false) => "no",
        },
    );
    let mut seen = Vec::new();
    for row in rows {
        let key = (row.backend.clone(), row.env.threads.clone());
        if !seen.contains(&key) {
            out += &format!("- {} ({}): {}\n", row.backend, row.workload, row.env.threads);
            seen.push(key);
        }
    }
    out
}

/// The rows as a JSON array.
pub fn json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(number(2773.0, 0), "2,773");
        assert_eq!(number(266.94, 1), "266.9");
        assert_eq!(number(1234567.25, 1), "1,234,567.2");
        assert_eq!(number(f64::NAN, 1), "-");
        assert_eq!(size(16), "16 B");
        assert_eq!(size(65536), "64 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(duration(Some(950)), "950 ns");
        assert_eq!(duration(Some(21_500)), "21.5 µs");
        assert_eq!(allocs(Some(0.0004)), "0.0004");
    }
}
