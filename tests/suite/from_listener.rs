//! Servers built from listeners the application bound itself
//! (`Server::from_listener`) on the blocking, mio and uring backends (tokio's and
//! glommio's are tested in their crates, with serving on the application's
//! runtime): they serve on that listener and close it when shut down. A
//! listener per loop cannot be made of one listener: each backend with a
//! choice of accepting refuses it, saying how to get it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use fastwire::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_common::client::{Client, Driver};
use fastwire_common::{ServerHandle, Serving};

fn bound() -> (TcpListener, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Non-blocking on purpose: the server sets the mode its acceptor needs.
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A multi-loop server on the application's listener: it serves four
/// connections (one echo each) and closes the listener when shut down.
fn four_clients_then_shutdown<D: Driver, S: Serving>(server: ServerHandle<S>, addr: SocketAddr) {
    assert_eq!(server.local_addr(), addr);
    let clients: Vec<_> = (0..4).map(|_| Client::<D>::connect(addr, ClientConfig::default()).unwrap()).collect();
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(&*client.call(b"echo", format!("{i}").as_bytes()).unwrap(), format!("re:{i}").as_bytes());
    }
    assert_eq!(server.stats().accepted, 4);
    drop(clients);
    server.shutdown(Duration::from_secs(2));
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed with the server");
}

#[test]
fn std_serves_an_application_listener() {
    let (listener, addr) = bound();
    let server = fastwire::fastwire_std::Server::from_listener(listener, ServerConfig::default())
        .unwrap()
        .serve(demo_handler)
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let client = fastwire::fastwire_std::Client::connect(addr, ClientConfig::default()).unwrap();
    for i in 0..10 {
        assert_eq!(&*client.call(b"echo", format!("{i}").as_bytes()).unwrap(), format!("re:{i}").as_bytes());
    }
    client.close();
    server.shutdown(Duration::from_secs(2));
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed with the server");
}

#[test]
fn mio_serves_an_application_listener_through_its_acceptor() {
    let (listener, addr) = bound();
    let server = fastwire::fastwire_mio::Server::from_listener_with(
        listener,
        ServerConfig::default(),
        fastwire::fastwire_mio::Options { loops: 2, ..Default::default() },
    )
    .unwrap()
    .serve(demo_handler)
    .unwrap();
    // Several connections, handed to both loops in turn.
    four_clients_then_shutdown::<fastwire::fastwire_mio::client::ReactorThread, _>(server, addr);
}

#[test]
fn uring_serves_an_application_listener_from_every_loop() {
    if let Some(why) = fastwire_bench::BackendKind::Uring.unavailable() {
        return eprintln!("skipped: {why}");
    }
    let (listener, addr) = bound();
    let server = fastwire::fastwire_uring::Server::from_listener_with(
        listener,
        ServerConfig::default(),
        fastwire::fastwire_uring::Options { loops: 2, ..Default::default() },
    )
    .unwrap()
    .serve(demo_handler)
    .unwrap();
    // Both loops keep a multishot accept on the one listener.
    four_clients_then_shutdown::<fastwire::fastwire_uring::client::RingThread, _>(server, addr);
}

/// One listener cannot be a listener per loop: every backend with a
/// choice of accepting refuses `Accept::ReusePort` on an application's
/// listener, with a message that names the way that works.
#[test]
fn a_listener_per_loop_is_refused_on_one_application_listener() {
    use std::io::ErrorKind::InvalidInput;
    let refused = |result: std::io::Result<()>, backend: &str| {
        let e = result.expect_err(backend);
        assert_eq!(e.kind(), InvalidInput, "{backend}: {e}");
        assert!(e.to_string().contains("bind_with"), "{backend}: {e}");
    };
    let mio =
        fastwire::fastwire_mio::Options { accept: fastwire::fastwire_mio::Accept::ReusePort, ..Default::default() };
    refused(
        fastwire::fastwire_mio::Server::from_listener_with(bound().0, ServerConfig::default(), mio).map(drop),
        "mio",
    );
    let flavor =
        fastwire::fastwire_tokio::Flavor::PerCore { cores: 2, accept: fastwire::fastwire_tokio::Accept::ReusePort };
    let tokio = fastwire::fastwire_tokio::Options { flavor };
    refused(
        fastwire::fastwire_tokio::Server::from_listener_with(bound().0, ServerConfig::default(), tokio).map(drop),
        "tokio",
    );
    if fastwire_bench::BackendKind::Uring.unavailable().is_none() {
        let uring = fastwire::fastwire_uring::Options {
            accept: fastwire::fastwire_uring::Accept::ReusePort,
            ..Default::default()
        };
        refused(
            fastwire::fastwire_uring::Server::from_listener_with(bound().0, ServerConfig::default(), uring).map(drop),
            "uring",
        );
    }
    if fastwire_bench::BackendKind::Glommio.unavailable().is_none() {
        let glommio = fastwire::fastwire_glommio::Options {
            accept: fastwire::fastwire_glommio::Accept::ReusePort,
            ..Default::default()
        };
        refused(
            fastwire::fastwire_glommio::Server::from_listener_with(bound().0, ServerConfig::default(), glommio)
                .map(drop),
            "glommio",
        );
    }
}
