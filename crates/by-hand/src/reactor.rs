//! One `mio` event loop: non-blocking sockets, and one thread that sleeps
//! in `epoll_wait` until any of them is ready.
//!
//! Where [`threads`](crate::threads) keeps each connection's place in its
//! own thread's stack, a reactor keeps it in a table: the connection's
//! [`Conn`], the answers not yet written and how far they got. mio is
//! edge-triggered: it reports a socket once when it becomes ready, so each
//! event reads until the kernel says `WouldBlock`, and a write that would
//! block waits for the socket's next writable event.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::Conn;

const LISTENER: Token = Token(usize::MAX);

/// A connection's entry in the loop's table.
struct Client {
    stream: TcpStream,
    conn: Conn,
    out: Vec<u8>,
    sent: usize,
}

// ANCHOR: serve
/// Serves `listener` from one event loop on this thread, forever.
pub fn serve(listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_token = 0;
    let mut buf = vec![0u8; 64 * 1024]; // one read buffer for every connection
    loop {
        poll.poll(&mut events, None)?; // sleeps until some socket is ready
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    let (mut stream, _peer) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let token = Token(next_token);
                    next_token += 1;
                    let _ = stream.set_nodelay(true);
                    poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                    clients.insert(token, Client { stream, conn: Conn::default(), out: Vec::new(), sent: 0 });
                }
            } else if let Some(client) = clients.get_mut(&event.token()) {
                if !matches!(ready(client, &mut buf), Ok(true)) {
                    clients.remove(&event.token()); // dropping the stream closes it
                }
            }
        }
    }
}

/// Handles a readiness event: reads until `WouldBlock`, answers, and writes
/// until done or `WouldBlock`. `Ok(false)` once the peer has closed.
fn ready(client: &mut Client, buf: &mut [u8]) -> io::Result<bool> {
    loop {
        match client.stream.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => client.conn.answer(&buf[..n], &mut client.out)?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    while client.sent < client.out.len() {
        match client.stream.write(&client.out[client.sent..]) {
            Ok(n) => client.sent += n,
            // The rest waits for the socket's next writable event.
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    client.out.clear();
    client.sent = 0;
    Ok(true)
}
// ANCHOR_END: serve
