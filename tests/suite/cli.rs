//! `fastwire serve`, as a separate process, answers a client written from
//! the wire specification alone, and shuts down cleanly on SIGINT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::kit::frame::{self, request};

/// `fastwire serve ARGS` as a child process; its stdout after the first line,
/// and the address that line names ("fastwire: serving on ADDR (backend NAME)").
fn serve(args: &[&str]) -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
    serve_logging(args, Stdio::null())
}

/// [`serve`], its log (stderr) going to `log`.
fn serve_logging(args: &[&str], log: Stdio) -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fastwire"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(3).unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
    (child, stdout, addr)
}

/// Whether `backend` can run on this machine (if not, says why: glommio
/// and uring need io_uring).
fn runs_here(backend: &str) -> bool {
    let why = backend.parse::<fastwire_bench::BackendKind>().unwrap().unavailable();
    if let Some(why) = &why {
        eprintln!("skipped {backend}: {why}");
    }
    why.is_none()
}

#[test]
fn serve_answers_a_spec_client_on_every_backend() {
    for backend in ["std", "tokio", "tokio-per-core", "mio", "mio-reuseport", "glommio", "uring"] {
        if !runs_here(backend) {
            continue;
        }
        let (mut child, mut stdout, addr) =
            serve(&["--backend", backend, "--addr", "127.0.0.1:0", "--sniff", "xy", "--version", "7"]);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Handshake: sniff header "xy", version 7, no compression, no TLS.
        s.write_all(b"xy\x07\x01\x00").unwrap();
        let mut theirs = [0u8; 5];
        s.read_exact(&mut theirs).unwrap();
        assert_eq!(&theirs, b"xy\x07\x01\x00", "{backend}");
        // Two pipelined calls and a fire-and-forget between them.
        let mut bytes = request(1, b"", b"foobar");
        bytes.extend(request(0, b"note", b"fire"));
        bytes.extend(request(2, b"echo", b"hello"));
        s.write_all(&bytes).unwrap();
        let (id, body) = frame::read_response(&mut s);
        assert_eq!((id, body.len()), (1, 261), "{backend}: the fastrpc benchmark body");
        assert!(body.starts_with(b"Hello world foobar"));
        assert_eq!(frame::read_response(&mut s), (2, b"re:hello".to_vec()), "{backend}");
        drop(s);

        // Ctrl-C: a graceful shutdown and exit code 0.
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{backend}: {status}");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("closed gracefully"), "{backend}: {rest:?}");
    }
}

/// `--handler-delay` answers after a wait without blocking the connection,
/// and `--concurrency 1 --over-limit reject` answers over the limit at once
/// with Go's kind of over-limit value.
#[test]
fn serve_with_a_waiting_handler_and_a_concurrency_limit() {
    for backend in ["std", "tokio", "mio", "glommio", "uring"] {
        if !runs_here(backend) {
            continue;
        }
        let (mut child, _stdout, addr) = serve(&[
            "--backend",
            backend,
            "--addr",
            "127.0.0.1:0",
            "--handler-delay",
            "200ms",
            "--handler-work",
            "10us",
            "--concurrency",
            "1",
            "--over-limit",
            "reject",
        ]);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        frame::handshake(&mut s);
        let started = std::time::Instant::now();
        let mut bytes = request(1, b"echo", b"slow");
        bytes.extend(request(2, b"echo", b"second"));
        s.write_all(&bytes).unwrap();
        // The second call is over the limit while the first waits: refused first.
        assert_eq!(frame::read_response(&mut s), (2, b"concurrency limit exceeded".to_vec()), "{backend}");
        assert_eq!(frame::read_response(&mut s), (1, b"re:slow".to_vec()), "{backend}");
        assert!(started.elapsed() >= Duration::from_millis(200), "{backend}: answered after its wait");
        drop(s);
        assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
        assert!(child.wait().unwrap().success(), "{backend}");
    }
}

/// `fastwire tls-certs`, `serve --tls-cert/--tls-key` and `load --tls
/// --tls-ca`, each a process of its own; a plaintext `load` is refused with
/// a message that names the setting.
#[test]
fn serve_and_load_over_tls() {
    let dir = std::env::temp_dir().join(format!("fastwire-cli-tls-{}", std::process::id()));
    let exe = env!("CARGO_BIN_EXE_fastwire");
    let made = Command::new(exe).args(["tls-certs", "--dir"]).arg(&dir).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    for backend in ["std", "mio", "tokio", "glommio", "uring"] {
        if !runs_here(backend) {
            continue;
        }
        let (mut child, mut stdout, addr) = serve_logging(
            &[
                "--backend",
                backend,
                "--addr",
                "127.0.0.1:0",
                "--tls-cert",
                &path("server.pem"),
                "--tls-key",
                &path("server.key"),
            ],
            Stdio::piped(),
        );
        // The log, read as it comes (a full pipe would stall the server),
        // each line also sent to the test as it arrives.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (lines, logged) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines.send(line.clone());
                text += &line;
                text.push('\n');
            }
            text
        });
        let load = |extra: &[&str]| {
            Command::new(exe)
                .args(["load", "--addr", &addr, "--workload", "pingpong", "--duration", "100ms", "--client", "std"])
                .args(extra)
                .output()
                .unwrap()
        };
        let ok = load(&["--tls", "--tls-ca", &path("ca.pem"), "--tls-server-name", "localhost"]);
        assert!(ok.status.success(), "{backend}: {}", String::from_utf8_lossy(&ok.stderr));
        assert!(String::from_utf8_lossy(&ok.stdout).contains("pingpong"), "{backend}");
        // The address's host (127.0.0.1) is in the certificate too.
        let by_ip = load(&["--tls", "--tls-ca", &path("ca.pem")]);
        assert!(by_ip.status.success(), "{backend}: {}", String::from_utf8_lossy(&by_ip.stderr));
        let plain = load(&[]);
        assert!(!plain.status.success(), "{backend}: a plaintext client is refused");
        let said = String::from_utf8_lossy(&plain.stderr);
        assert!(said.contains("requires TLS"), "{backend}: {said}");
        let wrong_name = load(&["--tls", "--tls-ca", &path("ca.pem"), "--tls-server-name", "elsewhere.test"]);
        let said = String::from_utf8_lossy(&wrong_name.stderr);
        assert!(!wrong_name.status.success() && said.contains("--tls-server-name"), "{backend}: {said}");
        // The client's alert reaches the server after the load has exited:
        // wait until the server has read it (a shutdown stops reading, and
        // the refusal would go uncounted on a loaded machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Ok(line) = logged.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            if line.contains("TLS handshake failed") {
                break;
            }
        }
        assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
        assert!(child.wait().unwrap().success(), "{backend}");
        // The server said, at its default log level, whom it refused and
        // why, and its shutdown report counts them by reason.
        let log = log.join().unwrap();
        assert!(log.contains("refused 127.0.0.1:") && log.contains("TLS"), "{backend}: {log}");
        let mut report = String::new();
        stdout.read_to_string(&mut report).unwrap();
        assert!(report.contains("plaintext client, TLS required"), "{backend}: {report}");
        assert!(report.contains("TLS handshake failed"), "{backend}: {report}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A log written to a pipe or a file is plain text (no colour codes), and
/// the tool lifts its soft limit on open files to the hard one and says so.
#[test]
fn serve_logs_plain_text_and_raises_the_open_file_limit() {
    let exe = env!("CARGO_BIN_EXE_fastwire");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" serve --backend mio --addr 127.0.0.1:0"#)
        .arg(exe)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("fastwire: serving on"), "{line:?}");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("serving") && !log.contains('\x1b'), "colour codes in a piped log: {log:?}");
    let hard = String::from_utf8(Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap().stdout).unwrap();
    if hard.trim() == "unlimited" || hard.trim().parse::<u64>().is_ok_and(|h| h > 256) {
        assert!(log.contains("raised the open-file limit from 256 to"), "{log}");
    }
}
