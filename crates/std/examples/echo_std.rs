//! A blocking echo server and client on the `std` backend: a thread per
//! connection. Run: `cargo run -p fastwire-std --example echo_std`.

use std::time::Duration;

use fastwire_std::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
use fastwire_std::{Client, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The handler answers every request with its value, prefixed.
    let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"echo: ");
        resp.extend_from_slice(req.value);
    };
    let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(echo)?;
    println!("serving on {}", server.local_addr());

    let client = Client::connect(server.local_addr(), ClientConfig::default())?;
    // Many threads share one client, and so one connection: their calls are
    // pipelined and batched into few writes.
    std::thread::scope(|s| {
        for t in 0..4 {
            let client = &client;
            s.spawn(move || {
                for i in 0..3 {
                    let reply = client.call(b"echo", format!("thread {t} call {i}").as_bytes()).expect("a reply");
                    println!("{}", String::from_utf8_lossy(&reply));
                }
            });
        }
    });
    client.send(b"log", b"fire-and-forget: no reply comes back")?;

    let report = server.shutdown(Duration::from_secs(1));
    println!("shutdown: {report}");
    Ok(())
}
