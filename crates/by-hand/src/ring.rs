//! One io_uring completion loop: the loop asks the kernel to do the reads,
//! writes and accepts, and sleeps until any of them has completed.
//!
//! A reactor asks "which sockets are ready?" and then makes the system
//! calls itself; a completion loop puts requests (accept, recv, send) in
//! the submission queue, one `io_uring_enter` system call submits them all
//! and waits, and the completion queue says which finished and with what
//! result. The kernel writes into our buffers while a request is in flight,
//! so a buffer must stay put until its completion arrives: here each
//! connection has exactly one request in flight, a `recv` into its buffer
//! or a `send` of its answers, never both.

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use io_uring::{opcode, squeue, types, IoUring};

use crate::Conn;

/// The accept request's tag; a connection's requests are tagged with its
/// id times two, plus one for a send.
const ACCEPT: u64 = u64::MAX;

/// A connection's entry in the loop's table.
struct Client {
    stream: TcpStream,
    conn: Conn,
    buf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
}

// ANCHOR: serve
/// Serves `listener` from one completion loop on this thread, forever.
/// Fails at once where io_uring is missing (Linux before 5.6, or disabled).
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let mut ring = IoUring::new(256)?;
    let listen_fd = types::Fd(listener.as_raw_fd());
    let accept =
        || opcode::Accept::new(listen_fd, std::ptr::null_mut(), std::ptr::null_mut()).build().user_data(ACCEPT);
    push(&mut ring, accept())?;
    let mut clients: HashMap<u64, Client> = HashMap::new();
    let mut next_id = 0;
    let mut done = Vec::new();
    loop {
        ring.submit_and_wait(1)?; // submits every request pushed, sleeps until one completes
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for (tag, result) in done.drain(..) {
            if tag == ACCEPT {
                if result >= 0 {
                    // SAFETY: a completed accept's result is a new socket that nothing else owns.
                    let stream = unsafe { TcpStream::from_raw_fd(result) };
                    let _ = stream.set_nodelay(true);
                    let client =
                        Client { stream, conn: Conn::default(), buf: vec![0; 64 * 1024], out: Vec::new(), sent: 0 };
                    let client = clients.entry(next_id).or_insert(client);
                    push(&mut ring, recv(next_id, client))?;
                    next_id += 1;
                }
                push(&mut ring, accept())?; // the next connection
                continue;
            }
            let (id, was_send) = (tag / 2, tag % 2 == 1);
            let Some(client) = clients.get_mut(&id) else { continue };
            let next = match (result, was_send) {
                (..=0, _) => None, // end of stream (0) or an error (-errno): close
                (n, true) => {
                    client.sent += n as usize;
                    if client.sent < client.out.len() {
                        Some(send(id, client)) // the kernel took part of it: send the rest
                    } else {
                        client.out.clear();
                        client.sent = 0;
                        Some(recv(id, client))
                    }
                }
                (n, false) => match client.conn.answer(&client.buf[..n as usize], &mut client.out) {
                    Ok(()) if client.out.is_empty() => Some(recv(id, client)), // half a request: read on
                    Ok(()) => Some(send(id, client)),
                    Err(_) => None,
                },
            };
            match next {
                Some(entry) => push(&mut ring, entry)?,
                None => drop(clients.remove(&id)), // dropping the stream closes it
            }
        }
    }
}

/// A `recv` into the client's buffer.
fn recv(id: u64, client: &mut Client) -> squeue::Entry {
    let fd = types::Fd(client.stream.as_raw_fd());
    opcode::Recv::new(fd, client.buf.as_mut_ptr(), client.buf.len() as u32).build().user_data(id * 2)
}

/// A `send` of the client's answers not yet sent.
fn send(id: u64, client: &mut Client) -> squeue::Entry {
    let fd = types::Fd(client.stream.as_raw_fd());
    let rest = &client.out[client.sent..];
    opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32).build().user_data(id * 2 + 1)
}

/// Queues `entry`, submitting what is queued first if the queue is full.
fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
    // SAFETY: the buffer an entry points into belongs to a client that is
    // neither changed nor dropped until the entry's completion is handled:
    // each client has one request in flight, and only its completion
    // touches the client's buffers or removes it.
    while unsafe { ring.submission().push(&entry) }.is_err() {
        ring.submit()?;
    }
    Ok(())
}
// ANCHOR_END: serve
