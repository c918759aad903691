//! Leader/follower in the blocking client core (std, mio, uring and glommio clients): a
//! caller that finds nobody reading its connection reads it itself, for
//! everyone, and hands the reading on when it leaves. These are the
//! hand-overs that must never lose a response or leave a caller hanging:
//! a leader timing out while followers wait, a leader's connection dying
//! while followers wait, calls started and waited later, calls left
//! pending with nobody waiting (the role vacant), and many callers on one
//! connection. Over TCP on loopback, against the mio server's demo
//! service (`wait/<µs>` calls are answered that much later, `re:` + value).

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use fastwire::proto::{ClientConfig, ServerConfig};
use fastwire::ClientError;
use fastwire_bench::backend::RunningServer;
use fastwire_bench::demo::{start_demo, Demo};
use fastwire_bench::BackendKind;
use fastwire_common::client::{Client, Driver};

fn server() -> Box<dyn RunningServer> {
    start_demo(BackendKind::Mio, "127.0.0.1:0".parse().unwrap(), ServerConfig::default(), Demo::default()).unwrap()
}

fn client<D: Driver>(server: &dyn RunningServer) -> Client<D> {
    let config = ClientConfig { call_timeout: Duration::from_secs(10), ..ClientConfig::default() };
    Client::connect(server.local_addr(), config).unwrap()
}

fn wait_name(micros: u64) -> Vec<u8> {
    format!("wait/{micros}").into_bytes()
}

/// A leader whose deadline passes hands the reading to a follower, which
/// then gets its own (later) response; nobody waits past their deadline.
fn leader_times_out_while_a_follower_waits<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    thread::scope(|s| {
        let leader = s.spawn(|| {
            let started = Instant::now();
            let r = c.call_timeout(&wait_name(2_000_000), b"leader", Duration::from_millis(150));
            (r, started.elapsed())
        });
        thread::sleep(Duration::from_millis(40)); // the leader is reading by now
        let follower = s.spawn(|| c.call_timeout(&wait_name(400_000), b"follower", Duration::from_secs(5)));
        let (r, took) = leader.join().unwrap();
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        assert!(took < Duration::from_secs(1), "the leader left at its deadline ({took:?})");
        assert_eq!(&*follower.join().unwrap().unwrap(), b"re:follower", "the follower took over the reading");
    });
    // The connection goes on: a later call leads again.
    assert_eq!(&*c.call(b"echo", b"after").unwrap(), b"re:after");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// The leader's connection dies (the server goes away) while followers
/// wait: every one of them fails at once with a connection error.
fn leader_connection_dies_while_followers_wait<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    let stats = thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    thread::sleep(Duration::from_millis(10 * i));
                    let started = Instant::now();
                    (c.call_timeout(&wait_name(5_000_000), b"x", Duration::from_secs(10)), started.elapsed())
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        let stats = server.stats();
        // Cut off at once: the deferred calls are never answered.
        server.shutdown(Duration::ZERO);
        for call in calls {
            let (r, took) = call.join().unwrap();
            let e = r.unwrap_err();
            assert!(!matches!(e, ClientError::Timeout(_)), "a connection error, not a timeout: {e}");
            assert!(took < Duration::from_secs(3), "failed promptly ({took:?})");
        }
        stats
    });
    assert_eq!(stats.deferred_in_flight, 4, "all four calls were with the server");
}

/// Calls started first and waited later (pipelining from one thread), with
/// fire-and-forget sends between: the reading passes between the driver and
/// the waiting caller without losing a response.
fn started_calls_are_read_whoever_waits<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    for round in 0..50 {
        let calls: Vec<_> =
            (0..40).map(|i| (i, c.start(b"echo", format!("{round}/{i}").as_bytes()).unwrap())).collect();
        c.send(b"nowait", b"").unwrap();
        // Waited in reverse, and with pauses, so that the driver reads some.
        for (i, call) in calls.into_iter().rev() {
            if i % 13 == 0 {
                thread::sleep(Duration::from_micros(200));
            }
            assert_eq!(&*call.wait().unwrap(), format!("re:{round}/{i}").as_bytes());
        }
    }
    // A started call that nobody waits on is still read (by the driver): the
    // connection stays usable and a dropped call is forgotten.
    let forgotten = c.start(&wait_name(1_000), b"dropped").unwrap();
    thread::sleep(Duration::from_millis(20));
    drop(forgotten);
    assert_eq!(&*c.call(b"echo", b"still").unwrap(), b"re:still");
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// Calls started while the reading role is vacant (a pipelining caller
/// just left it) and then never waited on, only polled: they are still
/// written and their responses read, by the driver once the vacancy has
/// lasted (`VACANT_WATCH`), without any caller's help.
fn started_calls_complete_with_nobody_waiting<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    for round in 0..20 {
        // A pipelining caller leads once and leaves calls pending...
        let mut calls: Vec<_> = (0..30).map(|i| c.start(b"echo", format!("{round}/{i}").as_bytes()).unwrap()).collect();
        assert_eq!(&*calls.remove(0).wait().unwrap(), format!("re:{round}/0").as_bytes());
        // ...then starts more and only polls.
        calls.extend((30..60).map(|i| c.start(b"echo", format!("{round}/{i}").as_bytes()).unwrap()));
        let started = Instant::now();
        while !calls.iter().all(|call| call.is_done()) {
            assert!(started.elapsed() < Duration::from_secs(5), "calls nobody waits on were never answered");
            thread::sleep(Duration::from_micros(100));
        }
        for (i, call) in (1..).zip(calls) {
            assert_eq!(&*call.wait().unwrap(), format!("re:{round}/{i}").as_bytes());
        }
    }
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// Calls pending with nobody waiting on them (a pipelining caller left the
/// role vacant) when the server goes away: they fail at once, noticed by
/// the driver, not at their deadline.
fn server_dies_while_nobody_waits<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    let mut calls: Vec<_> = (0..10).map(|_| c.start(&wait_name(5_000_000), b"x").unwrap()).collect();
    calls.push(c.start(b"echo", b"quick").unwrap());
    // Waiting on the quick one leads, and leaves the slow ones pending.
    assert_eq!(&*calls.pop().unwrap().wait().unwrap(), b"re:quick");
    thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    server.shutdown(Duration::ZERO);
    while !calls.iter().all(|call| call.is_done()) {
        assert!(started.elapsed() < Duration::from_secs(3), "pending calls outlived their server");
        thread::sleep(Duration::from_millis(1));
    }
    for call in calls {
        let e = call.wait().unwrap_err();
        assert!(!matches!(e, ClientError::Timeout(_)), "a connection error, not a timeout: {e}");
    }
}

/// Many threads calling at once on one connection, some slow: every
/// response reaches its caller, whoever read it.
fn many_callers_on_one_connection<D: Driver>() {
    let server = server();
    let c = client::<D>(&*server);
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    thread::scope(|s| {
        for t in 0..threads {
            let (c, barrier) = (&c, Arc::clone(&barrier));
            s.spawn(move || {
                barrier.wait();
                for i in 0..300 {
                    let value = format!("{t}:{i}");
                    let name: &[u8] = if i % 50 == 7 { b"wait/2000" } else { b"echo" };
                    assert_eq!(&*c.call(name, value.as_bytes()).unwrap(), format!("re:{value}").as_bytes());
                }
            });
        }
    });
    assert_eq!(c.pending(), 0);
    assert_eq!(server.stats().requests, 16 * 300);
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// The server closes an idle connection (nobody reads it then): the next
/// call notices before using it and goes out on a new connection.
fn server_closed_while_nobody_read<D: Driver>() {
    closed_while_nobody_read::<D>(None);
}

/// The same over TLS (a TLS 1.3 server also sends session tickets after
/// the handshake, bytes besides the responses): the next call still goes
/// out on a new connection.
fn server_closed_tls_while_nobody_read<D: Driver>() {
    closed_while_nobody_read::<D>(Some(fastwire_bench::tls::TestPki::shared()));
}

fn closed_while_nobody_read<D: Driver>(tls: Option<&fastwire_bench::tls::TestPki>) {
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        tls: tls.map(|pki| pki.server()),
        ..ServerConfig::default()
    };
    let server = start_demo(BackendKind::Mio, "127.0.0.1:0".parse().unwrap(), config, Demo::default()).unwrap();
    let config = fastwire::proto::ClientConfig {
        tls: tls.map(|pki| pki.client(fastwire_bench::tls::SERVER_NAME)),
        ..fastwire::proto::ClientConfig::default()
    };
    let c = Client::<D>::new(server.local_addr(), config);
    assert_eq!(&*c.call(b"echo", b"1").unwrap(), b"re:1");
    thread::sleep(Duration::from_millis(400)); // the server's idle timeout closed it
    assert_eq!(&*c.call(b"echo", b"2").unwrap(), b"re:2", "not an error: the closed connection was replaced");
    assert_eq!(server.stats().accepted, 2);
    c.close();
    server.shutdown(Duration::from_secs(5));
}

/// A quiet connection (its last call answered, nobody reading) and a
/// server that shuts down gracefully: the client must notice the server's
/// end-of-stream and close, so that the server's lingering close ends at
/// once and the connection counts as closed gracefully.
/// On a mio server, and on a std server, whose blocked reader learns of
/// the shutdown from the client's reply to its end-of-stream.
fn quiet_connection_at_graceful_shutdown<D: Driver>() {
    for kind in [BackendKind::Mio, BackendKind::Std] {
        let server =
            start_demo(kind, "127.0.0.1:0".parse().unwrap(), ServerConfig::default(), Demo::default()).unwrap();
        let c = client::<D>(&*server);
        assert_eq!(&*c.call(b"echo", b"1").unwrap(), b"re:1");
        thread::sleep(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let report = server.shutdown(Duration::from_secs(3));
        assert_eq!((report.cut_off, report.closed_gracefully), (0, 1), "{kind}: {report}");
        assert!(started.elapsed() < Duration::from_secs(2), "{kind}: no lingering wait: {:?}", started.elapsed());
        c.close();
    }
}

/// Large values are handed over sharing the read buffer, not copied (see
/// `fastwire_common::LARGE_VALUE`), small ones in the slot's pooled buffer;
/// replies kept while later calls read more into the same buffer (and,
/// with snappy, into the decompressed one) keep their own bytes.
fn large_replies_are_shared_and_stay_intact<D: Driver>() {
    let server = server();
    for compression in [fastwire::proto::Compression::None, fastwire::proto::Compression::Snappy] {
        let protocol = fastwire::proto::ProtocolConfig { compression, ..Default::default() };
        let config = ClientConfig { call_timeout: Duration::from_secs(10), protocol, ..ClientConfig::default() };
        let c: Client<D> = Client::connect(server.local_addr(), config).unwrap();
        let large = |i: usize| -> Vec<u8> { (0..200_000 + i).map(|j| ((i * 7 + j) % 251) as u8).collect() };
        let mut kept = Vec::new();
        for round in 0..3 {
            // Pipelined, so that several large frames share one read.
            let calls: Vec<_> = (0..6).map(|i| c.start(b"echo", &large(round * 6 + i)).unwrap()).collect();
            let small = c.start(b"echo", b"small").unwrap();
            for call in calls {
                let reply = call.wait().unwrap();
                assert!(reply.shared().is_some(), "{compression}: a large value is shared");
                kept.push(reply);
            }
            let small = small.wait().unwrap();
            assert!(small.shared().is_none(), "{compression}: a small value is copied into its slot");
            assert_eq!(&*small, b"re:small");
        }
        for (i, reply) in kept.iter().enumerate() {
            assert!(reply.starts_with(b"re:") && reply[3..] == large(i)[..], "{compression}: kept reply {i} intact");
        }
        assert_eq!(kept.pop().unwrap().into_vec()[3..], large(17)[..]);
        drop(kept);
        c.close();
    }
    server.shutdown(Duration::from_secs(5));
}

macro_rules! for_clients {
    ($($name:ident),*) => {
        mod std_client { $( #[test] fn $name() { super::$name::<fastwire::fastwire_std::client::ThreadPair>() } )* }
        mod mio_client { $( #[test] fn $name() { super::$name::<fastwire::fastwire_mio::client::ReactorThread>() } )* }
        mod uring_client { $( #[test] fn $name() {
            match fastwire_bench::BackendKind::Uring.unavailable() {
                Some(why) => eprintln!("skipped: {why}"),
                None => super::$name::<fastwire::fastwire_uring::client::RingThread>(),
            }
        } )* }
        mod glommio_client { $( #[test] fn $name() {
            match fastwire_bench::BackendKind::Glommio.unavailable() {
                Some(why) => eprintln!("skipped: {why}"),
                None => super::$name::<fastwire::fastwire_glommio::client::ExecutorThread>(),
            }
        } )* }
    };
}

for_clients!(
    leader_times_out_while_a_follower_waits,
    leader_connection_dies_while_followers_wait,
    started_calls_are_read_whoever_waits,
    started_calls_complete_with_nobody_waiting,
    server_dies_while_nobody_waits,
    many_callers_on_one_connection,
    server_closed_while_nobody_read,
    server_closed_tls_while_nobody_read,
    quiet_connection_at_graceful_shutdown,
    large_replies_are_shared_and_stay_intact
);
