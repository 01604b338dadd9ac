//! A minimal client for the plugin socket: one POST, one JSON answer.
//!
//! It speaks exactly as dockerd does (no Content-Type, the plugin `Accept`
//! header), so whoever uses it exercises the same parsing path as Docker.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;

use crate::unix_http;

/// Status code and body of one call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "answer is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `Err` of a failed call, if any.
    pub fn err(&self) -> Option<String> {
        self.json()
            .ok()
            .and_then(|v| v.get("Err").and_then(|e| e.as_str()).map(str::to_string))
            .filter(|e| !e.is_empty())
    }
}

/// POSTs `body` to `path` on the plugin socket at `socket`.
pub async fn post(
    socket: &Path,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    tokio::time::timeout(timeout, post_inner(socket, path, body))
        .await
        .map_err(|_| {
            anyhow!(
                "{path} on {}: no answer within {timeout:?}",
                socket.display()
            )
        })?
}

async fn post_inner(socket: &Path, path: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
    let mut sender = unix_http::connect(socket).await?;
    let req = Request::post(path)
        .header("Host", "")
        .header("User-Agent", "Go-http-client/1.1")
        .header("Accept", "application/vnd.docker.plugins.v1.2+json")
        .body(Full::new(Bytes::from(body)))
        .context("build request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("read answer")?
        .to_bytes();
    Ok(Reply { status, body })
}
