//! The plugin socket: HTTP over a unix socket, as dockerd speaks it.
//!
//! In: POSTs on `/Plugin.Activate`, `/NetworkDriver.*` (bodies without a
//! Content-Type, read as bytes and parsed here), `/IpamDriver.*` (handed to
//! [`super::ipam`]), plus our own `/IpvlanBgp.Status`, `/IpvlanBgp.Drain`
//! (`{"Drain": true|false}`, what `ipvlan-bgp drain`/`undrain` send) and
//! `/metrics` (also served over TCP by [`serve_metrics`] with
//! `--metrics-listen`). Out: a JSON body for every answer (the Prometheus
//! text for `/metrics`); failures are `{"Err": "..."}` with HTTP 500. Network
//! driver requests run one at a time against the [`Driver`] on a blocking
//! thread (the driver does synchronous netlink), each inside a tracing span
//! with the method, network and endpoint IDs, and end with a debug line
//! "answered" saying where the time went (`queued_ms` from arrival to a
//! blocking thread, `lock_wait_ms` for the driver's lock, `run_ms` the
//! rest; the learned-routes bench reads it); IPAM requests run
//! concurrently, without the driver. The driver serves Docker with
//! [`serve`]: a thread and runtime of its own, apart from the BGP side.

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tracing::{debug, field, info, info_span, warn, Instrument};

use super::convert;
use super::ipam::server::IpamService;
use super::wire::{
    ActivateResponse, CapabilitiesResponse, CreateEndpointRequest, CreateEndpointResponse,
    CreateNetworkRequest, DiscoveryRequest, EndpointRequest, ErrorResponse, JoinRequest,
    NetworkRequest, OperInfoResponse,
};
use crate::docker::Driver;
use crate::error::DriverError;
use crate::ipam::EtcdStore;
use crate::metrics::Metrics;

/// Bodies larger than this are refused before parsing.
pub const MAX_BODY: usize = 1024 * 1024;
/// Up to this much of a refused body is read (and dropped) before answering.
const DRAIN_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct App {
    pub driver: Arc<Mutex<Driver>>,
    pub metrics: Arc<Metrics>,
    /// The cluster-wide IPAM (off without `--etcd-endpoints`).
    pub ipam: IpamService<EtcdStore>,
}

pub fn router(app: App) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Binds the plugin socket: refuses if another process is serving it,
/// replaces a stale file, and lets only root and the `docker` group connect.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another process is serving {}; stop it first or choose another --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("docker") {
        if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
            warn!(error = %e, "could not give the docker group access to the socket");
        }
    }
    Ok(listener)
}

enum Answer {
    Json(Value),
    Text(String),
}

async fn handle(State(app): State<App>, req: Request) -> Response {
    let arrived = Instant::now();
    let path = req.uri().path().to_string();
    let method = path.trim_start_matches('/').to_string();
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => {
            app.metrics.count_request(&method, "malformed");
            return error_response(&e);
        }
    };
    if IpamService::<EtcdStore>::serves(&method) {
        return handle_ipam(&app, &method, &body).await;
    }
    let span =
        info_span!("request", method = %method, network = field::Empty, endpoint = field::Empty);
    let app2 = app.clone();
    let method2 = method.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        let started = Instant::now();
        LOCK_WAIT.set(Duration::ZERO);
        let result = dispatch(&app2, &method2, &body);
        let lock_wait = LOCK_WAIT.get();
        debug!(
            queued_ms = ms(started - arrived),
            lock_wait_ms = ms(lock_wait),
            run_ms = ms(started.elapsed().saturating_sub(lock_wait)),
            "answered"
        );
        result
    })
    .await
    .unwrap_or_else(|e| {
        Err(Some(DriverError::Internal(format!(
            "request task failed: {e}"
        ))))
    });
    match result {
        Ok(Answer::Json(v)) => {
            app.metrics.count_request(&method, "ok");
            json_response(StatusCode::OK, &v)
        }
        Ok(Answer::Text(t)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            t,
        )
            .into_response(),
        Err(None) => {
            app.metrics.count_request("unknown", "not-found");
            json_response(
                StatusCode::NOT_FOUND,
                &ErrorResponse {
                    err: format!("{path} is not a method of this plugin"),
                },
            )
        }
        Err(Some(e)) => {
            app.metrics.count_request(&method, e.class());
            warn!(method = %method, error = %e, "request failed");
            error_response(&e)
        }
    }
}

/// An IPAM call, concurrently with others and without the driver's lock.
async fn handle_ipam(app: &App, method: &str, body: &[u8]) -> Response {
    let span = info_span!("request", method = %method);
    match app.ipam.handle(method, body).instrument(span).await {
        None => {
            app.metrics.count_request("unknown", "not-found");
            json_response(
                StatusCode::NOT_FOUND,
                &ErrorResponse {
                    err: format!("/{method} is not a method of this plugin"),
                },
            )
        }
        Some(Ok(v)) => {
            app.metrics.count_request(method, "ok");
            json_response(StatusCode::OK, &v)
        }
        Some(Err(e)) => {
            app.metrics.count_request(method, e.class());
            warn!(method = %method, error = %e, "request failed");
            // dockerd shows an IPAM error's text only with HTTP 500.
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ErrorResponse { err: e.to_string() },
            )
        }
    }
}

/// Reads the body. Past [`MAX_BODY`] the rest is read and thrown away (up to
/// [`DRAIN_MAX`]) so the client gets our `{"Err"}` answer instead of a broken
/// pipe; nothing beyond `MAX_BODY` is ever kept in memory.
async fn read_body(mut body: Body) -> Result<Bytes, DriverError> {
    let mut kept: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| DriverError::Malformed(format!("could not read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_MAX {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(DriverError::Malformed(format!(
            "request body is larger than {MAX_BODY} bytes"
        )));
    }
    Ok(Bytes::from(kept))
}

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.plugins.v1.2+json",
        )],
        body,
    )
        .into_response()
}

fn error_response(e: &DriverError) -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &ErrorResponse { err: e.to_string() },
    )
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, DriverError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DriverError::Malformed(
            "empty body; expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| DriverError::Malformed(e.to_string()))
}

fn record_ids(network: &str, endpoint: Option<&str>) {
    let span = tracing::Span::current();
    span.record("network", short(network));
    if let Some(e) = endpoint {
        span.record("endpoint", short(e));
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

thread_local! {
    /// How long the request on this blocking thread waited for the driver's
    /// lock (the "answered" debug line's `lock_wait_ms`).
    static LOCK_WAIT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

fn lock(app: &App) -> std::sync::MutexGuard<'_, Driver> {
    let asked = Instant::now();
    let guard = app.driver.lock().unwrap_or_else(|p| p.into_inner());
    LOCK_WAIT.set(LOCK_WAIT.get() + asked.elapsed());
    guard
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn to_value<T: Serialize>(v: T) -> Result<Answer, Option<DriverError>> {
    serde_json::to_value(v)
        .map(Answer::Json)
        .map_err(|e| Some(DriverError::Internal(e.to_string())))
}

/// `Err(None)` means "no such method" (answered with 404, which libnetwork
/// reads as "not implemented").
fn dispatch(app: &App, method: &str, body: &[u8]) -> Result<Answer, Option<DriverError>> {
    let empty = || Ok(Answer::Json(json!({})));
    match method {
        "Plugin.Activate" => to_value(ActivateResponse {
            implements: vec!["NetworkDriver".into(), "IpamDriver".into()],
        }),
        "NetworkDriver.GetCapabilities" => to_value(CapabilitiesResponse {
            scope: "local".into(),
            connectivity_scope: "global".into(),
        }),
        "NetworkDriver.CreateNetwork" => {
            let req: CreateNetworkRequest = parse(body)?;
            record_ids(&req.network_id, None);
            let mut driver = lock(app);
            let spec = convert::network_spec_with(&req, driver.default_parent(), driver.uplinks())
                .map_err(DriverError::from)?;
            driver.create_network(spec)?;
            empty()
        }
        "NetworkDriver.DeleteNetwork" => {
            let req: NetworkRequest = parse(body)?;
            record_ids(&req.network_id, None);
            lock(app).delete_network(&req.network_id)?;
            empty()
        }
        "NetworkDriver.AllocateNetwork" => {
            let req: CreateNetworkRequest = parse(body)?;
            record_ids(&req.network_id, None);
            Ok(Answer::Json(json!({"Options": {}})))
        }
        "NetworkDriver.FreeNetwork" => {
            let req: NetworkRequest = parse(body)?;
            record_ids(&req.network_id, None);
            empty()
        }
        "NetworkDriver.CreateEndpoint" => {
            let req: CreateEndpointRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            let mut driver = lock(app);
            let spec = convert::endpoint_spec(&req, driver.network_spec(&req.network_id)?)
                .map_err(DriverError::from)?;
            driver.create_endpoint(&req.network_id, spec)?;
            to_value(CreateEndpointResponse::default())
        }
        "NetworkDriver.EndpointOperInfo" => {
            let req: EndpointRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            let info = lock(app).oper_info(&req.network_id, &req.endpoint_id)?;
            let value = [
                ("link", Value::from(info.link)),
                ("address", info.address.into()),
                ("parent", info.parent.into()),
                ("dataplane", info.dataplane.into()),
                ("joined", info.joined.into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            to_value(OperInfoResponse { value })
        }
        "NetworkDriver.DeleteEndpoint" => {
            let req: EndpointRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            lock(app).delete_endpoint(&req.network_id, &req.endpoint_id)?;
            empty()
        }
        "NetworkDriver.Join" => {
            let req: JoinRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            let started = std::time::Instant::now();
            let mut driver = lock(app);
            note_join(app, &driver, &req.network_id, &req.endpoint_id, started);
            let joined = driver.join(&req.network_id, &req.endpoint_id, &req.sandbox_key)?;
            let onlink = driver.network_spec(&req.network_id)?.cluster_ipam;
            to_value(convert::join_response(&joined, onlink))
        }
        "NetworkDriver.Leave" => {
            let req: EndpointRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            lock(app).leave(&req.network_id, &req.endpoint_id)?;
            empty()
        }
        "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => {
            let req: EndpointRequest = parse(body)?;
            record_ids(&req.network_id, Some(&req.endpoint_id));
            lock(app).external_connectivity(&req.network_id, &req.endpoint_id)?;
            empty()
        }
        "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => {
            let _req: DiscoveryRequest = parse(body)?;
            empty()
        }
        "IpvlanBgp.Drain" => {
            let req: DrainRequest = parse(body)?;
            let since = req.drain.then(crate::metrics::now_unix);
            let drained = lock(app).set_drained(since)?;
            info!(drained = drained.is_some(), "drain state set");
            Ok(Answer::Json(
                json!({"Drained": drained.is_some(), "Since": drained}),
            ))
        }
        "IpvlanBgp.Status" => {
            refresh_uplinks(app);
            let mut status = super::status::Status::collect(&lock(app), &app.metrics);
            status.ipam = app.ipam.status();
            to_value(status.read_routes())
        }
        "metrics" => Ok(Answer::Text(metrics_text(app))),
        _ => {
            info!(method, "unknown method");
            Err(None)
        }
    }
}

/// `/IpvlanBgp.Drain`'s body.
#[derive(Debug, Deserialize)]
struct DrainRequest {
    #[serde(rename = "Drain")]
    drain: bool,
}

/// Dual-uplink mode: each uplink's state and the installed routes through
/// it, read now (outside the driver's lock) into the metrics, where status
/// and scrapes find them; and the container ports' repairs.
fn refresh_uplinks(app: &App) {
    let (names, repairs) = {
        let d = lock(app);
        (d.uplinks().to_vec(), d.port_repairs())
    };
    if names.is_empty() {
        return;
    }
    let by_oif = app.metrics.bgp(|b| b.routes_by_oif.clone());
    let states = match crate::kernel::real::Kernel::open() {
        Ok(mut k) => crate::provision::uplinks::states(&mut k, &names, &by_oif),
        Err(e) => {
            warn!(error = %e, "cannot open netlink to read the uplinks");
            return;
        }
    };
    app.metrics.bgp(|b| {
        b.uplinks = states;
        b.port_repairs = repairs;
    });
}

/// The exposition, with the network and endpoint counts of this moment.
fn metrics_text(app: &App) -> String {
    refresh_uplinks(app);
    app.metrics.set_ipam(app.ipam.figures());
    let driver = lock(app);
    let st = driver.state();
    app.metrics
        .set_availability(driver.unavailable().len(), driver.parents_lost());
    app.metrics.render(st.networks.len(), st.endpoint_count())
}

/// Starts the Join→announced clock (from `started`, before the wait for the
/// driver) of an endpoint that is not joined yet and is announced on its own
/// (not as part of its network's subnet).
fn note_join(
    app: &App,
    driver: &Driver,
    network: &str,
    endpoint: &str,
    started: std::time::Instant,
) {
    use crate::model::network::{host_route, Announce};
    let Some(net) = driver.state().networks.get(network) else {
        return;
    };
    let Some(ep) = net.endpoints.get(endpoint) else {
        return;
    };
    if !ep.joined && !net.spec.internal && net.spec.announce == Announce::Endpoint {
        // One clock per host route: /32 and, on dual stack, /128.
        for addr in ep.spec.addrs() {
            app.metrics.join_started(host_route(addr), started);
        }
    }
}

/// Binds the opt-in metrics address (`--metrics-listen`).
pub async fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve metrics on {addr} (--metrics-listen): {e}; choose a free address or leave the flag out"
        )
    })
}

/// Serves `GET /metrics` over TCP until `shutdown` completes; any other path
/// is a 404.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    async fn scrape(State(app): State<App>) -> Response {
        let text = tokio::task::spawn_blocking(move || metrics_text(&app))
            .await
            .unwrap_or_else(|e| format!("# metrics task failed: {e}\n"));
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response()
    }
    let router = Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves Docker until `shutdown` completes, on a thread of its own with its own
/// single-threaded runtime (and blocking pool): no task of the driver's
/// main runtime (the BGP session decoding gobgpd's stream, the health
/// gate, the IPAM's upkeep) delays accepting a call or writing its answer.
/// Resolves with the server's result once `shutdown` completes (or it fails).
pub async fn serve(
    listener: UnixListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router_apart(listener, router(app), shutdown).await
}

async fn serve_router_apart(
    listener: UnixListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gone = || std::io::Error::other("the Docker API's thread ended");
    let listener = listener.into_std()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("docker-api".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("docker-api-blocking")
                .build()
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = UnixListener::from_std(listener)?;
                        axum::serve(listener, router)
                            .with_graceful_shutdown(async move {
                                let _ = stopped.await;
                            })
                            .await
                    })
                });
            let _ = done.send(served);
        })?;
    let mut result = std::pin::pin!(result);
    tokio::select! {
        r = &mut result => return r.unwrap_or_else(|_| Err(gone())),
        () = shutdown => {}
    }
    let _ = stop.send(());
    result.await.unwrap_or_else(|_| Err(gone()))
}

#[cfg(test)]
mod apart_tests {
    use super::*;
    use std::io::{Read, Write};

    /// Both workers of the main runtime busy for 2 s (as a long decode
    /// would keep them): a call on the socket is still answered at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_is_answered_while_the_main_workers_are_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let router = Router::new().fallback(|| async { "{}" });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_router_apart(listener, router, async move {
            let _ = stopped.await;
        }));
        // Let the server's thread start before the workers are taken.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.write_all(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            (t.elapsed(), answer)
        });
        let busy: Vec<_> = (0..2)
            .map(|_| tokio::spawn(async { std::thread::sleep(Duration::from_secs(2)) }))
            .collect();
        for b in busy {
            b.await.unwrap();
        }
        let (took, answer) = client.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            took < Duration::from_millis(1000),
            "answered after {took:?}, while the main workers were busy"
        );
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }
}
