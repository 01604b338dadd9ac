//! The emulator's plugin client: POSTs to a host's driver socket the way
//! dockerd's plugin client makes them: retried while the socket is briefly
//! gone, with failures of Leave, DeleteEndpoint, Revoke and OperInfo only
//! printed, as dockerd only logs them.
//!
//! In: a host of the [`World`], a method and its body. Out: the driver's
//! JSON answer, or an error naming the method and the host. Owns the
//! timeouts and the retry; free of the emulator's state, so several hosts
//! can be served from several threads, each with its own runtime.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::topology::World;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// dockerd's plugin client retries a socket that is not there (yet) for 30 s,
/// waiting 1, 2, 4, 8, ... s between tries.
const PLUGIN_RETRY_FOR: Duration = Duration::from_secs(30);

/// The requests whose failure dockerd only logs.
pub(super) const IGNORED_FAILURES: &[&str] = &[
    "Leave",
    "DeleteEndpoint",
    "RevokeExternalConnectivity",
    "EndpointOperInfo",
];

/// Whether an error says the plugin socket is absent or refuses connections
/// (dockerd retries those), as opposed to an answer or a timeout.
fn socket_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        })
    })
}

/// One POST, retried like dockerd's plugin client while the socket is gone.
/// Free of the emulator's state, so that several hosts can be served from
/// several threads, each with its own runtime.
pub(super) fn post(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    path: &str,
    body: Option<&Value>,
) -> Result<ipvlan_bgp::api::client::Reply> {
    let sock = w.hosts[host].socket();
    let bytes = match body {
        Some(b) => {
            let mut v = serde_json::to_vec(b)?;
            v.push(b'\n');
            v
        }
        None => Vec::new(),
    };
    let started = std::time::Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        match rt.block_on(ipvlan_bgp::api::client::post(
            &sock,
            path,
            bytes.clone(),
            CALL_TIMEOUT,
        )) {
            Err(e) if socket_gone(&e) && started.elapsed() + wait < PLUGIN_RETRY_FOR => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other.with_context(|| format!("{path} on {}", w.hosts[host].def.name)),
        }
    }
}

/// A `NetworkDriver.*` request to a host whose plugin is activated.
pub(super) fn call_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) -> Result<Value> {
    let reply = post(
        rt,
        w,
        host,
        &format!("/NetworkDriver.{method}"),
        Some(&body),
    )?;
    if let Some(e) = reply.err() {
        bail!("{method} on {}: {e}", w.hosts[host].def.name);
    }
    if reply.status != 200 {
        bail!(
            "{method} on {}: HTTP {}",
            w.hosts[host].def.name,
            reply.status
        );
    }
    reply.json()
}

/// A call whose failure dockerd only logs: printed, then ignored.
pub(super) fn call_lenient_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) {
    debug_assert!(IGNORED_FAILURES.contains(&method));
    if let Err(e) = call_on(rt, w, host, method, body) {
        eprintln!(
            "[emulator] {method} on {}: failed: {e:#} (ignored, as dockerd does)",
            w.hosts[host].def.name
        );
    }
}

/// An `IpamDriver.*` request: the answer, or the error as dockerd shows it
/// (`IpamDriver.RequestAddress: <the driver's text>`).
pub(super) fn ipam_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) -> Result<Value> {
    let reply = post(rt, w, host, &format!("/IpamDriver.{method}"), Some(&body))?;
    if let Some(e) = reply.err() {
        bail!("IpamDriver.{method}: {e} (on {})", w.hosts[host].def.name);
    }
    if reply.status != 200 {
        bail!(
            "IpamDriver.{method} on {}: HTTP {}",
            w.hosts[host].def.name,
            reply.status
        );
    }
    reply.json()
}

/// An IPAM release whose failure dockerd only logs.
pub(super) fn ipam_lenient_on(
    rt: &tokio::runtime::Runtime,
    w: &World,
    host: usize,
    method: &str,
    body: Value,
) {
    if let Err(e) = ipam_on(rt, w, host, method, body) {
        eprintln!("[emulator] {e:#} (ignored, as dockerd does)");
    }
}
