//! A server in a process of its own (`--processes`), so that its CPU time
//! and memory are its own: `fastwire serve` as a child, read through
//! `/proc/PID/stat` (CPU ticks) and `/proc/PID/status` (resident memory).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::workload::Spec;
use crate::backend::BackendKind;

/// A `fastwire serve` child process; killed when dropped.
pub struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    /// Starts `exe serve` (the `fastwire` binary) with `kind` and `spec`'s
    /// server settings, and waits for the address it prints.
    pub fn spawn(exe: &Path, kind: BackendKind, spec: &Spec) -> Result<ChildServer, String> {
        Self::spawn_at(exe, kind, spec, "127.0.0.1:0", &[])
    }

    /// [`spawn`](Self::spawn) on `addr`, with more arguments of `serve`
    /// (a `--handler-delay`).
    pub fn spawn_at(
        exe: &Path,
        kind: BackendKind,
        spec: &Spec,
        addr: &str,
        more: &[&str],
    ) -> Result<ChildServer, String> {
        let config = spec.server_config();
        let limits = config.protocol.limits;
        let mut command = Command::new(exe);
        command
            .args(["serve", "--backend", kind.name(), "--addr", addr])
            .args(["--compress", spec.compress.name(), "--version", &spec.version.to_string()])
            .args(["--sniff", &String::from_utf8_lossy(&spec.sniff)])
            .args(["--max-message", &limits.max_name_len.max(limits.max_value_len).to_string()])
            .args(["--max-connections", &config.max_connections.to_string()])
            .args(["--max-in-flight", &config.max_in_flight.to_string()])
            .args(more);
        Self::start(command, kind.name())
    }

    /// Starts `exe serve --by-hand` with `model`, and waits for the address
    /// it prints.
    pub fn by_hand(exe: &Path, model: fastwire_by_hand::Model) -> Result<ChildServer, String> {
        let mut command = Command::new(exe);
        command.args(["serve", "--by-hand", model.name(), "--addr", "127.0.0.1:0"]);
        Self::start(command, model.row_name())
    }

    fn start(mut command: Command, what: &str) -> Result<ChildServer, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {} serve: {e}", command.get_program().to_string_lossy()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading the server's address: {e}"))?;
        // "fastwire: serving on ADDR (backend NAME)"
        let addr = line.split_whitespace().nth(3).and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the {what} server process did not start: {line:?}"));
        };
        Ok(ChildServer { child, addr })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// CPU time it has used so far (user and system), in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) in
        // parentheses; utime and stime are the 14th and 15th of the line.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        ticks * 1_000_000_000 / per_second
    }

    /// Its resident memory now, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
