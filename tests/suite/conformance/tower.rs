//! tower's `Service` on both sides, in the cases that apply: the tokio
//! client driven through `tower::Service` (`poll_ready`, then `call`)
//! against every server, and a tokio server serving a `tower::Service`
//! (`serve_tower`) against every client and the recorded Go exchanges.
//! The connection handling under `serve_tower` is the tokio server's own
//! (the hostile, fault and TLS cases of `tokio::`); what the service
//! changes is how each call is answered, and these cases check that.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use fastwire::proto::{ClientConfig, Handler, ResponseWriter, ServerConfig};
use fastwire::{ClientError, ClientStats, OwnedRequest, Reply};
use fastwire_bench::backend::{BlockingClient, RunningServer};
use fastwire_tokio::tower::Call;
use tower_service::Service;

/// The tokio client, called only through its `tower::Service` face, on a
/// runtime of its own, for the blocking scenarios. A call's deadline is
/// the client's `call_timeout`, as it is for a service in a tower stack.
pub struct TowerClient {
    client: fastwire_tokio::Client,
    runtime: tokio::runtime::Runtime,
}

impl TowerClient {
    /// A tower client of a server at `addr`.
    pub fn new(addr: std::net::SocketAddr, config: ClientConfig) -> TowerClient {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let client = runtime.block_on(async { fastwire_tokio::Client::new(addr, config) });
        TowerClient { client, runtime }
    }
}

impl BlockingClient for TowerClient {
    fn call_timeout(&self, name: &[u8], value: &[u8], _: Duration) -> Result<Reply, ClientError> {
        let mut service = self.client.clone();
        let call = Call::new(name.to_vec(), value.to_vec());
        self.runtime.block_on(async move {
            poll_fn(|cx| Service::poll_ready(&mut service, cx)).await?;
            Service::call(&mut service, call).await
        })
    }
    fn send(&self, name: &[u8], value: &[u8]) -> Result<(), ClientError> {
        // tower has no fire-and-forget: the client's own.
        self.runtime.block_on(self.client.send(name, value))
    }
    fn pending(&self) -> usize {
        self.client.pending()
    }
    fn stats(&self) -> ClientStats {
        self.client.stats()
    }
    fn close(&self) {
        self.client.close()
    }
}

/// A [`Handler`] as a `tower::Service<OwnedRequest>`: the answer it writes
/// is the service's response (the handlers of these cases answer inline).
#[derive(Clone)]
pub struct HandlerService(Arc<dyn Handler>);

impl Service<OwnedRequest> for HandlerService {
    type Response = bytes::Bytes;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<bytes::Bytes, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: OwnedRequest) -> Self::Future {
        let mut out = BytesMut::new();
        self.0.handle(request.as_request(), &mut ResponseWriter::new(&mut out));
        std::future::ready(Ok(out.freeze()))
    }
}

/// A tokio server on 127.0.0.1 serving `handler` as a `tower::Service`.
pub fn start(config: ServerConfig, handler: Arc<dyn Handler>) -> Box<dyn RunningServer> {
    let server = fastwire_tokio::Server::bind("127.0.0.1:0", config).expect("binds");
    Box::new(server.serve_tower(HandlerService(handler)).expect("serves"))
}
