//! What a one-byte round trip over loopback TCP costs, built five ways:
//! where the two threads run and whether they sleep decides most of it.
//!
//! * `blocking`: two threads blocking in `read`, placed by the scheduler;
//! * `blocking, one core`: both pinned to the first core, so the woken
//!   thread runs where the message was sent from;
//! * `blocking, two cores`: pinned to different cores, so every message
//!   wakes the other, idle core;
//! * `spinning, two cores`: non-blocking sockets read in a loop, never
//!   sleeping, a core each (the pingpong floor of `fastwire compare`);
//! * `one thread`: both ends in one thread, no wake-up at all.
//!
//! Each construction runs in rounds that rotate their order, and the table
//! shows each one's median round trip (the median of its rounds' p50) with
//! the rounds' smallest and largest. Run: `cargo run --release --example
//! round_trips` (two cores or more; on one core the pinned and spinning
//! rows are left out).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
const WINDOW: Duration = Duration::from_millis(150);

/// A connected pair with `TCP_NODELAY`, non-blocking if `spin`.
fn pair(spin: bool) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nodelay(true).expect("TCP_NODELAY");
        s.set_nonblocking(spin).expect("non-blocking");
    }
    (client, server)
}

/// Pins the calling thread to `cpu`, or lets it run anywhere.
fn pin(cpu: Option<usize>) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, CPU_SET writes within it,
    // and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for c in 0..cpus {
            if cpu.is_none_or(|only| only == c) {
                libc::CPU_SET(c, &mut set);
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One byte across and back: spinning on `WouldBlock`, or blocking.
fn exchange(stream: &mut TcpStream, byte: &mut [u8; 1], write_first: bool) -> std::io::Result<bool> {
    if write_first {
        stream.write_all(byte)?;
    }
    loop {
        match stream.read(byte) {
            Ok(0) => return Ok(false),
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    if !write_first {
        stream.write_all(byte)?;
    }
    Ok(true)
}

/// The p50 round trip, in nanoseconds, of one window of a two-thread construction.
fn two_threads(spin: bool, client_cpu: Option<usize>, server_cpu: Option<usize>) -> u64 {
    let (mut client, mut server) = pair(spin);
    let echo = std::thread::spawn(move || {
        pin(server_cpu);
        let mut byte = [0u8; 1];
        while let Ok(true) = exchange(&mut server, &mut byte, false) {}
    });
    let mut times = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(client_cpu);
            let mut byte = [7u8; 1];
            let end = Instant::now() + WINDOW;
            while Instant::now() < end {
                let started = Instant::now();
                exchange(&mut client, &mut byte, true).expect("round trip");
                times.push(started.elapsed().as_nanos() as u64);
            }
            client.shutdown(std::net::Shutdown::Both).expect("shutdown");
        });
    });
    echo.join().expect("echo thread");
    median(times)
}

/// The p50 of one window with both ends in this thread.
fn one_thread() -> u64 {
    let (mut client, mut server) = pair(false);
    let mut byte = [7u8; 1];
    let mut times = Vec::new();
    let end = Instant::now() + WINDOW;
    while Instant::now() < end {
        let started = Instant::now();
        client.write_all(&byte).expect("write");
        server.read_exact(&mut byte).expect("read");
        server.write_all(&byte).expect("write");
        client.read_exact(&mut byte).expect("read");
        times.push(started.elapsed().as_nanos() as u64);
    }
    median(times)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

type Construction = (&'static str, Box<dyn Fn() -> u64>);

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut constructions: Vec<Construction> = vec![
        ("blocking, placed by the scheduler", Box::new(|| two_threads(false, None, None))),
        ("one thread, both ends", Box::new(one_thread)),
    ];
    if cores >= 2 {
        constructions.push(("blocking, one core", Box::new(|| two_threads(false, Some(0), Some(0)))));
        constructions.push(("blocking, two cores", Box::new(|| two_threads(false, Some(0), Some(1)))));
        constructions.push(("spinning, two cores", Box::new(|| two_threads(true, Some(0), Some(1)))));
    }
    let mut rounds: Vec<Vec<u64>> = vec![Vec::new(); constructions.len()];
    for round in 0..ROUNDS {
        for i in 0..constructions.len() {
            let at = (round + i) % constructions.len();
            rounds[at].push((constructions[at].1)());
        }
    }
    println!("| construction | round trip (p50, median of {ROUNDS} rounds) | smallest round | largest round |");
    println!("| --- | ---: | ---: | ---: |");
    for ((name, _), mut r) in constructions.iter().zip(rounds) {
        r.sort_unstable();
        let us = |ns: u64| format!("{:.1} µs", ns as f64 / 1e3);
        println!("| {name} | {} | {} | {} |", us(r[r.len() / 2]), us(r[0]), us(r[r.len() - 1]));
    }
}
