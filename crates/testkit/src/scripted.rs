//! Scripted servers for the tests that hold clients to account: a
//! listener on 127.0.0.1 that runs a script (a plain function over a raw
//! socket, written from `docs/src/wire-protocol.md` with [`crate::frame`], not the
//! protocol crate) on each connection it accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a scripted connection's reads wait by default: each script
/// ends by itself when its client closes or stalls this long.
pub const SCRIPT_LIFETIME: Duration = Duration::from_secs(20);

/// A server on 127.0.0.1 that runs `script` on each connection it accepts
/// (a thread each), blocking, without Nagle's delay, its reads timing out
/// after [`SCRIPT_LIFETIME`] unless the script sets another timeout.
/// Stops accepting when dropped, or after two minutes whatever happens;
/// each script must end by itself (when the client closes, or after a
/// bounded wait).
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
                            stream.set_read_timeout(Some(SCRIPT_LIFETIME)).unwrap();
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
