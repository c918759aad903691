//! Servers that no client should trust: every client (std, tokio, mio,
//! glommio, uring) against scripted servers on 127.0.0.1 that break the
//! protocol, stall, cut connections, or flood the client with responses
//! it never asked for.
//!
//! For each, the client must end the call with the typed error (or the
//! right value), within its deadline, never hand a caller a wrong value,
//! and keep its buffers bounded. The scripted servers are raw sockets
//! written from the protocol reference (`docs/src/wire-protocol.md`), not the
//! protocol crate, and every one of them stops by itself.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwire::proto::{ClientConfig, Error, HandshakeError, HandshakeStage, MessageError};
use fastwire::{ClientError, ClientStats};
use fastwire_bench::backend::BlockingClient;
use fastwire_bench::tls::{TestPki, SERVER_NAME};
use fastwire_bench::BackendKind;

use crate::kit::backends::{client, each_client};
use crate::kit::frame::{demo_answer, read_handshake, read_request, response, PLAIN};
use crate::kit::net::drain;
use crate::kit::scripted::{Scripted, SCRIPT_LIFETIME};

/// The clients' handshake timeout here: short, so stalled handshakes end quickly.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);
/// The deadline of each call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How late past its deadline a call may end on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

// ---- scripted servers ----

/// What the demo service answers an `echo` call.
fn answer(value: &[u8]) -> Vec<u8> {
    demo_answer(b"echo", value)
}

/// Keeps the connection open, reading and ignoring, until the client
/// closes it or the script's lifetime passes.
fn hold(s: TcpStream) {
    crate::kit::net::hold(s, SCRIPT_LIFETIME)
}

/// Answers every request right, as the demo service does.
fn echo_server(mut s: TcpStream) {
    if read_handshake(&mut s).is_none() || s.write_all(&PLAIN).is_err() {
        return;
    }
    while let Some((id, _, value)) = read_request(&mut s) {
        if s.write_all(&response(id, &answer(&value))).is_err() {
            return;
        }
    }
}

// ---- the clients ----

fn config() -> ClientConfig {
    ClientConfig { handshake_timeout: HANDSHAKE_TIMEOUT, call_timeout: CALL_TIMEOUT, ..ClientConfig::default() }
}

/// One call, which must end within its deadline (and some slack).
#[track_caller]
fn timed_call(kind: BackendKind, c: &dyn BlockingClient, value: &[u8]) -> Result<Vec<u8>, ClientError> {
    let start = Instant::now();
    let result = c.call_timeout(b"echo", value, CALL_TIMEOUT).map(|reply| reply.to_vec());
    let took = start.elapsed();
    assert!(took < CALL_TIMEOUT + SLACK, "{kind}: the call took {took:?}, past its deadline {CALL_TIMEOUT:?}");
    result
}

/// The call failed with the server's protocol error, and this one.
#[track_caller]
fn expect_protocol(
    kind: BackendKind,
    result: Result<Vec<u8>, ClientError>,
    what: &str,
    matches: impl Fn(&Error) -> bool,
) {
    match result {
        Err(ClientError::Protocol(e)) if matches(&e) => {}
        other => panic!("{kind}, {what}: expected the protocol error, got {other:?}"),
    }
}

/// The call failed because the connection was lost, with these words.
#[track_caller]
fn expect_lost(kind: BackendKind, result: Result<Vec<u8>, ClientError>, what: &str) -> String {
    match result {
        Err(ClientError::ConnectionLost(e)) => e.to_string(),
        other => panic!("{kind}, {what}: expected a lost connection, got {other:?}"),
    }
}

/// A scripted server whose handshake answer is `theirs`, then silence.
fn handshake_then_hold(theirs: &'static [u8]) -> Scripted {
    Scripted::start(move |mut s| {
        if read_handshake(&mut s).is_some() && s.write_all(theirs).is_ok() {
            hold(s);
        }
    })
}

// ---- handshakes ----

#[test]
fn silent_server_times_the_handshake_out() {
    let server = Scripted::start(hold);
    each_client(|kind| {
        let c = client(kind, server.addr, config());
        let words = expect_lost(kind, timed_call(kind, &*c, b"x"), "a silent server");
        assert_eq!(words, HandshakeStage::Fastrpc.handshake_timed_out(HANDSHAKE_TIMEOUT), "{kind}");
        c.close();
    });
}

#[test]
fn garbage_http_and_wrong_handshakes_are_refused() {
    /// The server's handshake answer, what it is, and the error it must give.
    type Case = (&'static [u8], &'static str, fn(&Error) -> bool);
    let cases: [Case; 5] = [
        (b"\xff\xfe\xfd\xfc garbage", "garbage", |e| {
            matches!(e, Error::Handshake(HandshakeError::VersionMismatch { .. }))
        }),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "an HTTP answer", |e| {
            matches!(e, Error::Handshake(HandshakeError::VersionMismatch { got: b'H', .. }))
        }),
        (&[7, 1, 0], "a wrong version", |e| {
            matches!(e, Error::Handshake(HandshakeError::VersionMismatch { got: 7, .. }))
        }),
        (&[0, 9, 0], "an unknown compression", |e| {
            matches!(e, Error::Handshake(HandshakeError::UnknownCompression(9)))
        }),
        (&[0, 1, 1], "TLS the client did not ask for", |e| matches!(e, Error::Handshake(HandshakeError::TlsRequired))),
    ];
    for (theirs, what, matches) in cases {
        let server = handshake_then_hold(theirs);
        each_client(|kind| {
            let c = client(kind, server.addr, config());
            expect_protocol(kind, timed_call(kind, &*c, b"x"), what, matches);
            c.close();
        });
    }
}

#[test]
fn closes_during_and_after_the_handshake_read_the_same_on_every_client() {
    // Closed before answering our handshake (the client's bytes read first,
    // so that the close is a FIN, not a reset for unread bytes).
    let during = Scripted::start(|mut s| {
        drain(&mut s, Duration::from_millis(200));
        let _ = s.shutdown(Shutdown::Both);
    });
    // Closed after the handshake, with the call read and never answered.
    let after = Scripted::start(|mut s| {
        if read_handshake(&mut s).is_some() && s.write_all(&PLAIN).is_ok() && read_request(&mut s).is_some() {
            let _ = s.shutdown(Shutdown::Both);
        }
    });
    each_client(|kind| {
        let c = client(kind, during.addr, config());
        let words = expect_lost(kind, timed_call(kind, &*c, b"x"), "closed during the handshake");
        assert_eq!(words, HandshakeStage::Fastrpc.closed_by_server(), "{kind}");
        c.close();
        let c = client(kind, after.addr, config());
        let words = expect_lost(kind, timed_call(kind, &*c, b"x"), "closed after the handshake");
        assert_eq!(words, HandshakeStage::Done.closed_by_server(), "{kind}");
        c.close();
    });
}

#[test]
fn close_at_accept_fails_the_call_at_once() {
    let server = Scripted::start(drop);
    each_client(|kind| {
        let c = client(kind, server.addr, config());
        // A FIN or a reset, depending on whether our bytes were in yet.
        expect_lost(kind, timed_call(kind, &*c, b"x"), "closed at accept");
        c.close();
    });
}

// ---- TLS ----

fn tls_config(mutual: bool) -> ClientConfig {
    let pki = TestPki::shared();
    let tls = if mutual { pki.client_mutual(SERVER_NAME) } else { pki.client(SERVER_NAME) };
    ClientConfig { tls: Some(tls), ..config() }
}

#[test]
fn tls_agreed_then_silent_names_tls() {
    // Agrees to TLS in the fastrpc handshake, then never answers the ClientHello.
    let server = handshake_then_hold(&[0, 1, 1]);
    each_client(|kind| {
        let c = client(kind, server.addr, tls_config(false));
        let words = expect_lost(kind, timed_call(kind, &*c, b"x"), "TLS agreed, then silence");
        let stage = HandshakeStage::Tls { client_certificate: false };
        assert_eq!(words, stage.handshake_timed_out(HANDSHAKE_TIMEOUT), "{kind}");
        assert!(words.contains("TLS"), "{kind}: {words}");
        c.close();
    });
}

#[test]
fn tls_closed_during_its_handshake_says_why_it_may_have_been() {
    // Agrees to TLS, reads the ClientHello, and closes: what a server that
    // requires a client certificate, or refuses ours, looks like.
    let server = Scripted::start(|mut s| {
        if read_handshake(&mut s).is_some() && s.write_all(&[0, 1, 1]).is_ok() {
            drain(&mut s, Duration::from_millis(200));
            let _ = s.shutdown(Shutdown::Both);
        }
    });
    each_client(|kind| {
        for mutual in [false, true] {
            let c = client(kind, server.addr, tls_config(mutual));
            let words = expect_lost(kind, timed_call(kind, &*c, b"x"), "closed during the TLS handshake");
            let stage = HandshakeStage::Tls { client_certificate: mutual };
            assert_eq!(words, stage.closed_by_server(), "{kind}");
            assert!(words.contains("TLS handshake") && words.contains("certificate"), "{kind}: {words}");
            c.close();
        }
    });
}

// ---- frames ----

/// A server that answers our handshake, reads one request and sends `then`
/// in reply (given the request's id), then holds the connection.
fn answering(then: fn(u32) -> Vec<u8>, compression: u8) -> Scripted {
    Scripted::start(move |mut s| {
        if read_handshake(&mut s).is_none() || s.write_all(&[0, compression, 0]).is_err() {
            return;
        }
        if let Some((id, _, _)) = read_request(&mut s) {
            if s.write_all(&then(id)).is_ok() {
                hold(s);
            }
        }
    })
}

#[test]
fn oversized_lengths_are_refused_before_any_buffering() {
    let four_gib = |id: u32| [&id.to_le_bytes()[..], &u32::MAX.to_le_bytes()].concat();
    let over_limit = |id: u32| [&id.to_le_bytes()[..], &(1024 * 1024 + 1u32).to_le_bytes(), &[0; 100]].concat();
    for (then, what) in [(four_gib as fn(u32) -> Vec<u8>, "a 4 GiB length"), (over_limit, "a value over the limit")] {
        let server = answering(then, 1);
        each_client(|kind| {
            let c = client(kind, server.addr, config());
            expect_protocol(kind, timed_call(kind, &*c, b"x"), what, |e| {
                matches!(e, Error::Message(MessageError::ValueTooLong { .. }))
            });
            assert!(c.stats().peak_buffer_capacity < 1024 * 1024, "{kind}: {what} was buffered: {:?}", c.stats());
            c.close();
        });
    }
}

#[test]
fn corrupt_flate_and_snappy_are_refused() {
    let garbage = |_id: u32| vec![0xffu8; 64];
    for (compression, what) in [(0u8, "corrupt flate"), (2, "corrupt snappy")] {
        let server = answering(garbage, compression);
        each_client(|kind| {
            let c = client(kind, server.addr, config());
            expect_protocol(kind, timed_call(kind, &*c, b"x"), what, |e| matches!(e, Error::Compression(_)));
            c.close();
        });
    }
}

#[test]
fn frames_cut_by_fin_or_reset_fail_the_call() {
    for reset in [false, true] {
        let server = Scripted::start(move |mut s| {
            if read_handshake(&mut s).is_some() && s.write_all(&PLAIN).is_ok() {
                if let Some((id, _, value)) = read_request(&mut s) {
                    let frame = response(id, &answer(&value));
                    let _ = s.write_all(&frame[..frame.len() / 2]);
                    std::thread::sleep(Duration::from_millis(50));
                    if reset {
                        // SO_LINGER 0: close sends a reset.
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        drop(s);
                    } else {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            }
        });
        each_client(|kind| {
            let c = client(kind, server.addr, config());
            let words = expect_lost(kind, timed_call(kind, &*c, b"cut"), if reset { "a reset" } else { "a FIN" });
            if !reset {
                assert_eq!(words, HandshakeStage::Done.closed_by_server(), "{kind}");
            }
            c.close();
        });
    }
}

#[test]
fn a_server_that_never_answers_or_never_reads_times_the_call_out() {
    // Handshake, then never reads: our call sits in its socket.
    let never_reads = Scripted::start(|mut s| {
        if read_handshake(&mut s).is_some() && s.write_all(&PLAIN).is_ok() {
            std::thread::sleep(CALL_TIMEOUT + Duration::from_secs(2));
        }
    });
    each_client(|kind| {
        let c = client(kind, never_reads.addr, config());
        match timed_call(kind, &*c, b"x") {
            Err(ClientError::Timeout(t)) => assert_eq!(t, CALL_TIMEOUT, "{kind}"),
            other => panic!("{kind}: expected a timeout, got {other:?}"),
        }
        c.close();
    });
}

#[test]
fn a_slow_drip_still_delivers_the_right_value() {
    let server = Scripted::start(|mut s| {
        if read_handshake(&mut s).is_none() {
            return;
        }
        let mut out = PLAIN.to_vec();
        let Some((id, _, value)) = read_request(&mut s) else { return };
        out.extend(response(id, &answer(&value)));
        // One byte every millisecond.
        for byte in out {
            if s.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        hold(s);
    });
    each_client(|kind| {
        let c = client(kind, server.addr, config());
        assert_eq!(timed_call(kind, &*c, b"drip").expect("the dripped answer"), b"re:drip", "{kind}");
        c.close();
    });
}

#[test]
fn unknown_and_duplicate_ids_are_counted_and_never_delivered() {
    // Each request gets an answer for an id never asked, its own answer,
    // and then a second answer for the same id with a wrong value.
    let server = Scripted::start(|mut s| {
        if read_handshake(&mut s).is_none() || s.write_all(&PLAIN).is_err() {
            return;
        }
        while let Some((id, _, value)) = read_request(&mut s) {
            let out = [
                response(id.wrapping_add(1_000_000), b"WRONG: never asked"),
                response(id, &answer(&value)),
                response(id, b"WRONG: a duplicate"),
            ]
            .concat();
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    each_client(|kind| {
        let c = client(kind, server.addr, config());
        for i in 0..3 {
            let value = format!("call {i}");
            assert_eq!(timed_call(kind, &*c, value.as_bytes()).expect("an answer"), answer(value.as_bytes()), "{kind}");
        }
        // Read before the third answer: two extra answers for each of the
        // first two calls, and the unknown one before the third.
        let stats = c.stats();
        assert!(stats.unsolicited_responses >= 5, "{kind}: {stats:?}");
        c.close();
    });
}

#[test]
fn every_client_answers_right_against_a_well_behaved_scripted_server() {
    // The scripted servers' own check: the same script, answering right, is answered right.
    let server = Scripted::start(echo_server);
    each_client(|kind| {
        let c = client(kind, server.addr, config());
        assert_eq!(timed_call(kind, &*c, b"hello").expect("an answer"), b"re:hello", "{kind}");
        assert_eq!(c.stats().unsolicited_responses, 0, "{kind}");
        c.close();
    });
}

// ---- the flood ----

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(10);
/// No connection's buffers may hold more than this, flood or not: a few
/// times the largest message (1 MiB by default) and a read budget.
const BUFFER_BOUND: usize = 4 * 1024 * 1024;

/// A server that floods each connection with responses for ids never
/// requested (16-byte values, as fast as the socket takes them), and
/// answers the real calls in between, right.
fn flood_server(sent: Arc<AtomicU64>) -> Scripted {
    Scripted::start(move |mut s| {
        if read_handshake(&mut s).is_none() || s.write_all(&PLAIN).is_err() {
            return;
        }
        let (calls, answers) = mpsc::channel();
        let mut reader = s.try_clone().unwrap();
        std::thread::spawn(move || {
            while let Some((id, _, value)) = read_request(&mut reader) {
                if calls.send(response(id, &answer(&value))).is_err() {
                    return;
                }
            }
        });
        // Ids far above what the client will use; a value no caller asked for.
        let batch: Vec<u8> = (0..2730u32).flat_map(|i| response(0x8000_0000 + i, b"FLOOD-FLOOD-FLOO")).collect();
        let until = Instant::now() + FLOOD;
        while Instant::now() < until {
            while let Ok(real) = answers.try_recv() {
                if s.write_all(&real).is_err() {
                    return;
                }
            }
            if s.write_all(&batch).is_err() {
                return;
            }
            sent.fetch_add(2730, Ordering::Relaxed);
        }
        // The flood is over: answer what is still asked, then hold.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while let Ok(real) = answers.recv_timeout(Duration::from_secs(5)) {
            if s.write_all(&real).is_err() {
                return;
            }
        }
    })
}

fn flood(kind: BackendKind) {
    if let Some(why) = kind.unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let sent = Arc::new(AtomicU64::new(0));
    let server = flood_server(Arc::clone(&sent));
    let c: Arc<dyn BlockingClient> = Arc::from(client(kind, server.addr, config()));
    let start = Instant::now();
    let mut peak = ClientStats::default();
    let mut calls = 0u64;
    // Real calls all through the flood, from two threads: each is answered
    // right, within its deadline.
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..2)
            .map(|t| {
                let c = Arc::clone(&c);
                scope.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < FLOOD {
                        let value = format!("caller {t} call {n}");
                        let reply = timed_call(kind, &*c, value.as_bytes());
                        assert_eq!(
                            reply.expect("a real call answered during the flood"),
                            answer(value.as_bytes()),
                            "{kind}"
                        );
                        n += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    n
                })
            })
            .collect();
        while start.elapsed() < FLOOD {
            let stats = c.stats();
            assert!(stats.buffer_capacity <= BUFFER_BOUND, "{kind}: the buffers grew to {stats:?} under the flood");
            peak = stats;
            std::thread::sleep(Duration::from_millis(100));
        }
        calls = callers.into_iter().map(|h| h.join().expect("a caller")).sum();
    });
    // And after it.
    assert_eq!(timed_call(kind, &*c, b"after").expect("a call after the flood"), b"re:after", "{kind}");
    let stats = c.stats();
    let flooded = sent.load(Ordering::Relaxed);
    eprintln!("{kind}: {flooded} unsolicited responses sent, {calls} real calls answered; {stats:?} (last look during the flood: {peak:?})");
    assert!(calls > 0, "{kind}: no real call was made during the flood");
    assert!(stats.peak_buffer_capacity <= BUFFER_BOUND, "{kind}: the buffers peaked at {stats:?}");
    assert!(stats.unsolicited_responses > 0, "{kind}: the flood was not counted: {stats:?}");
    assert!(stats.unsolicited_responses <= flooded, "{kind}: counted more than were sent: {stats:?}");
    c.close();
}

#[test]
fn flood_of_unsolicited_responses_std() {
    flood(BackendKind::Std)
}

#[test]
fn flood_of_unsolicited_responses_tokio() {
    flood(BackendKind::Tokio)
}

#[test]
fn flood_of_unsolicited_responses_mio() {
    flood(BackendKind::Mio)
}

#[test]
fn flood_of_unsolicited_responses_glommio() {
    flood(BackendKind::Glommio)
}

#[test]
fn flood_of_unsolicited_responses_uring() {
    flood(BackendKind::Uring)
}
