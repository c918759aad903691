//! The floor pair: two peers that speak the real protocol, so that a server and a client
//! can each be measured on their own.
//!
//! * [`blast`]: a load generator with no client machinery: the handshake,
//!   then a ring of pre-encoded requests written a window at a time (one
//!   system call for each refill), responses parsed only enough to count
//!   them and check their ids (in order: every fastwire server answers
//!   inline calls in order) and lengths. It loads a *server* (`--role
//!   server`).
//! * [`FloorServer`]: the handshake, then request frames parsed and
//!   answered at once (the fastrpc body, or `re:` and the value), one
//!   blocking thread per connection, one write per batch of requests read,
//!   no handler machinery. It answers a *client* (`--role client`).
//!
//! Blaster against floor server is the floor pair: what the protocol costs
//! over loopback with nothing else, the denominator of every role's ratio.
//! Both speak only uncompressed streams. At one call in flight both spin on
//! non-blocking sockets instead of sleeping in `read` (where the machine
//! has a core for each: see `wire::spins`), so that no backend,
//! which sleeps between calls, can beat the pair by being woken faster.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use fastwire_proto::codec::{encode_request, encode_response};
use fastwire_proto::{Compression, FASTRPC_BENCH_BODY};

use super::sample::{window, Control, Mode, Sample, Tally, Timing, MEASURE, STOP};
use super::wire::{handshake, spin_read, spin_write_all, spins, Responses};
use super::workload::Spec;

/// Read buffer of either peer.
const READ: usize = 64 * 1024;

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Whether the floor peers can speak `spec`'s stream.
pub(crate) fn check(spec: &Spec) -> Result<(), String> {
    if spec.compress != Compression::None {
        return Err("the floor peers speak uncompressed streams only".into());
    }
    Ok(())
}

/// Loads the server at `addr` with `spec`'s calls: `spec.connections`
/// threads, each keeping `spec.depth` calls in flight. Latency is recorded
/// per call at depth 1 (pingpong), not otherwise (requests go out in blocks).
/// `counter`, if given, is read as the window opens and closes (the
/// difference is the sample's `counted`).
pub fn blast(
    addr: SocketAddr,
    spec: &Spec,
    timing: &Timing,
    mode: Mode,
    counter: Option<&dyn Fn() -> u64>,
) -> Result<Sample, String> {
    check(spec)?;
    let depth = spec.depth.max(1);
    let (name, value) = spec.request();
    // A ring of requests with ids 1..=ring; refills write the next ones.
    let ring = (4 * depth).max(64);
    let mut requests = Vec::new();
    for id in 1..=ring as u32 {
        encode_request(&mut requests, id, &name, &value, &spec.protocol().limits).map_err(|e| e.to_string())?;
    }
    let frame = requests.len() / ring;
    let spin = spins(depth);
    let timed = mode == Mode::Timed && depth == 1;
    let control = Control::default();
    let streams: Vec<TcpStream> = (0..spec.connections)
        .map(|_| {
            let mut s = TcpStream::connect(addr).map_err(io("blaster: connecting"))?;
            s.set_nodelay(true).map_err(io("blaster: TCP_NODELAY"))?;
            handshake(&mut s, spec).map_err(io("blaster: handshake"))?;
            s.set_nonblocking(spin).map_err(io("blaster: non-blocking"))?;
            Ok(s)
        })
        .collect::<Result<_, String>>()?;
    std::thread::scope(|s| {
        let workers: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let (requests, control) = (&requests, &control);
                s.spawn(move || -> Result<Tally, String> {
                    let mut tally = Tally::new(if timed { Mode::Timed } else { Mode::Counted }, false);
                    let mut buf = vec![0u8; READ];
                    let (mut next, mut expected) = (0usize, 0usize); // ring positions
                    let mut in_flight = 0usize;
                    let mut responses = Responses::default();
                    let mut started = Instant::now();
                    let response_size = spec.response_size();
                    let stopped = || control.phase() == STOP;
                    let result = loop {
                        let phase = control.phase();
                        if phase == STOP {
                            break Ok(());
                        }
                        if in_flight < depth {
                            // Refill the window from the ring (two writes where it wraps).
                            let mut want = depth - in_flight;
                            in_flight = depth;
                            started = Instant::now();
                            while want > 0 {
                                let n = want.min(ring - next);
                                let window = &requests[next * frame..(next + n) * frame];
                                let written =
                                    if spin { spin_write_all(&mut stream, window) } else { stream.write_all(window) };
                                if let Err(e) = written {
                                    return Err(format!("blaster: writing: {e}"));
                                }
                                next = (next + n) % ring;
                                want -= n;
                            }
                        }
                        let read =
                            if spin { spin_read(&mut stream, &mut buf, &stopped) } else { stream.read(&mut buf) };
                        let n = match read {
                            Ok(0) if stopped() => break Ok(()),
                            Ok(0) => break Err("blaster: the server closed the connection".to_owned()),
                            Ok(n) => n,
                            Err(e) => break Err(format!("blaster: reading: {e}")),
                        };
                        let checked = responses.feed(&buf[..n], |id, len| {
                            if id as usize != expected + 1 {
                                return Err(format!("blaster: response id {id}, expected {}", expected + 1));
                            }
                            if len != response_size {
                                return Err(format!("blaster: response of {len} bytes, expected {response_size}"));
                            }
                            expected = (expected + 1) % ring;
                            in_flight -= 1;
                            if phase == MEASURE {
                                if timed {
                                    tally.record(len, started.elapsed());
                                } else {
                                    tally.record_untimed(len);
                                }
                            }
                            Ok(())
                        });
                        if let Err(e) = checked {
                            break Err(e);
                        }
                    };
                    let _ = stream.shutdown(Shutdown::Both);
                    result.map(|()| tally)
                })
            })
            .collect();
        let window = window(&control, timing, mode, counter);
        let mut total = Tally::new(if timed { Mode::Timed } else { Mode::Counted }, false);
        for worker in workers {
            total.merge(worker.join().expect("blaster thread panicked")?);
        }
        Ok(total.into_sample(window, false))
    })
}

/// A protocol server with nothing but the protocol: see the module docs.
/// Stops when dropped.
pub struct FloorServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FloorServer {
    /// Listens on a free loopback port, speaking `spec`'s handshake.
    pub fn start(spec: &Spec) -> Result<FloorServer, String> {
        check(spec)?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("floor server: listening"))?;
        let addr = listener.local_addr().map_err(io("floor server: listening"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let (spec, stop) = (spec.clone(), Arc::clone(&stopping));
        let acceptor = std::thread::Builder::new()
            .name("floor-server".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let spec = spec.clone();
                    let stop = Arc::clone(&stop);
                    let _ = std::thread::Builder::new()
                        .name("floor-conn".into())
                        .spawn(move || serve(stream, &spec, &stop));
                }
            })
            .map_err(io("floor server: starting"))?;
        Ok(FloorServer { addr, stopping, acceptor: Some(acceptor) })
    }

    /// Its address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wake the acceptor
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One connection of the floor server, until the client closes it.
fn serve(mut stream: TcpStream, spec: &Spec, stopping: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    if handshake(&mut stream, spec).is_err() {
        return;
    }
    let spin = spins(spec.depth);
    if stream.set_nonblocking(spin).is_err() {
        return;
    }
    let stopped = || stopping.load(Ordering::Relaxed);
    let limits = spec.protocol().limits;
    let mut body = Vec::new();
    encode_response(&mut body, 0, FASTRPC_BENCH_BODY, &limits).expect("within limits");
    let mut buf = vec![0u8; READ];
    let mut out = Vec::with_capacity(READ);
    let mut have = 0;
    loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0); // a request larger than the buffer
        }
        let read =
            if spin { spin_read(&mut stream, &mut buf[have..], &stopped) } else { stream.read(&mut buf[have..]) };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let end = have + n;
        let mut at = 0;
        out.clear();
        // Each complete frame: id, name length, name, value length, value.
        while end - at >= 8 {
            let id = &buf[at..at + 4];
            let name_len = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
            let Some(value_at) = (at + 8 + name_len).checked_add(4).filter(|&v| v <= end) else { break };
            let value_len = u32::from_le_bytes(buf[value_at - 4..value_at].try_into().expect("4 bytes")) as usize;
            if value_at + value_len > end {
                break;
            }
            let id: [u8; 4] = id.try_into().expect("4 bytes");
            if id != [0; 4] {
                if name_len == 0 {
                    out.extend_from_slice(&id);
                    out.extend_from_slice(&body[4..]);
                } else {
                    out.extend_from_slice(&id);
                    out.extend_from_slice(&((3 + value_len) as u32).to_le_bytes());
                    out.extend_from_slice(b"re:");
                    out.extend_from_slice(&buf[value_at..value_at + value_len]);
                }
            }
            at = value_at + value_len;
        }
        let written = if spin { spin_write_all(&mut stream, &out) } else { stream.write_all(&out) };
        if !out.is_empty() && written.is_err() {
            return;
        }
        buf.copy_within(at..end, 0);
        have = end - at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Workload;
    use std::time::Duration;

    fn timing() -> Timing {
        Timing {
            warmup: Duration::from_millis(20),
            measure: Duration::from_millis(50),
            count: Duration::from_millis(20),
        }
    }

    #[test]
    fn blaster_against_floor_server_counts_calls() {
        for workload in [Workload::Fastrpc, Workload::Pingpong] {
            let spec = Spec { depth: 8.min(workload.defaults().depth), ..workload.defaults() };
            let floor = FloorServer::start(&spec).unwrap();
            let sample = blast(floor.local_addr(), &spec, &timing(), Mode::Timed, None).unwrap();
            assert!(sample.ops > 0);
            assert_eq!(sample.bytes, sample.ops * spec.response_size() as u64);
            assert_eq!(sample.latency.is_some(), spec.depth == 1, "latency only one call at a time");
        }
    }

    #[test]
    fn blaster_rejects_a_wrong_id() {
        let spec = Workload::Pingpong.defaults();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let liar = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut handshake = [0u8; 3];
            s.read_exact(&mut handshake).unwrap();
            s.write_all(&handshake).unwrap();
            let mut request = [0u8; 64];
            let _ = s.read(&mut request).unwrap();
            // id 99 instead of 1, a correct length.
            s.write_all(&[99, 0, 0, 0, 4, 0, 0, 0, b'r', b'e', b':', b'x']).unwrap();
            let _ = s.read(&mut request);
        });
        let err = blast(addr, &spec, &timing(), Mode::Timed, None).unwrap_err();
        assert!(err.contains("response id 99, expected 1"), "{err}");
        liar.join().unwrap();
    }

    #[test]
    fn floor_server_answers_the_protocol() {
        let spec = Workload::Fastrpc.defaults();
        let floor = FloorServer::start(&spec).unwrap();
        let mut s = TcpStream::connect(floor.local_addr()).unwrap();
        handshake(&mut s, &spec).unwrap();
        let mut bytes = Vec::new();
        let limits = spec.protocol().limits;
        encode_request(&mut bytes, 7, b"", b"foobar", &limits).unwrap();
        encode_request(&mut bytes, 0, b"fire", b"and forget", &limits).unwrap();
        encode_request(&mut bytes, 8, b"echo", b"hi", &limits).unwrap();
        s.write_all(&bytes).unwrap();
        let mut header = [0u8; 8];
        s.read_exact(&mut header).unwrap();
        assert_eq!(header[..4], 7u32.to_le_bytes());
        let mut body = vec![0; u32::from_le_bytes(header[4..].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body, FASTRPC_BENCH_BODY);
        let mut echo = [0u8; 13];
        s.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"\x08\0\0\0\x05\0\0\0re:hi");
    }
}
