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
    pub(crate) fn has_news(_: &TcpStream) -> bool {
        false
    }
    pub(crate) fn send(_: &TcpStream, _: &[u8]) -> io::Result<usize> {
        Err(unsupported())
    }
    pub(crate) fn wait_readable(_: &TcpStream, _: Duration) -> io::Result<()> {
        Err(unsupported())
    }

    /// Nanoseconds on a monotonic clock (the precise one: no coarse one here).
    pub(crate) fn coarse_nanos() -> u64 {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        BASE.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }

    pub(crate) fn coarse_resolution() -> u64 {
        0
    }
}
#[cfg(not(unix))]
pub(crate) use fallback::*;

/// Whether callers can do socket I/O here.
pub(crate) const CALLER_IO: bool = cfg!(unix);

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

    /// Whether the socket has bytes waiting or has ended (or failed),
    /// without consuming anything and without blocking.
    pub(crate) fn has_news(stream: &TcpStream) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_DONTWAIT | libc::MSG_PEEK) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        }
    }

    /// Writes what the socket takes now, without blocking.
    pub(crate) fn send(stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(stream).send_with_flags(data, SEND_FLAGS)
    }

    #[cfg(target_os = "linux")]
    const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(target_os = "linux"))]
    const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC;

    /// Nanoseconds on the coarse monotonic clock (see `deadline`): the time
    /// of the last tick, read from the vDSO without touching the hardware.
    pub(crate) fn coarse_nanos() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid `timespec` for the call to fill.
        unsafe { libc::clock_gettime(COARSE, &mut ts) };
        (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
    }

    /// The coarse clock's resolution in nanoseconds (a tick: 1 to 10 ms).
    pub(crate) fn coarse_resolution() -> u64 {
        static RESOLUTION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *RESOLUTION.get_or_init(|| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: a valid `timespec` for the call to fill.
            let r = unsafe { libc::clock_getres(COARSE, &mut ts) };
            if r == 0 {
                (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
            } else {
                10_000_000
            }
        })
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
