//! An echo server and client on the `mio` backend: one edge-triggered event
//! loop per core, and a reactor thread driving the client's connection.
//! Run: `cargo run -p fastwire-mio --example echo_mio`.

use std::time::Duration;

use fastwire_mio::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
use fastwire_mio::{Client, Options, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The handler runs inline on its connection's event loop: keep it short.
    let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"echo: ");
        resp.extend_from_slice(req.value);
    };
    let server = Server::bind_with("127.0.0.1:0", ServerConfig::default(), Options { loops: 2, ..Options::default() })?
        .serve(echo)?;
    println!("serving on {} with 2 event loops", server.local_addr());

    let client = Client::connect(server.local_addr(), ClientConfig::default())?;
    // One thread, 100 calls in flight on one connection: `start` sends, `wait` collects.
    let calls: Vec<_> =
        (0..100).map(|i| client.start(b"echo", format!("call {i}").as_bytes())).collect::<Result<_, _>>()?;
    for call in calls {
        let reply = call.wait()?;
        assert!(reply.starts_with(b"echo: call "));
    }
    println!("100 calls answered on one connection");
    let reply = client.call_timeout(b"echo", b"quick", Duration::from_millis(500))?;
    println!("{}", String::from_utf8_lossy(&reply));
    client.send(b"log", b"fire-and-forget")?;

    println!("shutdown: {}", server.shutdown(Duration::from_secs(1)));
    Ok(())
}
