//! tower's `Service` on both sides (the `tower` feature), over TCP on
//! loopback: the client under tower's timeout, concurrency limit and
//! power-of-two-choices balancer, `poll_ready` as back-pressure, and a
//! server that serves a tower stack.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwire_tokio::proto::{ClientConfig, ServerConfig};
use fastwire_tokio::tower::Call;
use fastwire_tokio::{Client, ClientError, OwnedRequest, Server, SpawnedServer};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Counts what a server saw: calls served, and the most in flight at once.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Echoes `re:<value>` after the number of milliseconds a call named
/// `wait` gives as its value (others at once), counting what it sees.
fn server(seen: Arc<Seen>) -> SpawnedServer {
    Server::bind("127.0.0.1:0", ServerConfig::default())
        .unwrap()
        .spawn_async(move |req, responder| {
            let seen = Arc::clone(&seen);
            async move {
                seen.calls.fetch_add(1, Ordering::Relaxed);
                let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most.fetch_max(now, Ordering::SeqCst);
                if req.name() == b"wait" {
                    let ms: u64 = std::str::from_utf8(req.value()).unwrap().parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                seen.now.fetch_sub(1, Ordering::SeqCst);
                let _ = responder.respond(&[b"re:", req.value()].concat());
            }
        })
        .unwrap()
}

fn config() -> ClientConfig {
    ClientConfig { call_timeout: Duration::from_secs(5), ..ClientConfig::default() }
}

#[tokio::test]
async fn the_client_is_a_service_under_tower_timeout() {
    let server = server(Arc::default());
    let client = Client::connect(server.local_addr(), config()).await.unwrap();
    let mut service = ServiceBuilder::new().timeout(Duration::from_millis(100)).service(client.clone());
    let reply = service.ready().await.unwrap().call(Call::new("echo", "hi")).await.unwrap();
    assert_eq!(&*reply, b"re:hi");
    let slow = service.ready().await.unwrap().call(Call::new("wait", "1000")).await;
    let error = slow.expect_err("past tower's timeout");
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    // The abandoned call is forgotten; the client goes on serving.
    let reply = service.ready().await.unwrap().call(Call::new("echo", "after")).await.unwrap();
    assert_eq!(&*reply, b"re:after");
}

#[tokio::test]
async fn tower_concurrency_limit_holds_the_client_to_its_limit() {
    let seen = Arc::new(Seen::default());
    let server = server(Arc::clone(&seen));
    let client = Client::connect(server.local_addr(), config()).await.unwrap();
    let limited = ServiceBuilder::new().concurrency_limit(3).service(client);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..30 {
        let service = limited.clone();
        calls.spawn(async move { service.oneshot(Call::new("wait", "10")).await.map(|r| (i, r)) });
    }
    while let Some(done) = calls.join_next().await {
        let (_, reply) = done.unwrap().unwrap();
        assert_eq!(&*reply, b"re:10");
    }
    assert_eq!(seen.calls.load(Ordering::Relaxed), 30);
    assert!(seen.most.load(Ordering::SeqCst) <= 3, "at most 3 at once, saw {}", seen.most.load(Ordering::SeqCst));
}

#[tokio::test]
async fn poll_ready_waits_while_the_client_is_full() {
    let server = server(Arc::default());
    let config = ClientConfig { max_pending: 4, ..config() };
    let client = Client::connect(server.local_addr(), config).await.unwrap();
    let mut service = client.clone();
    let mut calls = Vec::new();
    for _ in 0..4 {
        ServiceExt::<Call>::ready(&mut service).await.unwrap();
        calls.push(Service::call(&mut service, Call::new("wait", "300")));
    }
    // The calls run once polled: start them.
    let calls: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    while client.pending() < 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let full = tokio::time::timeout(Duration::from_millis(100), ServiceExt::<Call>::ready(&mut service)).await;
    assert!(full.is_err(), "ready while max_pending calls are in flight");
    // Room again once the calls end: ready without a timeout of its own.
    let ready = tokio::time::timeout(Duration::from_secs(5), ServiceExt::<Call>::ready(&mut service)).await;
    assert!(ready.is_ok_and(|r| r.is_ok()), "ready once the calls are answered");
    for call in calls {
        assert_eq!(&*call.await.unwrap().unwrap(), b"re:300");
    }
    client.close();
    let closed = std::future::poll_fn(|cx| Service::<Call>::poll_ready(&mut service, cx)).await;
    assert!(matches!(closed, Err(ClientError::Closed)), "{closed:?}");
}

#[tokio::test]
async fn p2c_balances_calls_over_three_servers() {
    let seen: Vec<Arc<Seen>> = (0..3).map(|_| Arc::default()).collect();
    let servers: Vec<SpawnedServer> = seen.iter().map(|s| server(Arc::clone(s))).collect();
    let mut clients = Vec::new();
    for server in &servers {
        clients.push(Client::connect(server.local_addr(), config()).await.unwrap());
    }
    let discover = tower::discover::ServiceList::new(clients);
    let load = tower::load::PendingRequestsDiscover::new(discover, tower::load::CompleteOnResponse::default());
    let mut balance = tower::balance::p2c::Balance::new(load);
    for i in 0..300 {
        let value = format!("{i}");
        let reply = balance.ready().await.unwrap().call(Call::new("echo", value.clone())).await.unwrap();
        assert_eq!(&*reply, format!("re:{value}").as_bytes());
    }
    let shares: Vec<usize> = seen.iter().map(|s| s.calls.load(Ordering::Relaxed)).collect();
    assert_eq!(shares.iter().sum::<usize>(), 300);
    // Equal servers, one call at a time: the two random choices spread the
    // calls (each server's expected share is 100, its spread about 8).
    assert!(shares.iter().all(|&n| n >= 50), "calls per server: {shares:?}");
}

#[tokio::test]
async fn p2c_sends_no_call_to_a_server_that_is_down() {
    let seen: Vec<Arc<Seen>> = (0..3).map(|_| Arc::default()).collect();
    let mut servers: Vec<Option<SpawnedServer>> = seen.iter().map(|s| Some(server(Arc::clone(s)))).collect();
    let clients: Vec<Client> = servers.iter().flatten().map(|s| Client::new(s.local_addr(), config())).collect();
    let load = tower::load::PendingRequestsDiscover::new(
        tower::discover::ServiceList::new(clients.clone()),
        tower::load::CompleteOnResponse::default(),
    );
    let mut balance = tower::balance::p2c::Balance::new(load);
    let mut failed = 0;
    for i in 0..400 {
        if i == 100 {
            // Stopped at once: its listener and connections are closed.
            drop(servers[1].take());
        }
        let value = format!("{i}");
        match balance.ready().await.unwrap().call(Call::new("echo", value.clone())).await {
            Ok(reply) => assert_eq!(&*reply, format!("re:{value}").as_bytes()),
            Err(_) => failed += 1,
        }
    }
    // One call at a time, so at most the one in flight when it stopped
    // (or written before its client saw the close) fails; after that its
    // client is not ready (no connection, then its backoff) and p2c picks
    // the others.
    assert!(failed <= 1, "{failed} calls failed");
    let after: usize = seen.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum();
    assert!(after >= 399, "{after}");
}

#[tokio::test]
async fn a_server_serves_a_tower_stack_and_closes_the_connection_of_a_failed_call() {
    let upper = tower::service_fn(|req: OwnedRequest| async move {
        if req.name() == b"stall" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok::<_, Infallible>(req.value().to_ascii_uppercase())
    });
    let stack = ServiceBuilder::new().concurrency_limit(8).timeout(Duration::from_millis(100)).service(upper);
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().spawn_tower(stack).unwrap();
    let client = Client::connect(server.local_addr(), config()).await.unwrap();
    assert_eq!(&*client.call(b"up", b"hello").await.unwrap(), b"HELLO");
    // Past the server's tower timeout: the connection closes, the call
    // fails with a connection error, never a wrong value.
    let failed = client.call(b"stall", b"x").await.expect_err("the service failed");
    assert!(!matches!(failed, ClientError::Timeout(_)), "a connection error, not the client's deadline: {failed}");
    // The client reconnects, and the server goes on.
    let mut reply = client.call(b"up", b"again").await;
    for _ in 0..50 {
        if reply.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reply = client.call(b"up", b"again").await;
    }
    assert_eq!(&*reply.unwrap(), b"AGAIN");
    let report = server.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cut_off, 0, "{report}");
}
