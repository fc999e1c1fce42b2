//! The gateway's WebSocket: the HTTP upgrade, tungstenite for reading frames and for
//! control frames, and data frames written by hand.
//!
//! Why not tungstenite for everything: it formats each outgoing frame into an output
//! buffer that keeps the capacity of the largest frame ever sent, for the life of the
//! connection. A session's largest frames are its READY and GUILD_CREATEs (a big guild's
//! GUILD_CREATE is hundreds of KB), so every idle session would hold that much for
//! nothing. Data frames are instead written straight to the socket with one vectored
//! write (frame header, then the payload's parts as they are: a dispatch's `d` is never
//! copied into a frame). tungstenite still reads, answers pings and writes close frames;
//! its buffered output is flushed before each hand-written frame, so frames never
//! interleave.
//!
//! Served by [`crate::serve`], the upgraded connection is the TCP stream itself, and all
//! its writes (tungstenite's included) go through one [`Outbound`] that the hub can
//! write dispatches to as well (`outbound.rs`, `hub.rs`).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::outbound::{Outbound, TcpConn};

/// A WebSocket upgrade request that can be accepted.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    key: HeaderValue,
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl Upgrade {
    /// The upgrade `request` asks for, if it is a valid HTTP/1.1 WebSocket handshake
    /// (RFC 6455 section 4.2.1).
    pub fn from_request(request: &mut axum::extract::Request) -> Option<Upgrade> {
        if request.version() != Version::HTTP_11 || request.method() != Method::GET {
            return None;
        }
        let headers = request.headers();
        if !header_has_token(headers, header::CONNECTION, "upgrade")
            || !header_has_token(headers, header::UPGRADE, "websocket")
            || headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_none_or(|v| v.as_bytes() != b"13")
        {
            return None;
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?.clone();
        let on_upgrade = request.extensions_mut().remove::<OnUpgrade>()?;
        Some(Upgrade { on_upgrade, key })
    }

    /// Answers 101 and runs `session` on the socket once the connection is switched.
    pub fn accept<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "gateway upgrade failed");
                    return;
                }
            };
            // Served by `crate::serve`, the connection is a plain TCP stream that the
            // hub can write to as well (`outbound.rs`); otherwise (another server loop)
            // only the session's task writes.
            let (io, out) = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    let conn = TcpConn::new(parts.io.into_inner(), parts.read_buf);
                    let out = conn.outbound().clone();
                    (Io::Tcp(conn), Some(out))
                }
                Err(upgraded) => (Io::Other(TokioIo::new(upgraded)), None),
            };
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            // Boxed: the task's own future then stays small (the upgrade's states), and
            // the session's is allocated at its own size instead of inside the task's.
            Box::pin(session(Socket { ws, out })).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(axum::body::Body::empty())
            .unwrap_or_default()
    }
}

/// What a client sent.
pub enum Incoming {
    /// A text or binary message's payload.
    Data(bytes::Bytes),
    /// A close frame, with its code (1005 when it carried none).
    Close(u16),
}

/// Data frame kinds.
#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    Binary,
}

pub use super::outbound::Broken;

/// The upgraded connection under tungstenite.
enum Io {
    /// A TCP stream whose writes go through an [`Outbound`].
    Tcp(TcpConn),
    /// Any other upgraded connection.
    Other(TokioIo<Upgraded>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(c) => Pin::new(c).poll_read(cx, buf),
            Io::Other(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(c) => Pin::new(c).poll_write(cx, buf),
            Io::Other(c) => Pin::new(c).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Io::Other(c) => Pin::new(c).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(c) => c.is_write_vectored(),
            Io::Other(c) => c.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(c) => Pin::new(c).poll_flush(cx),
            Io::Other(c) => Pin::new(c).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(c) => Pin::new(c).poll_shutdown(cx),
            Io::Other(c) => Pin::new(c).poll_shutdown(cx),
        }
    }
}

/// One upgraded gateway connection.
pub struct Socket {
    ws: WebSocketStream<Io>,
    /// The connection's shared writer, when it has one (see [`Io::Tcp`]).
    out: Option<Arc<Outbound>>,
}

/// The header of an unmasked, final frame (server to client) of `len` payload bytes.
pub(crate) fn frame_header(kind: Kind, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80
        | match kind {
            Kind::Text => 0x1,
            Kind::Binary => 0x2,
        };
    let used = if len < 126 {
        h[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, used)
}

impl Socket {
    /// The next message from the client; `Err` when the connection is gone or broke
    /// the protocol. Pings are answered (by tungstenite) and skipped.
    pub async fn recv(&mut self) -> Result<Incoming, Broken> {
        loop {
            match self.ws.next().await {
                None | Some(Err(_)) => return Err(Broken),
                Some(Ok(Message::Text(t))) => return Ok(Incoming::Data(t.into())),
                Some(Ok(Message::Binary(b))) => return Ok(Incoming::Data(b)),
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Incoming::Close(frame.map_or(1005, |f| f.code.into())))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }

    /// The connection's shared writer, through which others may send frames too.
    pub fn outbound(&self) -> Option<&Arc<Outbound>> {
        self.out.as_ref()
    }

    /// Sends one data frame whose payload is `parts` in order, in one vectored write.
    pub async fn send(&mut self, kind: Kind, parts: &[&[u8]]) -> Result<(), Broken> {
        // Whatever tungstenite has buffered (a pong) goes first, whole.
        self.ws.flush().await.map_err(|_| Broken)?;
        if let Some(out) = &self.out {
            out.write_frame(kind, parts)?;
            return out.flushed().await;
        }
        let len = parts.iter().map(|p| p.len()).sum();
        let (header, used) = frame_header(kind, len);
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
        slices.push(IoSlice::new(&header[..used]));
        slices.extend(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p)),
        );
        let mut slices = &mut slices[..];
        let io = self.ws.get_mut();
        while !slices.is_empty() {
            let n = io.write_vectored(slices).await.map_err(|_| Broken)?;
            if n == 0 {
                return Err(Broken);
            }
            IoSlice::advance_slices(&mut slices, n);
        }
        io.flush().await.map_err(|_| Broken)
    }

    /// Sends a close frame and closes the connection.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        // A close reply tungstenite queued (the client closed first) goes out; otherwise
        // ours does, and tungstenite then waits for the client's reply.
        let _ = self.ws.flush().await;
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_encoding() {
        let (h, n) = frame_header(Kind::Text, 125);
        assert_eq!(&h[..n], &[0x81, 125]);
        let (h, n) = frame_header(Kind::Binary, 126);
        assert_eq!(&h[..n], &[0x82, 126, 0, 126]);
        let (h, n) = frame_header(Kind::Text, 65_535);
        assert_eq!(&h[..n], &[0x81, 126, 0xff, 0xff]);
        let (h, n) = frame_header(Kind::Text, 65_536);
        assert_eq!(&h[..n], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
