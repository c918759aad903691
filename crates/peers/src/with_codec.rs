//! The echo people write by hand on tokio: tokio-util's
//! `LengthDelimitedCodec` for framing, and the rest as its documentation
//! and tokio's tutorial suggest.
//!
//! A request frame is a 4-byte request id, a 1-byte name length, the name
//! and the value; a reply frame the id and the answer. The client keeps
//! its pending calls in a mutex-guarded map from id to a oneshot sender; a
//! writer task takes request frames from an unbounded channel and flushes
//! once per batch it finds waiting; a reader task completes the calls. The
//! server answers every frame of a read batch, then flushes once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// The longest name a request frame carries (its length is one byte).
pub const MAX_NAME: usize = u8::MAX as usize;

/// Accepts connections until the runtime stops, a task per connection.
pub(crate) async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        tokio::spawn(connection(stream));
    }
}

/// Answers the frames of each read batch, then flushes once.
async fn connection(stream: TcpStream) -> io::Result<()> {
    let (read, write) = stream.into_split();
    let mut frames = FramedRead::new(read, LengthDelimitedCodec::new()).ready_chunks(1024);
    let mut replies = FramedWrite::new(write, LengthDelimitedCodec::new());
    while let Some(batch) = frames.next().await {
        for frame in batch {
            let mut frame = frame?;
            if frame.len() < 5 || frame.len() < 5 + usize::from(frame[4]) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a request frame shorter than its header"));
            }
            let id = frame.get_u32();
            let name_len = usize::from(frame.get_u8());
            let answer = crate::answer(&frame[..name_len], &frame[name_len..]);
            let mut reply = BytesMut::with_capacity(4 + answer.len());
            reply.put_u32(id);
            reply.put_slice(&answer);
            replies.feed(reply.freeze()).await?;
        }
        SinkExt::<Bytes>::flush(&mut replies).await?;
    }
    Ok(())
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Bytes>>>>;

/// A connection to the codec echo: a writer and a reader task, and the
/// map of pending calls between them.
#[derive(Clone, Debug)]
pub struct Client {
    requests: mpsc::UnboundedSender<Bytes>,
    pending: Pending,
    next_id: Arc<AtomicU32>,
    tasks: Arc<[tokio::task::AbortHandle; 2]>,
}

impl Client {
    /// Connects and starts the writer and reader tasks.
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (requests, queue) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let writer = tokio::spawn(write_requests(FramedWrite::new(write, LengthDelimitedCodec::new()), queue));
        let reader = tokio::spawn(read_replies(FramedRead::new(read, LengthDelimitedCodec::new()), pending.clone()));
        let tasks = Arc::new([writer.abort_handle(), reader.abort_handle()]);
        Ok(Client { requests, pending, next_id: Arc::default(), tasks })
    }

    /// One call: a pending entry, a frame to the writer, the reply awaited.
    pub async fn call(&self, name: &[u8], value: &[u8]) -> io::Result<Bytes> {
        let name_len = u8::try_from(name.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("a name longer than {MAX_NAME} bytes")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, reply) = oneshot::channel();
        self.pending.lock().expect("pending map poisoned").insert(id, done);
        let mut frame = BytesMut::with_capacity(5 + name.len() + value.len());
        frame.put_u32(id);
        frame.put_u8(name_len);
        frame.put_slice(name);
        frame.put_slice(value);
        if self.requests.send(frame.freeze()).is_err() {
            self.pending.lock().expect("pending map poisoned").remove(&id);
            return Err(closed());
        }
        reply.await.map_err(|_| closed())
    }

    /// Stops both tasks: calls in flight fail.
    pub fn close(&self) {
        self.tasks.iter().for_each(tokio::task::AbortHandle::abort);
        self.pending.lock().expect("pending map poisoned").clear();
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the codec echo's connection closed")
}

/// Writes what callers queued, one flush per batch found waiting.
async fn write_requests(
    mut frames: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
) -> io::Result<()> {
    while let Some(frame) = queue.recv().await {
        frames.feed(frame).await?;
        while let Ok(frame) = queue.try_recv() {
            frames.feed(frame).await?;
        }
        SinkExt::<Bytes>::flush(&mut frames).await?;
    }
    Ok(())
}

/// Completes each call whose reply arrives; at the end of the stream the
/// calls still pending fail (their senders are dropped).
async fn read_replies(
    mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
    pending: Pending,
) -> io::Result<()> {
    let result = async {
        while let Some(frame) = frames.next().await {
            let mut frame = frame?;
            if frame.len() < 4 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a reply frame shorter than its id"));
            }
            let id = frame.get_u32();
            if let Some(done) = pending.lock().expect("pending map poisoned").remove(&id) {
                let _ = done.send(frame.freeze());
            }
        }
        Ok(())
    }
    .await;
    pending.lock().expect("pending map poisoned").clear();
    result
}
