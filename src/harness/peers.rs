//! The peers' rows (`fastwire compare --peers`): the RPC stacks a Rust
//! user would pick instead of fastwire (crate `fastwire-peers`), raced on
//! the same calls, by the same closed loop as fastwire's tokio client (a
//! current-thread runtime per connection, `depth` caller tasks), with every
//! reply checked.
//!
//! A peer's client only speaks to its own server, so its rows are `both`,
//! on `fastrpc` and `pingpong`, plaintext and uncompressed: the workloads
//! whose calls every stack can make as it is.

use super::sample::{Mode, Sample, Timing};
use super::workload::{Role, Spec, Workload};

pub use fastwire_peers::Peer;

/// Whether the peers race on `spec`, and why not.
pub fn applies(spec: &Spec) -> Result<(), String> {
    if !matches!(spec.workload, Workload::Fastrpc | Workload::Pingpong) {
        return Err(format!("the peers race on fastrpc and pingpong only, not {}", spec.workload.name()));
    }
    if spec.role != Role::Both {
        return Err("a peer's client speaks only to its own server: peers race as client and server together".into());
    }
    if spec.compress != fastwire_proto::Compression::None || spec.tls.is_some() {
        return Err("the peers race in plaintext, uncompressed".into());
    }
    Ok(())
}

impl super::drive::AsyncClient for fastwire_peers::Client {
    type Reply = bytes::Bytes;
    type Dial = Peer;

    async fn connect(peer: &Peer, addr: std::net::SocketAddr, spec: &Spec) -> Result<Self, String> {
        fastwire_peers::Client::connect(*peer, addr, spec.client_config().max_pending, spec.call_timeout)
            .await
            .map_err(|e| format!("connecting to {peer}: {e}"))
    }

    async fn call(&self, name: &[u8], value: &[u8]) -> Result<Self::Reply, String> {
        fastwire_peers::Client::call(self, name, value).await.map_err(|e| format!("calling: {e}"))
    }

    async fn send(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Err("the peers have no fire-and-forget requests".into())
    }

    fn unsolicited(&self) -> u64 {
        0
    }

    fn close(&self) {
        fastwire_peers::Client::close(self);
    }
}

/// One peer on one configuration: its server, one run against it, then
/// the server stopped.
pub fn measure(peer: Peer, spec: &Spec, timing: &Timing, mode: Mode) -> Result<Sample, String> {
    applies(spec)?;
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let server = fastwire_peers::Server::start(peer, any).map_err(|e| format!("starting the {peer} server: {e}"))?;
    let addr = server.local_addr();
    let result = super::drive::closed_async::<fastwire_peers::Client>(&peer, addr, spec, timing, mode, None, true);
    server.shutdown(std::time::Duration::from_secs(2));
    result
}
