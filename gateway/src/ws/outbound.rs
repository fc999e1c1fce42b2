//! A gateway connection's outgoing bytes, shared by the session's task and the hub.
//!
//! Every byte sent on the connection goes through one [`Outbound`]: the session's own
//! frames, tungstenite's control frames (pongs, close) through [`TcpConn`]'s
//! `AsyncWrite`, and the dispatches the hub writes itself while the session's task is
//! idle (`hub.rs`, `Lane`). A frame is taken whole or not at all: it is written at once
//! with a non-blocking vectored write when nothing is waiting before it, and whatever the
//! socket does not take is queued, in order, and written by a task that waits for the
//! socket to be writable. So frames never interleave, and whoever sends never waits for a
//! slow client while holding anything.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::socket::{frame_header, Kind};

/// Most bytes queued for a client before its connection is given up as too slow.
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// The connection is broken (or its client too slow) and takes nothing more.
#[derive(Debug, Clone, Copy)]
pub struct Broken;

#[derive(Default)]
struct State {
    /// Bytes accepted and not yet written, oldest first.
    pending: VecDeque<u8>,
    /// A task is waiting to write `pending`.
    draining: bool,
    broken: bool,
}

/// The write side of one gateway TCP connection.
pub struct Outbound {
    stream: Arc<TcpStream>,
    state: Mutex<State>,
    /// Signalled when `pending` empties or the connection breaks.
    drained: Notify,
}

impl Outbound {
    pub fn new(stream: Arc<TcpStream>) -> Arc<Outbound> {
        Arc::new(Outbound {
            stream,
            state: Mutex::default(),
            drained: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one WebSocket data frame whose payload is `parts` in order (the frame's
    /// header is put before them), as [`Outbound::write`] takes bytes.
    pub fn write_frame(self: &Arc<Self>, kind: Kind, parts: &[&[u8]]) -> Result<(), Broken> {
        let (header, used) = frame_header(kind, parts.iter().map(|p| p.len()).sum());
        self.write_parts(&header[..used], parts)
    }

    /// Takes `bytes` whole: written at once if the socket takes them, otherwise (the
    /// rest of them) queued behind what is already waiting. Never blocks.
    pub fn write(self: &Arc<Self>, bytes: &[u8]) -> Result<(), Broken> {
        self.write_parts(bytes, &[])
    }

    /// `first` then `rest`, taken whole (see [`Outbound::write`]).
    fn write_parts(self: &Arc<Self>, first: &[u8], rest: &[&[u8]]) -> Result<(), Broken> {
        let parts = || std::iter::once(first).chain(rest.iter().copied());
        let mut state = self.state();
        if state.broken {
            return Err(Broken);
        }
        let mut skip = 0usize;
        if state.pending.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = parts()
                .filter(|p| !p.is_empty())
                .map(IoSlice::new)
                .collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                match self.stream.try_write_vectored(slices) {
                    Ok(0) => return Err(self.break_(&mut state)),
                    Ok(n) => {
                        skip += n;
                        IoSlice::advance_slices(&mut slices, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(self.break_(&mut state)),
                }
            }
        }
        let total: usize = parts().map(<[u8]>::len).sum();
        if skip == total {
            return Ok(());
        }
        // Queue what the socket did not take.
        for part in parts() {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            state.pending.extend(&part[skip..]);
            skip = 0;
        }
        if state.pending.len() > MAX_PENDING {
            return Err(self.break_(&mut state));
        }
        if !state.draining {
            state.draining = true;
            tokio::spawn(self.clone().drain());
        }
        Ok(())
    }

    fn break_(&self, state: &mut State) -> Broken {
        state.broken = true;
        state.pending = VecDeque::new();
        self.drained.notify_waiters();
        Broken
    }

    /// Writes what `pending` holds without waiting; `Ok(true)` once it is empty.
    fn write_pending(&self, state: &mut State) -> Result<bool, Broken> {
        while !state.pending.is_empty() {
            let (front, _) = state.pending.as_slices();
            match self.stream.try_write(front) {
                Ok(0) => return Err(self.break_(state)),
                Ok(n) => {
                    state.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(self.break_(state)),
            }
        }
        if state.pending.capacity() > 64 * 1024 {
            state.pending = VecDeque::new();
        }
        Ok(true)
    }

    /// The queue's writer: waits for the socket to take more until the queue is empty.
    async fn drain(self: Arc<Self>) {
        loop {
            let writable = self.stream.writable().await;
            let mut state = self.state();
            if writable.is_err() {
                self.break_(&mut state);
                state.draining = false;
                return;
            }
            match self.write_pending(&mut state) {
                Ok(false) => continue,
                Ok(true) | Err(Broken) => {
                    state.draining = false;
                    drop(state);
                    self.drained.notify_waiters();
                    return;
                }
            }
        }
    }

    /// Waits until everything accepted so far has been written to the socket.
    pub async fn flushed(&self) -> Result<(), Broken> {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if state.broken {
                    return Err(Broken);
                }
                if state.pending.is_empty() {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            {
                let mut state = self.state();
                match self.write_pending(&mut state) {
                    Ok(true) => return Poll::Ready(Ok(())),
                    Ok(false) => {}
                    Err(Broken) => return Poll::Ready(Err(broken_pipe())),
                }
            }
            ready!(self.stream.poll_write_ready(cx))?;
        }
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "gateway connection broken")
}

/// The upgraded TCP connection as tungstenite sees it: reads straight from the socket
/// (after any bytes hyper had already read), writes through the [`Outbound`].
pub struct TcpConn {
    stream: Arc<TcpStream>,
    /// Bytes read from the socket before the upgrade.
    prefix: Bytes,
    out: Arc<Outbound>,
}

impl TcpConn {
    pub fn new(stream: TcpStream, prefix: Bytes) -> TcpConn {
        let stream = Arc::new(stream);
        // `prefix` is a slice of hyper's read buffer (8 KB or more), which it would keep
        // alive for the connection's life even when empty: copy out what matters.
        let prefix = match prefix.is_empty() {
            true => Bytes::new(),
            false => Bytes::copy_from_slice(&prefix),
        };
        TcpConn {
            out: Outbound::new(stream.clone()),
            stream,
            prefix,
        }
    }

    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.out
    }
}

impl AsyncRead for TcpConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TcpConn {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.out.write(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(Broken) => Poll::Ready(Err(broken_pipe())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_flushed(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything queued goes out; the socket itself closes when the connection's
        // last handle is dropped.
        self.out.poll_flushed(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair (server end, client end) with small kernel buffers, so that a
    /// client that does not read fills them quickly.
    pub(crate) async fn pair() -> (TcpStream, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(16 * 1024).unwrap();
        let (client, accepted) = tokio::join!(client.connect(addr), listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    fn frame(i: u32) -> Vec<u8> {
        // Frames of different lengths, each recognisable.
        let len = 100 + (i as usize * 37) % 9000;
        let mut f = i.to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n((i % 251) as u8, len));
        f
    }

    #[tokio::test]
    async fn frames_written_from_two_places_arrive_whole_and_in_order_past_a_full_socket() {
        let (server, mut client) = pair().await;
        let out = Outbound::new(Arc::new(server));
        // The client reads nothing yet: the socket fills and the rest queues.
        let mut expected = Vec::new();
        for i in 0..400u32 {
            let f = frame(i);
            let (a, b) = f.split_at(f.len() / 3);
            // Half the frames from another task, as the hub writes while the session waits.
            if i % 2 == 0 {
                out.write_parts(a, &[b]).unwrap();
            } else {
                let out = out.clone();
                let (a, b) = (a.to_vec(), b.to_vec());
                tokio::spawn(async move { out.write_parts(&a, &[&b]).unwrap() })
                    .await
                    .unwrap();
            }
            expected.extend_from_slice(&f);
        }
        assert!(
            !out.state().pending.is_empty(),
            "the test must fill the socket to mean anything"
        );
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "bytes differ from the frames in order");
        });
        tokio::time::timeout(Duration::from_secs(30), out.flushed())
            .await
            .expect("drained")
            .unwrap();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_reads_breaks_the_connection_instead_of_growing_it() {
        let (server, _client) = pair().await;
        let out = Outbound::new(Arc::new(server));
        let chunk = vec![7u8; 64 * 1024];
        let mut broke = false;
        // Enough to fill both ends' kernel buffers and the queue.
        for _ in 0..(2 * MAX_PENDING / chunk.len()) {
            if out.write(&chunk).is_err() {
                broke = true;
                break;
            }
        }
        assert!(broke, "the queue grew past MAX_PENDING");
        assert!(
            out.state().pending.is_empty(),
            "a broken connection keeps nothing"
        );
        assert!(out.flushed().await.is_err());
        assert!(out.write(b"more").is_err());
    }

    #[tokio::test]
    async fn tungstenite_side_reads_what_hyper_had_read_first_then_the_socket() {
        let (server, mut client) = pair().await;
        let mut conn = TcpConn::new(server, Bytes::from_static(b"early "));
        client.write_all(b"late").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"early late");
        // Writes through the connection reach the client.
        conn.write_all(b"pong").await.unwrap();
        conn.flush().await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
