//! An echo server and client on the `uring` backend: one io_uring
//! completion loop per core, and a ring thread driving the client's
//! connection. Needs Linux 6.1 or later; elsewhere it says why it cannot run.
//! Run: `cargo run -p fastwire-uring --example echo_uring`.

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Duration;

    use fastwire_uring::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
    use fastwire_uring::{Client, Options, Server};

    if let Err(why) = fastwire_uring::probe() {
        eprintln!("{why}");
        return Ok(());
    }
    // The handler runs inline on its connection's loop: keep it short.
    let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"echo: ");
        resp.extend_from_slice(req.value);
    };
    let server = Server::bind_with("127.0.0.1:0", ServerConfig::default(), Options { loops: 2, ..Options::default() })?
        .serve(echo)?;
    println!("serving on {} with 2 completion loops", server.local_addr());

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

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("io_uring is Linux's: this example runs on Linux 6.1 or later");
}
