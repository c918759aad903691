//! The environment recorded beside every result: a number without its
//! machine, build and date cannot be compared with anything.

use std::process::Command;

use serde::{Deserialize, Serialize};

use super::workload::Workload;
use crate::backend::BackendKind;

/// Where and how a result was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Env {
    /// The threads of the server and of the load, for this backend and workload.
    pub threads: String,
    /// Whether the server and the load shared one process (as in Go's benchmarks).
    pub same_process: bool,
    /// `uname -r`.
    pub kernel: String,
    /// Operating system and architecture.
    pub os: String,
    /// CPUs available to the process.
    pub cpus: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// The compiler that built this binary.
    pub rustc: String,
    /// `release` or `debug` (debug figures mean nothing).
    pub build: String,
    /// The git commit, with `-dirty` if the working tree had changes.
    pub commit: String,
    /// When (UTC, RFC 3339).
    pub date: String,
}

/// The machine's part of [`Env`], read once per run.
#[derive(Clone, Debug)]
pub struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
    commit: String,
}

impl Machine {
    /// Reads the kernel, the CPUs and the commit.
    pub fn detect() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine { kernel, cpus: cpus(), cpu_model, commit: commit() }
    }

    /// The environment of one result.
    pub fn env(&self, threads: String, same_process: bool) -> Env {
        Env {
            threads,
            same_process,
            kernel: self.kernel.clone(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            cpus: self.cpus,
            cpu_model: self.cpu_model.clone(),
            rustc: env!("FASTWIRE_RUSTC").to_owned(),
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
            commit: self.commit.clone(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

fn cpus() -> usize {
    fastwire_common::net::available_cores()
}

/// The commit of the source tree this binary was built from, asked of git
/// in that tree at run time (so that uncommitted changes show as `-dirty`);
/// `unknown` without git or outside a repository.
fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".to_owned(),
    }
}

/// The thread layout of `backend`'s server and of the load on it.
pub fn layout(backend: BackendKind, workload: Workload) -> String {
    let (server, load) = (server_layout(backend), load_layout(backend, workload));
    match handlers(backend, workload) {
        Some(handlers) => format!("server: {server}; handlers: {handlers}; load: {load}"),
        None => format!("server: {server}; load: {load}"),
    }
}

/// The thread layout of `backend`'s server.
pub fn server_layout(backend: BackendKind) -> String {
    let n = cpus();
    match backend.name() {
        "std" => "an acceptor thread, and a reader and a writer thread per connection".to_owned(),
        "tokio" | "tokio-tasks" => format!("tokio multi-thread runtime ({n} workers), a task per connection"),
        "tokio-per-core" => format!("{n} current-thread tokio runtimes, one per core, the first accepting and handing connections to them in turn"),
        "tokio-per-core-reuseport" => format!("{n} current-thread tokio runtimes, one per core, a SO_REUSEPORT listener each"),
        "mio" => format!("an acceptor thread handing connections in turn to {n} edge-triggered mio event loops, one per core"),
        "mio-reuseport" => format!("{n} edge-triggered mio event loops, one per core, a SO_REUSEPORT listener each"),
        "glommio" => format!("{n} glommio (io_uring) executors pinned one per core, the first accepting and handing connections to them in turn"),
        "glommio-reuseport" => format!("{n} glommio (io_uring) executors pinned one per core, a SO_REUSEPORT listener each"),
        "uring-sqpoll" => format!("{n} io_uring completion loops by hand with SQPOLL (a kernel thread per ring polls for submissions)"),
        "uring-fixed" => format!("{n} io_uring completion loops by hand with registered files"),
        "uring-reuseport" => format!("{n} io_uring completion loops by hand, one per core, a SO_REUSEPORT listener each"),
        "uring" => format!(
            "{n} io_uring completion loops by hand, one per core, the first accepting and handing connections to the loops in turn (multishot accept and receive, provided buffers)"
        ),
        other => other.to_owned(),
    }
}

/// The load `backend`'s client puts on a server in `workload`.
pub fn load_layout(backend: BackendKind, workload: Workload) -> String {
    let client = match backend.client_kind().name() {
        "std" => "std client (a reader and a writer thread per connection)",
        "mio" => "mio client (a reactor thread per connection)",
        "glommio" => "glommio client (an io_uring executor per connection)",
        "uring" => "uring client (a thread with an io_uring per connection)",
        _ => "tokio client (a current-thread runtime per connection)",
    };
    match workload {
        Workload::Conns => {
            "open loop, a pacing thread and tokio clients on a one-worker runtime (the same load for every server)"
                .to_owned()
        }
        Workload::Nowait => format!("{client}, one sender per connection"),
        Workload::Handshakes => {
            "`connections` dialer threads, each connecting, handshaking, calling once and closing, \
             through the protocol crate over blocking sockets (the same load for every server)"
                .to_owned()
        }
        _ if backend.caller_tasks() => async_load("tokio client"),
        _ if backend.client_kind().name() == "tokio" => {
            "tokio client on a current-thread runtime per connection, one task per connection keeping \
             `depth` calls in flight (started, the oldest awaited first)"
                .to_owned()
        }
        _ => format!("{client}, a thread per connection keeping `depth` calls in flight"),
    }
}

/// The load of the tokio client and of the peers' clients.
pub fn async_load(client: &str) -> String {
    format!("{client} on a current-thread runtime per connection, `depth` caller tasks per connection")
}

/// Where the handlers of `wait`, `cpu` and `mixed` run on `backend`.
fn handlers(backend: BackendKind, workload: Workload) -> Option<&'static str> {
    let waits = match backend.client_kind().name() {
        "glommio" => "waiting calls are local glommio tasks sleeping on glommio's timer, the rest inline",
        _ => "waiting calls are deferred to a timer thread, the rest inline",
    };
    match workload {
        Workload::Wait | Workload::Mixed | Workload::MixedBase => Some(waits),
        Workload::Cpu => Some("inline, burning CPU on the connection's thread, task or loop"),
        _ => None,
    }
}

/// The thread layout of the floor pair (blaster against floor server) at
/// `depth` calls in flight per connection.
pub fn floor_pair_layout(depth: usize) -> String {
    let waiting = if super::wire::spins(depth) {
        "both spinning on non-blocking sockets, never sleeping"
    } else {
        "both blocking"
    };
    format!(
        "floor pair: per connection one blaster thread (pre-encoded request windows, responses counted and their \
         ids checked) and one floor-server thread (frames parsed, answered at once, one write per batch), {waiting}"
    )
}

/// The thread layout of a `server` or `client` row.
pub fn role_layout(backend: BackendKind, role: super::workload::Role) -> String {
    match role {
        super::workload::Role::Server => {
            format!("server: {}; load: the blaster, a thread per connection", server_layout(backend))
        }
        super::workload::Role::Client => format!(
            "server: the floor server, a thread per connection; load: {}",
            load_layout(backend, Workload::Fastrpc)
        ),
        super::workload::Role::Both => layout(backend, Workload::Fastrpc),
    }
}

/// The thread layout of a small server written by hand.
pub fn by_hand_layout(model: fastwire_by_hand::Model) -> &'static str {
    use fastwire_by_hand::Model;
    match model {
        Model::Threads => "by hand, a blocking thread per connection",
        Model::Mio => "by hand, one mio event loop",
        Model::Tokio => "by hand, a tokio task per connection on the multi-threaded runtime",
        Model::Uring => "by hand, one io_uring completion loop, one request in flight per connection",
    }
}

/// The thread layout of a floor.
pub fn floor_layout(workload: Workload) -> String {
    match workload {
        Workload::Pingpong if super::wire::spins(1) => "floor: one thread writes the value's bytes and reads them back, \
            another echoes them, both spinning on non-blocking sockets (never sleeping); no protocol"
            .into(),
        Workload::Pingpong => {
            "floor: one blocking thread writes the value's bytes and reads them back, a blocking thread echoes them; no protocol".into()
        }
        Workload::Wait => "ideal: computed, not measured: connections x depth calls per 1 ms wait".into(),
        Workload::Cpu => "ideal: computed, not measured: one call per 20 µs on each core".into(),
        _ => "floor: per connection one blocking thread writes request frames (`depth` in flight) and reads \
              responses, one blocking thread answers them; fixed frame sizes, no parsing"
            .into(),
    }
}
