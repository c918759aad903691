//! A tokio task per connection: the thread-per-connection server again,
//! with `async` reads and writes on a work-stealing runtime.
//!
//! The code reads like [`threads`](crate::threads), and that is the point
//! of `async`: where the thread would sleep in `read`, the task returns
//! `Pending` to the runtime, which polls it again when epoll says the
//! socket is readable. A few worker threads run every connection's task.

use std::io;
use std::net::TcpListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Conn;

// ANCHOR: serve
/// Serves `listener` on a multi-threaded tokio runtime, forever.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_io().build()?;
    runtime.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _peer) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = connection(stream).await; // an error ends this task only
            });
        }
    })
}

async fn connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = stream.read(&mut buf).await?; // Pending until readable
        if n == 0 {
            return Ok(());
        }
        conn.answer(&buf[..n], &mut out)?;
        stream.write_all(&out).await?; // Pending while the send buffer is full
        out.clear();
    }
}
// ANCHOR_END: serve
