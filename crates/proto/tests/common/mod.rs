//! Helpers shared by the integration tests: the recorded Go vectors and
//! small drivers that run the state machines over in-memory bytes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine;
use fastwire_proto::{
    demo_handler, ClientConfig, ClientConn, Compression, Connection, Error, ProtocolConfig, Request, ResponseWriter,
    ServerConfig, ServerConn,
};

/// A request as owned bytes: (id, name, value).
pub type OwnedRequest = (u32, Vec<u8>, Vec<u8>);
/// A response as owned bytes: (id, value).
pub type OwnedResponse = (u32, Vec<u8>);

/// One recorded connection.
pub struct Scenario {
    pub name: &'static str,
    pub sniff_header: Vec<u8>,
    pub protocol_version: u8,
    pub compression: Compression,
    pub requests: Vec<OwnedRequest>,
    pub responses: Vec<OwnedResponse>,
    pub client_to_server: Vec<u8>,
    pub server_to_client: Vec<u8>,
}

pub const SCENARIOS: [&str; 4] = ["none-default", "snappy-default", "flate-default", "none-sniff-xy-v7"];

/// The recorded vectors. This module is also included by the workspace's
/// conformance suite (`#[path]`), whose manifest directory is the root.
fn data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let here = root.join("tests/data/fastrpc");
    if here.is_dir() {
        here
    } else {
        root.join("crates/proto/tests/data/fastrpc")
    }
}

fn b64(v: &serde_json::Value, key: &str) -> Vec<u8> {
    let text = v.get(key).and_then(|s| s.as_str()).unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(text).expect("valid base64 in manifest")
}

pub fn scenario(name: &'static str) -> Scenario {
    let dir = data_dir().join(name);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let compress_type = manifest["compress_type"].as_u64().unwrap() as u8;
    Scenario {
        name,
        sniff_header: manifest["sniff_header"].as_str().unwrap().as_bytes().to_vec(),
        protocol_version: manifest["protocol_version"].as_u64().unwrap() as u8,
        compression: Compression::from_wire_value(compress_type).unwrap(),
        requests: manifest["requests_in_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap() as u32, b64(r, "name_b64"), b64(r, "value_b64")))
            .collect(),
        responses: manifest["responses_in_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap() as u32, b64(r, "value_b64")))
            .collect(),
        client_to_server: std::fs::read(dir.join("client_to_server.bin")).unwrap(),
        server_to_client: std::fs::read(dir.join("server_to_client.bin")).unwrap(),
    }
}

pub fn all_scenarios() -> Vec<Scenario> {
    SCENARIOS.iter().map(|n| scenario(n)).collect()
}

impl Scenario {
    pub fn protocol(&self) -> ProtocolConfig {
        ProtocolConfig {
            sniff_header: self.sniff_header.clone(),
            protocol_version: self.protocol_version,
            compression: self.compression,
            ..ProtocolConfig::default()
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        ServerConfig { protocol: self.protocol(), ..ServerConfig::default() }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig { protocol: self.protocol(), ..ClientConfig::default() }
    }
}

/// What a server produced from some input.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerRun {
    pub requests: Vec<OwnedRequest>,
    pub output: Vec<u8>,
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
    pub responses: Vec<OwnedResponse>,
    pub error: Option<Error>,
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

#[track_caller]
pub fn assert_responses_eq(actual: &[OwnedResponse], expected: &[OwnedResponse], what: &str) {
    let summary = |v: &[OwnedResponse]| v.iter().map(|(id, val)| (*id, val.len())).collect::<Vec<_>>();
    assert_eq!(summary(actual), summary(expected), "{what}: (id, value len)");
    assert!(actual == expected, "{what}: contents differ");
}
