//! Calls started without being awaited (`Client::start`): many from one
//! task, awaited in any order; dropped ones forgotten; deadlines kept
//! whether or not anyone awaits. Over TCP on loopback.

use std::time::Duration;

use fastwire_tokio::proto::{ClientConfig, ServerConfig};
use fastwire_tokio::{Client, ClientError, Server, SpawnedServer};

/// Echoes `re:<value>`; a call named `slow` is answered after 300 ms, one
/// named `never` not at all (its responder is kept until the server stops).
fn server() -> SpawnedServer {
    Server::bind("127.0.0.1:0", ServerConfig::default())
        .unwrap()
        .spawn_async(|req, responder| {
            let value = [b"re:", req.value()].concat();
            let name = req.name().to_vec();
            async move {
                match &name[..] {
                    b"slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                    b"never" => tokio::time::sleep(Duration::from_secs(30)).await,
                    _ => {}
                }
                let _ = responder.respond(&value);
            }
        })
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn one_task_keeps_many_calls_in_flight_and_awaits_them_in_any_order() {
    let server = server();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let mut calls = Vec::new();
    for i in 0..500 {
        let call = client.start(b"echo", format!("v{i}").as_bytes()).await.unwrap();
        calls.push((i, call));
    }
    assert_eq!(client.pending(), 500, "every call is queued before any is awaited");
    let ids: std::collections::HashSet<u32> = calls.iter().map(|(_, call)| call.id()).collect();
    assert_eq!(ids.len(), 500, "each call has its own request id");
    // Newest first: each reply is its own call's, whatever the order.
    while let Some((i, call)) = calls.pop() {
        assert_eq!(&*call.await.unwrap(), format!("re:v{i}").as_bytes());
    }
    assert_eq!(client.pending(), 0);
    assert_eq!(client.stats().unsolicited_responses, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_pending_call_is_forgotten_and_its_late_answer_counted() {
    let server = server();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let slow = client.start(b"slow", b"dropped").await.unwrap();
    assert!(!slow.is_done());
    assert_eq!(client.pending(), 1);
    drop(slow);
    assert_eq!(client.pending(), 0, "dropping it frees its id at once");
    // The connection still serves, and the dropped call's answer, when it
    // comes, matches no call.
    assert_eq!(&*client.call(b"echo", b"after").await.unwrap(), b"re:after");
    let waited = std::time::Instant::now();
    while client.stats().unsolicited_responses == 0 {
        assert!(waited.elapsed() < Duration::from_secs(10), "the slow call's answer never came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(client.stats().unsolicited_responses, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_pending_call_times_out_whether_or_not_it_is_awaited() {
    let server = server();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let timeout = Duration::from_millis(50);
    let call = client.start_timeout(b"never", b"", timeout).await.unwrap();
    let waited = std::time::Instant::now();
    while !call.is_done() {
        assert!(waited.elapsed() < Duration::from_secs(10), "the call's deadline was never enforced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(call.await, Err(ClientError::Timeout(t)) if t == timeout));
    assert_eq!(client.pending(), 0);
}

/// The reader's one timer is set to the earliest deadline: a call with a
/// shorter deadline than the calls already in flight times out at its
/// own, not at theirs.
#[tokio::test(flavor = "current_thread")]
async fn a_shorter_deadline_than_the_calls_in_flight_is_kept() {
    let server = server();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let long = client.start_timeout(b"never", b"", Duration::from_secs(20)).await.unwrap();
    // The reader's timer is armed for the long call now; a short one follows.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let short = Duration::from_millis(50);
    let started = std::time::Instant::now();
    let result = client.call_timeout(b"never", b"", short).await;
    assert!(matches!(result, Err(ClientError::Timeout(t)) if t == short), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "it waited for the long call's deadline");
    assert!(!long.is_done(), "the long call is still in flight");
    assert_eq!(client.pending(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn pending_calls_fail_when_the_client_is_closed() {
    let server = server();
    let client = Client::connect(server.local_addr(), ClientConfig::default()).await.unwrap();
    let call = client.start(b"never", b"").await.unwrap();
    client.close();
    assert!(call.is_done());
    assert!(matches!(call.await, Err(ClientError::Closed)), "a closed client fails what it was waiting for");
    assert!(matches!(client.start(b"echo", b"").await, Err(ClientError::Closed)));
}
