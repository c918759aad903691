//! The floors: what loopback TCP gives with no protocol and no framework,
//! measured in the same run as the backends so that ratios mean something.
//!
//! * [`pingpong`]: one thread writes 1 byte (or the value size) and reads
//!   it back from an echo thread, both spinning on non-blocking sockets
//!   (blocking on a machine with one core): the least a round trip costs
//!   through the kernel's loopback, two system calls per side and no
//!   wake-up (see `wire::spins` for why that is the floor).
//! * [`pipelined`]: the fastrpc workload's bytes (an 18-byte request frame,
//!   a 269-byte response frame) exchanged over the same connections with
//!   the same depth, by hand-written loops that know the sizes in advance:
//!   no parsing, no ids, no buffers beyond one per thread. What is left is
//!   syscalls and copies: the floor any fastrpc server can approach.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use fastwire_proto::codec::{encode_request, encode_response};
use fastwire_proto::{Limits, FASTRPC_BENCH_BODY};

use super::sample::{window, Control, Mode, Sample, Tally, Timing, MEASURE, STOP};
use super::wire::{spin_read_exact, spin_write_all, spins, Responses};
use super::workload::{Spec, FASTRPC_VALUE};

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("floor: {what}: {e}")
}

/// A listener on a free loopback port and `connections` connected pairs
/// (client side, server side), with `TCP_NODELAY` on both.
fn pairs(connections: usize) -> Result<Vec<(TcpStream, TcpStream)>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("listening"))?;
    let addr: SocketAddr = listener.local_addr().map_err(io("listening"))?;
    (0..connections)
        .map(|_| {
            let client = TcpStream::connect(addr).map_err(io("connecting"))?;
            let (server, _) = listener.accept().map_err(io("accepting"))?;
            client.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
            server.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
            Ok((client, server))
        })
        .collect()
}

/// A ping-pong of `size` bytes (the target's is 1) on one connection: the
/// latency floor. Both sides spin on non-blocking sockets where there are
/// cores for both (`wire::spins`), else block.
pub fn pingpong(size: usize, timing: &Timing, mode: Mode) -> Result<Sample, String> {
    let size = size.max(1);
    let spin = spins(1);
    let (mut client, mut server) = pairs(1)?.pop().expect("one pair");
    for s in [&client, &server] {
        s.set_nonblocking(spin).map_err(io("non-blocking"))?;
    }
    let control = Control::default();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut buf = vec![0u8; size];
            let never = || false;
            loop {
                let echoed = if spin {
                    spin_read_exact(&mut server, &mut buf, &never).and_then(|()| spin_write_all(&mut server, &buf))
                } else {
                    server.read_exact(&mut buf).and_then(|()| server.write_all(&buf))
                };
                if echoed.is_err() {
                    break;
                }
            }
        });
        let control = &control;
        let worker = s.spawn(move || -> std::io::Result<Tally> {
            let mut tally = Tally::new(mode, false);
            let mut buf = vec![7u8; size];
            let stopped = || control.phase() == STOP;
            let result = loop {
                let phase = control.phase();
                if phase == STOP {
                    break Ok(());
                }
                let started = Instant::now();
                let exchanged = if spin {
                    spin_write_all(&mut client, &buf).and_then(|()| spin_read_exact(&mut client, &mut buf, &stopped))
                } else {
                    client.write_all(&buf).and_then(|()| client.read_exact(&mut buf))
                };
                match exchanged {
                    Err(_) if stopped() => break Ok(()),
                    Err(e) => break Err(e),
                    Ok(()) => {}
                }
                if phase == MEASURE {
                    tally.record(size, started.elapsed());
                }
            };
            let _ = client.shutdown(Shutdown::Both);
            result.map(|()| tally)
        });
        let window = window(control, timing, mode, None);
        let tally = worker.join().expect("floor thread panicked").map_err(io("ping-pong"))?;
        Ok(tally.into_sample(window, false))
    })
}

/// The fastrpc workload's bytes, pipelined with `spec.depth` in flight on
/// `spec.connections` connections, by loops that know the frame sizes: the
/// throughput floor. Latency is not recorded (requests go out in blocks).
pub fn pipelined(spec: &Spec, timing: &Timing, mode: Mode) -> Result<Sample, String> {
    let limits = Limits::default();
    let mut request = Vec::new();
    encode_request(&mut request, 1, b"", FASTRPC_VALUE, &limits).expect("within limits");
    let mut response = Vec::new();
    encode_response(&mut response, 1, FASTRPC_BENCH_BODY, &limits).expect("within limits");
    let depth = spec.depth.max(1);
    let requests: Vec<u8> = request.repeat(depth);
    const READ: usize = 64 * 1024;
    // Enough responses for the most requests one read can bring.
    let responses: Vec<u8> = response.repeat(READ / request.len() + 1);
    let (req_len, resp_len) = (request.len(), response.len());
    let control = Control::default();
    let pairs = pairs(spec.connections)?;
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (mut client, mut server) in pairs {
            let responses = &responses;
            s.spawn(move || {
                let mut buf = vec![0u8; READ];
                let mut partial = 0;
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    partial += n;
                    let complete = partial / req_len;
                    partial %= req_len;
                    if server.write_all(&responses[..complete * resp_len]).is_err() {
                        break;
                    }
                }
            });
            let (requests, control) = (&requests, &control);
            workers.push(s.spawn(move || -> std::io::Result<Tally> {
                let mut tally = Tally::new(Mode::Counted, false);
                let mut buf = vec![0u8; READ];
                let mut in_flight = 0;
                let mut responses = Responses::default();
                let result = loop {
                    let phase = control.phase();
                    if phase == STOP {
                        break Ok(());
                    }
                    if in_flight < depth {
                        if let Err(e) = client.write_all(&requests[..(depth - in_flight) * req_len]) {
                            break Err(e);
                        }
                        in_flight = depth;
                    }
                    let n = match client.read(&mut buf) {
                        Ok(0) => break Err(std::io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => n,
                        Err(e) => break Err(e),
                    };
                    let mut done = 0;
                    let _ = responses.feed(&buf[..n], |_, _| {
                        done += 1;
                        Ok::<(), ()>(())
                    });
                    in_flight -= done;
                    if phase == MEASURE {
                        tally.ops += done as u64;
                        tally.bytes += (done * FASTRPC_BENCH_BODY.len()) as u64;
                    }
                };
                let _ = client.shutdown(Shutdown::Both);
                result.map(|()| tally)
            }));
        }
        let window = window(&control, timing, mode, None);
        let mut total = Tally::new(Mode::Counted, false);
        for worker in workers {
            total.merge(worker.join().expect("floor thread panicked").map_err(io("pipelined exchange"))?);
        }
        Ok(total.into_sample(window, false))
    })
}
