//! An echo server and client on the `tokio` backend: a task per connection.
//! Run: `cargo run -p fastwire-tokio --example echo_tokio [per-core]`.

use std::time::Duration;

use fastwire_tokio::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
use fastwire_tokio::{Client, Flavor, Options, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flavor = match std::env::args().nth(1).as_deref() {
        Some("per-core") => Flavor::per_core(),
        _ => Flavor::multi_thread(),
    };
    let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"echo: ");
        resp.extend_from_slice(req.value);
    };
    // The server runs on runtime threads of its own (per `flavor`).
    let server = Server::bind_with("127.0.0.1:0", ServerConfig::default(), Options { flavor })?.serve(echo)?;
    let addr = server.local_addr();
    println!("serving on {addr} ({flavor:?})");

    // The client lives on the caller's runtime.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = Client::connect(addr, ClientConfig::default()).await?;
        // A hundred concurrent calls on one connection, matched by request id.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let client = client.clone();
            tasks.spawn(async move { client.call(b"echo", format!("call {i}").as_bytes()).await });
        }
        let mut replies = 0;
        while let Some(reply) = tasks.join_next().await {
            let reply = reply.expect("task")?;
            assert!(reply.starts_with(b"echo: call "));
            replies += 1;
        }
        println!("{replies} replies on one connection");
        // A call with a deadline of its own, and a fire-and-forget request.
        let reply = client.call_timeout(b"echo", b"quick", Duration::from_millis(500)).await?;
        println!("{}", String::from_utf8_lossy(&reply));
        client.send(b"log", b"no reply for this one").await?;
        Ok::<_, fastwire_tokio::ClientError>(())
    })?;

    println!("shutdown: {}", server.shutdown(Duration::from_secs(1)));
    Ok(())
}
