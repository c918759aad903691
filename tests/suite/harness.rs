//! `fastwire compare` and `fastwire load` as a user runs them: separate
//! processes, every workload, the promised outputs. These tests check what
//! is reported and that it is well-formed, never how fast anything is.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Held by each test that measures (`compare`, `load`): their windows are
/// tens of milliseconds, and measured side by side one run's threads can
/// starve another's for a whole window on two cores (seen once in a CI
/// run: a mio row that completed no call in its 40 ms, with the other
/// measuring tests (servers in processes, the sweep, TLS) running beside
/// it). One at a time, each run has the machine.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The keys `--json` promises, exactly.
const KEYS: [&str; 23] = [
    "allocs_per_op",
    "backend",
    "compress",
    "connections",
    "depth",
    "env",
    "mb_per_s",
    "ns_per_op",
    "ops",
    "p50_ns",
    "p999_ns",
    "p99_ns",
    "role",
    "rounds",
    "seconds",
    "server_cpu_ns_per_op",
    "server_rss_bytes",
    "servers",
    "summary",
    "unsolicited",
    "value_size",
    "verdict",
    "workload",
];

fn fastwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fastwire"))
}

fn rows(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json.as_array().expect("an array").clone()
}

fn check_row(row: &Value) {
    let object = row.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, KEYS, "{row}");
    assert!(row["ops"].as_u64().unwrap() > 0, "{row}");
    assert!(row["ns_per_op"].as_f64().unwrap() > 0.0, "{row}");
    // No latency is stamped with a clock reading taken before its call began.
    for key in ["p50_ns", "p99_ns", "p999_ns"] {
        assert!(row[key].as_u64().is_none_or(|ns| ns > 0), "{key} of 0 ns: {row}");
    }
    assert_eq!(row["unsolicited"].as_u64(), Some(0), "{row}");
    // Every round is kept, and the headline figure is their median, inside its interval.
    let rounds = row["rounds"].as_array().expect("rounds");
    assert!(!rounds.is_empty(), "{row}");
    let ns = &row["summary"]["ns_per_op"];
    assert_eq!(ns["n"].as_u64(), Some(rounds.len() as u64), "{row}");
    let (low, median, high) =
        (ns["low"].as_f64().unwrap(), ns["median"].as_f64().unwrap(), ns["high"].as_f64().unwrap());
    assert!(low <= median && median <= high && median == row["ns_per_op"].as_f64().unwrap(), "{row}");
    // Floors are not judged.
    assert!(row["backend"] != "floor" || row["verdict"].is_null(), "{row}");
    let env = &row["env"];
    for key in ["threads", "kernel", "cpus", "rustc", "commit", "date", "build"] {
        assert!(!env[key].is_null(), "env lacks {key}: {row}");
    }
}

#[test]
fn compare_measures_every_workload_and_writes_json_markdown_and_svg() {
    let _measuring = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("fastwire-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, markdown, svg) = (dir.join("r.json"), dir.join("r.md"), dir.join("svg"));
    let output = fastwire()
        .args([
            "compare",
            "--backends",
            "mio,tokio",
            "--duration",
            "40ms",
            "--rounds",
            "3",
            "--connections",
            "2",
            "--depth",
            "4",
        ])
        .args(["--value-size", "16,70000", "--rate", "2000"])
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("backend "), "the table comes first: {stdout}");

    let rows = rows(&json);
    rows.iter().for_each(check_row);
    let find_role = |backend: &str, workload: &str, role: &str| {
        rows.iter()
            .filter(move |r| r["backend"] == backend && r["workload"] == workload && r["role"] == role)
            .collect::<Vec<_>>()
    };
    let find = |backend: &str, workload: &str| find_role(backend, workload, "both");
    // Every workload on both backends: fastrpc, nowait, conns once; sizes
    // and pingpong once per value size; floors beside fastrpc and pingpong.
    for backend in ["mio", "tokio"] {
        for workload in ["fastrpc", "nowait", "conns", "wait", "cpu", "mixed", "mixed-base", "handshakes"] {
            assert_eq!(find(backend, workload).len(), 1, "{backend} {workload}");
        }
        for workload in ["sizes", "pingpong"] {
            let sizes: Vec<u64> = find(backend, workload).iter().map(|r| r["value_size"].as_u64().unwrap()).collect();
            assert_eq!(sizes, [16, 70000], "{backend} {workload}");
        }
    }
    assert_eq!(find("floor", "pingpong").len(), 2);
    assert_eq!(find("floor", "fastrpc").len(), 1);
    // fastrpc and pingpong also measure servers alone (under the blaster)
    // and clients alone (against the floor server), each with the floor
    // pair beside them.
    for role in ["server", "client"] {
        for backend in ["floor", "mio", "tokio"] {
            assert_eq!(find_role(backend, "fastrpc", role).len(), 1, "{backend} {role}");
            assert_eq!(find_role(backend, "pingpong", role).len(), 2, "{backend} {role}");
        }
        assert!(find_role("mio", "sizes", role).is_empty());
    }
    assert!(find("floor", "sizes").is_empty());
    // The ideal of `wait` is computed: 2 connections x 4 in flight per 1 ms wait.
    assert_eq!(find("floor", "wait")[0]["ns_per_op"], 125_000.0);
    assert_eq!(find("floor", "cpu").len(), 1);
    assert!(find("floor", "mixed").is_empty());
    // Calls that wait 1 ms take at least that long; mixed reports its instant calls.
    assert!(find("mio", "wait")[0]["p50_ns"].as_u64().unwrap() >= 1_000_000);
    assert!(find("tokio", "mixed")[0]["p50_ns"].is_number());

    // The axes given on the command line.
    let fastrpc = find("mio", "fastrpc")[0];
    assert_eq!((fastrpc["connections"].as_u64(), fastrpc["depth"].as_u64()), (Some(2), Some(4)));
    assert_eq!(find("mio", "pingpong")[0]["depth"], 1);
    // Calls have latencies and fire-and-forget has none; the binary counts
    // allocations, so allocs/op is there.
    assert!(fastrpc["p50_ns"].as_u64().unwrap() <= fastrpc["p99_ns"].as_u64().unwrap());
    assert!(find("tokio", "nowait")[0]["p50_ns"].is_null());
    assert!(fastrpc["allocs_per_op"].is_number());
    // MB/s counts response values: the fastrpc body is 261 bytes.
    let implied = fastrpc["mb_per_s"].as_f64().unwrap() / (261.0 * 1e3 / fastrpc["ns_per_op"].as_f64().unwrap());
    assert!((implied - 1.0).abs() < 1e-6, "MB/s = 261 B / ns_per_op: {fastrpc}");

    let markdown = std::fs::read_to_string(&markdown).unwrap();
    assert!(markdown.starts_with("| backend | role | workload |"));
    assert!(markdown.contains("| floor | both | pingpong |") && markdown.contains("rustc"));
    assert!(markdown.contains("| mio | server | fastrpc |") && markdown.contains("x ("), "ratios to the floor");
    // Three rounds of each row, and the verdict of each configuration under the table.
    assert!(rows.iter().all(|r| r["rounds"].as_array().unwrap().len() == 3));
    // Every backend's row is judged against the best of its configuration.
    let standings = ["best", "tied", "slower"];
    assert!(rows
        .iter()
        .filter(|r| r["backend"] != "floor")
        .all(|r| standings.contains(&r["verdict"]["standing"].as_str().unwrap())));
    assert!(stdout.contains("Verdicts:") && stdout.contains("fastrpc both (2 conns x 4, 6 B), ns/op:"), "{stdout}");
    let charts: Vec<_> = std::fs::read_dir(&svg).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        charts.len(),
        18,
        "one per configuration: fastrpc and 2 pingpong in three roles, 2 sizes, nowait, conns, wait, cpu, mixed, \
         mixed-base, handshakes: {charts:?}"
    );
    for chart in &charts {
        let text = std::fs::read_to_string(svg.join(chart)).unwrap();
        assert!(text.starts_with("<svg") && text.contains("mio") && text.contains("tokio"), "{chart:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--processes`: servers under the blaster in processes of their own, with
/// their own CPU time per call and memory.
/// With `--by-hand`, the small servers written by hand race beside them,
/// each in its own process too.
#[test]
fn compare_runs_servers_in_their_own_processes() {
    let _measuring = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("fastwire-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let output = fastwire()
        .args(["compare", "--workload", "pingpong,fastrpc", "--role", "server", "--backends", "mio,std"])
        .args(["--depth", "16", "--duration", "60ms", "--rounds", "2", "--processes", "--by-hand", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = rows(&json);
    let by_hand: Vec<&str> =
        fastwire_by_hand::Model::ALL.into_iter().filter(|m| m.unavailable().is_none()).map(|m| m.row_name()).collect();
    for workload in ["pingpong", "fastrpc"] {
        let names: Vec<&str> =
            rows.iter().filter(|r| r["workload"] == workload).map(|r| r["backend"].as_str().unwrap()).collect();
        assert_eq!(names, [&["floor", "mio", "std"][..], &by_hand].concat(), "{workload}: {rows:?}");
    }
    for row in &rows {
        check_row(row);
        assert_eq!(row["role"], "server");
        if row["backend"] == "floor" {
            assert!(row["server_cpu_ns_per_op"].is_null());
            continue;
        }
        assert_eq!(row["env"]["same_process"], false, "{row}");
        // CPU time comes in clock ticks (10 ms), so a short window may show 0.
        assert!(row["server_cpu_ns_per_op"].as_f64().unwrap() >= 0.0, "{row}");
        assert!(row["server_rss_bytes"].as_u64().unwrap() > 100_000, "{row}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--workload sweep`: each server at each connection count, one call in
/// flight per connection, with one line chart of throughput and one of p99.
/// The spread: the balanced client over server processes in four phases,
/// each row with its servers' shares; the slowed server gets fewer calls
/// than each fast one; the killed one fails only its own calls and takes
/// calls again after its restart; each phase's p99 is paired with the two
/// fast servers alone.
#[test]
fn compare_spreads_calls_over_servers_slowed_and_killed() {
    let _measuring = one_at_a_time();
    let json = std::env::temp_dir().join(format!("fastwire-spread-{}.json", std::process::id()));
    let output = fastwire()
        // Windows of 800 ms: the killed server is restarted at 400 ms and
        // has until the window's end to pass a probe, even in a debug build.
        .args(["compare", "--workload", "spread", "--backends", "std,mio", "--rounds", "2", "--duration", "800ms"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let rows = rows(&json);
    rows.iter().for_each(check_row);
    for backend in ["std", "mio"] {
        let row = |phase: &str| {
            rows.iter()
                .find(|r| r["backend"] == backend && r["workload"] == format!("spread-{phase}"))
                .unwrap_or_else(|| panic!("{backend} spread-{phase}: {rows:?}"))
        };
        let servers = |phase: &str| row(phase)["servers"].as_array().expect("servers").clone();
        let parts =
            |phase: &str| servers(phase).iter().map(|s| s["part"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(parts("two"), ["fast", "fast"]);
        assert_eq!(parts("equal"), ["fast", "fast", "fast"]);
        assert_eq!(parts("slowed"), ["fast", "fast", "slowed"]);
        assert_eq!(parts("killed"), ["fast", "fast", "killed"]);
        for phase in ["two", "equal", "slowed", "killed"] {
            for s in servers(phase) {
                assert!(s["calls"].as_u64().unwrap() > 0, "{backend} {phase}: {s}");
            }
        }
        for phase in ["two", "equal", "slowed"] {
            assert!(servers(phase).iter().all(|s| s["failed"] == 0), "{backend} {phase}: {:?}", servers(phase));
        }
        let slowed = servers("slowed");
        let share = |s: &Value| s["share"].as_f64().unwrap();
        assert!(share(&slowed[2]) < share(&slowed[0]).min(share(&slowed[1])), "{backend}: {slowed:?}");
        let killed = servers("killed");
        assert!(killed[..2].iter().all(|s| s["failed"] == 0), "only the killed server fails calls: {killed:?}");
        assert!(killed[2]["after_restart"].as_u64().unwrap() > 0, "it rejoined: {killed:?}");
        for phase in ["equal", "slowed", "killed"] {
            assert!(row(phase)["summary"]["vs_floor"]["median"].as_f64().unwrap() > 0.0, "{backend} {phase}");
        }
        assert!(row("two")["summary"]["vs_floor"].is_null());
    }
    assert!(stdout.contains("spread-slowed std: shares fast"), "{stdout}");
    assert!(stdout.contains("of the two fast servers alone"), "{stdout}");
    let _ = std::fs::remove_file(&json);
}

#[test]
fn compare_sweeps_connections() {
    let _measuring = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("fastwire-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("r.json"), dir.join("svg"));
    let output = fastwire()
        .args(["compare", "--workload", "sweep", "--backends", "mio,tokio", "--connections", "1,20"])
        .args(["--duration", "60ms", "--rounds", "2", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = rows(&json);
    let points: Vec<(String, u64)> =
        rows.iter().map(|r| (r["backend"].as_str().unwrap().to_owned(), r["connections"].as_u64().unwrap())).collect();
    assert_eq!(points, [("mio".into(), 1), ("tokio".into(), 1), ("mio".into(), 20), ("tokio".into(), 20)]);
    for row in &rows {
        check_row(row);
        assert_eq!((row["workload"].as_str(), row["role"].as_str()), (Some("sweep"), Some("server")));
        assert_eq!(row["value_size"], 100);
        assert!(row["p99_ns"].is_number(), "{row}");
    }
    let mut charts: Vec<_> = std::fs::read_dir(&svg).unwrap().map(|e| e.unwrap().file_name()).collect();
    charts.sort();
    assert_eq!(charts, ["sweep-p99.svg", "sweep-throughput.svg"]);
    let text = std::fs::read_to_string(svg.join("sweep-throughput.svg")).unwrap();
    assert!(text.contains("mio") && text.contains("tokio") && text.contains("connections, log scale"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--tls both`: each measurement in plaintext and over TLS side by side;
/// TLS rows are `both` only and are set against the plaintext floor.
#[test]
fn compare_with_tls_beside_plaintext() {
    let _measuring = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("fastwire-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let output = fastwire()
        .args(["compare", "--workload", "pingpong,fastrpc,handshakes", "--backends", "mio,tokio", "--tls", "both"])
        .args(["--depth", "8", "--duration", "40ms", "--rounds", "2", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = rows(&json);
    rows.iter().for_each(check_row);
    let find = |backend: &str, workload: &str, compress: &str| {
        rows.iter()
            .filter(|r| r["backend"] == backend && r["workload"] == workload && r["compress"] == compress)
            .map(|r| r["role"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for backend in ["mio", "tokio"] {
        for workload in ["pingpong", "fastrpc", "handshakes"] {
            assert_eq!(find(backend, workload, "none+tls"), ["both"], "{backend} {workload}");
        }
        assert_eq!(find(backend, "fastrpc", "none").len(), 3, "plaintext in its three roles");
    }
    assert!(find("floor", "pingpong", "none+tls").is_empty(), "the floors are plain TCP only");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tls_pingpong = stdout.lines().find(|l| l.contains("pingpong") && l.contains("none+tls")).unwrap();
    assert!(tls_pingpong.contains("x "), "set against the plaintext floor: {tls_pingpong}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_rejects_unknown_names_and_says_what_exists() {
    let output = fastwire().args(["compare", "--workload", "bulk"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the workloads are fastrpc, pingpong, sizes, nowait, conns, wait, cpu, mixed"), "{stderr}");
    let output = fastwire().args(["compare", "--backends", "epoll"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("this build has std"));
    // spread runs its own servers: `load` points at compare.
    let output = fastwire().args(["load", "--addr", "127.0.0.1:9", "--workload", "spread"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("fastwire compare --workload spread"));
}

/// The peers race beside the backends on fastrpc and pingpong, client and
/// server together, their replies checked, with rows like any backend's.
#[cfg(feature = "peers")]
#[test]
fn compare_races_the_peers() {
    let _measuring = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("fastwire-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("rows.json");
    let output = fastwire()
        .args(["compare", "--workload", "fastrpc,pingpong,sizes", "--backends", "tokio", "--peers"])
        .args(["--duration", "40ms", "--rounds", "2", "--depth", "16", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = rows(&json);
    for (peer, stack) in [("peer-tarpc", "tarpc"), ("peer-tonic", "tonic"), ("peer-codec", "LengthDelimitedCodec")] {
        let mine: Vec<_> = rows.iter().filter(|r| r["backend"] == peer).collect();
        let workloads: Vec<_> = mine.iter().map(|r| r["workload"].as_str().unwrap()).collect();
        // Not on sizes: the peers race where every stack makes the calls as it is.
        assert_eq!(workloads, ["fastrpc", "pingpong"], "{peer}");
        for row in mine {
            check_row(row);
            assert_eq!(row["role"], "both", "{row}");
            // The environment says what was raced and how it was loaded.
            let threads = row["env"]["threads"].as_str().unwrap();
            assert!(threads.contains(stack) && threads.contains("caller tasks"), "{row}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without the `peers` feature, `--peers` fails and says how to get them.
#[cfg(not(feature = "peers"))]
#[test]
fn compare_without_the_peers_feature_says_how_to_build_them() {
    let output = fastwire().args(["compare", "--peers", "--workload", "pingpong"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--features peers"), "{stderr}");
}

/// `fastwire serve` in a process of its own; its address.
fn serve(backend: &str) -> (Child, String) {
    let mut child = fastwire()
        .args(["serve", "--backend", backend, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(3).unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
    (child, addr)
}

#[test]
fn load_drives_a_server_in_another_process_closed_and_open_loop() {
    let _measuring = one_at_a_time();
    let (mut server, addr) = serve("mio");
    let dir = std::env::temp_dir().join(format!("fastwire-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runs: [&[&str]; 5] = [
        &["--workload", "fastrpc", "--client", "std", "--connections", "2", "--depth", "50"],
        &["--workload", "sizes", "--client", "mio", "--value-size", "1024", "--count-allocations"],
        &["--workload", "nowait", "--client", "tokio"],
        // Open loop: 200 connections called 4,000 times a second.
        &["--workload", "conns", "--connections", "200", "--rate", "4000"],
        // Slow calls (1 in 100 waits 10 ms) among instant ones.
        &["--workload", "mixed", "--client", "mio"],
    ];
    for (i, args) in runs.iter().enumerate() {
        let json = dir.join(format!("{i}.json"));
        let output = fastwire()
            .args(["load", "--addr", &addr, "--duration", "150ms", "--json"])
            .arg(&json)
            .args(*args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        let rows = rows(&json);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        check_row(row);
        assert_eq!(row["env"]["same_process"], false, "{row}");
        assert_eq!(row["workload"], args[1]);
        match args[1] {
            "sizes" => {
                assert_eq!(row["value_size"], 1024);
                assert!(row["allocs_per_op"].is_number());
                assert!(row["mb_per_s"].as_f64().unwrap() > 0.0);
            }
            "nowait" => assert!(row["p50_ns"].is_null()),
            "mixed" => assert!(row["p50_ns"].is_number()),
            "conns" => {
                assert_eq!(row["connections"], 200);
                // Open loop: the rate sets the pace, whatever the server does.
                let per_second = row["ops"].as_f64().unwrap() / row["seconds"].as_f64().unwrap();
                assert!((2000.0..=6000.0).contains(&per_second), "{per_second} calls/s at a 4,000/s rate: {row}");
                assert!(row["p50_ns"].is_number());
            }
            _ => assert!(row["allocs_per_op"].is_null(), "not counted unless asked: {row}"),
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `load --addr a,b`: the balanced client over both, calls and latency per
/// server under the row.
#[test]
fn load_balances_over_several_servers_and_reports_each() {
    let _measuring = one_at_a_time();
    let (mut first, a) = serve("mio");
    let (mut second, b) = serve("std");
    let output = fastwire()
        .args(["load", "--addr", &format!("{a},{b}"), "--workload", "pingpong", "--duration", "200ms"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("mio balanced"), "{stdout}");
    for addr in [&a, &b] {
        let line = stdout.lines().find(|l| l.starts_with(addr.as_str())).unwrap_or_else(|| panic!("{addr}: {stdout}"));
        let calls: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(calls > 0, "each server answers calls: {line}");
        assert!(line.ends_with("yes"), "{line}");
    }
    // A server that is not there: no call is sent to it (a refused connect
    // goes to another server), so none fails, and it is reported down.
    let (_held, dead) = fastwire_testkit::net::refusing_addr();
    let output = fastwire()
        .args(["load", "--addr", &format!("{a},{dead}"), "--workload", "pingpong", "--duration", "200ms"])
        .args(["--client", "std", "--failover"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.starts_with(&dead.to_string())).unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cells[1], cells.last().copied()), ("0", Some("no")), "{line}");
    // No server answering: a failure, not an empty success.
    let (_held_too, other) = fastwire_testkit::net::refusing_addr();
    let output = fastwire()
        .args(["load", "--addr", &format!("{dead},{other}"), "--workload", "pingpong", "--duration", "100ms"])
        .args(["--client", "std", "--failover"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no call completed"));
    // The tokio client has tower's balancer instead: said so.
    let tokio = fastwire().args(["load", "--addr", &format!("{a},{b}"), "--client", "tokio"]).output().unwrap();
    assert!(!tokio.status.success());
    assert!(String::from_utf8_lossy(&tokio.stderr).contains("tower"));
    for server in [&mut first, &mut second] {
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn load_against_a_dead_address_fails_with_a_message() {
    // A port held by a socket that never listens: connects are refused.
    let (_held, dead) = fastwire_testkit::net::refusing_addr();
    let port = dead.port();
    let output =
        fastwire().args(["load", "--addr", &format!("127.0.0.1:{port}"), "--duration", "50ms"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting") && stderr.contains("refused"), "{stderr}");
}

/// `compare ARGS` (in short windows) under the shell's `ulimit LIMIT`,
/// lowered for the child only; it must succeed. Its stdout and stderr.
fn compare_under_limit(limit: &str, args: &str) -> (String, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(r#"ulimit {limit} && exec "$0" compare {args} --duration 30ms --rounds 2"#))
        .arg(env!("CARGO_BIN_EXE_fastwire"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    (stdout.into_owned(), stderr.into_owned())
}

#[cfg(all(feature = "glommio", target_os = "linux"))]
#[test]
fn compare_skips_a_backend_that_cannot_run_and_says_why() {
    // It measures too (mio's row): not beside another measuring test.
    let _measuring = one_at_a_time();
    // Too little locked memory for glommio (it needs 512 KiB): lower the
    // limit for the child only, through the shell's `ulimit`.
    let (stdout, stderr) = compare_under_limit("-l 256", "--workload nowait --backends mio,glommio");
    assert!(stderr.contains("skipped glommio") && stderr.contains("512 KiB"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("mio ")), "mio still runs: {stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("glommio ")), "{stdout}");
}

/// Under a hard limit on open files too low for a workload, `compare`
/// skips it and says which limit and how to raise it; the rest runs.
#[test]
fn compare_skips_a_workload_the_open_file_limit_cannot_hold() {
    let _measuring = one_at_a_time();
    let (stdout, stderr) = compare_under_limit("-n 512", "--workload conns,nowait --backends mio");
    assert!(stderr.contains("conns with 1000 connections needs about") && stderr.contains("ulimit -n"), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("mio ") && l.contains("nowait")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.split_whitespace().nth(2) == Some("conns")), "{stdout}");
}

/// A measurement that fails leaves its row out and makes `compare` fail,
/// saying which: the floor peers speak no compression, so a server alone
/// under the blaster cannot be measured compressed.
#[test]
fn compare_fails_when_a_measurement_fails() {
    let _measuring = one_at_a_time();
    let output = fastwire()
        .args(["compare", "--workload", "pingpong", "--role", "server", "--compress", "snappy", "--backends", "mio"])
        .args(["--duration", "20ms", "--rounds", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("mio: pingpong server") && stderr.contains("uncompressed"), "{stderr}");
    assert!(stderr.contains("1 measurement failed"), "{stderr}");
}
