//! Scripted servers for the tests that hold clients to account: a
//! listener on 127.0.0.1 that runs a script (a plain function over a raw
//! socket, written from `docs/src/wire-protocol.md`, not the protocol crate) on
//! each connection it accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server on 127.0.0.1 that runs `script` on each connection it accepts
/// (a thread each). Stops accepting when dropped, or after two minutes
/// whatever happens; each script must end by itself (when the client
/// closes, or after a bounded wait).
pub struct Scripted {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Scripted {
    pub fn start(script: impl Fn(TcpStream) + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream.set_nodelay(true).unwrap();
                            let script = Arc::clone(&script);
                            std::thread::spawn(move || script(stream));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Scripted { addr, stop, acceptor: Some(acceptor) }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One response frame: id, value length (little-endian), value.
pub fn response(id: u32, value: &[u8]) -> Vec<u8> {
    [&id.to_le_bytes()[..], &(value.len() as u32).to_le_bytes(), value].concat()
}

/// What the demo service answers (`fastwire_proto::demo_handler`): the
/// fastrpc benchmark body for an empty name, `re:` and the value otherwise.
pub fn demo_answer(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        fastwire::proto::FASTRPC_BENCH_BODY.to_vec()
    } else {
        [&b"re:"[..], value].concat()
    }
}
