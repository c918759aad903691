//! A thread per connection: blocking `accept`, `read` and `write`.
//!
//! The simplest server there is. Each connection's thread sleeps in `read`
//! until bytes arrive, answers them, and sleeps in `write_all` until the
//! kernel has taken the answers. The kernel's scheduler is the event loop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use crate::Conn;

// ANCHOR: serve
/// Serves `listener`: a thread per accepted connection, forever.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _peer) = listener.accept()?;
        thread::spawn(move || {
            // An error (the peer reset, or spoke something else) ends
            // only this connection's thread.
            let _ = connection(stream);
        });
    }
}

fn connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?; // answers leave at once, not after Nagle's wait
    let mut conn = Conn::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = stream.read(&mut buf)?; // sleeps until bytes arrive
        if n == 0 {
            return Ok(()); // the client closed its side
        }
        conn.answer(&buf[..n], &mut out)?;
        stream.write_all(&out)?; // sleeps while the send buffer is full
        out.clear();
    }
}
// ANCHOR_END: serve
