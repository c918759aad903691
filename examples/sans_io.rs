//! The protocol crate on its own: a client and a server state machine
//! talking through two in-memory byte buffers instead of a socket.
//!
//! This is the whole job of every fastwire backend, minus the I/O: move the
//! client's `output()` to the server's `received()`, call `process`, and move
//! the server's `output()` back. Run it with `cargo run --example sans_io`.

use fastwire::proto::driver::Connection;
use fastwire::proto::{
    ClientConfig, ClientConn, Compression, ProtocolConfig, Request, ResponseWriter, ServerConfig, ServerConn,
};

fn main() {
    // Both sides compress what they send with snappy; either could differ.
    let protocol = ProtocolConfig { compression: Compression::Snappy, ..ProtocolConfig::default() };
    let mut client: ClientConn<&str> =
        ClientConn::new(&ClientConfig { protocol: protocol.clone(), ..ClientConfig::default() });
    let mut server = ServerConn::new(&ServerConfig { protocol, ..ServerConfig::default() });

    // A handler sees the request borrowed from the read buffer and writes its
    // response value straight into the output buffer.
    let handler = |req: Request<'_>, resp: &mut ResponseWriter<'_>| match req.name {
        b"upper" => resp.extend_from_slice(&req.value.to_ascii_uppercase()),
        b"len" => {
            use std::fmt::Write;
            write!(resp, "{}", req.value.len()).unwrap();
        }
        _ => resp.extend_from_slice(b"unknown method"),
    };

    // Three calls, pipelined: each gets an id, and a token we get back with its response.
    for (name, value, token) in
        [(&b"upper"[..], &b"hello"[..], "first"), (b"len", b"four", "second"), (b"nope", b"", "third")]
    {
        let id = client.start_call(name, value, token).expect("under the pending limit");
        println!("call {token:?} sent as request id {id}");
    }
    // A fire-and-forget request: the handler runs, nothing comes back.
    client.send_fire_and_forget(b"upper", b"ignored").unwrap();

    // "The network": client -> server.
    let wire = client.output().to_vec();
    client.advance_output(wire.len());
    println!("client wrote {} bytes (handshake + 4 requests, snappy-framed)", wire.len());
    server.received(&wire);
    server.process(&handler).expect("a well-formed stream");
    println!("server served {} requests", server.requests());

    // server -> client.
    let wire = server.output().to_vec();
    server.advance_output(wire.len());
    client.received(&wire);
    client
        .process(|resp, token| {
            println!("response to {token:?} (id {}): {:?}", resp.id, String::from_utf8_lossy(resp.value))
        })
        .expect("a well-formed stream");
    assert_eq!(client.pending_len(), 0);
}
