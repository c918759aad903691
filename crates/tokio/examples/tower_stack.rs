//! tower's middleware on both sides of fastwire (the `tower` feature):
//! three servers, each serving a tower stack (a concurrency limit and a
//! timeout around a `service_fn`), and one client stack over them (a
//! timeout, a concurrency limit and tower's power-of-two-choices balancer
//! over three fastwire clients, behind a `Buffer` so that many tasks share
//! it). Run: `cargo run -p fastwire-tokio --features tower --example tower_stack`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwire_tokio::proto::{ClientConfig, ServerConfig};
use fastwire_tokio::tower::{BoxError, Call};
use fastwire_tokio::{Client, OwnedRequest, Server};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Three servers; each counts its calls and answers `<server>:<value>`.
    let mut servers = Vec::new();
    let mut counts = Vec::new();
    for n in 0..3 {
        let count = Arc::new(AtomicUsize::new(0));
        counts.push(Arc::clone(&count));
        let answer = tower::service_fn(move |req: OwnedRequest| {
            count.fetch_add(1, Ordering::Relaxed);
            let value = [format!("server {n}: ").as_bytes(), req.value()].concat();
            async move { Ok::<_, Infallible>(value) }
        });
        // The server's own stack: at most 64 calls at once per connection's
        // clone of it, each given 1 s before its connection is closed.
        let stack = ServiceBuilder::new().concurrency_limit(64).timeout(Duration::from_secs(1)).service(answer);
        servers.push(Server::bind("127.0.0.1:0", ServerConfig::default())?.spawn_tower(stack)?);
    }

    // The client's stack: p2c over the three clients, by calls in flight.
    let mut clients = Vec::new();
    for server in &servers {
        clients.push(Client::connect(server.local_addr(), ClientConfig::default()).await?);
    }
    let discover = tower::discover::ServiceList::new(clients);
    let balance = tower::balance::p2c::Balance::new(tower::load::PendingRequestsDiscover::new(
        discover,
        tower::load::CompleteOnResponse::default(),
    ));
    let client =
        ServiceBuilder::new().timeout(Duration::from_secs(2)).concurrency_limit(256).buffer(1024).service(balance);

    // 50 tasks, 40 calls each.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..50 {
        let mut client = client.clone();
        tasks.spawn(async move {
            for i in 0..40 {
                let value = format!("task {t} call {i}");
                let reply = client.ready().await?.call(Call::new("echo", value.clone())).await?;
                assert!(reply.ends_with(value.as_bytes()), "a reply to another call");
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    for (n, count) in counts.iter().enumerate() {
        println!("server {n}: {} calls", count.load(Ordering::Relaxed));
    }
    for server in servers {
        println!("shutdown: {}", server.shutdown(Duration::from_secs(1)).await);
    }
    Ok(())
}
