//! Serving on the application's runtime (`Server::spawn`): no runtime of the
//! server's own, an `async` graceful shutdown, servers built from listeners
//! the application bound. Over TCP on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwire_tokio::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_tokio::{Client, ClientError, Server};

fn config() -> ServerConfig {
    ServerConfig::default()
}

#[tokio::test(flavor = "current_thread")]
async fn serves_on_a_current_thread_runtime_without_threads_of_its_own() {
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    let server = Server::bind("127.0.0.1:0", config()).unwrap().spawn(demo_handler).unwrap();
    assert_eq!(tasks(), before + 1, "the accept loop is a task of this runtime");
    // Client and server share this one thread: both must make progress.
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    for i in 0..100 {
        let value = format!("v{i}");
        assert_eq!(&*client.call(b"echo", value.as_bytes()).await.unwrap(), format!("re:v{i}").as_bytes());
    }
    assert_eq!(server.stats().requests, 100);
    assert!(tasks() >= before + 2, "and so is the connection");
    client.close();
    let report = server.shutdown(Duration::from_secs(2)).await;
    assert_eq!(report.cut_off, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_async_calls_in_flight() {
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let server = Server::bind("127.0.0.1:0", config())
        .unwrap()
        .spawn_async(move |req, responder| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = responder.respond(req.value());
            }
        })
        .unwrap();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(b"slow", b"answered").await }
    });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(&*call.await.unwrap().unwrap(), b"answered", "the call in flight is answered before the close");
    assert_eq!((report.cut_off, report.deferred_cut, report.responses_lost), (0, 0, 0), "{report}");
    assert_eq!(report.closed_gracefully, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_the_grace_period_is_cut_and_reported() {
    let server = Server::bind("127.0.0.1:0", config())
        .unwrap()
        .spawn_async(|_req, responder| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let _ = responder.respond(b"too late");
        })
        .unwrap();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call_timeout(b"slow", b"", Duration::from_secs(10)).await }
    });
    while server.stats().deferred_in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = std::time::Instant::now();
    let report = server.shutdown(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the shutdown ends after the grace period");
    assert_eq!((report.cut_off, report.deferred_cut), (1, 1), "{report}");
    let err = call.await.unwrap().unwrap_err();
    assert!(!matches!(err, ClientError::Timeout(_)), "the client sees the close at once, not its deadline: {err}");
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_handle_stops_the_server_at_once() {
    let server = Server::bind("127.0.0.1:0", config()).unwrap().spawn(demo_handler).unwrap();
    let addr = server.local_addr();
    let client = Client::connect(addr, ClientConfig::default()).await.unwrap();
    assert_eq!(&*client.call(b"echo", b"x").await.unwrap(), b"re:x");
    drop(server);
    // The aborted tasks drop the listener and the connection.
    let err = client.call_timeout(b"echo", b"y", Duration::from_secs(5)).await.unwrap_err();
    assert!(!matches!(err, ClientError::Timeout(_)), "{err}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens any more");
}

#[tokio::test(flavor = "current_thread")]
async fn serves_a_listener_the_application_bound() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, config()).unwrap().spawn(demo_handler).unwrap();
    assert_eq!(server.local_addr(), addr);
    let client = Client::connect(addr, ClientConfig::default()).await.unwrap();
    assert_eq!(&*client.call(b"echo", b"mine").await.unwrap(), b"re:mine");
    client.close();
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn a_listener_the_application_bound_also_serves_on_the_servers_own_runtime() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::from_listener(listener, config()).unwrap().serve(demo_handler).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
        assert_eq!(&*client.call(b"echo", b"own").await.unwrap(), b"re:own");
    });
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Server::bind("127.0.0.1:0", config()).unwrap().spawn(demo_handler).unwrap_err();
    assert!(err.to_string().contains("current tokio runtime"), "{err}");
}
