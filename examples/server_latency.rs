//! Where pingpong latency goes: the server's share.
//!
//! `cargo run --release --example server_latency [-- calls]`
//!
//! In one run: the blocking 1-byte floor (a blocking thread echoing), then
//! each backend's server answered by the same kind of client as the floor's
//! (one thread that writes a request and blocks in `read` for the response,
//! speaking fastrpc's bytes directly, no client library). The difference
//! between a server's row and the floor is what that server's architecture
//! adds to a round trip; the difference between this and `fastwire compare
//! --workload pingpong` is what the backend's client adds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fastwire::backend::{start_server, BackendKind};
use fastwire::harness::drive::{histogram, Mode, Timing};
use fastwire::harness::floor;
use fastwire::proto::{demo_handler, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(20_000), |s| s.parse())?;
    let floor = floor::pingpong(1, &Timing::new(Duration::from_secs(1)), Mode::Timed)?;
    let latency = floor.latency.expect("timed");
    println!(
        "{:16} p50 {:>6.1} µs  p99 {:>6.1} µs",
        "floor",
        us(latency.value_at_quantile(0.5)),
        us(latency.value_at_quantile(0.99))
    );
    // The fastrpc request `e` = `x` (id 1): 4-byte id, name length, name, value length, value.
    let mut request = Vec::new();
    for part in [&1u32.to_le_bytes()[..], &1u32.to_le_bytes(), b"e", &1u32.to_le_bytes(), b"x"] {
        request.extend_from_slice(part);
    }
    for &kind in BackendKind::ALL {
        if let Some(why) = kind.unavailable() {
            println!("{kind:16} skipped: {why}");
            continue;
        }
        let server = start_server(kind, "127.0.0.1:0".parse()?, ServerConfig::default(), demo_handler)?;
        let mut socket = TcpStream::connect(server.local_addr())?;
        socket.set_nodelay(true)?;
        // Handshake: version 0, no compression (wire value 1), no TLS.
        socket.write_all(&[0, 1, 0])?;
        let mut handshake = [0u8; 3];
        socket.read_exact(&mut handshake)?;
        // The response: id, value length, `re:x`.
        let mut response = [0u8; 8 + 4];
        let mut latency = histogram();
        for i in 0..calls + calls / 10 {
            let started = Instant::now();
            socket.write_all(&request)?;
            socket.read_exact(&mut response)?;
            if i >= calls / 10 {
                // The first tenth warms up.
                latency.saturating_record(started.elapsed().as_nanos() as u64);
            }
        }
        println!(
            "{:16} p50 {:>6.1} µs  p99 {:>6.1} µs",
            kind.name(),
            us(latency.value_at_quantile(0.5)),
            us(latency.value_at_quantile(0.99))
        );
        drop(socket);
        server.shutdown(Duration::from_secs(2));
    }
    Ok(())
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}
