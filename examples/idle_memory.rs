//! Server memory per idle connection, measured.
//!
//! Starts `fastwire serve` as a separate process (the descriptor limit is
//! per process, and the server's memory must not include the clients'),
//! opens N connections to it, each of which completes its handshake and one
//! call and then stays idle, and reads the server's resident memory (VmRSS in
//! `/proc/PID/status`) before and after:
//!
//! ```text
//! per connection = (RSS with N idle connections - RSS with none) / N
//! ```
//!
//! Run (release build first, so that the server binary exists):
//! `cargo build --release && cargo run --release --example idle_memory -- mio 10000`
//! Backends: mio, tokio, tokio-per-core, std (a list, comma-separated).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn call(stream: &mut TcpStream, id: u32) {
    let mut request = Vec::new();
    request.extend_from_slice(&id.to_le_bytes());
    request.extend_from_slice(&4u32.to_le_bytes());
    request.extend_from_slice(b"echo");
    request.extend_from_slice(&2u32.to_le_bytes());
    request.extend_from_slice(b"hi");
    stream.write_all(&request).unwrap();
    let mut response = [0u8; 8 + 5];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(&response[8..], b"re:hi");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let backends = args.next().unwrap_or_else(|| "mio".into());
    let connections: usize = args.next().map_or(10_000, |n| n.parse().expect("a number of connections"));
    let server_bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("fastwire");
    assert!(server_bin.exists(), "build the server first: cargo build --release ({} is missing)", server_bin.display());
    // A descriptor per connection here (the server, `fastwire serve`,
    // raises its own limit): lift the soft limit to the hard one, and stop
    // with the command to raise it if even that is too low.
    match fastwire::raise_open_files_limit() {
        Ok((before, after)) => {
            if after.soft > before.soft {
                eprintln!("idle_memory: raised the open-file limit from {} to {}", before.soft, after.soft);
            }
            if let Err(why) = after.fits(connections as u64 + 64, &format!("holding {connections} connections")) {
                eprintln!("idle_memory: {why}");
                std::process::exit(2);
            }
        }
        Err(e) => eprintln!("idle_memory: could not read or raise the open-file limit: {e}"),
    }
    println!("| backend | connections | RSS before (KiB) | RSS after (KiB) | per connection (bytes) |");
    println!("| --- | --- | --- | --- | --- |");
    for backend in backends.split(',') {
        let mut server = Command::new(&server_bin)
            .args(["serve", "--backend", backend, "--addr", "127.0.0.1:0", "--idle-timeout", "off"])
            .args(["--max-connections", &(connections + 10).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.split_whitespace().nth(3).expect("the address line").to_owned();
        // Warm up (runtimes, per-loop buffers), and let it settle.
        let mut warm = TcpStream::connect(&addr).unwrap();
        warm.write_all(&[0, 1, 0]).unwrap();
        warm.read_exact(&mut [0u8; 3]).unwrap();
        call(&mut warm, 1);
        drop(warm);
        std::thread::sleep(Duration::from_secs(2));
        let before = rss_kib(server.id());

        let mut held = Vec::with_capacity(connections);
        for i in 0..connections {
            let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.write_all(&[0, 1, 0]).unwrap();
            s.read_exact(&mut [0u8; 3]).unwrap();
            call(&mut s, 1);
            held.push(s);
        }
        // Idle connections give their buffers back after a second.
        std::thread::sleep(Duration::from_secs(3));
        let after = rss_kib(server.id());
        let per_conn = (after.saturating_sub(before) * 1024) as f64 / connections as f64;
        println!("| {backend} | {connections} | {before} | {after} | {per_conn:.0} |");
        drop(held);
        let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
        let _ = server.wait();
    }
}
