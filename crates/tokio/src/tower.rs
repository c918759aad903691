//! tower's `Service` on both sides (the `tower` feature): the client is a
//! `tower::Service<Call>`, and a server serves any
//! `tower::Service<OwnedRequest>`, so that tower's middleware (timeouts,
//! concurrency limits, load shedding, retries, the power-of-two-choices
//! balancer) and the rest of the ecosystem built on it (tonic, axum,
//! hyper) compose with fastwire as they do with each other.
//!
//! The crate depends only on `tower-service`, the trait, as hyper does;
//! the middleware is the application's choice of `tower` features.
//!
//! * **Client**: [`Client`] implements `Service<Call>`, answering with the
//!   [`Reply`] or the client's typed [`ClientError`]. `poll_ready` is
//!   [`Client::poll_ready`]: `Pending` while the connection holds
//!   `max_pending` calls or 4 MiB of queued output, so tower's
//!   back-pressure (a `Buffer`, a balancer's choice) sees a full client
//!   as busy instead of piling calls on it. Each call's future owns a
//!   clone of the client (one allocation for the boxed future: the price
//!   of a nameable `Service::Future`).
//! * **Server**: [`Server::serve_tower`] and [`Server::spawn_tower`] run
//!   each request's call of the service concurrently with the connection's
//!   others, as [`Server::serve_async`] does. The response is the value;
//!   fastrpc has no error channel, so a service that wants its caller to
//!   see an error answers it in the value (see `examples/kv.rs`), and an
//!   error *returned* by the service (a tower `Timeout` elapsed, a load
//!   shedder's `Overloaded`) closes the call's connection, as hyper closes
//!   a connection whose service fails: every call on it fails with a
//!   connection error, and no caller ever mistakes a failure for an answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwire_common::{ClientError, OwnedRequest, Reply};
use fastwire_proto::Responder;
use tower_service::Service;

use crate::client::Client;
use crate::server::{Server, ServerHandle, SpawnedServer};

/// The error type tower's middleware passes around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call, as the client's `tower::Service` takes it: a method name and a
/// value. `Bytes`, so that a retry or a hedge can clone it cheaply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The method name (may be empty).
    pub name: Bytes,
    /// The payload.
    pub value: Bytes,
}

impl Call {
    /// A call of `name` with `value`.
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Call {
        Call { name: name.into(), value: value.into() }
    }
}

impl Service<Call> for Client {
    type Response = Reply;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, ClientError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Client::poll_ready(self, cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.call(&call.name, &call.value).await })
    }
}

// ANCHOR: serve_tower
/// A `tower::Service` a server can serve: it takes an [`OwnedRequest`],
/// answers with a value, fails with anything that converts to a
/// [`BoxError`], and can be cloned for each request and sent to a task.
pub trait RequestService:
    Service<OwnedRequest, Response: AsRef<[u8]>, Error: Into<BoxError>, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S> RequestService for S where
    S: Service<OwnedRequest, Response: AsRef<[u8]>, Error: Into<BoxError>, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

impl Server {
    /// Serves a `tower::Service`: each request is handed to a clone of
    /// `service` once it is ready, concurrently with the connection's other
    /// requests, and its response value is written when it completes. An
    /// error from the service closes the call's connection (see the
    /// [module](self)); a fire-and-forget request's response is dropped.
    pub fn serve_tower<S: RequestService>(self, service: S) -> io::Result<ServerHandle> {
        let service = Mutex::new(service);
        self.serve_async(move |request, responder| answer(clone_of(&service), request, responder))
    }

    /// [`serve_tower`](Server::serve_tower) on the application's runtime
    /// (see [`spawn`](Server::spawn)).
    pub fn spawn_tower<S: RequestService>(self, service: S) -> io::Result<SpawnedServer> {
        let service = Mutex::new(service);
        self.spawn_async(move |request, responder| answer(clone_of(&service), request, responder))
    }
}

/// A clone of the service for one request: services are `Clone + Send`
/// but need not be `Sync`, so the one the server keeps is behind a lock,
/// held only to clone it.
fn clone_of<S: Clone>(service: &Mutex<S>) -> S {
    service.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Waits for `service` to be ready, calls it, and answers with its
/// response, or closes the connection on its error.
async fn answer<S: RequestService>(mut service: S, request: OwnedRequest, responder: Responder) {
    // Errors become `BoxError` at once: the service's own error type need
    // not be `Send`, and the future is.
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into);
    let result: Result<S::Response, BoxError> = match ready {
        Ok(()) => service.call(request).await.map_err(Into::into),
        Err(e) => Err(e),
    };
    match result {
        Ok(value) => {
            // Too large for the limits, or its connection gone: `respond`
            // says so, and the connection does what its limits require.
            let _ = responder.respond(value.as_ref());
        }
        Err(error) => {
            tracing::warn!(%error, call = responder.id(), "the service failed a call: closing its connection");
            responder.close_connection();
        }
    }
}
// ANCHOR_END: serve_tower
