//! The client side of a connection, as a state machine.
//!
//! [`ClientConn`] writes its handshake at once, encodes calls (each with a
//! fresh request id, see [`PendingTable`]) and matches responses to the
//! pending calls by id. Calls can be queued before the server's handshake
//! has arrived: they go out right behind ours, as pipelining allows.
//!
//! Each pending call carries a token `T` of the backend's choosing (a
//! channel sender, a waker, a slot index); [`ClientConn::process`] hands it
//! back with the response.
//!
//! **Time.** The connection owns its timeouts, as the server's does, and
//! reads no clock: its driver hands it the time. It keeps each call's
//! deadline ([`start_call_until`](ClientConn::start_call_until)), the
//! handshakes' deadline ([`start_clock`](ClientConn::start_clock)) and
//! the idle close (`idle_timeout` without a call), says when it next needs
//! the time ([`poll_timeout`](ClientConn::poll_timeout)) and applies what
//! is due ([`handle_timeout`](ClientConn::handle_timeout)): calls past
//! their deadline are handed back to be failed, and a handshake that
//! stalled or an idle connection ends it ([`ClientExpired`]). Reconnecting
//! is the [`Reconnect`](crate::driver::Reconnect) policy's, across
//! connections. A driver may look more often than asked: a look before a
//! deadline does nothing.
//!
//! ```
//! use fastwire_proto::driver::Connection;
//! use fastwire_proto::{ClientConfig, ClientConn};
//!
//! let mut conn = ClientConn::new(&ClientConfig::default());
//! let id = conn.start_call(b"echo", b"hi", "my token").unwrap();
//! assert_eq!(id, 1);
//! // Our handshake, then the request.
//! assert_eq!(conn.output(), b"\0\x01\0\x01\0\0\0\x04\0\0\0echo\x02\0\0\0hi");
//!
//! // The server's handshake and its response.
//! conn.received(b"\0\x01\0\x01\0\0\0\x05\0\0\0re:hi");
//! let mut got = Vec::new();
//! conn.process(|resp, token| got.push((resp.id, resp.value.to_vec(), token))).unwrap();
//! assert_eq!(got, [(1, b"re:hi".to_vec(), "my token")]);
//! ```

use crate::codec::{decode_response, encode_request, Response, RESPONSE_HEADER_LEN};
use crate::compress::{StreamDecoder, StreamEncoder};
use crate::config::{ClientConfig, Limits};
use crate::connection::impl_connection;
use crate::error::Error;
use crate::handshake;
use crate::pending::PendingTable;
use crate::stream::{Inbound, Outbound};
use std::time::{Duration, Instant};

/// Most bytes of calls a client connection queues for the socket: a call
/// or send beyond it waits for room ([`ClientConn::is_output_full`]), so
/// that a server that stopped reading cannot make a client buffer without
/// bound.
pub const MAX_QUEUED_OUTPUT: usize = 4 * 1024 * 1024;

/// What a look at the clock ([`ClientConn::handle_timeout`]) asks of the
/// driver, beyond failing the calls it handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientExpired {
    /// Nothing more: the connection goes on.
    Nothing,
    /// The handshakes did not finish within `handshake_timeout`: end the
    /// connection, failing its calls with
    /// [`HandshakeStage::handshake_timed_out`]'s words (and count it a
    /// failed attempt for the [`Reconnect`](crate::driver::Reconnect) policy).
    Handshake,
    /// No call for `idle_timeout`: close the connection; the next call
    /// makes a new one.
    Idle,
}

/// A call awaiting its response: the driver's token and its deadline, in
/// [`Ticks`] (eight bytes, not an `Instant`'s sixteen: the pending table
/// is walked by every response, and a pipelining client keeps thousands).
#[derive(Debug)]
struct Call<T> {
    token: T,
    deadline: u64,
}

/// A call with no deadline of its own.
const NEVER: u64 = u64::MAX;

/// Instants as nanoseconds from an epoch (the first instant the
/// connection is handed), offset so that instants before the epoch (a
/// later call with a shorter timeout) still count up to it: exact over
/// about a century on either side.
#[derive(Debug, Default)]
struct Ticks {
    epoch: Option<Instant>,
}

impl Ticks {
    /// The epoch's own tick.
    const EPOCH: u64 = 1 << 62;

    fn of(&mut self, at: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(at);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match at.checked_duration_since(epoch) {
            Some(after) => Self::EPOCH.saturating_add(nanos(after)).min(NEVER - 1),
            None => Self::EPOCH.saturating_sub(nanos(epoch - at)),
        }
    }

    /// The instant of a tick that [`of`](Self::of) made.
    fn instant(&self, tick: u64) -> Option<Instant> {
        let epoch = self.epoch?;
        match tick.checked_sub(Self::EPOCH) {
            Some(after) => epoch.checked_add(Duration::from_nanos(after)),
            None => epoch.checked_sub(Duration::from_nanos(Self::EPOCH - tick)),
        }
    }
}

/// A call [`ClientConn::start_call`] refused, with its token given back so
/// that the caller can be told.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected<T> {
    /// Why: too many pending calls, a value over the limits, or a failed connection.
    pub error: Error,
    /// The token that was passed in.
    pub token: T,
}

/// How far a client connection's handshakes have come: what a driver says
/// when the server closes the connection or a handshake takes too long
/// ([`closed_by_server`](Self::closed_by_server),
/// [`handshake_timed_out`](Self::handshake_timed_out)), so that every
/// backend words them the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeStage {
    /// Waiting for the server's fastrpc handshake.
    Fastrpc,
    /// The fastrpc handshake agreed on TLS and the TLS handshake is under way.
    Tls {
        /// Whether this client has a certificate to present if asked.
        client_certificate: bool,
    },
    /// Both handshakes are done: calls and responses flow.
    Done,
}

impl HandshakeStage {
    /// Why the connection ended when the server closed it at this stage.
    pub fn closed_by_server(self) -> &'static str {
        match self {
            HandshakeStage::Fastrpc => {
                "the server closed the connection during the handshake, before answering ours \
                 (is it a fastrpc server, with the same sniff header and protocol version?)"
            }
            HandshakeStage::Tls { client_certificate: false } => {
                "the server closed the connection during the TLS handshake: it may require a client \
                 certificate (setting: the client's TLS identity, TlsClient::from_pem / --tls-client-cert), \
                 or refused this client's TLS settings"
            }
            HandshakeStage::Tls { client_certificate: true } => {
                "the server closed the connection during the TLS handshake: it may have refused this \
                 client's certificate (is it signed by an authority the server trusts? setting: \
                 --tls-client-cert, and the server's client CA)"
            }
            HandshakeStage::Done => "the server closed the connection",
        }
    }

    /// Why the connection ended when a handshake did not finish within
    /// `timeout` (the client's `handshake_timeout`).
    pub fn handshake_timed_out(self, timeout: std::time::Duration) -> String {
        match self {
            HandshakeStage::Tls { .. } => {
                format!(
                    "the TLS handshake with the server did not finish within {timeout:?} (setting: handshake_timeout)"
                )
            }
            _ => format!("no handshake from the server within {timeout:?} (setting: handshake_timeout)"),
        }
    }
}

/// The client side of one connection; `T` is the per-call token.
#[derive(Debug)]
pub struct ClientConn<T> {
    inbound: Inbound,
    outbound: Outbound,
    pending: PendingTable<Call<T>>,
    open: bool,
    failed: Option<Error>,
    sniff_header: Box<[u8]>,
    version: u8,
    limits: Limits,
    unknown_responses: u64,
    /// Values at least this long are split off the read buffer and handed
    /// out shared (see [`share_values_from`](Self::share_values_from)).
    share_from: usize,
    /// The TLS session when this client asks for TLS (started by the
    /// server's handshake agreeing).
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::TlsLayer>>,
    /// Why a TLS session could not be made; the first `process` reports it.
    #[cfg(feature = "tls")]
    tls_failed: Option<Error>,
    /// How long the handshakes may take, and until when (set once the
    /// connection is made: see [`start_clock`](Self::start_clock)).
    handshake_timeout: Duration,
    handshake_deadline: Option<Instant>,
    /// No call's deadline among the pending calls comes before this (a
    /// lower bound: answered calls are not taken out of it; the next look
    /// at the clock finds the true earliest).
    call_deadline: Option<Instant>,
    ticks: Ticks,
    idle_timeout: Duration,
    /// When the connection was last used, as of the last look at the
    /// clock (`None` before [`start_clock`](Self::start_clock)).
    last_used: Option<Instant>,
    /// Used since `last_used`: calls mark it without being handed the
    /// time, and the next look at the clock stamps it. An idle close
    /// then comes at most one idle period late, and no call pays for a
    /// clock read.
    used: bool,
}

impl<T> ClientConn<T> {
    /// A new connection; its handshake is already in the output.
    ///
    /// With TLS ([`ClientConfig::tls`](crate::ClientConfig::tls)) calls made
    /// before the TLS handshake is done wait, in this connection's output
    /// buffer, and go out encrypted once it is.
    pub fn new(config: &ClientConfig) -> Self {
        let protocol = &config.protocol;
        let mut outbound = Outbound::new(config.buffer_size);
        #[cfg(feature = "tls")]
        let wants_tls = config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let wants_tls = false;
        handshake::encode(
            &mut outbound.wire,
            &protocol.sniff_header,
            protocol.protocol_version,
            protocol.compression,
            wants_tls,
        );
        #[cfg(feature = "tls")]
        let (tls, tls_failed) = match &config.tls {
            None => (None, None),
            Some(tls) => {
                // The handshake goes out in the clear, ahead of the session.
                let ours = outbound.wire.split();
                match crate::tls::TlsLayer::client(tls, ours, config.buffer_size) {
                    Ok(layer) => (Some(Box::new(layer)), None),
                    Err(e) => (None, Some(e)),
                }
            }
        };
        outbound.encoder = StreamEncoder::new(protocol.compression, protocol.flate_level);
        ClientConn {
            inbound: Inbound::new(config.buffer_size),
            outbound,
            pending: PendingTable::new(config.max_pending),
            open: false,
            failed: None,
            sniff_header: protocol.sniff_header.clone().into_boxed_slice(),
            version: protocol.protocol_version,
            limits: protocol.limits,
            unknown_responses: 0,
            share_from: usize::MAX,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            tls_failed,
            handshake_timeout: config.handshake_timeout,
            handshake_deadline: None,
            call_deadline: None,
            ticks: Ticks::default(),
            idle_timeout: config.idle_timeout,
            last_used: None,
            used: false,
        }
    }

    /// The connection was made at `now`: the handshakes (fastrpc's, then
    /// TLS's) have until `now + handshake_timeout` to finish, and its idle
    /// time starts.
    pub fn start_clock(&mut self, now: Instant) {
        self.handshake_deadline = Some(now + self.handshake_timeout);
        self.last_used = Some(now);
    }

    /// Until when the handshakes may take: `None` before
    /// [`start_clock`](Self::start_clock) and once they are done. (A driver
    /// that only waits for the server's handshake waits this long; the
    /// connection's other deadlines are in [`poll_timeout`](Self::poll_timeout).)
    pub fn handshake_deadline(&self) -> Option<Instant> {
        self.handshake_deadline.filter(|_| !crate::driver::Connection::is_handshake_done(self))
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run: the
    /// handshakes' deadline while they are under way, the earliest call's
    /// deadline while calls are pending, the idle close while none is
    /// (and nothing waits to be written); `None` before
    /// [`start_clock`](Self::start_clock) with no call that has a deadline.
    /// The time may come early (a call answered meanwhile, a use not yet
    /// stamped): the look then finds nothing due and the next
    /// `poll_timeout` is later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.call_deadline.filter(|_| !self.pending.is_empty());
        let idle = self.last_used.filter(|_| self.is_idle()).map(|t| t + self.idle_timeout);
        [self.handshake_deadline(), calls, idle].into_iter().flatten().min()
    }

    /// Applies what is due at `now`: every pending call whose deadline is
    /// at or before `now` is forgotten and handed to `expired` (with its
    /// id) to be failed, and a late response for it is dropped as unknown;
    /// the return value says whether the connection must end.
    pub fn handle_timeout(&mut self, now: Instant, mut expired: impl FnMut(u32, T)) -> ClientExpired {
        if std::mem::take(&mut self.used) || self.last_used.is_none() {
            self.last_used = Some(now);
        }
        if self.handshake_deadline().is_some_and(|at| now >= at) {
            return ClientExpired::Handshake;
        }
        if self.call_deadline.is_some_and(|at| now >= at) {
            let now = self.ticks.of(now);
            let mut next = NEVER;
            self.pending.remove_where(
                |call| {
                    if call.deadline > now {
                        next = next.min(call.deadline);
                    }
                    call.deadline <= now
                },
                |id, call| expired(id, call.token),
            );
            self.call_deadline = (next != NEVER).then(|| self.ticks.instant(next)).flatten();
        }
        let idle_since = self.last_used.unwrap_or(now);
        if self.is_idle() && now.saturating_duration_since(idle_since) >= self.idle_timeout {
            return ClientExpired::Idle;
        }
        ClientExpired::Nothing
    }

    /// No call pending and nothing waiting to be written.
    fn is_idle(&self) -> bool {
        self.pending.is_empty() && !crate::driver::Connection::has_output(self)
    }

    /// Whether [`MAX_QUEUED_OUTPUT`] bytes of calls already wait for the
    /// socket: a new call or send waits for the output to drain.
    pub fn is_output_full(&self) -> bool {
        crate::driver::Connection::buffered_output(self) >= MAX_QUEUED_OUTPUT
    }

    /// Hands response values of at least `len` bytes to
    /// [`process`](Self::process)'s callback as a `Bytes` that shares the
    /// read buffer ([`Response::shared`]) instead of only borrowing them:
    /// the frame is split off the buffer rather than consumed, so a receiver
    /// that keeps the value needs no copy. The buffer's next bytes then go
    /// into what is left of its allocation, or into a new one while the
    /// shared value is alive: worth it for large values (whose copy costs
    /// more than an allocation, and which a receiver would not keep a
    /// pooled buffer for), not for small ones. Off (`usize::MAX`) by default.
    pub fn share_values_from(mut self, len: usize) -> Self {
        self.share_from = len;
        self
    }

    /// Queues a call with no deadline of its own and returns its request
    /// id. `token` comes back from [`process`](Self::process) with the
    /// response, or from [`cancel`](Self::cancel) /
    /// [`drain_pending`](Self::drain_pending).
    #[inline]
    pub fn start_call(&mut self, name: &[u8], value: &[u8], token: T) -> Result<u32, Rejected<T>> {
        self.start(name, value, token, None)
    }

    /// [`start_call`](Self::start_call) for a call that fails if its
    /// response is not in by `deadline`: the look at the clock
    /// ([`handle_timeout`](Self::handle_timeout)) at or after it hands its
    /// token back to be failed. A response that comes before is the
    /// call's, however close to the deadline.
    #[inline]
    pub fn start_call_until(
        &mut self,
        name: &[u8],
        value: &[u8],
        token: T,
        deadline: Instant,
    ) -> Result<u32, Rejected<T>> {
        self.start(name, value, token, Some(deadline))
    }

    #[inline]
    fn start(&mut self, name: &[u8], value: &[u8], token: T, deadline: Option<Instant>) -> Result<u32, Rejected<T>> {
        if let Some(error) = &self.failed {
            return Err(Rejected { error: error.clone(), token });
        }
        let tick = deadline.map_or(NEVER, |at| self.ticks.of(at));
        let id = match self.pending.insert(Call { token, deadline: tick }) {
            Ok(id) => id,
            Err(call) => {
                return Err(Rejected {
                    error: Error::TooManyPending { limit: self.pending.limit() },
                    token: call.token,
                })
            }
        };
        if let Err(e) = self.encode(id, name, value) {
            let call = self.pending.remove(id).expect("the id was inserted just above");
            return Err(Rejected { error: e, token: call.token });
        }
        self.used = true;
        if let Some(at) = deadline {
            // The first call pending starts the bound afresh: the calls
            // before it are all answered.
            let alone = self.pending.len() == 1;
            if alone || self.call_deadline.is_none_or(|bound| at < bound) {
                self.call_deadline = Some(at);
            }
        }
        Ok(id)
    }

    /// Queues a fire-and-forget request (id 0): the server runs its handler
    /// and sends nothing back.
    pub fn send_fire_and_forget(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.encode(0, name, value)?;
        self.used = true;
        Ok(())
    }

    fn encode(&mut self, id: u32, name: &[u8], value: &[u8]) -> Result<(), Error> {
        encode_request(self.outbound.plain_mut(), id, name, value, &self.limits)?;
        self.outbound.unwritten_messages += 1;
        self.outbound.end_batch_if_large()?;
        Ok(())
    }

    /// Forgets a pending call (its caller gave up on it) and returns its
    /// token. A response that still comes for it is dropped as unknown.
    pub fn cancel(&mut self, id: u32) -> Option<T> {
        self.pending.remove(id).map(|call| call.token)
    }

    /// Removes every pending call, to fail them when the connection is lost.
    pub fn drain_pending(&mut self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.pending.drain().map(|(id, call)| (id, call.token))
    }

    /// Calls awaiting a response.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Responses dropped because no pending call had their id (a response
    /// never asked for, a second one for the same call, or one for a call
    /// given up on).
    pub fn unknown_responses(&self) -> u64 {
        self.unknown_responses
    }

    /// How far the handshakes have come (see [`HandshakeStage`]).
    pub fn handshake_stage(&self) -> HandshakeStage {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref() {
            if tls.active && !tls.is_established() {
                return HandshakeStage::Tls { client_certificate: tls.has_client_certificate() };
            }
        }
        if crate::driver::Connection::is_handshake_done(self) {
            HandshakeStage::Done
        } else {
            HandshakeStage::Fastrpc
        }
    }

    /// Reads the server's handshake (once), then decodes every complete
    /// response received so far and hands each to `on_response` with its
    /// call's token. Responses with unknown ids are dropped, as Go does.
    ///
    /// An error means the connection must be closed (and its pending calls
    /// failed, see [`drain_pending`](Self::drain_pending)); calling again
    /// returns the same error.
    pub fn process(&mut self, mut on_response: impl FnMut(Response<'_>, T)) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        #[cfg(feature = "tls")]
        let result = match self.tls_failed.take() {
            Some(e) => Err(e),
            None => self.pump_tls().and_then(|()| self.receive(&mut on_response)),
        };
        #[cfg(not(feature = "tls"))]
        let result = self.receive(&mut on_response);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn receive(&mut self, on_response: &mut impl FnMut(Response<'_>, T)) -> Result<(), Error> {
        if !self.open {
            let Some((peer, used)) = handshake::decode(&self.inbound.wire, &self.sniff_header, self.version)? else {
                return Ok(());
            };
            self.inbound.skip(used);
            self.inbound.decoder = StreamDecoder::new(peer.compression);
            #[cfg(feature = "tls")]
            if let Some(tls) = self.tls.as_deref_mut() {
                if !peer.tls {
                    return Err(crate::HandshakeError::TlsRefused.into());
                }
                self.open = true;
                tls.activate(&mut self.inbound)?;
                self.pump_tls()?;
                return self.decode_responses(on_response);
            }
            // Go's client ignores the flag when it did not ask for TLS; a
            // Go server with TLS echoes the client's 0. Only a server that
            // requires TLS says 1 here, and then closes: say why.
            if peer.tls {
                return Err(crate::HandshakeError::TlsRequired.into());
            }
            self.open = true;
        }
        self.decode_responses(on_response)
    }

    fn decode_responses(&mut self, on_response: &mut impl FnMut(Response<'_>, T)) -> Result<(), Error> {
        let limits = self.limits;
        loop {
            // The frames handed out are consumed once, at the end (or before
            // a value is split off): one `BytesMut::advance` per batch
            // instead of one per frame.
            let mut used = 0;
            let decoded = loop {
                let (response, len) = match decode_response(&self.inbound.plain()[used..], &limits) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                let (id, value_len) = (response.id, response.value.len());
                match self.pending.remove(id).map(|call| call.token) {
                    Some(token) if value_len >= self.share_from => {
                        self.inbound.consume(used);
                        used = 0;
                        let value = self.inbound.take_front(len).slice(RESPONSE_HEADER_LEN..);
                        on_response(Response { id, value: &value, shared: Some(&value) }, token);
                    }
                    Some(token) => {
                        on_response(response, token);
                        used += len;
                    }
                    None => {
                        self.unknown_responses += 1;
                        used += len;
                    }
                }
            };
            self.inbound.consume(used);
            decoded?;
            if !self.inbound.decompress()? {
                return Ok(());
            }
        }
    }
}

impl_connection!(ClientConn<T>, T);

impl<T> ClientConn<T> {
    /// A client's output is its calls: their moves need no note.
    #[inline]
    fn on_output_taken(&mut self, _taken: bool) {}

    #[inline]
    fn on_output_advanced(&mut self) {}
}
