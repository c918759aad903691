//! tokio-util codecs for the message stream (feature `tokio-util`), for
//! tokio users who build their own loops with `Framed`.
//!
//! The codecs frame what follows the handshake, uncompressed: do the
//! 3-byte handshake yourself first ([`handshake::encode`](crate::handshake::encode)
//! and [`handshake::decode`](crate::handshake::decode)), asking for no
//! compression, then wrap the stream. Decoding is zero-copy: a frame's name
//! and value are `Bytes` slices of the read buffer. Size limits apply as in
//! the state machines; a broken frame is a [`CodecError::Message`].
//!
//! ```
//! use bytes::BytesMut;
//! use fastwire_proto::tokio_codec::{ClientCodec, RequestFrame, ServerCodec};
//! use fastwire_proto::Limits;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let (mut client, mut server) = (ClientCodec::new(Limits::default()), ServerCodec::new(Limits::default()));
//! let mut wire = BytesMut::new();
//! client.encode(RequestFrame::new(7, &b"echo"[..], &b"hi"[..]), &mut wire)?;
//! let request = server.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!((request.id, &request.value[..]), (7, &b"hi"[..]));
//! server.encode((7, &b"re:hi"[..]), &mut wire)?;
//! let response = client.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!((response.id, &response.value[..]), (7, &b"re:hi"[..]));
//! # Ok::<(), fastwire_proto::tokio_codec::CodecError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{decode_request, decode_response, encode_request, encode_response};
use crate::config::Limits;
use crate::error::MessageError;

/// A codec's error: the socket's, or a frame that breaks the limits.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The underlying I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A frame broke the size limits (see its message for which setting).
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// A request: what a client sends, what a server decodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    /// Request id; 0 means fire-and-forget (no response).
    pub id: u32,
    /// Method name.
    pub name: Bytes,
    /// Payload.
    pub value: Bytes,
}

impl RequestFrame {
    /// A request frame.
    pub fn new(id: u32, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        RequestFrame { id, name: name.into(), value: value.into() }
    }
}

/// A response: what a server sends, what a client decodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The id of the request it answers.
    pub id: u32,
    /// The response value.
    pub value: Bytes,
}

/// The server side: decodes requests, encodes responses `(id, value)`.
#[derive(Clone, Copy, Debug)]
pub struct ServerCodec {
    limits: Limits,
}

impl ServerCodec {
    /// With these size limits.
    pub fn new(limits: Limits) -> Self {
        ServerCodec { limits }
    }
}

impl Decoder for ServerCodec {
    type Item = RequestFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RequestFrame>, CodecError> {
        let Some((request, used)) = decode_request(src, &self.limits)? else {
            // Room for the rest of a frame whose header has arrived.
            src.reserve(64);
            return Ok(None);
        };
        let (id, name_len, value_len) = (request.id, request.name.len(), request.value.len());
        let frame = src.split_to(used).freeze();
        // id, name length, name, value length, value.
        let name = frame.slice(8..8 + name_len);
        let value = frame.slice(used - value_len..used);
        Ok(Some(RequestFrame { id, name, value }))
    }
}

impl<'a> Encoder<(u32, &'a [u8])> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, (id, value): (u32, &'a [u8]), dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode_response(dst, id, value, &self.limits)?)
    }
}

/// The client side: encodes requests, decodes responses.
#[derive(Clone, Copy, Debug)]
pub struct ClientCodec {
    limits: Limits,
}

impl ClientCodec {
    /// With these size limits.
    pub fn new(limits: Limits) -> Self {
        ClientCodec { limits }
    }
}

impl Encoder<RequestFrame> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, request: RequestFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode_request(dst, request.id, &request.name, &request.value, &self.limits)?)
    }
}

impl Decoder for ClientCodec {
    type Item = ResponseFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ResponseFrame>, CodecError> {
        let Some((response, used)) = decode_response(src, &self.limits)? else {
            src.reserve(64);
            return Ok(None);
        };
        let id = response.id;
        let mut frame = src.split_to(used);
        frame.advance(8);
        Ok(Some(ResponseFrame { id, value: frame.freeze() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let mut wire = BytesMut::new();
        let mut client = ClientCodec::new(Limits::default());
        for id in 1..=3u32 {
            client.encode(RequestFrame::new(id, &b"n"[..], vec![id as u8; id as usize * 100]), &mut wire).unwrap();
        }
        let all = wire.split().freeze();
        let mut server = ServerCodec::new(Limits::default());
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for chunk in all.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(frame) = server.decode(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!((got[2].id, &got[2].name[..], got[2].value.len()), (3, &b"n"[..], 300));
    }

    #[test]
    fn limits_apply() {
        let mut wire = BytesMut::new();
        ClientCodec::new(Limits::default()).encode(RequestFrame::new(1, &b""[..], vec![0; 100]), &mut wire).unwrap();
        let small = Limits { max_value_len: 10, ..Limits::default() };
        let err = ServerCodec::new(small).decode(&mut wire).unwrap_err();
        assert!(err.to_string().contains("max_value_len"), "{err}");
    }
}
