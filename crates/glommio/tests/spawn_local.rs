//! Serving inside executors the application runs (`Server::spawn_local`),
//! beside the application's own tasks, with an `async` graceful shutdown;
//! one server per executor from `split`. Over TCP on loopback. Where
//! glommio cannot run, each test says why and skips.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fastwire_glommio::glommio::{LocalExecutorBuilder, Placement};
use fastwire_glommio::proto::{demo_handler, ClientConfig, ServerConfig};
use fastwire_glommio::{Accept, Client, Options, Server, IO_MEMORY};

fn glommio_runs() -> bool {
    match fastwire_glommio::probe() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// Waits (on the executor, without blocking it) for a message from another thread.
async fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    loop {
        if let Ok(value) = rx.try_recv() {
            return value;
        }
        fastwire_glommio::glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn serves_beside_the_applications_tasks_and_shuts_down_gracefully() {
    if !glommio_runs() {
        return;
    }
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            // The application's own task, which must keep running.
            let ticks = Rc::new(Cell::new(0u32));
            let ticker = fastwire_glommio::glommio::spawn_local({
                let ticks = Rc::clone(&ticks);
                async move {
                    loop {
                        ticks.set(ticks.get() + 1);
                        fastwire_glommio::glommio::timer::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
            .detach();
            let server = Server::bind_with(
                "127.0.0.1:0",
                ServerConfig::default(),
                Options { executors: 1, ..Options::default() },
            )
            .unwrap()
            .spawn_local_async(move |req, responder| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    fastwire_glommio::glommio::timer::sleep(Duration::from_millis(100)).await;
                    let _ = responder.respond(req.value());
                }
            })
            .unwrap();
            addr_tx.send(server.local_addr()).unwrap();
            recv(&stop_rx).await;
            let stats = server.stats();
            let report = server.shutdown(Duration::from_secs(5)).await;
            ticker.cancel();
            (report, stats, ticks.get())
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let client = Client::connect(addr, ClientConfig::default()).unwrap();
    assert_eq!(&*client.call(b"wait", b"first").unwrap(), b"first");
    // A call in flight when the shutdown starts is answered first.
    let slow = client.start(b"wait", b"in flight").unwrap();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop_tx.send(()).unwrap();
    assert_eq!(&*slow.wait().unwrap(), b"in flight");
    let (report, stats, ticks) = executor.join().unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!((report.cut_off, report.deferred_cut, report.responses_lost), (0, 0, 0), "{report}");
    assert!(ticks > 10, "the application's task ran beside the server ({ticks} ticks)");
}

#[test]
fn one_server_per_application_executor_from_split() {
    if !glommio_runs() {
        return;
    }
    let parts =
        Server::bind_with("127.0.0.1:0", ServerConfig::default(), Options { executors: 2, accept: Accept::ReusePort })
            .unwrap()
            .split();
    assert_eq!(parts.len(), 2);
    let addr = parts[0].local_addr().unwrap();
    assert_eq!(parts[1].local_addr().unwrap(), addr, "the same port, SO_REUSEPORT");
    let (stop_txs, executors): (Vec<_>, Vec<_>) = parts
        .into_iter()
        .map(|part| {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let executor = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(IO_MEMORY)
                .spawn(move || async move {
                    let server = part.spawn_local(demo_handler).unwrap();
                    recv(&stop_rx).await;
                    let served = server.stats().requests;
                    (server.shutdown(Duration::from_secs(2)).await, served)
                })
                .unwrap();
            (stop_tx, executor)
        })
        .unzip();
    // Many connections, so that the kernel hands some to each listener.
    let clients: Vec<Client> = (0..16).map(|_| Client::connect(addr, ClientConfig::default()).unwrap()).collect();
    for (i, client) in clients.iter().enumerate() {
        assert_eq!(&*client.call(b"echo", format!("{i}").as_bytes()).unwrap(), format!("re:{i}").as_bytes());
    }
    drop(clients);
    for tx in stop_txs {
        tx.send(()).unwrap();
    }
    let mut total = 0;
    for executor in executors {
        let (report, served) = executor.join().unwrap();
        assert_eq!(report.cut_off, 0, "{report}");
        total += served;
    }
    assert_eq!(total, 16, "every call served, by one executor or the other");
}

#[test]
fn a_listener_the_application_bound() {
    if !glommio_runs() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, ServerConfig::default()).unwrap().serve(demo_handler).unwrap();
    assert_eq!(server.local_addr(), addr);
    let client = Client::connect(addr, ClientConfig::default()).unwrap();
    assert_eq!(&*client.call(b"echo", b"mine").unwrap(), b"re:mine");
    server.shutdown(Duration::from_secs(1));
}
