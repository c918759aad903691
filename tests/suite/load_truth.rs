//! `fastwire load`, as a separate process, never reports a success it did
//! not have: against scripted servers on 127.0.0.1 that answer wrong,
//! answer what nobody asked, stop answering, or close, it exits non-zero
//! with a message that says so, and it says so at once.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::kit::frame::{demo_answer, read_handshake, read_request, response, PLAIN};
use crate::kit::scripted::Scripted;

/// How a scripted server behaves.
#[derive(Clone, Copy)]
enum Script {
    /// Answers right, as the demo service does.
    Right,
    /// Answers every call with a value the demo service would not give.
    Wrong,
    /// Answers right, each answer preceded by one for an id never asked.
    Unsolicited,
    /// Answers right, and closes the connection after this many calls.
    CloseAfter(usize),
    /// Reads the calls and never answers.
    Silent,
}

/// Serves one connection by `script`, until the client closes.
fn serve(stream: TcpStream, script: Script) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = BufWriter::new(stream);
    if read_handshake(&mut reader).is_none() || writer.write_all(&PLAIN).and_then(|()| writer.flush()).is_err() {
        return;
    }
    let mut calls = 0;
    while let Some((id, name, value)) = read_request(&mut reader) {
        calls += 1;
        let out = match script {
            Script::Right => response(id, &demo_answer(&name, &value)),
            Script::Wrong => response(id, b"not what the demo service says"),
            Script::Unsolicited => {
                [response(id ^ 0x8000_0000, b"nobody asked"), response(id, &demo_answer(&name, &value))].concat()
            }
            Script::CloseAfter(n) if calls > n => {
                // A graceful close (FIN), the client's later requests read
                // and dropped: closing with them unread would reset the
                // connection instead, and the client would see a reset.
                let _ = writer.flush();
                let _ = writer.get_ref().shutdown(std::net::Shutdown::Write);
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                return;
            }
            Script::CloseAfter(_) => response(id, &demo_answer(&name, &value)),
            Script::Silent => continue,
        };
        if writer.write_all(&out).is_err() {
            return;
        }
        // Flush once the calls read so far are answered.
        if reader.buffer().is_empty() && writer.flush().is_err() {
            return;
        }
    }
}

/// A scripted server that serves every connection by `script`.
fn scripted(script: Script) -> Scripted {
    Scripted::start(move |s| serve(s, script))
}

fn load(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastwire"))
        .args(["load", "--addr", &addr.to_string()])
        .args(args)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The clients this machine can run.
fn clients() -> Vec<&'static str> {
    ["std", "tokio", "mio", "glommio", "uring"]
        .into_iter()
        .filter(|c| match c.parse::<fastwire_bench::BackendKind>().unwrap().unavailable() {
            Some(why) => {
                eprintln!("skipped the {c} client: {why}");
                false
            }
            None => true,
        })
        .collect()
}

#[test]
fn a_right_server_passes_on_every_client_and_workload_shape() {
    let server = scripted(Script::Right);
    for client in clients() {
        let out = load(server.addr, &["--client", client, "--duration", "200ms", "--depth", "50"]);
        assert!(out.status.success(), "{client}: {}", said(&out));
    }
    // Echoes, the open loop and new connections per call check their replies too.
    for args in [
        &["--workload", "pingpong", "--duration", "200ms"][..],
        &["--workload", "conns", "--connections", "20", "--rate", "2000", "--duration", "200ms"],
        &["--workload", "handshakes", "--duration", "200ms"],
    ] {
        let out = load(server.addr, args);
        assert!(out.status.success(), "{args:?}: {}", said(&out));
    }
}

#[test]
fn wrong_answers_fail_the_run_unless_unchecked() {
    let server = scripted(Script::Wrong);
    for client in clients() {
        let out = load(server.addr, &["--client", client, "--duration", "200ms", "--depth", "10"]);
        assert!(!out.status.success(), "{client}: a wrong answer passed");
        assert!(
            said(&out).contains("not the demo service's answer") && said(&out).contains("--no-check"),
            "{client}: {}",
            said(&out)
        );
    }
    for args in [
        &["--workload", "conns", "--connections", "4", "--rate", "1000", "--duration", "200ms"][..],
        &["--workload", "handshakes", "--duration", "200ms"],
    ] {
        let out = load(server.addr, args);
        assert!(
            !out.status.success() && said(&out).contains("not the demo service's answer"),
            "{args:?}: {}",
            said(&out)
        );
    }
    // Another service's answers are its own business.
    let out = load(server.addr, &["--duration", "200ms", "--depth", "10", "--no-check"]);
    assert!(out.status.success(), "--no-check: {}", said(&out));
}

#[test]
fn unsolicited_responses_fail_the_run_and_are_reported() {
    let server = scripted(Script::Unsolicited);
    let json = std::env::temp_dir().join(format!("fastwire-load-unsolicited-{}.json", std::process::id()));
    for client in clients() {
        let out = load(
            server.addr,
            &["--client", client, "--duration", "200ms", "--depth", "10", "--json", json.to_str().unwrap()],
        );
        assert!(!out.status.success(), "{client}: unsolicited responses passed");
        assert!(said(&out).contains("for no call in progress"), "{client}: {}", said(&out));
        let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(rows[0]["unsolicited"].as_u64().unwrap() > 0, "{client}: {rows}");
    }
    let _ = std::fs::remove_file(&json);
}

#[test]
fn a_lost_connection_fails_the_run_at_once() {
    let server = scripted(Script::CloseAfter(500));
    for client in clients() {
        // Warm-up and window: 12.5 s. The run must end long before.
        let start = Instant::now();
        let out = load(server.addr, &["--client", client, "--duration", "10s", "--depth", "10"]);
        let took = start.elapsed();
        assert!(!out.status.success(), "{client}: a lost connection passed");
        assert!(said(&out).contains("the server closed the connection"), "{client}: {}", said(&out));
        assert!(took < Duration::from_secs(8), "{client}: the failure was reported after {took:?}");
    }
}

#[test]
fn a_server_that_never_answers_fails_the_run() {
    let server = scripted(Script::Silent);
    for client in clients() {
        let out =
            load(server.addr, &["--client", client, "--duration", "100ms", "--call-timeout", "1s", "--depth", "4"]);
        assert!(!out.status.success(), "{client}: a silent server passed");
        // The calls time out after the window; on a loaded machine the
        // callers may not have started one before the window closed. Either
        // verdict is the truth, and says so.
        let said = said(&out);
        assert!(said.contains("no response within 1s") || said.contains("no call completed"), "{client}: {said}");
    }
}
