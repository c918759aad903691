//! A connection storm: how fast a server accepts and serves new connections.
//!
//! Starts `fastwire serve` as a separate process, then `threads` client
//! threads each open `per_thread` connections one after another: connect,
//! handshake, one call, close. Prints connections per second. Written to
//! compare the mio backend's two ways of accepting: one acceptor thread
//! handing connections to the loops in turn (`mio`, the default) and a
//! `SO_REUSEPORT` listener per event loop (`mio-reuseport`); it works for
//! every backend.
//!
//! Run: `cargo build --release && cargo run --release --example accept_storm -- mio,mio-reuseport 4 2500`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

fn one_connection(addr: &str) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut bytes = vec![0, 1, 0];
    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0]);
    bytes.extend_from_slice(b"foobar");
    s.write_all(&bytes).unwrap();
    let mut reply = [0u8; 3 + 8 + 261];
    s.read_exact(&mut reply).unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let backends = args.next().unwrap_or_else(|| "mio,mio-reuseport".into());
    let threads: usize = args.next().map_or(4, |n| n.parse().unwrap());
    let per_thread: usize = args.next().map_or(2500, |n| n.parse().unwrap());
    let server_bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("fastwire");
    assert!(server_bin.exists(), "build the server first: cargo build --release");
    println!("| backend | client threads | connections | seconds | connections/s |");
    println!("| --- | --- | --- | --- | --- |");
    for backend in backends.split(',') {
        let mut server = Command::new(&server_bin)
            .args(["serve", "--backend", backend, "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split_whitespace().nth(3).expect("the address line").to_owned();
        one_connection(&addr); // warm up
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| (0..per_thread).for_each(|_| one_connection(&addr)));
            }
        });
        let seconds = start.elapsed().as_secs_f64();
        let total = threads * per_thread;
        println!("| {backend} | {threads} | {total} | {seconds:.2} | {:.0} |", total as f64 / seconds);
        let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
        let _ = server.wait();
    }
}
