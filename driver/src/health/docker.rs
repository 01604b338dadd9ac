//! A small Docker Engine API client over the daemon's unix socket: list the
//! running containers, inspect one or a network, follow the event stream.
//!
//! In: the socket path. Out: [`Container`] facts (running, state, health
//! status, endpoint IDs), a network's endpoints and their containers, and
//! [`Hint`]s from events. Every call has a deadline; odd
//! JSON is an error or is skipped, never a panic. Only `GET`s: the driver
//! never changes anything in Docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::unix_http;

/// At most this many bytes of one answer (an inspect is a few KB) or of one
/// event line; past it the answer is refused, the stream reconnected.
const MAX_BODY: usize = 4 << 20;

/// What the gate needs of one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    pub id: String,
    pub running: bool,
    /// `State.Status` (`created`, `running`, `paused`, `restarting`,
    /// `removing`, `exited`, `dead`); empty when Docker did not say.
    pub status: String,
    /// `State.Health.Status` (`starting`, `healthy`, `unhealthy`); `None`
    /// when the container has no health check.
    pub health: Option<String>,
    /// `NetworkSettings.Networks.*.EndpointID`, whatever the driver.
    pub endpoints: Vec<String>,
}

/// An event worth a fresh look at one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Inspect this container again (started, died, health changed, or
    /// connected to / disconnected from a network).
    Container(String),
    /// It is gone (`destroy`): forget it.
    Gone(String),
}

// Serde mirrors of the parts of Docker's answers we read; every field is
// optional so that an older or newer daemon never fails the parse.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Inspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "State")]
    state: Option<InspectState>,
    #[serde(rename = "NetworkSettings")]
    network_settings: Option<NetworkSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InspectState {
    #[serde(rename = "Running")]
    running: bool,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Health")]
    health: Option<HealthState>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HealthState {
    #[serde(rename = "Status")]
    status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkSettings {
    #[serde(rename = "Networks")]
    networks: Option<BTreeMap<String, Option<NetworkEndpoint>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkEndpoint {
    #[serde(rename = "EndpointID")]
    endpoint_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkInspect {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Containers")]
    containers: Option<BTreeMap<String, Option<NetworkEndpoint>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Listed {
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "Actor")]
    actor: Option<Actor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Attributes")]
    attributes: Option<BTreeMap<String, String>>,
}

/// Parses `GET /containers/{id}/json`.
pub fn parse_inspect(body: &[u8]) -> anyhow::Result<Container> {
    let i: Inspect = serde_json::from_slice(body).context("container inspect is not JSON")?;
    if i.id.is_empty() {
        bail!("container inspect has no Id");
    }
    let state = i.state.unwrap_or_default();
    let endpoints = i
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_values()
        .flatten()
        .filter_map(|e| e.endpoint_id)
        .filter(|e| !e.is_empty())
        .collect();
    Ok(Container {
        id: i.id,
        running: state.running,
        status: state.status,
        health: state
            .health
            .map(|h| h.status)
            .filter(|s| !s.is_empty() && s != "none"),
        endpoints,
    })
}

/// Parses `GET /networks/{id}`: each endpoint Docker holds joined to a
/// sandbox on it (endpoint ID → container ID).
pub fn parse_network(body: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let n: NetworkInspect = serde_json::from_slice(body).context("network inspect is not JSON")?;
    if n.id.is_empty() {
        bail!("network inspect has no Id");
    }
    Ok(n.containers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(container, e)| Some((e?.endpoint_id?, container)))
        .filter(|(e, c)| !e.is_empty() && !c.is_empty())
        .collect())
}

/// Parses `GET /containers/json`: the IDs.
pub fn parse_list(body: &[u8]) -> anyhow::Result<Vec<String>> {
    let l: Vec<Listed> = serde_json::from_slice(body).context("container list is not JSON")?;
    Ok(l.into_iter()
        .map(|c| c.id)
        .filter(|i| !i.is_empty())
        .collect())
}

/// Parses one line of `GET /events`; `None` for events the gate ignores
/// and for lines that are not an event.
pub fn parse_event(line: &[u8]) -> Option<Hint> {
    let e: Event = serde_json::from_slice(line).ok()?;
    let actor = e.actor?;
    match e.kind.as_str() {
        "container" => {
            if actor.id.is_empty() {
                return None;
            }
            match e.action.as_str() {
                "destroy" => Some(Hint::Gone(actor.id)),
                "start" | "die" | "restart" => Some(Hint::Container(actor.id)),
                a if a.starts_with("health_status") => Some(Hint::Container(actor.id)),
                _ => None,
            }
        }
        "network" if e.action == "connect" || e.action == "disconnect" => actor
            .attributes?
            .remove("container")
            .filter(|c| !c.is_empty())
            .map(Hint::Container),
        _ => None,
    }
}

/// `GET /events` with these filters, URL-encoded.
fn events_path() -> String {
    let filters = r#"{"type":["container","network"]}"#;
    let mut enc = String::new();
    for b in filters.bytes() {
        if b.is_ascii_alphanumeric() {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/events?filters={enc}")
}

/// The Docker API at one unix socket.
#[derive(Debug, Clone)]
pub struct DockerApi {
    socket: PathBuf,
    timeout: Duration,
}

impl DockerApi {
    pub fn new(socket: PathBuf, timeout: Duration) -> DockerApi {
        DockerApi { socket, timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn request(&self, path: &str) -> anyhow::Result<Response<Incoming>> {
        let mut sender = unix_http::connect(&self.socket).await?;
        let req = Request::get(path)
            .header("Host", "docker")
            .body(Empty::<Bytes>::new())
            .context("build request")?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_limited(resp.into_body()).await.unwrap_or_default();
            bail!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        Ok(resp)
    }

    /// One GET and its whole body, within the deadline.
    async fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        tokio::time::timeout(self.timeout, async {
            let resp = self.request(path).await?;
            read_limited(resp.into_body()).await
        })
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {:?}", self.timeout))?
    }

    /// The IDs of the running containers.
    pub async fn running(&self) -> anyhow::Result<Vec<String>> {
        parse_list(&self.get("/containers/json").await?)
    }

    /// One container; `Ok(None)` when Docker does not know it (404).
    pub async fn inspect(&self, id: &str) -> anyhow::Result<Option<Container>> {
        check_name(id, "container")?;
        match self.get(&format!("/containers/{id}/json")).await {
            Ok(body) => parse_inspect(&body).map(Some),
            Err(e) if e.to_string().contains(": 404 ") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One network's joined endpoints (endpoint ID → container ID);
    /// `Ok(None)` when Docker does not know the network (404).
    pub async fn network(&self, id: &str) -> anyhow::Result<Option<BTreeMap<String, String>>> {
        check_name(id, "network")?;
        match self.get(&format!("/networks/{id}")).await {
            Ok(body) => parse_network(&body).map(Some),
            Err(e) if e.to_string().contains(": 404 ") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows the event stream, sending each hint to `tx`, until the stream
    /// ends or fails (the error says why) or `tx` is closed. `connected` is
    /// called once the daemon answered.
    pub async fn follow_events(
        &self,
        tx: mpsc::Sender<Hint>,
        connected: impl FnOnce(),
    ) -> anyhow::Result<()> {
        let path = events_path();
        let resp = tokio::time::timeout(self.timeout, self.request(&path))
            .await
            .map_err(|_| anyhow!("GET /events: no answer within {:?}", self.timeout))??;
        connected();
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("read the event stream")?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Some(h) = parse_event(&line) {
                    if tx.send(h).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if buf.len() > MAX_BODY {
                bail!("an event longer than {MAX_BODY} bytes");
            }
        }
        bail!("Docker closed the event stream")
    }
}

/// An ID or name that can go into a path as it is.
fn check_name(id: &str, what: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        bail!("{id:?} is not a {what} ID or name");
    }
    Ok(())
}

async fn read_limited(mut body: Incoming) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("read the answer")?.into_data() {
            out.extend_from_slice(&data);
            if out.len() > MAX_BODY {
                bail!("answer longer than {MAX_BODY} bytes");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_health_running_and_endpoints() {
        let body = br#"{"Id":"abc","State":{"Status":"running","Running":true,
            "Health":{"Status":"unhealthy","FailingStreak":1,"Log":[]}},
            "NetworkSettings":{"Networks":{"net":{"EndpointID":"e1","IPAddress":"10.0.0.2"},
            "other":{"EndpointID":""},"odd":null}}}"#;
        let c = parse_inspect(body).unwrap();
        assert_eq!(
            c,
            Container {
                id: "abc".into(),
                running: true,
                status: "running".into(),
                health: Some("unhealthy".into()),
                endpoints: vec!["e1".into()],
            }
        );
    }

    #[test]
    fn inspect_without_health_check_or_networks() {
        let c = parse_inspect(
            br#"{"Id":"abc","State":{"Running":false},"NetworkSettings":{"Networks":null}}"#,
        )
        .unwrap();
        assert_eq!(c.health, None);
        assert!(!c.running);
        assert!(c.endpoints.is_empty());
        let c = parse_inspect(br#"{"Id":"abc","State":{"Running":true,"Health":null}}"#).unwrap();
        assert_eq!(c.health, None);
        assert!(c.running);
    }

    #[test]
    fn odd_inspect_answers_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"{\"Id\":5}",
            b"{\"Id\":\"x\",\"State\":{\"Running\":\"yes\"}}",
            b"{\"Id\":\"x\",\"State\":[1,2]}",
            b"\xff\xfe",
        ] {
            assert!(
                parse_inspect(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn network_reads_joined_endpoints_and_their_containers() {
        let body = br#"{"Name":"net","Id":"n1","Driver":"ipvlan-bgp","Containers":{
            "c1":{"Name":"a","EndpointID":"e1","IPv4Address":"10.0.0.2/24"},
            "c2":{"Name":"b","EndpointID":""},"c3":null}}"#;
        let eps = parse_network(body).unwrap();
        assert_eq!(
            eps.into_iter().collect::<Vec<_>>(),
            [("e1".to_string(), "c1".to_string())]
        );
        assert!(parse_network(br#"{"Id":"n1","Containers":null}"#)
            .unwrap()
            .is_empty());
        for odd in [
            &b"{}"[..],
            b"[]",
            b"null",
            b"{\"Id\":\"n\",\"Containers\":[1]}",
        ] {
            assert!(
                parse_network(odd).is_err(),
                "{:?}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn list_reads_ids() {
        assert_eq!(
            parse_list(br#"[{"Id":"a","Names":["/x"]},{"Id":""},{"Names":[]}]"#).unwrap(),
            vec!["a".to_string()]
        );
        assert!(parse_list(b"{}").is_err());
    }

    #[test]
    fn events_become_hints() {
        let ev = |t: &str, a: &str, id: &str, attrs: &str| {
            format!(
                r#"{{"status":"{a}","id":"{id}","Type":"{t}","Action":"{a}","Actor":{{"ID":"{id}","Attributes":{attrs}}},"scope":"local","time":1,"timeNano":1}}"#
            )
        };
        let c = |id: &str| Some(Hint::Container(id.into()));
        assert_eq!(
            parse_event(ev("container", "start", "c1", "{}").as_bytes()),
            c("c1")
        );
        assert_eq!(
            parse_event(ev("container", "die", "c1", "{}").as_bytes()),
            c("c1")
        );
        assert_eq!(
            parse_event(ev("container", "health_status: unhealthy", "c1", "{}").as_bytes()),
            c("c1")
        );
        assert_eq!(
            parse_event(ev("container", "health_status: healthy", "c1", "{}").as_bytes()),
            c("c1")
        );
        assert_eq!(
            parse_event(ev("container", "destroy", "c1", "{}").as_bytes()),
            Some(Hint::Gone("c1".into()))
        );
        assert_eq!(
            parse_event(
                ev(
                    "network",
                    "connect",
                    "n1",
                    r#"{"container":"c2","name":"net","type":"ipvlan-bgp"}"#
                )
                .as_bytes()
            ),
            c("c2")
        );
        // Ignored: other actions, exec events, odd lines.
        assert_eq!(
            parse_event(ev("container", "exec_start: sh", "c1", "{}").as_bytes()),
            None
        );
        assert_eq!(
            parse_event(ev("container", "attach", "c1", "{}").as_bytes()),
            None
        );
        assert_eq!(
            parse_event(ev("network", "connect", "n1", "{}").as_bytes()),
            None
        );
        assert_eq!(parse_event(ev("image", "pull", "i", "{}").as_bytes()), None);
        assert_eq!(
            parse_event(ev("container", "start", "", "{}").as_bytes()),
            None
        );
        for odd in [
            &b""[..],
            b"\n",
            b"null",
            b"{\"Type\":1}",
            b"{{{",
            b"{\"Type\":\"container\",\"Action\":\"start\"}",
        ] {
            assert_eq!(parse_event(odd), None);
        }
    }

    #[test]
    fn events_filter_is_url_encoded() {
        assert_eq!(
            events_path(),
            "/events?filters=%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D"
        );
    }
}

/// The client against a fake Docker on a unix socket (raw HTTP/1.1).
#[cfg(test)]
pub(crate) mod fake_docker {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// Serves each connection with `answer(path)`: the whole raw response,
    /// or `None` to accept and never answer.
    pub(crate) fn serve(dir: &tempfile::TempDir, answer: fn(&str) -> Option<String>) -> DockerApi {
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req).to_string();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    match answer(&path) {
                        Some(r) => {
                            let _ = s.write_all(r.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        DockerApi::new(path, Duration::from_millis(300))
    }

    pub(crate) fn ok(body: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn docker(path: &str) -> Option<String> {
        match path {
            "/containers/json" => ok(r#"[{"Id":"c1"},{"Id":"c2"}]"#),
            "/containers/c1/json" => ok(
                r#"{"Id":"c1","State":{"Running":true,"Health":{"Status":"healthy"}},"NetworkSettings":{"Networks":{"n":{"EndpointID":"e1"}}}}"#,
            ),
            "/containers/c2/json" => ok(r#"{"Id":"c2","State":{"Running":true}}"#),
            "/containers/odd/json" => ok(r#"{"Id":["not","a","string"]}"#),
            "/containers/slow/json" => None,
            p if p.starts_with("/events?") => {
                // Chunked, as dockerd streams: a garbage line, an ignored
                // event, then two that matter, one split across chunks.
                let lines = [
                    "{not json\n",
                    r#"{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"c1"}}"#,
                    "\n{\"Type\":\"container\",\"Action\":\"health_status: unhealthy\",",
                    "\"Actor\":{\"ID\":\"c1\"}}\n",
                    "{\"Type\":\"container\",\"Action\":\"destroy\",\"Actor\":{\"ID\":\"c2\"}}\n",
                ];
                let mut r = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for l in lines {
                    r.push_str(&format!("{:x}\r\n{l}\r\n", l.len()));
                }
                r.push_str("0\r\n\r\n");
                Some(r)
            }
            _ => not_found(),
        }
    }

    pub(crate) fn not_found() -> Option<String> {
        Some(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 29\r\n\r\n{\"message\":\"No such object\"}\n"
                .into(),
        )
    }

    #[tokio::test]
    async fn lists_and_inspects() {
        let dir = tempfile::tempdir().unwrap();
        let api = serve(&dir, docker);
        assert_eq!(api.running().await.unwrap(), ["c1", "c2"]);
        let c1 = api.inspect("c1").await.unwrap().unwrap();
        assert_eq!(
            (c1.health.as_deref(), c1.endpoints.as_slice()),
            (Some("healthy"), &["e1".to_string()][..])
        );
        assert_eq!(api.inspect("c2").await.unwrap().unwrap().health, None);
        assert_eq!(
            api.inspect("gone").await.unwrap(),
            None,
            "404: Docker does not know it"
        );
    }

    #[tokio::test]
    async fn odd_answers_slow_daemons_and_bad_ids_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let api = serve(&dir, docker);
        assert!(api.inspect("odd").await.is_err());
        let e = api.inspect("slow").await.unwrap_err().to_string();
        assert!(e.contains("no answer within"), "{e}");
        assert!(api.inspect("../../images").await.is_err());
        assert!(api.inspect("").await.is_err());
        let nowhere = DockerApi::new(dir.path().join("missing.sock"), Duration::from_millis(300));
        assert!(nowhere.running().await.is_err());
    }

    #[tokio::test]
    async fn follows_events_across_chunks_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let api = serve(&dir, docker);
        let (tx, mut rx) = mpsc::channel(16);
        let mut connected = false;
        let r = api.follow_events(tx, || connected = true).await;
        assert!(connected);
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("closed the event stream"));
        let mut got = Vec::new();
        while let Ok(h) = rx.try_recv() {
            got.push(h);
        }
        assert_eq!(got, [Hint::Container("c1".into()), Hint::Gone("c2".into())]);
    }
}
