//! Deferred responses, panics and the concurrency limit, on the state
//! machine alone (no socket): what every backend then only has to drive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fastwire_proto::codec::{decode_response, encode_request};
use fastwire_proto::driver::{Connection, Flow, Wake};
use fastwire_proto::{
    ConcurrencyLimit, Error, Limits, OverLimit, Request, RespondError, Responder, ResponseWriter, ServerConfig,
    ServerConn,
};

/// Counts wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(&self, _key: usize) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn requests(ids: impl IntoIterator<Item = u32>, name: &[u8]) -> Vec<u8> {
    let mut input = vec![0, 1, 0]; // handshake: version 0, no compression, no TLS
    let mut buf = bytes::BytesMut::new();
    for id in ids {
        encode_request(&mut buf, id, name, format!("v{id}").as_bytes(), &Limits::default()).unwrap();
    }
    input.extend_from_slice(&buf);
    input
}

/// Decodes the responses in `conn`'s output (after the 3-byte handshake if `skip`).
fn responses(conn: &mut ServerConn, skip: usize) -> Vec<(u32, Vec<u8>)> {
    let out = conn.output().to_vec();
    let len = out.len();
    conn.advance_output(len);
    let mut at = skip;
    let mut found = Vec::new();
    while let Some((r, used)) = decode_response(&out[at..], &Limits::default()).unwrap() {
        found.push((r.id, r.value.to_vec()));
        at += used;
    }
    assert_eq!(at, out.len());
    found
}

type Parked = Arc<Mutex<Vec<Responder>>>;

fn parking_handler(parked: &Parked) -> impl Fn(Request<'_>, &mut ResponseWriter<'_>) + Send + Sync {
    let parked = Arc::clone(parked);
    move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        if req.name == b"later" {
            parked.lock().unwrap().push(resp.defer());
        } else {
            resp.extend_from_slice(b"now");
        }
    }
}

#[test]
fn deferred_responses_arrive_out_of_order_and_wake_once_per_batch() {
    let wakes = Arc::new(Counter::default());
    let mut conn = ServerConn::with_waker(&ServerConfig::default(), None, wakes.clone(), 7);
    let parked = Parked::default();
    let handler = parking_handler(&parked);
    conn.received(&requests(1..=3, b"later"));
    conn.received(&requests(4..=4, b"")[3..]);
    assert_eq!(conn.process(&handler), Ok(Flow::NeedInput));
    // Only the inline request is answered; three are deferred.
    assert_eq!(responses(&mut conn, 3), vec![(4, b"now".to_vec())]);
    assert_eq!(conn.deferred_in_flight(), 3);
    let mut responders = std::mem::take(&mut *parked.lock().unwrap());
    assert_eq!(responders.iter().map(Responder::id).collect::<Vec<_>>(), [1, 2, 3]);
    // Answered from other threads, last first.
    let third = responders.pop().unwrap();
    std::thread::spawn(move || third.respond(b"three").unwrap()).join().unwrap();
    let first = responders.remove(0);
    std::thread::spawn(move || first.respond_with(|w| w.extend_from_slice(b"one")).unwrap()).join().unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "one wake-up until the connection collects");
    assert_eq!(conn.process(&handler), Ok(Flow::NeedInput));
    assert_eq!(responses(&mut conn, 0), vec![(3, b"three".to_vec()), (1, b"one".to_vec())]);
    assert_eq!(conn.deferred_in_flight(), 1);
    responders.pop().unwrap().respond(b"two").unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    conn.process(&handler).unwrap();
    assert_eq!(responses(&mut conn, 0), vec![(2, b"two".to_vec())]);
    assert_eq!(conn.deferred_in_flight(), 0);
}

#[test]
fn a_dropped_responder_frees_its_slot_and_is_counted() {
    let mut conn = ServerConn::new(&ServerConfig { max_in_flight: 1, ..ServerConfig::default() });
    let parked = Parked::default();
    let handler = parking_handler(&parked);
    conn.received(&requests(1..=2, b"later"));
    // The first request is deferred, and fills max_in_flight.
    assert_eq!(conn.process(&handler), Ok(Flow::OutputFull));
    assert!(conn.is_output_full());
    drop(parked.lock().unwrap().pop());
    assert_eq!(conn.process(&handler), Ok(Flow::OutputFull), "the second request takes the freed slot");
    assert_eq!(conn.dropped_responders(), 1);
    assert_eq!(responses(&mut conn, 3), vec![], "no response for the dropped call");
    parked.lock().unwrap().pop().unwrap().respond(b"x").unwrap();
    // The answer is output not yet written: still max_in_flight.
    assert_eq!(conn.process(&handler), Ok(Flow::OutputFull));
    assert_eq!(responses(&mut conn, 0), vec![(2, b"x".to_vec())]);
}

#[test]
fn completing_after_the_connection_closed_is_a_no_op_that_says_so() {
    let mut conn = ServerConn::new(&ServerConfig::default());
    let parked = Parked::default();
    conn.received(&requests(1..=2, b"later"));
    conn.process(&parking_handler(&parked)).unwrap();
    let second = parked.lock().unwrap().pop().unwrap();
    let first = parked.lock().unwrap().pop().unwrap();
    assert!(first.is_connected());
    drop(conn);
    assert!(!first.is_connected());
    assert_eq!(first.respond(b"late"), Err(RespondError::Gone { id: 1 }));
    drop(second); // dropping after close is silent
}

#[test]
fn a_second_defer_is_detached() {
    let mut conn = ServerConn::new(&ServerConfig::default());
    let parked = Parked::default();
    let p = Arc::clone(&parked);
    let handler = move |_: Request<'_>, resp: &mut ResponseWriter<'_>| {
        let first = resp.defer();
        let second = resp.defer();
        assert_eq!(second.respond(b"twice"), Err(RespondError::Gone { id: 1 }));
        p.lock().unwrap().push(first);
    };
    conn.received(&requests([1], b"x"));
    conn.process(&handler).unwrap();
    parked.lock().unwrap().pop().unwrap().respond(b"once").unwrap();
    conn.process(&handler).unwrap();
    assert_eq!(responses(&mut conn, 3), vec![(1, b"once".to_vec())]);
}

#[test]
fn an_inline_panic_answers_nothing_and_fails_the_connection() {
    let mut conn = ServerConn::new(&ServerConfig::default());
    let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"partial");
        if req.id == 2 {
            panic!("handler bug");
        }
    };
    conn.received(&requests(1..=3, b"x"));
    assert_eq!(conn.process(&handler), Err(Error::HandlerPanicked { id: 2 }));
    // The earlier response is still written; nothing for 2 or 3.
    assert_eq!(responses(&mut conn, 3), vec![(1, b"partial".to_vec())]);
    assert!(Error::HandlerPanicked { id: 2 }.is_fatal());
    assert!(Error::HandlerPanicked { id: 2 }.to_string().contains("never a wrong value"));
}

#[test]
fn a_panic_holding_a_responder_or_close_connection_fails_the_connection() {
    let mut conn = ServerConn::new(&ServerConfig::default());
    let parked = Parked::default();
    conn.received(&requests(1..=2, b"later"));
    conn.process(&parking_handler(&parked)).unwrap();
    let responder = parked.lock().unwrap().pop().unwrap();
    let worker = std::thread::spawn(move || {
        let _held = responder;
        panic!("worker bug");
    });
    assert!(worker.join().is_err());
    assert_eq!(conn.process(&|_: Request<'_>, _: &mut ResponseWriter<'_>| {}), Err(Error::HandlerPanicked { id: 2 }));

    let mut conn = ServerConn::new(&ServerConfig::default());
    conn.received(&requests([5], b"later"));
    conn.process(&parking_handler(&parked)).unwrap();
    parked.lock().unwrap().pop().unwrap().close_connection();
    assert_eq!(conn.process(&|_: Request<'_>, _: &mut ResponseWriter<'_>| {}), Err(Error::HandlerPanicked { id: 5 }));
}

#[test]
fn an_oversized_deferred_value_is_refused_and_fails_the_connection() {
    let limits = Limits { max_value_len: 4, ..Limits::default() };
    let mut config = ServerConfig::default();
    config.protocol.limits = limits;
    let mut conn = ServerConn::new(&config);
    let parked = Parked::default();
    conn.received(&requests([1], b"later"));
    conn.process(&parking_handler(&parked)).unwrap();
    let err = parked.lock().unwrap().pop().unwrap().respond(b"too long").unwrap_err();
    assert!(matches!(err, RespondError::TooLarge(_)), "{err:?}");
    assert!(matches!(conn.process(&parking_handler(&parked)), Err(Error::Message(_))));
}

#[test]
fn concurrency_limit_backpressure_waits_and_wakes() {
    let config = ServerConfig { concurrency: Some(2), ..ServerConfig::default() };
    let limit = ConcurrencyLimit::for_config(&config).unwrap();
    let wakes = Arc::new(Counter::default());
    let mut a = ServerConn::with_waker(&config, Some(Arc::clone(&limit)), wakes.clone(), 1);
    let mut b = ServerConn::with_waker(&config, Some(Arc::clone(&limit)), wakes.clone(), 2);
    let parked = Parked::default();
    let handler = parking_handler(&parked);
    a.received(&requests(1..=2, b"later"));
    assert_eq!(a.process(&handler), Ok(Flow::NeedInput));
    assert_eq!(limit.in_use(), 2);
    // b's requests: the deferred one waits for a slot; nothing is lost.
    b.received(&requests([9], b""));
    assert_eq!(b.process(&handler), Ok(Flow::OutputFull));
    assert!(b.is_output_full());
    assert_eq!(b.requests(), 0);
    parked.lock().unwrap().pop().unwrap().respond(b"done").unwrap();
    assert!(wakes.0.load(Ordering::SeqCst) >= 2, "a (its response) and b (a free slot) are woken");
    assert!(!b.is_output_full());
    assert_eq!(b.process(&handler), Ok(Flow::NeedInput));
    assert_eq!(responses(&mut b, 3), vec![(9, b"now".to_vec())]);
    assert_eq!(limit.in_use(), 1, "inline requests give their slot back at once");
    drop(parked.lock().unwrap().pop());
    assert_eq!(limit.in_use(), 0, "a dropped responder gives its slot back");
}

#[test]
fn concurrency_limit_reject_answers_at_once() {
    let config = ServerConfig {
        concurrency: Some(1),
        over_limit: OverLimit::Reject(b"busy".to_vec()),
        ..ServerConfig::default()
    };
    let limit = ConcurrencyLimit::for_config(&config).unwrap();
    let mut conn = ServerConn::with_waker(&config, Some(limit), Arc::new(Counter::default()), 0);
    let parked = Parked::default();
    conn.received(&requests(1..=3, b"later"));
    assert_eq!(conn.process(&parking_handler(&parked)), Ok(Flow::NeedInput));
    assert_eq!(responses(&mut conn, 3), vec![(2, b"busy".to_vec()), (3, b"busy".to_vec())]);
    assert_eq!(conn.rejected(), 2);
    assert_eq!(conn.requests(), 3);
}
