//! The backend matrix: any backend's server and client with the suite's
//! settings, on 127.0.0.1, and each client that can run on this machine.

use std::net::SocketAddr;
use std::time::Duration;

use fastwire::proto::{demo_handler, ClientConfig, Compression, Handler, ProtocolConfig, ServerConfig};
use fastwire_bench::backend::{self, BlockingClient, RunningServer};
use fastwire_bench::BackendKind;

/// Server settings for tests: short handshake timeout, so hostile cases end quickly.
pub fn server_config(protocol: ProtocolConfig) -> ServerConfig {
    ServerConfig { protocol, handshake_timeout: Duration::from_millis(500), ..ServerConfig::default() }
}

/// Client settings for tests: a call deadline long enough for a loaded machine.
pub fn client_config(protocol: ProtocolConfig) -> ClientConfig {
    ClientConfig { protocol, call_timeout: Duration::from_secs(20), ..ClientConfig::default() }
}

/// The default protocol settings with `compression`.
pub fn protocol(compression: Compression) -> ProtocolConfig {
    ProtocolConfig { compression, ..ProtocolConfig::default() }
}

/// 127.0.0.1 on a port the system picks.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `kind`'s server on 127.0.0.1.
pub fn start<H: Handler + 'static>(kind: BackendKind, config: ServerConfig, handler: H) -> Box<dyn RunningServer> {
    backend::start_server(kind, localhost(), config, handler).expect("server starts")
}

/// `kind`'s server with the demo service and the suite's settings.
pub fn start_demo(kind: BackendKind) -> Box<dyn RunningServer> {
    start(kind, server_config(ProtocolConfig::default()), demo_handler)
}

/// `kind`'s client (through its blocking face) of a server at `addr`.
pub fn client(kind: BackendKind, addr: SocketAddr, config: ClientConfig) -> Box<dyn BlockingClient> {
    backend::blocking_client(kind, addr, config).expect("client")
}

/// Runs `check` once per client backend that can run here, and says which
/// cannot and why.
pub fn each_client(check: impl Fn(BackendKind)) {
    for kind in BackendKind::clients() {
        match kind.unavailable() {
            Some(why) => eprintln!("{kind} client skipped: {why}"),
            None => check(kind),
        }
    }
}

/// A well-behaved client still gets served.
#[track_caller]
pub fn assert_still_serves(kind: BackendKind, server: &dyn RunningServer) {
    assert_still_serves_with(kind, server, ProtocolConfig::default())
}

/// A well-behaved client speaking `protocol` still gets served.
#[track_caller]
pub fn assert_still_serves_with(kind: BackendKind, server: &dyn RunningServer, protocol: ProtocolConfig) {
    let c = client(kind.client_kind(), server.local_addr(), client_config(protocol));
    let reply = c.call_timeout(b"echo", b"still here", Duration::from_secs(10)).expect("the server still serves");
    assert_eq!(&*reply, b"re:still here");
    c.close();
}
