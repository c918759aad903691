//! The provided buffer ring under pressure, over real TCP on 127.0.0.1: a
//! server whose loop has two 512-byte receive buffers, and eight clients
//! sending 100 KB values at once, so that the ring runs dry again and again
//! (the multishot receive ends with `ENOBUFS` and is armed again once the
//! loop has given its buffers back). Every echo must come back whole and
//! right; the loop must allocate nothing per call meanwhile is not asserted
//! here (see `tests/process/allocations.rs` of the workspace).

#![cfg(target_os = "linux")]

use std::time::Duration;

use fastwire_uring::proto::{ClientConfig, Request, ResponseWriter, ServerConfig};
use fastwire_uring::{Accept, Client, Options, Server};

fn echo(req: Request<'_>, resp: &mut ResponseWriter<'_>) {
    resp.extend_from_slice(req.value);
}

fn exchange(options: Options) {
    if let Err(why) = fastwire_uring::probe() {
        return eprintln!("skipped: {why}");
    }
    let options = Options { loops: 1, ..options };
    let server = Server::bind_with("127.0.0.1:0", ServerConfig::default(), options).unwrap().serve(echo).unwrap();
    let addr = server.local_addr();
    std::thread::scope(|s| {
        for c in 0..8u8 {
            s.spawn(move || {
                let client = Client::connect(addr, ClientConfig::default()).unwrap();
                let calls: Vec<_> = (0..4u8)
                    .map(|i| {
                        let value: Vec<u8> = (0..100_000u32).map(|b| (b as u8).wrapping_add(c * 4 + i)).collect();
                        (client.start_timeout(b"echo", &value, Duration::from_secs(20)).unwrap(), value)
                    })
                    .collect();
                for (call, value) in calls {
                    assert_eq!(&*call.wait().unwrap(), &value[..], "client {c}: the echo came back whole");
                }
                client.close();
            });
        }
    });
    let stats = server.stats();
    assert_eq!(stats.requests, 32);
    let report = server.shutdown(Duration::from_secs(5));
    assert_eq!(report.cut_off, 0, "{report}");
}

#[test]
fn a_ring_of_two_small_buffers_runs_dry_and_recovers() {
    exchange(Options { buffers: 2, buffer_size: 512, ..Options::default() });
}

#[test]
fn the_same_with_registered_files_and_a_round_robin_acceptor() {
    exchange(Options {
        buffers: 2,
        buffer_size: 512,
        fixed_files: true,
        accept: Accept::RoundRobin,
        ..Options::default()
    });
}
