//! The connections recorded between a Go fastrpc client and server
//! (`crates/proto/tests/data/fastrpc/`, one folder each: a manifest, and
//! the bytes each side sent), read into [`Scenario`]s.

use std::path::PathBuf;

use base64::Engine;
use fastwire_proto::{ClientConfig, Compression, ProtocolConfig, ServerConfig};

use crate::{OwnedRequest, OwnedResponse};

/// One recorded connection.
pub struct Scenario {
    /// Its folder's name.
    pub name: &'static str,
    /// The sniff header both sides sent.
    pub sniff_header: Vec<u8>,
    /// The protocol version both sides sent.
    pub protocol_version: u8,
    /// The compression both sides agreed on.
    pub compression: Compression,
    /// The client's requests in the order sent (id 0: fire-and-forget).
    pub requests: Vec<OwnedRequest>,
    /// The server's responses in the order sent.
    pub responses: Vec<OwnedResponse>,
    /// Every byte the client sent, handshake included.
    pub client_to_server: Vec<u8>,
    /// Every byte the server sent, handshake included.
    pub server_to_client: Vec<u8>,
}

/// The recorded connections' names, one folder each.
pub const SCENARIOS: [&str; 4] = ["none-default", "snappy-default", "flate-default", "none-sniff-xy-v7"];

/// Where the recordings are: the protocol crate's test data, beside this crate.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/data/fastrpc")
}

fn b64(v: &serde_json::Value, key: &str) -> Vec<u8> {
    let text = v.get(key).and_then(|s| s.as_str()).unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(text).expect("valid base64 in manifest")
}

/// One recorded connection, by folder name; panics if it is missing or malformed.
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

/// Every recorded connection.
pub fn all_scenarios() -> Vec<Scenario> {
    SCENARIOS.iter().map(|n| scenario(n)).collect()
}

impl Scenario {
    /// The protocol settings both sides used.
    pub fn protocol(&self) -> ProtocolConfig {
        ProtocolConfig {
            sniff_header: self.sniff_header.clone(),
            protocol_version: self.protocol_version,
            compression: self.compression,
            ..ProtocolConfig::default()
        }
    }

    /// A server configured as the recording's.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig { protocol: self.protocol(), ..ServerConfig::default() }
    }

    /// A client configured as the recording's.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig { protocol: self.protocol(), ..ClientConfig::default() }
    }
}
