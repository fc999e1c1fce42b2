//! The HTTP server loop: accepts TCP connections and serves the router over HTTP/1.1 with
//! upgrades, as `axum::serve` does, but with hyper's HTTP/1 connection directly, so that
//! an upgraded gateway connection is the `TcpStream` itself (`ws/socket.rs` takes it
//! back with `Upgraded::downcast`, which `axum::serve`'s protocol-sniffing wrapper does
//! not allow). Discord's clients speak HTTP/1.1; there is no HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long connections still being served may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// (for at most [`DRAIN`]). Each request carries `ConnectInfo<SocketAddr>` (the peer).
/// Accepted sockets get `TCP_NODELAY`: a dispatch is one write and must leave at once,
/// not wait (Nagle) for the ACK of the previous one, which delayed ACKs hold back for up
/// to 40 ms.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // Finished connections' results are not kept.
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(tcp, peer, app.clone(), stop_rx.clone()));
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    let stopping = async move {
        // An error means the server loop is gone: stop too.
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}
