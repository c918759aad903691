//! Socket setup, shared by the backends, through `socket2` (the standard
//! library cannot set `SO_REUSEPORT` or the listen backlog).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use fastwire_proto::driver::CloseReason;
use fastwire_proto::ServerConn;

use socket2::{Domain, Protocol, Socket, Type};

/// A server's listening sockets, bound and not yet served: one listener
/// whose connections are handed to the loops in turn
/// ([`Accept::RoundRobin`]), or one per loop on the same address
/// ([`Accept::ReusePort`]).
#[derive(Debug)]
pub struct Listeners {
    /// The sockets (blocking); the first one's address is the server's.
    pub sockets: Vec<TcpListener>,
    /// How connections reach the loops.
    pub accept: Accept,
    /// How many loops (threads, executors) serve the connections.
    pub loops: usize,
}

impl Listeners {
    /// Binds `addr` (IPv4 or IPv6; port 0 picks a free port) for `loops`
    /// loops (at least one), accepting as `accept` says.
    pub fn bind(addr: impl ToSocketAddrs, loops: usize, accept: Accept) -> io::Result<Listeners> {
        let (addr, loops) = (resolve(addr)?, loops.max(1));
        let sockets = match accept {
            Accept::ReusePort => reuseport_listeners(addr, loops)?,
            Accept::RoundRobin => vec![listener(addr, false)?],
        };
        Ok(Listeners { sockets, accept, loops })
    }

    /// One listener the application bound itself (options it set on the
    /// socket are kept), its connections handed to `loops` loops in turn.
    /// `accept` must be [`Accept::RoundRobin`]: one socket cannot be a
    /// listener per loop.
    pub fn adopt(listener: TcpListener, loops: usize, accept: Accept) -> io::Result<Listeners> {
        refuse_reuseport(accept)?;
        listener.set_nonblocking(false)?;
        Ok(Listeners { sockets: vec![listener], accept: Accept::RoundRobin, loops: loops.max(1) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sockets[0].local_addr()
    }
}

/// The cores this process may use, at least one: how many loops,
/// executors or runtimes a server starts unless told otherwise.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Refuses [`Accept::ReusePort`] for a server built on one listener the
/// application bound: that needs a listener per loop, which only binding
/// can make.
pub fn refuse_reuseport(accept: Accept) -> io::Result<()> {
    match accept {
        Accept::RoundRobin => Ok(()),
        Accept::ReusePort => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a server on a listener the application bound has one socket, so it cannot accept with \
             Accept::ReusePort (a listener per loop): bind the address with bind_with instead",
        )),
    }
}

/// Hands a lingering connection what one read of its socket gave at
/// `now`: bytes are counted (too many end the linger), the end of stream
/// ends it, a read that timed out lets it look at the clock, an
/// interrupted one nothing, any other error closes it. The linger's bounds
/// are the connection's (`ServerConn::shut_write`); each backend only
/// reads, with its deadline, and reports here.
pub fn lingered(conn: &mut ServerConn, read: io::Result<usize>, now: Instant) {
    match read {
        Ok(0) => conn.end_of_stream(),
        Ok(n) => {
            conn.arrived(n);
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            conn.handle_timeout(now);
        }
        Err(_) => conn.close(CloseReason::ReadError),
    }
}

/// Listen backlog: connections the kernel queues before `accept`. A
/// connection burst (thousands of clients at once) must not overflow it.
pub const BACKLOG: i32 = 4096;

/// Resolves `addr` to its first socket address.
pub fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"))
}

/// A listening socket on `addr`. With `reuse_port`, several listeners (one
/// per core) can bind the same address and the kernel spreads incoming
/// connections among them (`SO_REUSEPORT`).
pub fn listener(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `count` listeners on the same address, each with `SO_REUSEPORT`, for a
/// server with one listener per core. Port 0 is resolved by the first and
/// the others bind the port it got.
pub fn reuseport_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let first = listener(addr, true)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count.max(1) {
        listeners.push(listener(addr, true)?);
    }
    Ok(listeners)
}

/// Settings every fastwire connection gets: `TCP_NODELAY`, because fastwire
/// batches writes itself and Nagle's algorithm would only add latency to the
/// last batch.
// ANCHOR: nodelay
pub fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}
// ANCHOR_END: nodelay

/// Connects with a timeout and tunes the stream.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    tune(&stream)?;
    Ok(stream)
}

/// Wakes a thread blocked in `accept` on this listener (Linux: `shutdown`
/// on a listening socket makes `accept` return an error at once).
pub fn wake_acceptor(listener: &TcpListener) {
    let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both);
}

/// A blocking acceptor's next connection, admitted under the server's
/// connection limit; `None` once `stopping` is set (a wake-up, see
/// [`wake_acceptor`], unblocks the wait). Out of descriptors, it backs off
/// instead of spinning (the pending connections wait in the backlog); a
/// connection over `max_connections` is closed at once (dropped), so its
/// client sees a closed connection rather than a hang.
pub fn accept_admitted(
    listener: &TcpListener,
    stopping: &std::sync::atomic::AtomicBool,
    counters: &crate::ServerCounters,
    max_connections: usize,
) -> Option<TcpStream> {
    use std::sync::atomic::Ordering;
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::Acquire) {
            return None;
        }
        match accepted {
            Ok((stream, _)) if counters.try_open(max_connections) => return Some(stream),
            Ok(_) => {}
            Err(e) if is_accept_resource_error(&e) => {
                tracing::warn!(error = %e, "accept: out of resources");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => {}
        }
    }
}

/// Whether an I/O error means "try again" rather than "this connection is over".
pub fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock)
}

/// Whether an `accept` error is about the listener's resources (descriptors,
/// memory) rather than one connection, so the acceptor should pause briefly.
pub fn is_accept_resource_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 /* ENFILE */ | 24 /* EMFILE */ | 105 /* ENOBUFS */ | 12 /* ENOMEM */))
}

/// Writes what the socket takes now, without blocking (and without
/// `SIGPIPE`): how many bytes it took, or `WouldBlock`. For a thread that
/// usually hands its output to another but writes it itself when that one
/// is idle (the std server's reader, a leading caller). Not on non-Unix
/// systems (an `Unsupported` error: hand the output over).
pub fn send_now(stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
    crate::sys::send(stream, data)
}

/// Reads once from `reader`, appending up to `chunk` bytes to `buf`.
///
/// The new space is zero-filled before the read: safe Rust cannot hand
/// uninitialised memory to `Read::read`. That costs a `memset` of `chunk`
/// bytes per read, amortised over every message the read brings in.
// ANCHOR: read_some
pub fn read_some(reader: &mut impl io::Read, buf: &mut bytes::BytesMut, chunk: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + chunk.max(1), 0);
    let result = reader.read(&mut buf[start..]);
    let n = *result.as_ref().unwrap_or(&0);
    buf.truncate(start + n);
    result
}
// ANCHOR_END: read_some

/// How new connections reach a server's loops, runtimes or executors, on
/// every backend that runs one per core (mio, uring, tokio's per-core
/// flavor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accept {
    /// One listener; new connections are handed to the loops in turn, so
    /// that two busy connections never share a core while another idles.
    /// The default. Costs a cross-thread hand-off per connection.
    #[default]
    RoundRobin,
    /// Each loop has its own `SO_REUSEPORT` listener on the same address,
    /// and the kernel hashes each new connection to one of them: no
    /// hand-off, and every core accepts at once in a connection storm; but
    /// with few connections several can hash to one loop and leave another
    /// core idle, and nothing moves them.
    ReusePort,
}
