//! Small drivers that run the protocol's state machines over in-memory
//! bytes, fed in chunks of any size, and comparisons that print a summary
//! rather than megabytes when they fail.

use std::sync::Mutex;

use fastwire_proto::driver::Connection;
use fastwire_proto::{
    demo_handler, ClientConfig, ClientConn, Error, Request, ResponseWriter, ServerConfig, ServerConn,
};

use crate::{OwnedRequest, OwnedResponse};

/// What a server produced from some input.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerRun {
    /// The requests its handler saw.
    pub requests: Vec<OwnedRequest>,
    /// Every byte it wrote.
    pub output: Vec<u8>,
    /// The error that stopped it, if one did.
    pub error: Option<Error>,
}

/// Feeds `chunks` to a fresh server running the demo handler, processing
/// after each chunk and collecting all output.
pub fn run_server<'a>(config: &ServerConfig, chunks: impl IntoIterator<Item = &'a [u8]>) -> ServerRun {
    let seen = Mutex::new(Vec::new());
    let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        seen.lock().unwrap().push((req.id, req.name.to_vec(), req.value.to_vec()));
        demo_handler(req, resp);
    };
    let mut conn = ServerConn::new(config);
    let mut output = Vec::new();
    let mut error = None;
    for chunk in chunks {
        conn.received(chunk);
        let result = conn.process(&handler);
        let out = conn.output();
        output.extend_from_slice(out);
        let n = out.len();
        conn.advance_output(n);
        if let Err(e) = result {
            error = Some(e);
            break;
        }
    }
    ServerRun { requests: seen.into_inner().unwrap(), output, error }
}

/// What a client produced from some input.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientRun {
    /// The responses delivered, in order.
    pub responses: Vec<OwnedResponse>,
    /// The error that stopped it, if one did.
    pub error: Option<Error>,
    /// Calls still waiting for a response at the end.
    pub pending_left: usize,
}

/// A client that made the scenario's calls (fire-and-forget for id 0), and
/// the bytes it wrote for them.
pub fn client_with_calls(config: &ClientConfig, requests: &[OwnedRequest]) -> (ClientConn<usize>, Vec<u8>) {
    let mut conn = ClientConn::new(config);
    for (index, (id, name, value)) in requests.iter().enumerate() {
        if *id == 0 {
            conn.send_fire_and_forget(name, value).unwrap();
        } else {
            let got = conn.start_call(name, value, index).unwrap();
            assert_eq!(got, *id, "request ids count from 1 as Go's do");
        }
    }
    let out = conn.output().to_vec();
    let n = out.len();
    conn.advance_output(n);
    (conn, out)
}

/// Feeds `chunks` to `conn`, collecting responses.
pub fn run_client<'a>(mut conn: ClientConn<usize>, chunks: impl IntoIterator<Item = &'a [u8]>) -> ClientRun {
    let mut responses = Vec::new();
    let mut error = None;
    for chunk in chunks {
        conn.received(chunk);
        if let Err(e) = conn.process(|resp, _token| responses.push((resp.id, resp.value.to_vec()))) {
            error = Some(e);
            break;
        }
    }
    ClientRun { responses, error, pending_left: conn.pending_len() }
}

/// Splits `data` into chunks whose sizes come from a small deterministic PRNG
/// (xorshift), between 1 and `max` bytes.
pub fn random_chunks(data: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut state = seed.max(1);
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state as usize % max + 1).min(rest.len());
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// Compares byte strings without printing megabytes on failure.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        let at = actual.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(actual.len().min(expected.len()));
        panic!(
            "{what}: {} bytes, expected {}; first difference at offset {at}: {:02x?} vs {:02x?}",
            actual.len(),
            expected.len(),
            &actual[at..actual.len().min(at + 16)],
            &expected[at..expected.len().min(at + 16)]
        );
    }
}

/// Compares decoded message lists by summary (ids, lengths) then content.
#[track_caller]
pub fn assert_requests_eq(actual: &[OwnedRequest], expected: &[OwnedRequest], what: &str) {
    let summary = |v: &[OwnedRequest]| v.iter().map(|(id, n, val)| (*id, n.len(), val.len())).collect::<Vec<_>>();
    assert_eq!(summary(actual), summary(expected), "{what}: (id, name len, value len)");
    assert!(actual == expected, "{what}: contents differ");
}

/// Compares decoded response lists by summary (ids, lengths) then content.
#[track_caller]
pub fn assert_responses_eq(actual: &[OwnedResponse], expected: &[OwnedResponse], what: &str) {
    let summary = |v: &[OwnedResponse]| v.iter().map(|(id, val)| (*id, val.len())).collect::<Vec<_>>();
    assert_eq!(summary(actual), summary(expected), "{what}: (id, value len)");
    assert!(actual == expected, "{what}: contents differ");
}
