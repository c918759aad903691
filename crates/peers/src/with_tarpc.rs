//! tarpc: a service trait, its generated client and server, and tarpc's
//! serde transport (bincode in tokio-util's length-delimited frames).
//!
//! Served as tarpc's README and examples serve: `BaseChannel::with_defaults`
//! per connection, `execute` over the service, and each request's response
//! future spawned as a task of its own ("handle all requests
//! concurrently"). The client is the generated `DemoClient` with its
//! dispatch task spawned beside it; callers clone it and call concurrently.
//! Both sides turn Nagle off, as fastwire does, so that no call waits for
//! a delayed acknowledgement.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::LengthDelimitedCodec;

/// The demo service as a tarpc service: one call, a name and a value in,
/// the answer out.
#[tarpc::service]
pub trait Demo {
    /// Answers as [`crate::answer`] does.
    async fn call(name: Vec<u8>, value: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct DemoServer;

impl Demo for DemoServer {
    async fn call(self, _: context::Context, name: Vec<u8>, value: Vec<u8>) -> Vec<u8> {
        crate::answer(&name, &value)
    }
}

fn framed(stream: TcpStream) -> tokio_util::codec::Framed<TcpStream, LengthDelimitedCodec> {
    LengthDelimitedCodec::builder().new_framed(stream)
}

/// Accepts connections until the runtime stops, a task per connection and
/// a task per request.
pub(crate) async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        let transport = serde_transport::new(framed(stream), Bincode::default());
        let channel = BaseChannel::with_defaults(transport);
        tokio::spawn(channel.execute(DemoServer.serve()).for_each(|response| async move {
            tokio::spawn(response);
        }));
    }
}

/// A tarpc connection: the generated client and its dispatch task.
#[derive(Clone, Debug)]
pub struct Client {
    client: DemoClient,
    dispatch: Arc<tokio::task::AbortHandle>,
    timeout: Duration,
}

impl Client {
    /// Connects, allowing `in_flight` calls at once (tarpc's
    /// `max_in_flight_requests`; more are queued by tarpc), each with
    /// `timeout` as its context's deadline.
    pub async fn connect(addr: SocketAddr, in_flight: usize, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let transport = serde_transport::new(framed(stream), Bincode::default());
        let mut config = client::Config::default();
        config.max_in_flight_requests = in_flight.max(1);
        let client::NewClient { client, dispatch } = DemoClient::new(config, transport);
        // What `NewClient::spawn` does, keeping the handle so that `close`
        // can end the connection.
        let dispatch = tokio::spawn(dispatch.map(|_| ())).abort_handle();
        Ok(Client { client, dispatch: Arc::new(dispatch), timeout })
    }

    /// One call, through tarpc's generated stub.
    pub async fn call(&self, name: &[u8], value: &[u8]) -> io::Result<Bytes> {
        let mut context = context::current();
        context.deadline = Instant::now() + self.timeout;
        let reply = self.client.call(context, name.to_vec(), value.to_vec()).await.map_err(io::Error::other)?;
        Ok(Bytes::from(reply))
    }

    /// Stops the dispatch task: calls in flight fail.
    pub fn close(&self) {
        self.dispatch.abort();
    }
}
