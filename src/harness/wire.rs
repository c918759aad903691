//! The harness's own peers' view of the wire: the handshake they exchange
//! and the one response scanner they read responses with. The blaster,
//! the sweep's event loop and the pipelined floor speak raw frames rather
//! than go through a client (their point is to cost less than any client);
//! they share this code so that each reads responses the same way.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use fastwire_proto::Compression;

use super::workload::Spec;

/// Sends our handshake and checks the peer's (sniff header, version, no
/// compression, no TLS).
pub(crate) fn handshake(stream: &mut (impl Read + Write), spec: &Spec) -> std::io::Result<()> {
    let mut ours = spec.sniff.clone();
    ours.extend_from_slice(&[spec.version, Compression::None.wire_value(), 0]);
    stream.write_all(&ours)?;
    let mut theirs = vec![0u8; ours.len()];
    stream.read_exact(&mut theirs)?;
    if theirs != ours {
        return Err(std::io::Error::other(format!("unexpected handshake {theirs:?}, expected {ours:?}")));
    }
    Ok(())
}

/// Response frames (a 4-byte id, a 4-byte length, the value, all little
/// endian) found in a byte stream fed in pieces of any size: the header
/// may be split across reads, and values are skipped, never copied.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    /// A header's bytes so far, when a read ended inside one.
    header: [u8; 8],
    have: usize,
    /// The frame being skipped: its id and length, and the value bytes still to come.
    current: Option<(u32, usize)>,
    skip: usize,
}

impl Responses {
    /// Reads `bytes`, calling `each(id, value length)` as each frame ends
    /// (its last value byte read); stops at the first error `each` returns.
    #[inline]
    pub(crate) fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        mut each: impl FnMut(u32, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            if let Some((id, len)) = self.current {
                let k = self.skip.min(bytes.len());
                self.skip -= k;
                bytes = &bytes[k..];
                if self.skip > 0 {
                    return Ok(());
                }
                self.current = None;
                each(id, len)?;
            }
            let header = if self.have == 0 && bytes.len() >= 8 {
                let h: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
                bytes = &bytes[8..];
                h
            } else {
                let k = (8 - self.have).min(bytes.len());
                self.header[self.have..self.have + k].copy_from_slice(&bytes[..k]);
                self.have += k;
                bytes = &bytes[k..];
                if self.have < 8 {
                    return Ok(());
                }
                self.have = 0;
                self.header
            };
            let id = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
            self.current = Some((id, len));
            self.skip = len;
        }
    }
}

/// Whether the floors wait for their sockets by spinning: at one call in
/// flight, on a machine with a core for each side. A thread that blocks in
/// `read` is put to sleep, and the message that wakes it must wake its
/// core too (on a VM, a halted vCPU the hypervisor has to resume): that
/// wake-up, not the kernel's loopback path, is most of a blocking round
/// trip between two cores. A spinning reader is already running when the
/// bytes land, which no backend that sleeps between calls can beat, so the
/// floor is a floor. With more calls in flight a reader rarely waits, and
/// spinning threads would take the cores the others need.
pub(crate) fn spins(depth: usize) -> bool {
    depth <= 1 && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Reads what has arrived, spinning (never sleeping) until something has:
/// on a non-blocking stream. `stop` is asked between attempts; when it
/// says so, the read ends as at the end of the stream.
pub(crate) fn spin_read(stream: &mut TcpStream, buf: &mut [u8], stop: &dyn Fn() -> bool) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop() {
                    return Ok(0);
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Reads exactly `buf.len()` bytes by [`spin_read`]; an end of stream (or a
/// stop) before then is an error.
pub(crate) fn spin_read_exact(
    stream: &mut TcpStream,
    mut buf: &mut [u8],
    stop: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match spin_read(stream, buf, stop)? {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// Writes all of `buf` to a non-blocking stream, spinning while its buffer is full.
pub(crate) fn spin_write_all(stream: &mut TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<u8> {
        let mut out = Vec::new();
        for (id, value) in [(1u32, &b"abc"[..]), (2, b""), (3, &[7u8; 300][..])] {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    #[test]
    fn frames_are_found_at_every_split() {
        let bytes = frames();
        for a in 0..=bytes.len() {
            for b in [a, (a + 1).min(bytes.len()), (a + 9).min(bytes.len()), bytes.len()] {
                let mut seen = Vec::new();
                let mut scanner = Responses::default();
                for piece in [&bytes[..a], &bytes[a..b], &bytes[b..]] {
                    let found = scanner.feed(piece, |id, len| {
                        seen.push((id, len));
                        Ok::<_, ()>(())
                    });
                    found.unwrap();
                }
                assert_eq!(seen, [(1, 3), (2, 0), (3, 300)], "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn the_callers_error_stops_the_scan() {
        let mut scanner = Responses::default();
        let mut seen = 0;
        let result = scanner.feed(&frames(), |id, _| {
            seen += 1;
            if id == 2 {
                Err(format!("id {id}"))
            } else {
                Ok(())
            }
        });
        assert_eq!((result, seen), (Err("id 2".to_owned()), 2));
    }
}
