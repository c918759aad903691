//! TLS as fastrpc negotiates it, with rustls, inside the state machines
//! (feature `tls`).
//!
//! The client asks for TLS with the last byte of its handshake
//! (`docs/src/wire-protocol.md`, "Handshake"); a server with TLS echoes 1, and right
//! after that 3-byte exchange both sides run a TLS handshake on the raw
//! socket. Compression then runs inside TLS. So TLS is one more stream
//! transform under the compression ones:
//!
//! ```text
//!  socket -> [raw in] -(rustls)-> [wire in] -(StreamDecoder)-> [plain in] -> codec
//!  socket <- [raw out] <-(rustls)- [wire out] <-(StreamEncoder)- [plain out] <- codec
//! ```
//!
//! rustls's `ServerConnection` and `ClientConnection` are sans-I/O, like this
//! crate: they take the bytes read and give the bytes to write. Putting them
//! *inside* [`ServerConn`](crate::ServerConn) and
//! [`ClientConn`](crate::ClientConn) means that no backend has TLS code: the
//! blocking threads, the mio reactor, tokio and glommio move raw bytes
//! through [`Connection`](crate::driver::Connection) exactly as without TLS, and the
//! handshake timeout each already enforces covers the TLS handshake too
//! ([`Connection::is_handshake_done`](crate::driver::Connection::is_handshake_done)
//! is true only once TLS is established).
//!
//! Configure a server with [`TlsServer`] in
//! [`ServerConfig::tls`](crate::ServerConfig::tls) and a client with
//! [`TlsClient`] in [`ClientConfig::tls`](crate::ClientConfig::tls):
//!
//! ```no_run
//! use fastwire_proto::tls::{TlsClient, TlsServer};
//! use fastwire_proto::{ClientConfig, ServerConfig};
//!
//! let server = ServerConfig {
//!     tls: Some(TlsServer::from_pem_files("server.pem", "server.key", None)?),
//!     ..ServerConfig::default()
//! };
//! let client = ClientConfig {
//!     tls: Some(TlsClient::from_pem_files(Some("ca.pem".as_ref()), "server.example", None)?),
//!     ..ClientConfig::default()
//! };
//! # Ok::<(), fastwire_proto::tls::TlsConfigError>(())
//! ```
//!
//! A server with TLS **requires** it: a client that does not ask is answered
//! "this server speaks TLS" (handshake byte 1) and closed with
//! [`HandshakeError::TlsRequired`](crate::HandshakeError::TlsRequired), a
//! protocol error. Go's server serves such a client in plaintext;
//! [`ServerConfig::tls_optional`](crate::ServerConfig::tls_optional) restores
//! that.
//!
//! The crypto is rustls's `ring` provider, chosen explicitly (not the process
//! default), so that another crate enabling a second provider cannot make
//! configuration fail.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, TlsError};
use crate::stream::{move_all, reserve_read_room, Inbound, Outbound};

/// A server's TLS settings: its certificate chain and key, and optionally
/// the authorities whose client certificates it requires (mutual TLS).
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl TlsServer {
    /// Any rustls server configuration (ALPN, session storage, key logging,
    /// another provider: whatever rustls offers).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsServer { config }
    }

    /// A certificate chain (leaf first) and its private key, both PEM, and
    /// if `client_ca` is given, the PEM certificates of the authorities that
    /// must have signed every client's certificate.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, TlsConfigError> {
        let chain = certificates(cert_chain, "the server's certificate chain")?;
        let key = private_key(key, "the server's private key")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let roots = root_store(pem, "the client CA file")?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(TlsConfigError::Rustls)?;
        Ok(TlsServer::new(Arc::new(config)))
    }

    /// [`from_pem`](Self::from_pem), read from files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsConfigError> {
        let client_ca = client_ca.map(read).transpose()?;
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?, client_ca.as_deref())
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }
}

/// A client's TLS settings: whom it trusts, the name the server's
/// certificate must carry, and optionally its own certificate (mutual TLS).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// Any rustls client configuration, and the server name to verify: a
    /// DNS name, or an IP address (which the certificate must then list).
    pub fn new(config: Arc<rustls::ClientConfig>, server_name: &str) -> Result<Self, TlsConfigError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsConfigError::ServerName(server_name.to_owned()))?;
        Ok(TlsClient { config, server_name })
    }

    /// Trusts the PEM certificates in `ca` (or, with `None`, Mozilla's root
    /// authorities as the `webpki-roots` crate ships them) and verifies the
    /// server's certificate against `server_name`. `identity` is a PEM
    /// certificate chain and key to present, for servers that require client
    /// certificates.
    pub fn from_pem(
        ca: Option<&[u8]>,
        server_name: &str,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<Self, TlsConfigError> {
        let roots = match ca {
            Some(pem) => root_store(pem, "the CA file")?,
            None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    certificates(chain, "the client's certificate chain")?,
                    private_key(key, "the client's private key")?,
                )
                .map_err(TlsConfigError::Rustls)?,
        };
        Self::new(Arc::new(config), server_name)
    }

    /// [`from_pem`](Self::from_pem), read from files.
    pub fn from_pem_files(
        ca: Option<&Path>,
        server_name: &str,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsConfigError> {
        let ca = ca.map(read).transpose()?;
        let identity = identity.map(|(chain, key)| Ok::<_, TlsConfigError>((read(chain)?, read(key)?))).transpose()?;
        Self::from_pem(ca.as_deref(), server_name, identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())))
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// The name the server's certificate is verified against.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

// Configurations compare equal when they are the same configuration (rustls
// configurations cannot be compared), so that `ServerConfig` and
// `ClientConfig` stay `Eq`.
impl PartialEq for TlsServer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}
impl Eq for TlsServer {}
impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}
impl Eq for TlsClient {}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").field("alpn", &self.config.alpn_protocols).finish_non_exhaustive()
    }
}
impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// A TLS configuration that cannot be built: which file or setting, and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("TLS: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// PEM text without the block it should hold, or a malformed block.
    #[error("TLS: {what}: {reason}")]
    Pem {
        /// Which input (the server's certificate chain, the CA file, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match its
    /// certificate, say).
    #[error("TLS: rustls refused the configuration: {0}")]
    Rustls(rustls::Error),
    /// The client-certificate verifier could not be built from the CA file.
    #[error("TLS: cannot verify client certificates with the given CA file: {0}")]
    Verifier(String),
    /// Not a DNS name or IP address.
    #[error(
        "TLS: invalid server name {0:?}: expected a DNS name or an IP address \
         (setting: the client's server name, --tls-server-name)"
    )]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read { path: path.to_owned(), source })
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem { what, reason: "no CERTIFICATE block found".into() });
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &'static str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsConfigError::Pem {
        what,
        reason: format!("{e} (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"),
    })
}

fn root_store(pem: &[u8], what: &'static str) -> Result<rustls::RootCertStore, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots.add(cert).map_err(|e| TlsConfigError::Pem { what, reason: e.to_string() })?;
    }
    Ok(roots)
}

/// One connection's TLS session and its raw (encrypted) buffers.
///
/// The session is rustls's *unbuffered* connection: it decrypts records in
/// place in `raw_in` and writes the records it makes into `raw_out`, so
/// that this layer owns every buffer and nothing waits inside rustls
/// between calls. (rustls 0.23 still builds each record it encrypts, and
/// hands over each record it decrypts, in a `Vec` of its own: one
/// allocation and one copy per record each way.)
///
/// `active` is false only on a client between its handshake and the
/// server's: its fastrpc handshake waits in `raw_out`, calls made meanwhile
/// wait in plaintext, and the server's 3 bytes are read unencrypted.
pub(crate) struct TlsLayer {
    session: Session,
    pub(crate) active: bool,
    /// Bytes read from the socket and not yet consumed by rustls (at most
    /// a partial record after each `open`).
    pub(crate) raw_in: BytesMut,
    /// Bytes for the socket: handshake, TLS records, alerts.
    pub(crate) raw_out: BytesMut,
    buffer_size: usize,
    /// Wire bytes consumed before TLS began (the peer's handshake).
    base_in: u64,
    raw_consumed: u64,
    pub(crate) raw_written: u64,
    /// The session failed: rustls is not called again (the connection
    /// reports its error and closes).
    failed: bool,
    /// A client session's: whether it has a certificate to present.
    client_certificate: bool,
}

enum Session {
    Client(rustls::client::UnbufferedClientConnection),
    Server(rustls::server::UnbufferedServerConnection),
}

impl Session {
    fn is_handshaking(&self) -> bool {
        match self {
            Session::Client(c) => c.is_handshaking(),
            Session::Server(s) => s.is_handshaking(),
        }
    }
}

/// What the session wants after one step.
enum Step {
    /// Ask it again: it has more to say or to hand over.
    Again,
    /// Nothing more until more bytes arrive or more output is written.
    Idle,
}

impl fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLayer")
            .field("active", &self.active)
            .field("handshaking", &self.session.is_handshaking())
            .field("raw_in", &self.raw_in.len())
            .field("raw_out", &self.raw_out.len())
            .finish()
    }
}

impl TlsLayer {
    /// A server session, begun once the client's handshake asked for TLS;
    /// `handshake` is ours, sent in the clear before any TLS record.
    pub(crate) fn server(config: &TlsServer, handshake: BytesMut, buffer_size: usize) -> Result<Self, Error> {
        let session = rustls::server::UnbufferedServerConnection::new(Arc::clone(&config.config)).map_err(tls_error)?;
        Ok(Self::with_session(Session::Server(session), handshake, buffer_size, true))
    }

    /// A client session, made with the connection; it starts when the
    /// server's handshake agrees ([`activate`](Self::activate)).
    pub(crate) fn client(config: &TlsClient, handshake: BytesMut, buffer_size: usize) -> Result<Self, Error> {
        let session =
            rustls::client::UnbufferedClientConnection::new(Arc::clone(&config.config), config.server_name.clone())
                .map_err(tls_error)?;
        let mut layer = Self::with_session(Session::Client(session), handshake, buffer_size, false);
        layer.client_certificate = config.config.client_auth_cert_resolver.has_certs();
        Ok(layer)
    }

    /// Whether this (client) session has a certificate to present if the
    /// server asks for one.
    pub(crate) fn has_client_certificate(&self) -> bool {
        self.client_certificate
    }

    fn with_session(session: Session, handshake: BytesMut, buffer_size: usize, active: bool) -> Self {
        TlsLayer {
            session,
            active,
            raw_in: BytesMut::new(),
            raw_out: handshake,
            buffer_size,
            base_in: 0,
            raw_consumed: 0,
            raw_written: 0,
            failed: false,
            client_certificate: false,
        }
    }

    /// Begins TLS after the peer's handshake: what is left in the wire
    /// buffer is already TLS, and the ClientHello (on a client) goes out.
    pub(crate) fn activate(&mut self, inbound: &mut Inbound) -> Result<(), Error> {
        self.active = true;
        self.base_in = inbound.consumed;
        std::mem::swap(&mut self.raw_in, &mut inbound.wire);
        self.open(inbound)
    }

    /// Whether the TLS handshake is complete (so calls and responses flow).
    pub(crate) fn is_established(&self) -> bool {
        self.active && !self.session.is_handshaking()
    }

    pub(crate) fn read_buffer(&mut self) -> &mut BytesMut {
        reserve_read_room(&mut self.raw_in, self.buffer_size);
        &mut self.raw_in
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.base_in + self.raw_consumed
    }

    // ANCHOR: open
    /// Decrypts what was read: records decrypted in place in `raw_in`,
    /// their plaintext appended to the inbound wire buffer, and whatever
    /// rustls has to say (handshake messages, alerts) encoded into `raw_out`.
    pub(crate) fn open(&mut self, inbound: &mut Inbound) -> Result<(), Error> {
        self.drive(&mut inbound.wire, None)
    }
    // ANCHOR_END: open

    // ANCHOR: seal
    /// Encrypts the (compressed) output into records, straight into
    /// `raw_out`, once the handshake allows; until then it waits in
    /// `outbound`.
    pub(crate) fn seal(&mut self, outbound: &mut Outbound, inbound: &mut Inbound) -> Result<(), Error> {
        if !self.is_established() || outbound.wire.is_empty() {
            return Ok(());
        }
        self.drive(&mut inbound.wire, Some(&mut outbound.wire))?;
        if !outbound.wire.is_empty() {
            return Err(TlsError::Other { reason: "the TLS session refused to send data".into() }.into());
        }
        Ok(())
    }
    // ANCHOR_END: seal

    /// Runs the session until it needs more bytes (or, with `plain`, has
    /// encrypted them). On an error, the alert rustls made for the peer is
    /// encoded into `raw_out` first, so that the peer learns why.
    fn drive(&mut self, wire_in: &mut BytesMut, mut plain: Option<&mut BytesMut>) -> Result<(), Error> {
        if self.failed {
            return Err(TlsError::Other { reason: "the TLS session has already failed".into() }.into());
        }
        loop {
            let (discard, step) = self.step_session(wire_in, plain.as_deref_mut());
            self.raw_in.advance(discard);
            self.raw_consumed += discard as u64;
            match step {
                Ok(Step::Again) => {}
                Ok(Step::Idle) => return Ok(()),
                Err(e) => {
                    self.failed = true;
                    self.encode_alert();
                    return Err(e);
                }
            }
        }
    }

    /// After an error, rustls has queued an alert; the next step hands it
    /// over. Only that one: rustls must not be asked again after an error
    /// (it would process the same bad record once more).
    fn encode_alert(&mut self) {
        // rustls hands queued output over before it looks at the input
        // again, so nothing more is read here; still, the input given must be
        // the same buffer, as its deframer may hold positions in it.
        let _ = self.step_session(&mut BytesMut::new(), None);
    }

    /// One step of the session over what `raw_in` holds (see [`step`]).
    fn step_session(&mut self, wire_in: &mut BytesMut, plain: Option<&mut BytesMut>) -> (usize, Result<Step, Error>) {
        let raw_in = &mut self.raw_in[..];
        match &mut self.session {
            Session::Client(c) => step(c.process_tls_records(raw_in), &mut self.raw_out, wire_in, plain),
            Session::Server(s) => step(s.process_tls_records(raw_in), &mut self.raw_out, wire_in, plain),
        }
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.raw_out.advance(n);
        self.raw_written += n as u64;
    }

    /// Swaps the raw output into `into` (see `Outbound::take`).
    pub(crate) fn take(&mut self, into: &mut BytesMut) {
        self.raw_written += self.raw_out.len() as u64;
        move_all(&mut self.raw_out, into);
    }

    pub(crate) fn receive_buffer(&mut self, bytes: &mut BytesMut) {
        move_all(bytes, &mut self.raw_in);
    }

    pub(crate) fn capacity(&self) -> usize {
        self.raw_in.capacity() + self.raw_out.capacity()
    }

    pub(crate) fn release_buffers(&mut self) {
        crate::stream::release(&mut self.raw_in);
        crate::stream::release(&mut self.raw_out);
    }
}

/// Room for TLS's framing around `len` bytes of plaintext: per record of at
/// most 16 KiB, a 5-byte header, the content type and a 16-byte tag (TLS
/// 1.3), or an explicit nonce and a tag (1.2); 64 bytes covers either.
fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(16 * 1024).max(1) * 64
}

/// Handles one state of the session (see rustls's `unbuffered` module):
/// decrypted records go to `wire_in`, anything to send is written into
/// `raw_out`, and in the `WriteTraffic` state `plain` (if given) is
/// encrypted and cleared. Returns the bytes of `raw_in` to discard.
fn step<Data>(
    status: rustls::unbuffered::UnbufferedStatus<'_, '_, Data>,
    raw_out: &mut BytesMut,
    wire_in: &mut BytesMut,
    plain: Option<&mut BytesMut>,
) -> (usize, Result<Step, Error>) {
    use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
    let rustls::unbuffered::UnbufferedStatus { mut discard, state } = status;
    let state = match state {
        Ok(state) => state,
        Err(e) => return (discard, Err(tls_error(e))),
    };
    let step = match state {
        ConnectionState::ReadTraffic(mut traffic) => loop {
            match traffic.next_record() {
                None => break Ok(Step::Again),
                Some(Ok(record)) => {
                    discard += record.discard;
                    wire_in.extend_from_slice(record.payload);
                }
                Some(Err(e)) => break Err(tls_error(e)),
            }
        },
        // Handshake messages and alerts: a few hundred bytes, or the
        // certificate chain (asked again with the exact size if larger).
        ConnectionState::EncodeTlsData(mut data) => write_record(raw_out, 4096, |out| {
            data.encode(out).map_err(|e| match e {
                EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
                e => Err(e.to_string()),
            })
        })
        .map(|()| Step::Again),
        // What was encoded is in `raw_out`, which the backend writes in
        // order: as far as rustls is concerned it is sent.
        ConnectionState::TransmitTlsData(data) => {
            data.done();
            Ok(Step::Again)
        }
        ConnectionState::WriteTraffic(mut traffic) => match plain {
            Some(plain) if !plain.is_empty() => {
                let sealed = write_record(raw_out, sealed_len(plain.len()), |out| {
                    traffic.encrypt(plain, out).map_err(|e| match e {
                        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
                        e => Err(e.to_string()),
                    })
                });
                sealed.map(|()| {
                    plain.clear();
                    Step::Idle
                })
            }
            _ => Ok(Step::Idle),
        },
        // The peer's close_notify: reported once; the socket's end follows.
        ConnectionState::PeerClosed => Ok(Step::Again),
        // BlockedHandshake (more bytes needed), Closed, early data (never
        // enabled here), and states later rustls versions may add.
        _ => Ok(Step::Idle),
    };
    (discard, step)
}

/// Lets rustls write at the end of `raw_out`: `room` bytes are made for it
/// (zeroed first, as this crate has no unsafe code: cheaper than the copy
/// out of a record buffer it replaces), and what it did not use is taken
/// back. `write` returns the bytes written, or `Err(Ok(size))` when it needs
/// `size` bytes of room (it is asked again), or `Err(Err(reason))`.
fn write_record(
    raw_out: &mut BytesMut,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Result<usize, String>>,
) -> Result<(), Error> {
    loop {
        let start = raw_out.len();
        raw_out.resize(start + room, 0);
        match write(&mut raw_out[start..]) {
            Ok(n) => {
                raw_out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(needed)) => {
                raw_out.truncate(start);
                room = needed;
            }
            Err(Err(reason)) => {
                raw_out.truncate(start);
                return Err(TlsError::Other { reason }.into());
            }
        }
    }
}

/// What usually makes a peer send `alert`, and the setting to look at.
fn alert_hint(alert: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription as A;
    match alert {
        A::CertificateRequired => {
            "the server requires a client certificate and this client sent none: give the client one \
             (--tls-client-cert and --tls-client-key, or the identity of ClientConfig's TLS settings)"
        }
        // Go's server sends this one for a missing client certificate too.
        A::BadCertificate => {
            "the peer refused this side's certificate, or its lack of one: a server that requires client \
             certificates needs one from the client (--tls-client-cert and --tls-client-key, or the identity of \
             ClientConfig's TLS settings); a certificate sent and refused must be signed by an authority the peer \
             trusts (--tls-client-ca on the server)"
        }
        A::UnknownCA => {
            "the peer does not trust the authority that signed this side's certificate \
             (--tls-ca on the client, --tls-client-ca on the server)"
        }
        _ => "the peer rejected this side: check that each side trusts the other's certificate and the server name",
    }
}

/// A rustls error as fastwire's, saying what to check.
fn tls_error(e: rustls::Error) -> Error {
    use rustls::{CertificateError, Error as E};
    let error = match &e {
        E::InvalidCertificate(cert) => {
            let setting = match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    "the authorities this side trusts: the client's CA file (--tls-ca) or the server's client CA (--tls-client-ca)"
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "the server name the client verifies (--tls-server-name) must be in the server's certificate"
                }
                _ => "the peer's certificate",
            };
            TlsError::Certificate { reason: e.to_string(), setting }
        }
        E::NoCertificatesPresented => TlsError::Certificate {
            reason: e.to_string(),
            setting: "this server requires client certificates: give the client an identity",
        },
        E::AlertReceived(alert) => TlsError::AlertReceived { alert: format!("{alert:?}"), hint: alert_hint(*alert) },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            TlsError::NotTls { reason: e.to_string() }
        }
        _ => TlsError::Other { reason: e.to_string() },
    };
    error.into()
}
