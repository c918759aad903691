//! The connection sweep: how a server behaves from 1 to 10,000 connections.
//!
//! Each point loads one server with `connections` connections, one call in
//! flight on each (an echo of a 100-byte value), and records throughput and
//! latency. The load is one thread running an event loop of its own
//! (`mio`): a blaster thread per connection would measure the scheduler at
//! 10,000 connections, not the server. It writes a connection's next
//! request the moment its response is complete, checking ids and lengths.
//!
//! 10,000 connections need two processes (each end needs a descriptor per
//! connection and the limit is 20,000 per process), so those points run the
//! server as a child `fastwire serve`.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fastwire_proto::codec::encode_request;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::sample::{histogram, Sample};
use super::wire::{handshake, Responses};
use super::workload::Spec;

/// The connection counts of the sweep.
pub const POINTS: [usize; 5] = [1, 10, 100, 1_000, 10_000];

/// From this many connections on, the server runs in a process of its own.
pub const PROCESS_FROM: usize = 5_000;

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    responses: Responses,
    next_id: u32,
    sent: Instant,
}

/// Connects `spec.connections` connections to `addr` and keeps one call in
/// flight on each for `warmup + measure`, timing the calls of the measured
/// window. `counter` is read as the window opens and closes.
pub fn run(
    addr: SocketAddr,
    spec: &Spec,
    warmup: Duration,
    measure: Duration,
    counter: Option<&dyn Fn() -> u64>,
) -> Result<Sample, String> {
    let (name, value) = spec.request();
    let limits = spec.protocol().limits;
    let response_size = spec.response_size();
    let mut buf = vec![0u8; 64 * 1024];
    let mut poll = Poll::new().map_err(|e| format!("sweep: poll: {e}"))?;
    let mut conns = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        // Blocking connect and handshake, then non-blocking for the loop.
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("sweep: connection {i}: {e}"))?;
        let ready = s
            .set_nodelay(true)
            .and_then(|()| s.set_read_timeout(Some(Duration::from_secs(10))))
            .and_then(|()| handshake(&mut s, spec))
            .and_then(|()| s.set_nonblocking(true));
        ready.map_err(|e| format!("sweep: connection {i}: handshake: {e}"))?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE).map_err(|e| format!("sweep: {e}"))?;
        conns.push(Conn { stream, responses: Responses::default(), next_id: 1, sent: Instant::now() });
    }
    let mut request = Vec::new();
    let send = |conn: &mut Conn, request: &mut Vec<u8>| -> Result<(), String> {
        request.clear();
        encode_request(request, conn.next_id, &name, &value, &limits).map_err(|e| e.to_string())?;
        conn.sent = Instant::now();
        // A request is ~120 bytes and at most one is in flight: the socket
        // buffer always has room, so a short write means a broken connection.
        match conn.stream.write(request) {
            Ok(n) if n == request.len() => Ok(()),
            Ok(_) => Err("sweep: a short write".into()),
            Err(e) => Err(format!("sweep: writing: {e}")),
        }
    };
    for conn in &mut conns {
        send(conn, &mut request)?;
    }
    let mut latency = histogram();
    let (mut ops, mut bytes) = (0u64, 0u64);
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let (open, close) = (start + warmup, start + warmup + measure);
    let mut opened: Option<(Instant, Option<u64>)> = None;
    loop {
        let now = Instant::now();
        if opened.is_none() && now >= open {
            opened = Some((now, counter.map(|c| c())));
        }
        if now >= close {
            break;
        }
        match poll.poll(&mut events, Some(close - now)) {
            // A signal (a server process of an earlier round exiting) is no error.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result.map_err(|e| format!("sweep: poll: {e}"))?,
        }
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            // Edge-triggered: read until the socket has nothing more.
            loop {
                let n = match conn.stream.read(&mut buf) {
                    Ok(0) => return Err("sweep: the server closed a connection".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("sweep: reading: {e}")),
                };
                let Conn { responses, next_id, sent, .. } = conn;
                let mut answered = false;
                responses.feed(&buf[..n], |id, len| {
                    if id != *next_id || len != response_size || answered {
                        return Err(format!("sweep: response id {id} of {len} bytes, expected id {next_id}"));
                    }
                    if opened.is_some() {
                        latency.saturating_record(sent.elapsed().as_nanos() as u64);
                        ops += 1;
                        bytes += len as u64;
                    }
                    answered = true;
                    Ok(())
                })?;
                if answered {
                    conn.next_id = conn.next_id.wrapping_add(1).max(1);
                    send(conn, &mut request)?;
                }
            }
        }
    }
    let (opened_at, before) = opened.unwrap_or((start, None));
    let counted = counter.zip(before).map(|(c, b)| c() - b);
    Ok(Sample {
        ops,
        // Its own client: a response it did not ask for is an error above.
        unsolicited: 0,
        seconds: opened_at.elapsed().as_secs_f64().min(measure.as_secs_f64().max(1e-9)),
        bytes,
        latency: Some(latency),
        allocations: None,
        counted,
    })
}

/// Why `backend` cannot hold `connections` here, if it cannot: the std
/// server's two threads per connection need four memory mappings each, and
/// `vm.max_map_count` bounds them.
pub fn cannot_hold(backend: &str, connections: usize) -> Option<String> {
    if backend != "std" {
        return None;
    }
    let max_maps: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    let needed = connections * 2 * 4;
    (needed + 1_000 > max_maps).then(|| {
        format!(
            "std cannot hold {connections} connections here: two threads per connection need about {needed} memory \
             mappings, over vm.max_map_count ({max_maps})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_std_runs_out_of_mappings() {
        assert_eq!(cannot_hold("mio", 10_000), None);
        assert_eq!(cannot_hold("std", 10), None);
        if let Some(why) = cannot_hold("std", 1_000_000) {
            assert!(why.contains("vm.max_map_count"), "{why}");
        }
    }
}
