//! An echo server and client on the `glommio` backend: io_uring, one pinned
//! executor per core. Run: `cargo run -p fastwire-glommio --example echo_glommio`.
//! Needs Linux 5.8+ and `ulimit -l` of at least 512 KiB; otherwise it says so.

use std::time::Duration;

use fastwire_glommio::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
use fastwire_glommio::{Client, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Err(why) = fastwire_glommio::probe() {
        eprintln!("{why}");
        std::process::exit(1);
    }
    // The handler runs on its connection's executor, inline: keep it short.
    let echo = |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        resp.extend_from_slice(b"echo: ");
        resp.extend_from_slice(req.value);
    };
    let server = Server::bind("127.0.0.1:0", ServerConfig::default())?.serve(echo)?;
    println!("serving on {} (one executor per core)", server.local_addr());

    // The client's connection lives on an executor of its own; any thread may call.
    let client = Client::connect(server.local_addr(), ClientConfig::default())?;
    let calls: Vec<_> =
        (0..100).map(|i| client.start(b"echo", format!("call {i}").as_bytes())).collect::<Result<_, _>>()?;
    for call in calls {
        assert!(call.wait()?.starts_with(b"echo: call "));
    }
    println!("100 calls answered on one connection");
    println!("{}", String::from_utf8_lossy(&client.call_timeout(b"echo", b"quick", Duration::from_millis(500))?));
    client.send(b"log", b"fire-and-forget")?;
    println!("shutdown: {}", server.shutdown(Duration::from_secs(2)));
    Ok(())
}
