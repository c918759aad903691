//! The message codec: fastrpc's tlv requests and responses (`docs/src/wire-protocol.md`, "Messages").
//!
//! ```text
//! request  = u32 request_id, u32 name_len, name, u32 value_len, value
//! response = u32 request_id, u32 value_len, value
//! ```
//!
//! All integers are little-endian. There is no frame length: the layout itself
//! says where a message ends. So decoding is a push parser over whatever
//! bytes have arrived, in the style of `httparse`:
//!
//! * `Ok(Some((message, n)))`: a whole message, borrowing its name and value
//!   from the input (no copy); the first `n` bytes were consumed.
//! * `Ok(None)`: the message is not all there yet. Read more and call again;
//!   never an error.
//! * `Err(_)`: a length over the [`Limits`]. It is reported as soon as the
//!   length field is in, before the payload it announces is buffered.
//!
//! The fastrpc benchmark request (empty name, value `foobar`, id 1) is 18
//! bytes on the wire:
//!
//! ```
//! use fastwire_proto::codec::{decode_request, encode_request, Request};
//! use fastwire_proto::Limits;
//!
//! let mut wire = Vec::new();
//! encode_request(&mut wire, 1, b"", b"foobar", &Limits::default()).unwrap();
//! assert_eq!(wire, b"\x01\0\0\0\0\0\0\0\x06\0\0\0foobar");
//!
//! assert_eq!(decode_request(&wire[..17], &Limits::default()), Ok(None));
//! let (req, used) = decode_request(&wire, &Limits::default()).unwrap().unwrap();
//! assert_eq!((req.id, req.name, req.value, used), (1, &b""[..], &b"foobar"[..], 18));
//! ```
//!
//! Encoding appends to any growable buffer ([`Vec<u8>`] or
//! [`bytes::BytesMut`]), so that many messages share one buffer and one
//! `write` system call.

use bytes::Bytes;

use crate::config::Limits;
use crate::error::{MessageError, MessageKind};

/// Bytes before a response's value: id and value length.
pub const RESPONSE_HEADER_LEN: usize = 8;

/// A decoded request, borrowing its name and value from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request id; 0 means fire-and-forget (no response).
    pub id: u32,
    /// The method name; may be empty.
    pub name: &'a [u8],
    /// The payload; may be empty.
    pub value: &'a [u8],
}

impl Request<'_> {
    /// Whether the client expects no response (id 0).
    pub fn is_fire_and_forget(&self) -> bool {
        self.id == 0
    }
}

/// A decoded response, borrowing its value from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The id of the request this answers.
    pub id: u32,
    /// The response value; may be empty.
    pub value: &'a [u8],
    /// The same value as a [`Bytes`] that shares the read buffer's memory,
    /// when the connection split the frame off for it (values of at least
    /// [`ClientConn::share_values_from`](crate::ClientConn::share_values_from)
    /// bytes): a receiver can keep it (cloning is a reference count) instead
    /// of copying the value out. `None` for values read in place.
    pub shared: Option<&'a Bytes>,
}

/// A growable byte buffer the encoders can append to.
///
/// Implemented for [`Vec<u8>`] and [`bytes::BytesMut`]; both keep their
/// allocation when cleared, which is how fastwire reuses output buffers.
pub trait OutBuf {
    /// Appends bytes.
    fn put_slice(&mut self, bytes: &[u8]);
    /// Current length.
    fn len(&self) -> usize;
    /// Whether empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reserves room for at least `additional` more bytes.
    fn reserve(&mut self, additional: usize);
}

// `#[inline]`: the encoders are generic and instantiated in the backends'
// crates, where a call per field (four bytes, say) would cost more than
// the copy.
impl OutBuf for Vec<u8> {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

impl OutBuf for bytes::BytesMut {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn len(&self) -> usize {
        bytes::BytesMut::len(self)
    }
    #[inline]
    fn reserve(&mut self, additional: usize) {
        bytes::BytesMut::reserve(self, additional);
    }
}

#[inline]
fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

#[inline]
fn check_name(kind: MessageKind, len: usize, limits: &Limits) -> Result<(), MessageError> {
    if len > limits.max_name_len {
        return Err(MessageError::NameTooLong { kind, len: len as u64, limit: limits.max_name_len });
    }
    Ok(())
}

#[inline]
fn check_value(kind: MessageKind, len: usize, limits: &Limits) -> Result<(), MessageError> {
    if len > limits.max_value_len {
        return Err(MessageError::ValueTooLong { kind, len: len as u64, limit: limits.max_value_len });
    }
    Ok(())
}

/// Decodes one request from the start of `buf`. See the [module docs](self).
#[inline]
pub fn decode_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Request<'a>, usize)>, MessageError> {
    let (Some(id), Some(name_len)) = (u32_at(buf, 0), u32_at(buf, 4)) else {
        return Ok(None);
    };
    let name_len = name_len as usize;
    check_name(MessageKind::Request, name_len, limits)?;
    let value_len_at = 8 + name_len;
    let Some(value_len) = u32_at(buf, value_len_at) else {
        return Ok(None);
    };
    let value_len = value_len as usize;
    check_value(MessageKind::Request, value_len, limits)?;
    let value_at = value_len_at + 4;
    let end = value_at + value_len;
    if buf.len() < end {
        return Ok(None);
    }
    let request = Request { id, name: &buf[8..value_len_at], value: &buf[value_at..end] };
    Ok(Some((request, end)))
}

/// Decodes one response from the start of `buf`. See the [module docs](self).
#[inline]
pub fn decode_response<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Response<'a>, usize)>, MessageError> {
    let (Some(id), Some(value_len)) = (u32_at(buf, 0), u32_at(buf, 4)) else {
        return Ok(None);
    };
    let value_len = value_len as usize;
    check_value(MessageKind::Response, value_len, limits)?;
    let end = RESPONSE_HEADER_LEN + value_len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((Response { id, value: &buf[RESPONSE_HEADER_LEN..end], shared: None }, end)))
}

/// Appends a request. Fails, appending nothing, if the name or value is over
/// the limits (the peer would refuse it and close the connection).
#[inline]
// ANCHOR: encode_request
pub fn encode_request(
    out: &mut impl OutBuf,
    id: u32,
    name: &[u8],
    value: &[u8],
    limits: &Limits,
) -> Result<(), MessageError> {
    check_name(MessageKind::Request, name.len(), limits)?;
    check_value(MessageKind::Request, value.len(), limits)?;
    out.reserve(12 + name.len() + value.len());
    // Fixed-size pieces in one copy each (a constant length compiles to a
    // store); an empty name (the common case) costs nothing.
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&id.to_le_bytes());
    head[4..].copy_from_slice(&(name.len() as u32).to_le_bytes());
    out.put_slice(&head);
    if !name.is_empty() {
        out.put_slice(name);
    }
    out.put_slice(&(value.len() as u32).to_le_bytes());
    out.put_slice(value);
    Ok(())
}
// ANCHOR_END: encode_request

/// Appends a response. Fails, appending nothing, if the value is over the limit.
#[inline]
pub fn encode_response(out: &mut impl OutBuf, id: u32, value: &[u8], limits: &Limits) -> Result<(), MessageError> {
    check_value(MessageKind::Response, value.len(), limits)?;
    out.reserve(RESPONSE_HEADER_LEN + value.len());
    let mut head = [0u8; RESPONSE_HEADER_LEN];
    head[..4].copy_from_slice(&id.to_le_bytes());
    head[4..].copy_from_slice(&(value.len() as u32).to_le_bytes());
    out.put_slice(&head);
    out.put_slice(value);
    Ok(())
}

/// Checks a response value length written in place by a handler (see
/// [`ResponseWriter`](crate::ResponseWriter)).
pub(crate) fn check_response_value(len: usize, limits: &Limits) -> Result<(), MessageError> {
    check_value(MessageKind::Response, len, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits { max_name_len: 4, max_value_len: 8 }
    }

    #[test]
    fn oversized_lengths_fail_before_the_payload_arrives() {
        // Name length 5 > 4: only the 8 header bytes are needed to say so.
        let wire = [1, 0, 0, 0, 5, 0, 0, 0];
        assert_eq!(
            decode_request(&wire, &small()),
            Err(MessageError::NameTooLong { kind: MessageKind::Request, len: 5, limit: 4 })
        );
        let wire = [1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0];
        assert_eq!(
            decode_request(&wire, &small()),
            Err(MessageError::ValueTooLong { kind: MessageKind::Request, len: 9, limit: 8 })
        );
        let wire = [7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_response(&wire, &small()),
            Err(MessageError::ValueTooLong { kind: MessageKind::Response, len: u32::MAX as u64, limit: 8 })
        );
    }

    #[test]
    fn encoders_refuse_oversized_and_append_nothing() {
        let mut out = Vec::new();
        assert!(encode_request(&mut out, 1, b"toolong", b"", &small()).is_err());
        assert!(encode_request(&mut out, 1, b"", b"123456789", &small()).is_err());
        assert!(encode_response(&mut out, 1, b"123456789", &small()).is_err());
        assert!(out.is_empty());
        // At the limit is fine.
        encode_request(&mut out, 1, b"abcd", b"12345678", &small()).unwrap();
        let (req, n) = decode_request(&out, &small()).unwrap().unwrap();
        assert_eq!((req.name, req.value, n), (&b"abcd"[..], &b"12345678"[..], out.len()));
    }

    #[test]
    fn responses_decode_from_a_shared_buffer() {
        let mut out = bytes::BytesMut::new();
        encode_response(&mut out, 3, b"abc", &Limits::default()).unwrap();
        encode_response(&mut out, 4, b"", &Limits::default()).unwrap();
        let (a, n) = decode_response(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!((a.id, a.value), (3, &b"abc"[..]));
        let (b, m) = decode_response(&out[n..], &Limits::default()).unwrap().unwrap();
        assert_eq!((b.id, b.value, n + m), (4, &b""[..], out.len()));
    }
}
