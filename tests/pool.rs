//! The pool over TCP: 20 callers arriving together on a pool of up to 8
//! connections spread over all 8 (the handles it gives out count as busy
//! until dropped), every call answered, and the server sees 8 connections.
//! With a higher spread threshold the same callers share fewer connections.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use fastwire::fastwire_std::{Pool, Server};
use fastwire::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_common::Pool as AnyPool;

fn twenty_callers(pool: &Pool, addr: std::net::SocketAddr) {
    let barrier = Arc::new(Barrier::new(20));
    thread::scope(|s| {
        for t in 0..20 {
            let barrier = Arc::clone(&barrier);
            s.spawn(move || {
                // Pick a connection, then wait until all 20 have picked, so
                // that they really are concurrent when they choose.
                let client = pool.client(addr);
                barrier.wait();
                for i in 0..50 {
                    let value = format!("{t}/{i}");
                    assert_eq!(&*client.call(b"echo", value.as_bytes()).unwrap(), format!("re:{value}").as_bytes());
                }
            });
        }
    });
}

#[test]
fn twenty_concurrent_callers_open_all_eight_connections() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().serve(demo_handler).unwrap();
    let addr = server.local_addr();
    let pool = Pool::new(ClientConfig::default(), 8);
    twenty_callers(&pool, addr);
    assert_eq!(pool.len(addr), 8, "spread over every connection allowed");
    assert_eq!(server.stats().accepted, 8);
    assert_eq!(server.stats().requests, 20 * 50);
    pool.close();
    server.shutdown(Duration::from_secs(5));
}

#[test]
fn a_higher_spread_threshold_keeps_calls_on_fewer_connections() {
    let server = Server::bind("127.0.0.1:0", ServerConfig::default()).unwrap().serve(demo_handler).unwrap();
    let addr = server.local_addr();
    // A new connection only while every one has 10 callers: 20 callers, 2.
    let pool: Pool = AnyPool::with_spread(ClientConfig::default(), 8, 10);
    twenty_callers(&pool, addr);
    assert_eq!(pool.len(addr), 2);
    assert_eq!(server.stats().accepted, 2);
    pool.close();
    server.shutdown(Duration::from_secs(5));
}
