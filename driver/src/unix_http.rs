//! HTTP/1.1 over a unix socket: the one way the driver's clients connect.
//!
//! In: a socket path (the plugin socket for [`crate::api::client`], the
//! Docker API for the health gate's client). Out: a connection ready for
//! requests, its connection task spawned on the runtime. What to send and
//! how long to wait is the caller's.

use std::path::Path;

use anyhow::Context;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// An HTTP/1.1 connection to the unix socket at `socket`, its connection
/// task spawned, ready for requests with bodies of type `B`.
pub async fn connect<B>(socket: &Path) -> anyhow::Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {}", socket.display()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
