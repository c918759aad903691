//! The protocol crate alone, no sockets: what one fastrpc benchmark message
//! costs to decode and encode, so that we know the codec is not what limits
//! fastwire (the whole loopback exchange floor is about 150 to 170 ns/op).
//!
//! The workload is fastrpc's own benchmark: request name empty, value
//! `foobar` (18 bytes on the wire); response the 261-byte body (269 bytes on
//! the wire). Throughput is the 261-byte body in decimal MB/s, as fastrpc
//! counts it; time is per message.
//!
//! * `codec/functions`: the bare codec functions (`decode_request` then
//!   `encode_response` into a reused buffer; the client's `encode_request`
//!   then `decode_response`).
//! * `codec/server` and `codec/client`: the full state machines per message,
//!   in batches of 1000 as they arrive on a busy connection (copying the
//!   input in as a socket read would, handler, pending-id table, output
//!   drain), for each compression.
//!
//! Run: `cargo bench --bench codec` (or `just bench-codec`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastwire::proto::codec::{decode_request, decode_response, encode_request, encode_response};
use fastwire::proto::driver::Connection;
use fastwire::proto::{
    demo_handler, ClientConfig, ClientConn, Compression, Limits, ProtocolConfig, ServerConfig, ServerConn,
    FASTRPC_BENCH_BODY, FASTRPC_BENCH_VALUE,
};

const BATCH: u64 = 1000;

fn functions(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("codec/functions");
    group.throughput(Throughput::BytesDecimal(FASTRPC_BENCH_BODY.len() as u64));

    let mut request = Vec::new();
    encode_request(&mut request, 1, b"", FASTRPC_BENCH_VALUE, &limits).unwrap();
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("server: decode request + encode response", |b| {
        b.iter(|| {
            let (req, used) = decode_request(black_box(&request), &limits).unwrap().unwrap();
            encode_response(&mut out, req.id, FASTRPC_BENCH_BODY, &limits).unwrap();
            black_box((used, out.len()));
            out.clear();
        })
    });

    let mut response = Vec::new();
    encode_response(&mut response, 1, FASTRPC_BENCH_BODY, &limits).unwrap();
    group.bench_function("client: encode request + decode response", |b| {
        b.iter(|| {
            encode_request(&mut out, 1, b"", black_box(FASTRPC_BENCH_VALUE), &limits).unwrap();
            let (resp, used) = decode_response(black_box(&response), &limits).unwrap().unwrap();
            black_box((resp.value.len(), used, out.len()));
            out.clear();
        })
    });
    group.finish();
}

fn protocol(compression: Compression) -> ProtocolConfig {
    ProtocolConfig { compression, ..ProtocolConfig::default() }
}

/// `iters` messages through a server state machine, in batches of BATCH.
fn server_messages(compression: Compression, iters: u64) -> Duration {
    // What a client sends for BATCH calls, compressed as that client would.
    let mut client: ClientConn<()> = ClientConn::new(&ClientConfig {
        protocol: protocol(compression),
        max_pending: BATCH as usize,
        ..Default::default()
    });
    let handshake_len = client.output().len();
    client.advance_output(handshake_len);
    let handshake = [0, compression.wire_value(), 0];
    let mut server = ServerConn::new(&ServerConfig { protocol: protocol(compression), ..Default::default() });
    server.received(&handshake);
    server.process(&demo_handler).unwrap();
    let n = server.output().len();
    server.advance_output(n);

    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let batch = BATCH.min(iters - done);
        // Encoding the requests (and compressing them) is the client's cost, not timed here.
        for _ in 0..batch {
            client.start_call(b"", FASTRPC_BENCH_VALUE, ()).unwrap();
        }
        client.drain_pending().for_each(drop);
        let input = client.output().to_vec();
        client.advance_output(input.len());

        let start = Instant::now();
        server.received(&input);
        server.process(&demo_handler).unwrap();
        let out = server.output();
        black_box(out.len());
        let n = out.len();
        server.advance_output(n);
        elapsed += start.elapsed();
        done += batch;
    }
    elapsed
}

/// `iters` calls through a client state machine, in batches of BATCH.
fn client_messages(compression: Compression, iters: u64) -> Duration {
    let mut client: ClientConn<u32> = ClientConn::new(&ClientConfig {
        protocol: protocol(compression),
        max_pending: BATCH as usize,
        ..Default::default()
    });
    let n = client.output().len();
    client.advance_output(n);
    // The server's side, to produce BATCH responses compressed as it would.
    let mut server = ServerConn::new(&ServerConfig { protocol: protocol(compression), ..Default::default() });
    let mut elapsed = Duration::ZERO;
    let mut first = true;
    let mut done = 0;
    while done < iters {
        let batch = BATCH.min(iters - done);
        let start = Instant::now();
        for i in 0..batch as u32 {
            client.start_call(b"", FASTRPC_BENCH_VALUE, i).unwrap();
        }
        let requests = client.output().to_vec();
        client.advance_output(requests.len());
        elapsed += start.elapsed();

        if first {
            server.received(&[0, compression.wire_value(), 0]);
            first = false;
        }
        server.received(&requests);
        server.process(&demo_handler).unwrap();
        let responses = server.output().to_vec();
        server.advance_output(responses.len());

        let start = Instant::now();
        client.received(&responses);
        let mut completed = 0u32;
        client.process(|resp, token| completed += black_box(token) + resp.value.len() as u32).unwrap();
        elapsed += start.elapsed();
        assert_eq!(client.pending_len(), 0);
        black_box(completed);
        done += batch;
    }
    elapsed
}

fn state_machines(c: &mut Criterion) {
    for (side, run) in [
        ("codec/server", server_messages as fn(Compression, u64) -> Duration),
        ("codec/client", client_messages as fn(Compression, u64) -> Duration),
    ] {
        let mut group = c.benchmark_group(side);
        group.throughput(Throughput::BytesDecimal(FASTRPC_BENCH_BODY.len() as u64));
        for compression in [Compression::None, Compression::Snappy, Compression::Flate] {
            group.bench_with_input(BenchmarkId::new("per message", compression), &compression, |b, &c| {
                b.iter_custom(|iters| run(c, iters))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = functions, state_machines
}
criterion_main!(benches);
