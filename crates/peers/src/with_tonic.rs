//! tonic: gRPC over HTTP/2, with prost messages.
//!
//! The client and server are tonic's generated code (`build.rs`, with
//! `tonic_build::manual` in place of a `.proto` file, so that no `protoc`
//! is needed), served as tonic's examples serve them (`Server::builder()`,
//! `add_service`) and called as they call: a `Channel` from an `Endpoint`,
//! the generated client cloned per call. Both sides turn Nagle off, as
//! fastwire does.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// A call's request, as `protoc` would generate it from
/// `message CallRequest { bytes name = 1; bytes value = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CallRequest {
    /// The call's name.
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    /// The call's value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// A call's reply: `message CallReply { bytes value = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CallReply {
    /// The answer.
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
}

#[allow(missing_docs, clippy::all, unreachable_pub)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/fastwire.demo.Demo.rs"));
}

use generated::demo_client::DemoClient;
use generated::demo_server::{Demo, DemoServer};

struct Service;

#[tonic::async_trait]
impl Demo for Service {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let request = request.into_inner();
        Ok(Response::new(CallReply { value: crate::answer(&request.name, &request.value).into() }))
    }
}

/// Serves until the runtime stops.
pub(crate) async fn serve(listener: TcpListener) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let _ =
        tonic::transport::Server::builder().add_service(DemoServer::new(Service)).serve_with_incoming(incoming).await;
}

/// A tonic channel to the demo service.
#[derive(Clone, Debug)]
pub struct Client {
    client: DemoClient<Channel>,
    timeout: Duration,
}

impl Client {
    /// Connects one HTTP/2 connection; each call has `timeout` as its gRPC
    /// deadline.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(io::Error::other)?.tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(io::Error::other)?;
        Ok(Client { client: DemoClient::new(channel), timeout })
    }

    /// One call, through tonic's generated stub.
    pub async fn call(&self, name: &[u8], value: &[u8]) -> io::Result<Bytes> {
        let mut request =
            Request::new(CallRequest { name: Bytes::copy_from_slice(name), value: Bytes::copy_from_slice(value) });
        request.set_timeout(self.timeout);
        let reply = self.client.clone().call(request).await.map_err(io::Error::other)?;
        Ok(reply.into_inner().value)
    }
}
