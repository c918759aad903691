//! The few socket operations the leader/follower client needs beyond
//! `std::net`: a read and a write that never block whatever mode the socket
//! is in (the std driver's threads share it in blocking mode), and a wait
//! for readability with a timeout. Callers that do their connection's I/O
//! themselves use these; the drivers keep using `std::io`.

#![allow(unsafe_code)]

#[cfg(unix)]
pub(crate) use unix::*;

/// Where these calls are missing, callers never do their own I/O (drivers
/// report no socket for them, see `Driver::caller_io`), so these are never
/// reached; they fail rather than pretend.
#[cfg(not(unix))]
mod fallback {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    use bytes::BytesMut;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "callers do no socket I/O on this platform")
    }
    pub(crate) fn recv(_: &TcpStream, _: &mut BytesMut, _: usize) -> io::Result<usize> {
        Err(unsupported())
    }
    pub(crate) fn peer_closed(_: &TcpStream) -> bool {
        false
    }
    pub(crate) fn send(_: &TcpStream, _: &[u8]) -> io::Result<usize> {
        Err(unsupported())
    }
    pub(crate) fn wait_readable(_: &TcpStream, _: Duration) -> io::Result<()> {
        Err(unsupported())
    }
}
#[cfg(not(unix))]
pub(crate) use fallback::*;

/// Whether callers can do socket I/O here.
pub const CALLER_IO: bool = cfg!(unix);

#[cfg(unix)]
mod unix {
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use bytes::BytesMut;

    /// Flags for a send or receive that must not block (and, for a send to a
    /// closed peer, must not raise `SIGPIPE`).
    #[cfg(target_os = "linux")]
    const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

    /// Reads what is there, up to `chunk` bytes, appended to `buf` (no zeroing
    /// of the spare capacity): `Ok(0)` is end of stream, `WouldBlock` nothing yet.
    pub(crate) fn recv(stream: &TcpStream, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        buf.reserve(chunk);
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(chunk);
        let n = socket2::SockRef::from(stream).recv_with_flags(&mut spare[..len], libc::MSG_DONTWAIT)?;
        // SAFETY: `recv_with_flags` initialized the first `n` bytes of the spare
        // capacity (it returns how many it wrote, at most `len`).
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// Whether the peer has closed its side, without consuming anything: a
    /// peek that finds the end of stream. Data waiting, or nothing yet, is "open".
    pub(crate) fn peer_closed(stream: &TcpStream) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        matches!(socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_DONTWAIT | libc::MSG_PEEK), Ok(0))
    }

    /// Writes what the socket takes now, without blocking.
    pub(crate) fn send(stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(stream).send_with_flags(data, SEND_FLAGS)
    }

    /// Waits until the socket is readable (data, end of stream or an error) or
    /// `timeout` passes (rounded up to a millisecond, `poll`'s unit).
    pub(crate) fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
        let mut fds = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid `pollfd` for the length of the call.
        let r = unsafe { libc::poll(&mut fds, 1, millis) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}
