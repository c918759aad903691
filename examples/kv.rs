//! A key-value service on fastwire: what "build a service" looks like.
//!
//! ```sh
//! cargo run --release --example kv
//! ```
//!
//! * **Server**: the tokio backend with an `async` handler
//!   (`Server::serve_async`): every storage access is a simulated 5 ms wait
//!   (`tokio::time::sleep`, standing in for a disk or a database), and a
//!   waiting request never holds up the others: each is a task of its own
//!   and answers through its `Responder` when done, out of order.
//! * **Methods** (the request name): `GET` (value: the key), `SET` (value:
//!   the key's length as a little-endian `u16`, the key, then the value) and
//!   `DEL` (value: the key).
//! * **Errors**: fastrpc's tlv messages have no error channel, so the
//!   service defines one in the response value, as real fastrpc services
//!   do. Its first byte is a status: [`OK`] followed by the value (GET) or
//!   nothing, [`NOT_FOUND`], or [`INVALID`] followed by a UTF-8 message
//!   saying what was wrong (an unknown method, an empty or over-long key, an
//!   over-large value, a malformed `SET`). Input is validated before any
//!   storage access.
//! * **Client**: every call has a deadline (`call_timeout`); when the server
//!   goes away, calls fail at once with a connection error instead of
//!   hanging, and the same client reconnects by itself (with backoff) when
//!   the server is back, which the program shows by restarting its server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastwire::proto::{ClientConfig, ServerConfig};
use fastwire_common::OwnedRequest;
use fastwire_tokio::{Client, Server, ServerHandle};

/// Status byte: done; for GET the value follows.
pub const OK: u8 = 0;
/// Status byte: no such key.
pub const NOT_FOUND: u8 = 1;
/// Status byte: the request was invalid; a UTF-8 message follows.
pub const INVALID: u8 = 2;

/// Longest key.
const MAX_KEY: usize = 256;
/// Largest value.
const MAX_VALUE: usize = 64 * 1024;
/// What one storage access costs (simulated).
const STORAGE_LATENCY: Duration = Duration::from_millis(5);

/// The store: a map behind a lock that is never held across an `.await`.
type Store = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

/// A parsed, validated request.
#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    Get(&'a [u8]),
    Set(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
}

/// Validates a request before anything is touched.
fn parse<'a>(name: &[u8], value: &'a [u8]) -> Result<Op<'a>, String> {
    let key_ok = |key: &[u8]| match key.len() {
        0 => Err("empty key".to_owned()),
        n if n > MAX_KEY => Err(format!("key of {n} bytes, over the limit of {MAX_KEY}")),
        _ => Ok(()),
    };
    match name {
        b"GET" => key_ok(value).map(|()| Op::Get(value)),
        b"DEL" => key_ok(value).map(|()| Op::Del(value)),
        b"SET" => {
            let Some((len, rest)) = value.split_first_chunk::<2>() else {
                return Err("SET: the value must start with the key's length (u16, little-endian)".into());
            };
            let len = u16::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(format!("SET: key length {len} but only {} bytes follow", rest.len()));
            }
            let (key, data) = rest.split_at(len);
            key_ok(key)?;
            if data.len() > MAX_VALUE {
                return Err(format!("SET: value of {} bytes, over the limit of {MAX_VALUE}", data.len()));
            }
            Ok(Op::Set(key, data))
        }
        other => Err(format!("unknown method {:?}: use GET, SET or DEL", String::from_utf8_lossy(other))),
    }
}

/// Encodes a SET request's value.
pub fn set_value(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = (key.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

/// Serves one request (a task of its own): validate, wait for "storage", answer.
async fn handle(store: Store, request: OwnedRequest, responder: fastwire::Responder) {
    let op = match parse(request.name(), request.value()) {
        Ok(op) => op,
        Err(message) => {
            let _ = responder.respond_with(|out| {
                out.push(INVALID);
                out.extend_from_slice(message.as_bytes());
            });
            return;
        }
    };
    tokio::time::sleep(STORAGE_LATENCY).await;
    // Gone (Err): the client left while we waited; nothing to do.
    let _ = match op {
        Op::Get(key) => match store.lock().unwrap().get(key) {
            Some(value) => responder.respond_with(|out| {
                out.push(OK);
                out.extend_from_slice(value);
            }),
            None => responder.respond(&[NOT_FOUND]),
        },
        Op::Set(key, value) => {
            store.lock().unwrap().insert(key.to_vec(), value.to_vec());
            responder.respond(&[OK])
        }
        Op::Del(key) => match store.lock().unwrap().remove(key) {
            Some(_) => responder.respond(&[OK]),
            None => responder.respond(&[NOT_FOUND]),
        },
    };
}

/// Starts the service on `addr` (its own tokio runtime threads).
fn start(addr: SocketAddr, store: Store) -> std::io::Result<ServerHandle> {
    Server::bind(addr, ServerConfig::default())?
        .serve_async(move |request, responder| handle(Arc::clone(&store), request, responder))
}

/// What a response value says.
fn describe(value: &[u8]) -> String {
    match value.split_first() {
        Some((&OK, rest)) => format!("ok {:?}", String::from_utf8_lossy(rest)),
        Some((&NOT_FOUND, _)) => "not found".into(),
        Some((&INVALID, message)) => format!("invalid: {}", String::from_utf8_lossy(message)),
        _ => format!("unexpected {value:?}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::default();
    let server = start("127.0.0.1:0".parse()?, Arc::clone(&store))?;
    let addr = server.local_addr();
    println!("kv: serving on {addr}");

    let config = ClientConfig { reconnect_backoff: Duration::from_millis(20), ..ClientConfig::default() };
    let client = Client::new(addr, config);
    let deadline = Duration::from_millis(500);
    let call = |name: &'static [u8], value: Vec<u8>| {
        let client = client.clone();
        async move { client.call_timeout(name, &value, deadline).await.map(|reply| describe(&reply)) }
    };

    println!("SET greeting=hello  -> {}", call(b"SET", set_value(b"greeting", b"hello")).await?);
    println!("GET greeting        -> {}", call(b"GET", b"greeting".to_vec()).await?);
    println!("GET missing         -> {}", call(b"GET", b"missing".to_vec()).await?);
    println!("GET (empty key)     -> {}", call(b"GET", Vec::new()).await?);
    println!("PUT greeting        -> {}", call(b"PUT", b"greeting".to_vec()).await?);

    // 100 calls at once on one connection, each needing 5 ms of "storage":
    // they wait together, not one after another.
    let started = Instant::now();
    let calls: Vec<_> = (0..100).map(|i| call(b"SET", set_value(format!("k{i}").as_bytes(), b"v"))).collect();
    for result in futures_util::future::join_all(calls).await {
        result?;
    }
    println!("100 SETs of 5 ms each, at once on one connection: {:?}", started.elapsed());

    // The server goes away: calls fail promptly, with a connection error.
    let report = tokio::task::spawn_blocking(move || server.shutdown(Duration::from_secs(1))).await?;
    println!("server stopped: {report}");
    match call(b"GET", b"greeting".to_vec()).await {
        Ok(answer) => println!("GET while down      -> {answer} (unexpected)"),
        Err(e) => println!("GET while down      -> error: {e}"),
    }

    // It comes back on the same address (with its data, kept by the store):
    // the same client reconnects by itself.
    let server = start(addr, Arc::clone(&store))?;
    let mut answer = call(b"GET", b"greeting".to_vec()).await;
    for _ in 0..50 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        answer = call(b"GET", b"greeting".to_vec()).await;
    }
    println!("GET after restart   -> {}", answer?);
    client.close();
    tokio::task::spawn_blocking(move || server.shutdown(Duration::from_secs(1))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated() {
        assert_eq!(parse(b"GET", b"k"), Ok(Op::Get(b"k")));
        assert_eq!(parse(b"SET", &set_value(b"k", b"v")), Ok(Op::Set(b"k", b"v")));
        assert!(parse(b"GET", b"").unwrap_err().contains("empty key"));
        assert!(parse(b"DEL", &[b'k'; 300]).unwrap_err().contains("over the limit of 256"));
        assert!(parse(b"SET", b"\x05\x00ab").unwrap_err().contains("key length 5"));
        assert!(parse(b"SET", b"\x01").unwrap_err().contains("u16"));
        assert!(parse(b"SET", &set_value(b"k", &vec![0; MAX_VALUE + 1])).unwrap_err().contains("value of"));
        assert!(parse(b"PUT", b"k").unwrap_err().contains("unknown method \"PUT\""));
    }

    #[test]
    fn the_service_over_tcp() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let server = start("127.0.0.1:0".parse().unwrap(), Store::default()).unwrap();
        let client = Client::new(server.local_addr(), ClientConfig::default());
        runtime.block_on(async {
            let t = Duration::from_secs(5);
            assert_eq!(&*client.call_timeout(b"SET", &set_value(b"a", b"1"), t).await.unwrap(), &[OK]);
            assert_eq!(&*client.call_timeout(b"GET", b"a", t).await.unwrap(), b"\x001");
            assert_eq!(&*client.call_timeout(b"DEL", b"a", t).await.unwrap(), &[OK]);
            assert_eq!(&*client.call_timeout(b"GET", b"a", t).await.unwrap(), &[NOT_FOUND]);
            let invalid = client.call_timeout(b"GET", b"", t).await.unwrap();
            assert_eq!(describe(&invalid), "invalid: empty key");
        });
        client.close();
        server.shutdown(Duration::from_secs(1));
    }
}
