//! 1,000 quick connect/close cycles leave no descriptor behind, on every
//! backend. It counts the whole process's descriptors (`/proc/self/fd`),
//! which any other test running beside it would disturb.

#![cfg(target_os = "linux")]

use std::net::TcpStream;
use std::time::{Duration, Instant};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn connect_close_cycles_leak_no_descriptor() {
    let _turn = crate::alone();
    crate::each_demo_server(|kind, server| {
        let addr = server.local_addr();
        // Warm up (runtime threads, epoll instances...) before the baseline.
        drop(TcpStream::connect(addr).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while (server.stats().accepted < 1 || server.stats().open > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Its descriptors are closed just after the counters say so.
        std::thread::sleep(Duration::from_millis(50));
        let baseline = open_descriptors();
        for i in 0..1000 {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                // Half of them say something first.
                let _ = std::io::Write::write_all(&mut s, &[0, 1, 0]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // Connections still in the accept backlog are neither open nor ours yet: wait for all.
        while (server.stats().accepted < 1001 || server.stats().open > 0 || open_descriptors() > baseline)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(server.stats().open, 0, "{kind}: connections still open");
        assert_eq!(open_descriptors(), baseline, "{kind}: descriptors back to where they were");
        assert!(server.stats().accepted >= 1001, "{kind}");
    });
}
