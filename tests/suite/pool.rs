//! The pool over TCP: 20 callers arriving together on a pool of up to 8
//! connections spread over all 8 (the handles it gives out count as busy
//! until dropped), every call answered, and the server sees 8 connections.
//! With a higher spread threshold the same callers share fewer connections.
//!
//! The balanced client over TCP: three equal servers share the calls
//! evenly on every blocking backend; a slow server gets few; a server
//! killed mid-run (SIGKILL of its process) fails only the calls in flight
//! on it, each naming it, with no wrong answer, and takes calls again once
//! restarted; a host name is resolved to its addresses.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use fastwire::fastwire_std::{Pool, Server};
use fastwire::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_common::Pool as AnyPool;

fn twenty_callers(pool: &Pool, addr: std::net::SocketAddr) {
    let barrier = Arc::new(Barrier::new(20));
    thread::scope(|s| {
        for t in 0..20 {
            let barrier = Arc::clone(&barrier);
            s.spawn(move || {
                // Pick a connection, then wait until all 20 have picked, so
                // that they really are concurrent when they choose.
                let client = pool.client(addr);
                barrier.wait();
                for i in 0..50 {
                    let value = format!("{t}/{i}");
                    assert_eq!(&*client.call(b"echo", value.as_bytes()).unwrap(), format!("re:{value}").as_bytes());
                }
            });
        }
    });
}

#[test]
fn twenty_concurrent_callers_open_all_eight_connections() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().serve(demo_handler).unwrap();
    let addr = server.local_addr();
    let pool = Pool::new(ClientConfig::default(), 8);
    twenty_callers(&pool, addr);
    assert_eq!(pool.len(addr), 8, "spread over every connection allowed");
    assert_eq!(server.stats().accepted, 8);
    assert_eq!(server.stats().requests, 20 * 50);
    pool.close();
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn a_higher_spread_threshold_keeps_calls_on_fewer_connections() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().serve(demo_handler).unwrap();
    let addr = server.local_addr();
    // A new connection only while every one has 10 callers: 20 callers, 2.
    let pool: Pool = AnyPool::with_spread(ClientConfig::default(), 8, 10);
    twenty_callers(&pool, addr);
    assert_eq!(pool.len(addr), 2);
    assert_eq!(server.stats().accepted, 2);
    pool.close();
    server.shutdown(Duration::from_secs(5));
}

/// `count` servers of the demo service, each answering after `delays[i]`.
fn servers(delays: &[Duration]) -> Vec<fastwire::fastwire_std::ServerHandle> {
    delays
        .iter()
        .map(|&delay| {
            let handler = move |req: fastwire::Request<'_>, resp: &mut fastwire::ResponseWriter<'_>| {
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                demo_handler(req, resp);
            };
            Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().serve(handler).unwrap()
        })
        .collect()
}

/// `threads` callers making `calls` calls each on `client`, every reply checked.
fn call_from_threads(
    call: &(dyn Fn(&[u8]) -> Result<fastwire::Reply, fastwire::BalanceError> + Sync),
    threads: usize,
    calls: usize,
) {
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..calls {
                    let value = format!("{t}/{i}");
                    let reply = call(value.as_bytes()).unwrap();
                    assert_eq!(&*reply, format!("re:{value}").as_bytes());
                }
            });
        }
    });
}

macro_rules! spread_evenly {
    ($name:ident, $balanced:ty, $unavailable:expr) => {
        #[test]
        fn $name() {
            if let Some(why) = $unavailable {
                eprintln!("skipping: {why}");
                return;
            }
            // Equal servers: the same work per call (a handler that takes
            // 200 µs), so that how the scheduler favours one server's
            // threads over another's does not make them unequal.
            let servers = servers(&[Duration::from_micros(200); 3]);
            let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
            let client = <$balanced>::new(&addrs, ClientConfig::default(), fastwire::BalanceConfig::default());
            call_from_threads(&|v| client.call(b"echo", v), 6, 500);
            let shares: Vec<u64> = servers.iter().map(|s| s.stats().requests).collect();
            assert_eq!(shares.iter().sum::<u64>(), 3000);
            // Each within 10% of a third.
            assert!(shares.iter().all(|&n| (900..=1100).contains(&n)), "calls per server: {shares:?}");
            let states = client.servers();
            assert!(states.iter().all(|s| s.up && s.listed && s.failed == 0), "{states:?}");
            client.close();
            servers.into_iter().for_each(|s| {
                let _ = s.shutdown(Duration::from_secs(2));
            });
        }
    };
}

spread_evenly!(balanced_std_spreads_calls_evenly_over_three_servers, fastwire::fastwire_std::Balanced, None::<String>);
spread_evenly!(balanced_mio_spreads_calls_evenly_over_three_servers, fastwire::fastwire_mio::Balanced, None::<String>);
spread_evenly!(
    balanced_uring_spreads_calls_evenly_over_three_servers,
    fastwire::fastwire_uring::Balanced,
    fastwire_by_hand::Model::Uring.unavailable()
);

#[test]
fn a_slow_server_gets_few_calls() {
    // Two servers answer after 100 µs, one after ten times that.
    let delays = [Duration::from_micros(100), Duration::from_micros(100), Duration::from_millis(1)];
    let servers = servers(&delays);
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let client = fastwire::fastwire_std::Balanced::new(&addrs, ClientConfig::default(), Default::default());
    call_from_threads(&|v| client.call(b"echo", v), 8, 250);
    let shares: Vec<u64> = servers.iter().map(|s| s.stats().requests).collect();
    assert_eq!(shares.iter().sum::<u64>(), 2000);
    assert!(shares[2] <= 300, "the slow server's share is at most 15%: {shares:?}");
    client.close();
    servers.into_iter().for_each(|s| {
        let _ = s.shutdown(Duration::from_secs(2));
    });
}

#[test]
fn a_host_name_is_resolved_to_its_servers() {
    let servers = servers(&[Duration::ZERO]);
    let port = servers[0].local_addr().port();
    let client = fastwire::fastwire_std::Balanced::resolve(
        &format!("localhost:{port}"),
        ClientConfig::default(),
        Default::default(),
    )
    .unwrap();
    // localhost may name ::1 as well, where nothing listens: that server is
    // refused, marked down, and the call goes to 127.0.0.1.
    for i in 0..20 {
        let value = format!("{i}");
        assert_eq!(&*client.call(b"echo", value.as_bytes()).unwrap(), format!("re:{value}").as_bytes());
    }
    assert!(client.servers().iter().any(|s| s.addr == servers[0].local_addr() && s.answered == 20));
    let missing = fastwire::fastwire_std::Balanced::resolve(
        "no-such-host.invalid:1",
        ClientConfig::default(),
        Default::default(),
    );
    assert!(missing.is_err());
}

/// `fastwire serve` (std) in a process of its own, on `addr`.
fn serve_process(addr: &str) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fastwire"))
        .args(["serve", "--backend", "std", "--addr", addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(3).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    (child, addr)
}

#[test]
fn a_killed_server_fails_only_its_calls_in_flight_and_rejoins_once_restarted() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;
    let mut children: Vec<(std::process::Child, std::net::SocketAddr)> =
        (0..3).map(|_| serve_process("127.0.0.1:0")).collect();
    let addrs: Vec<_> = children.iter().map(|c| c.1).collect();
    let config = ClientConfig {
        call_timeout: Duration::from_secs(2),
        reconnect_backoff: Duration::from_millis(10),
        max_reconnect_backoff: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let client = fastwire::fastwire_std::Balanced::new(&addrs, config, Default::default());
    let start = Instant::now();
    let killed_at: Mutex<Option<Duration>> = Mutex::new(None);
    let failures: Mutex<Vec<(Duration, fastwire::BalanceError)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        for t in 0..4 {
            let (client, failures, stop) = (&client, &failures, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("{t}/{i}");
                    let started = start.elapsed();
                    match client.call(b"echo", value.as_bytes()) {
                        Ok(reply) => assert_eq!(&*reply, format!("re:{value}").as_bytes(), "a wrong answer"),
                        Err(e) => failures.lock().unwrap().push((started, e)),
                    }
                    i += 1;
                }
            });
        }
        thread::sleep(Duration::from_millis(300));
        children[1].0.kill().unwrap();
        children[1].0.wait().unwrap();
        *killed_at.lock().unwrap() = Some(start.elapsed());
        thread::sleep(Duration::from_millis(500));
        // Back on the same port.
        let restarted = serve_process(&addrs[1].to_string());
        assert_eq!(restarted.1, addrs[1]);
        children[1] = restarted;
        let before = client.servers()[1].answered;
        // It rejoins within the probe's backoff (at most 200 ms here).
        let deadline = Instant::now() + Duration::from_secs(3);
        while client.servers()[1].answered == before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            client.servers()[1].answered > before,
            "the restarted server takes calls again: {:?}",
            client.servers()
        );
    });
    let killed_at = killed_at.into_inner().unwrap().unwrap();
    let failures = failures.into_inner().unwrap();
    // Only calls on the killed server fail, each naming it, each a lost
    // connection; at most the callers' calls in flight when it died (one
    // each, and one more each that was written before the death was seen).
    assert!(failures.len() <= 8, "{failures:?}");
    for (started, error) in &failures {
        assert_eq!(error.server, Some(addrs[1]), "{error}");
        assert!(matches!(error.error, fastwire::ClientError::ConnectionLost(_)), "{error}");
        // New calls succeed within 100 ms of the death.
        assert!(
            *started < killed_at + Duration::from_millis(100),
            "a call started {started:?}, after the kill at {killed_at:?}: {error}"
        );
    }
    client.close();
    for (mut child, _) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
