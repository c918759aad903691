//! Results as rows, and the rows as a table, Markdown and JSON.

use serde::{Deserialize, Serialize};

use super::drive::Sample;
use super::env::Env;
use super::workload::Spec;

/// One measurement: a backend (or a floor) on one workload configuration.
/// Serialised with exactly the keys `fastwire compare --json` promises.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Backend name, or `floor` for a reference without protocol.
    pub backend: String,
    /// Workload name.
    pub workload: String,
    /// `both` (a backend's client and server together), `server` (its
    /// server, loaded by the blaster) or `client` (its client, against the
    /// floor server).
    pub role: String,
    /// Client connections.
    pub connections: usize,
    /// Calls in flight per connection.
    pub depth: usize,
    /// Bytes of each request's value.
    pub value_size: usize,
    /// Compression: none, flate or snappy; `+tls` when the run used TLS.
    pub compress: String,
    /// Operations in the timed window.
    pub ops: u64,
    /// Responses the server sent for no call in progress, over the timed
    /// run (a correct server sends none; `fastwire load` fails on any).
    pub unsolicited: u64,
    /// The timed window's length.
    pub seconds: f64,
    /// Inverse throughput: window / operations.
    pub ns_per_op: f64,
    /// Response value megabytes (1e6) per second.
    pub mb_per_s: f64,
    /// Whole-process allocations per operation, from a separate counted run.
    pub allocs_per_op: Option<f64>,
    /// Median call latency.
    pub p50_ns: Option<u64>,
    /// 99th percentile call latency.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile call latency.
    pub p999_ns: Option<u64>,
    /// The slowest call (in the table, not in the JSON's fixed key set).
    #[serde(skip)]
    pub max_ns: Option<u64>,
    /// The server's own CPU time per call, when it ran in a process of its
    /// own (`--processes`).
    pub server_cpu_ns_per_op: Option<f64>,
    /// The server process's resident memory after its load (`--processes`).
    pub server_rss_bytes: Option<u64>,
    /// Where, when and how it was measured.
    pub env: Env,
}

impl Row {
    /// A row from a timed sample and, if there was one, a counted sample.
    pub fn new(backend: &str, spec: &Spec, timed: &Sample, counted: Option<&Sample>, env: Env) -> Row {
        let percentile = |q: f64| timed.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(q));
        Row {
            backend: backend.to_owned(),
            workload: spec.workload.name().to_owned(),
            role: spec.role.name().to_owned(),
            connections: spec.connections,
            depth: spec.depth,
            value_size: spec.value_size,
            compress: if spec.tls.is_some() {
                format!("{}+tls", spec.compress.name())
            } else {
                spec.compress.name().to_owned()
            },
            ops: timed.ops,
            unsolicited: timed.unsolicited,
            seconds: timed.seconds,
            ns_per_op: timed.ns_per_op(),
            mb_per_s: timed.mb_per_s(),
            allocs_per_op: counted.and_then(Sample::allocs_per_op),
            p50_ns: percentile(0.5),
            p99_ns: percentile(0.99),
            p999_ns: percentile(0.999),
            max_ns: timed.latency.as_ref().filter(|h| !h.is_empty()).map(|h| h.max()),
            server_cpu_ns_per_op: None,
            server_rss_bytes: None,
            env,
        }
    }
}

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
pub const COLUMNS: [&str; 17] = [
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
];

/// Text columns (left-aligned) come first.
const TEXT_COLUMNS: usize = 4;

/// The row this one is compared with: the floor of the same configuration
/// and role (the hand-written floor for `both`, the floor pair of blaster
/// and floor server for `server` and `client`). A TLS row is compared with
/// the plaintext floor: the floor is plain TCP, the machine's limit either way.
fn floor_of<'a>(row: &Row, rows: &'a [Row]) -> Option<&'a Row> {
    let compress = row.compress.strip_suffix("+tls").unwrap_or(&row.compress);
    rows.iter().find(|f| {
        f.backend == FLOOR
            && f.role == row.role
            && f.workload == row.workload
            && (f.connections, f.depth, f.value_size) == (row.connections, row.depth, row.value_size)
            && f.compress == compress
    })
}

/// The backend name of floor rows.
pub const FLOOR: &str = "floor";

/// How far a row is from its floor: p50 over p50 for `pingpong` (latency is
/// its point), ns/op over ns/op otherwise.
pub fn vs_floor(row: &Row, rows: &[Row]) -> Option<f64> {
    let floor = floor_of(row, rows).filter(|f| !std::ptr::eq(*f, row) && f.backend != row.backend)?;
    if row.workload == "pingpong" {
        Some(row.p50_ns? as f64 / floor.p50_ns? as f64)
    } else {
        Some(row.ns_per_op / floor.ns_per_op)
    }
}

fn cells(row: &Row, rows: &[Row]) -> [String; 17] {
    [
        row.backend.clone(),
        row.role.clone(),
        row.workload.clone(),
        row.compress.clone(),
        number(row.connections as f64, 0),
        number(row.depth as f64, 0),
        size(row.value_size),
        number(row.ns_per_op, 1),
        number(row.mb_per_s, 1),
        allocs(row.allocs_per_op),
        duration(row.p50_ns),
        duration(row.p99_ns),
        duration(row.p999_ns),
        duration(row.max_ns),
        vs_floor(row, rows).map_or("-".into(), |r| format!("{r:.2}x")),
        row.server_cpu_ns_per_op.map_or("-".into(), |ns| format!("{} ns", number(ns, 0))),
        row.server_rss_bytes.map_or("-".into(), |b| format!("{} MiB", number(b as f64 / (1 << 20) as f64, 1))),
    ]
}

/// A plain-text table, columns aligned (text left, numbers right).
pub fn table(rows: &[Row]) -> String {
    let all: Vec<[String; 17]> = rows.iter().map(|r| cells(r, rows)).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| all.iter().map(|r| r[i].chars().count()).chain([COLUMNS[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> =
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i < TEXT_COLUMNS {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
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
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, _)| if i < TEXT_COLUMNS { " --- |" } else { " ---: |" })
            .collect::<String>()
    );
    for row in rows {
        out += &format!("| {} |\n", cells(row, rows).join(" | "));
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
        if e.same_process { "yes" } else { "no" },
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
