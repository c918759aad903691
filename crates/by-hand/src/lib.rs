//! Four small fastrpc servers written by hand, one per architecture: the
//! programs the guide's architecture chapters start from, before they show
//! what the production backends add.
//!
//! | module | model | the production backend |
//! | --- | --- | --- |
//! | [`threads`] | a thread per connection, blocking reads and writes | `fastwire-std` |
//! | [`reactor`] | one `mio` event loop, non-blocking sockets | `fastwire-mio` |
//! | [`tasks`] | a `tokio` task per connection | `fastwire-tokio` |
//! | [`ring`] | one io_uring completion loop (Linux) | `fastwire-uring` |
//!
//! Each is short enough to read in one sitting, and each leaves out on
//! purpose what a real server needs: no compression or TLS, no limits on
//! connections or buffered output, no timeouts, no graceful shutdown, no
//! counters; a handler that cannot block or panic. What they share is the
//! part that has nothing to do with I/O, [`Conn::answer`]: bytes in, bytes
//! out, through `fastwire_proto`'s handshake and codec. They answer as the
//! demo service does (`fastwire_proto::demo_handler`), so that `fastwire
//! load` can check every reply and `fastwire compare --by-hand` can race
//! them against the backends.
//!
//! Run one: `cargo run --release -- serve --by-hand mio --addr 127.0.0.1:7000`.

use std::io;
use std::net::TcpListener;

use fastwire_proto::codec::decode_request;
use fastwire_proto::{handshake, Compression, Limits, FASTRPC_BENCH_BODY};

pub mod reactor;
#[cfg(target_os = "linux")]
pub mod ring;
pub mod tasks;
pub mod threads;

/// The four models, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// [`threads`]: a thread per connection.
    Threads,
    /// [`reactor`]: a `mio` event loop.
    Mio,
    /// [`tasks`]: a `tokio` task per connection.
    Tokio,
    /// [`ring`]: an io_uring completion loop.
    Uring,
}

impl Model {
    /// Every model, in the guide's order.
    pub const ALL: [Model; 4] = [Model::Threads, Model::Mio, Model::Tokio, Model::Uring];

    /// Its name on the command line (`serve --by-hand NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Model::Threads => "threads",
            Model::Mio => "mio",
            Model::Tokio => "tokio",
            Model::Uring => "uring",
        }
    }

    /// The model called `name`, if any.
    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The name of its row in `fastwire compare --by-hand`.
    pub fn row_name(self) -> &'static str {
        match self {
            Model::Threads => "by-hand-threads",
            Model::Mio => "by-hand-mio",
            Model::Tokio => "by-hand-tokio",
            Model::Uring => "by-hand-uring",
        }
    }

    /// Why this model cannot run here, if it cannot (io_uring missing).
    pub fn unavailable(self) -> Option<String> {
        match self {
            #[cfg(target_os = "linux")]
            Model::Uring => io_uring::IoUring::new(2).err().map(|e| format!("io_uring is unavailable here: {e}")),
            #[cfg(not(target_os = "linux"))]
            Model::Uring => Some("io_uring is Linux's".into()),
            _ => None,
        }
    }

    /// Serves `listener` with this model until the process ends (these
    /// servers have no shutdown). Returns only on an error that stops the
    /// whole server (io_uring missing, the listener failing).
    pub fn serve(self, listener: TcpListener) -> io::Result<()> {
        match self {
            Model::Threads => threads::serve(listener),
            Model::Mio => reactor::serve(listener),
            Model::Tokio => tasks::serve(listener),
            #[cfg(target_os = "linux")]
            Model::Uring => ring::serve(listener),
            #[cfg(not(target_os = "linux"))]
            Model::Uring => Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring is Linux's")),
        }
    }
}

/// One connection's protocol state: the bytes read and not yet answered,
/// and whether the handshake is done. No I/O: the servers read into it and
/// write what it produces.
#[derive(Debug, Default)]
pub struct Conn {
    input: Vec<u8>,
    handshaken: bool,
}

// ANCHOR: answer
impl Conn {
    /// Takes `read`, the bytes just read from the socket, and appends to
    /// `out` the answer to every whole request they complete; a request cut
    /// in two by the network waits in `self` for the rest. An error means:
    /// close the connection (a peer that is not speaking plain fastrpc).
    pub fn answer(&mut self, read: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.input.extend_from_slice(read);
        let mut at = 0;
        if !self.handshaken {
            // The client's 3 bytes (version, compression, TLS); then ours.
            let Some((peer, n)) = handshake::decode(&self.input, b"", 0).map_err(refused)? else {
                return Ok(());
            };
            if peer.compression != Compression::None || peer.tls {
                return Err(refused("this server speaks uncompressed plaintext fastrpc only"));
            }
            handshake::encode(out, b"", 0, Compression::None, false);
            (self.handshaken, at) = (true, n);
        }
        let limits = Limits::default();
        while let Some((request, n)) = decode_request(&self.input[at..], &limits).map_err(refused)? {
            at += n;
            if request.id == 0 {
                continue; // fire-and-forget: no response
            }
            // The demo service's answer, as `fastwire_proto::demo_handler`.
            let (head, tail) = match request.name {
                b"" => (&FASTRPC_BENCH_BODY[..], &b""[..]),
                _ => (&b"re:"[..], request.value),
            };
            // A response: u32 id, u32 value length, value (little-endian).
            out.extend_from_slice(&request.id.to_le_bytes());
            out.extend_from_slice(&((head.len() + tail.len()) as u32).to_le_bytes());
            out.extend_from_slice(head);
            out.extend_from_slice(tail);
        }
        self.input.drain(..at);
        Ok(())
    }
}
// ANCHOR_END: answer

fn refused(why: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests;
