//! The tokio-util codecs over real TCP: a `Framed` client calling a
//! fastwire server, and a `Framed` server answering a fastwire client.

use std::time::Duration;

use fastwire::proto::handshake;
use fastwire::proto::tokio_codec::{ClientCodec, RequestFrame, ServerCodec};
use fastwire::proto::{demo_handler, ClientConfig, Compression, Limits, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// Our handshake (version 0, no compression, no TLS), and the peer's checked.
async fn handshake(stream: &mut TcpStream) {
    let mut ours = Vec::new();
    handshake::encode(&mut ours, b"", 0, Compression::None, false);
    stream.write_all(&ours).await.unwrap();
    let mut theirs = [0u8; 3];
    stream.read_exact(&mut theirs).await.unwrap();
    let (peer, _) = handshake::decode(&theirs, b"", 0).unwrap().expect("a whole handshake");
    assert_eq!(peer.compression, Compression::None);
}

#[test]
fn framed_client_against_a_fastwire_server() {
    let server = fastwire::fastwire_tokio::Server::bind("127.0.0.1:0", ServerConfig::default())
        .unwrap()
        .serve(demo_handler)
        .unwrap();
    let addr = server.local_addr();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        handshake(&mut stream).await;
        let mut framed = Framed::new(stream, ClientCodec::new(Limits::default()));
        for id in 1..=3u32 {
            framed.feed(RequestFrame::new(id, &b"echo"[..], format!("v{id}").into_bytes())).await.unwrap();
        }
        framed.flush().await.unwrap();
        for id in 1..=3u32 {
            let response =
                tokio::time::timeout(Duration::from_secs(10), framed.next()).await.unwrap().unwrap().unwrap();
            assert_eq!((response.id, &response.value[..]), (id, format!("re:v{id}").as_bytes()));
        }
    });
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn fastwire_client_against_a_framed_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        handshake(&mut stream).await;
        let mut framed = Framed::new(stream, ServerCodec::new(Limits::default()));
        while let Some(Ok(request)) = framed.next().await {
            let answer = [&b"framed:"[..], &request.value[..]].concat();
            framed.send((request.id, &answer[..])).await.unwrap();
        }
    });
    let client = fastwire::fastwire_std::Client::new(addr, ClientConfig::default());
    let reply = client.call_timeout(b"echo", b"hello", Duration::from_secs(10)).unwrap();
    assert_eq!(&*reply, b"framed:hello");
    client.close();
}
