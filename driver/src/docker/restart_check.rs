//! After the driver's own downtime: asks Docker about the containers of the
//! endpoints still joined in the state.
//!
//! In: the Docker API ([`DockerApi`]) and the joined endpoints (network ID,
//! endpoint ID). Out: for each, what Docker says ([`DockerSays`]), for
//! [`crate::view::decide::judge_by_docker`]. Real dockerd keeps a killed
//! container's network namespace while the driver is down, so the namespace
//! file proves nothing there; Docker's own word does. Only what Docker
//! answered is evidence: an error, a slow daemon or a network Docker does
//! not know (another dockerd) is [`DockerSays::Unknown`]. Read-only.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::health::docker::DockerApi;
use crate::view::decide::DockerSays;

/// The whole look takes at most this long (the BGP side waits for it).
pub const DEADLINE: Duration = Duration::from_secs(3);

/// What Docker says about each endpoint of `joined` (network ID, endpoint
/// ID), in its order. One network inspect per network, one container
/// inspect per container named; all within [`DEADLINE`].
pub async fn ask(api: &DockerApi, joined: &[(String, String)]) -> Vec<DockerSays> {
    match tokio::time::timeout(DEADLINE, ask_all(api, joined)).await {
        Ok(says) => says,
        Err(_) => {
            let why = format!("Docker did not answer within {DEADLINE:?}");
            vec![DockerSays::Unknown(why); joined.len()]
        }
    }
}

async fn ask_all(api: &DockerApi, joined: &[(String, String)]) -> Vec<DockerSays> {
    let mut networks: BTreeMap<&str, Result<BTreeMap<String, String>, String>> = BTreeMap::new();
    let mut containers: BTreeMap<String, DockerSays> = BTreeMap::new();
    let mut out = Vec::with_capacity(joined.len());
    for (net, ep) in joined {
        if !networks.contains_key(net.as_str()) {
            let listed = match api.network(net).await {
                Ok(Some(eps)) => Ok(eps),
                Ok(None) => Err(format!(
                    "Docker at {} does not know the network (another dockerd?)",
                    api.socket().display()
                )),
                Err(e) => Err(format!("Docker did not answer: {e:#}")),
            };
            networks.insert(net, listed);
        }
        let says = match &networks[net.as_str()] {
            Err(why) => DockerSays::Unknown(why.clone()),
            Ok(eps) => match eps.get(ep) {
                None => DockerSays::Absent,
                Some(c) => {
                    if !containers.contains_key(c) {
                        let said = container(api, c).await;
                        containers.insert(c.clone(), said);
                    }
                    containers[c].clone()
                }
            },
        };
        out.push(says);
    }
    out
}

async fn container(api: &DockerApi, id: &str) -> DockerSays {
    match api.inspect(id).await {
        Err(e) => DockerSays::Unknown(format!("Docker did not answer: {e:#}")),
        Ok(None) => DockerSays::Absent,
        Ok(Some(c)) if c.running => DockerSays::Running,
        Ok(Some(c)) if c.status == "exited" || c.status == "dead" => DockerSays::Stopped(c.status),
        Ok(Some(c)) => DockerSays::Unknown(format!(
            "its container is {:?}, neither running nor stopped",
            c.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::docker::fake_docker::{not_found, ok, serve};

    /// Network `n1` holds e-run (container running), e-exit (exited),
    /// e-dead (dead), e-new (created), e-gone (its container unknown);
    /// `n2` is another dockerd's, `slow` never answers.
    fn docker(path: &str) -> Option<String> {
        let c = |id: &str, running: bool, status: &str| {
            ok(&format!(
                r#"{{"Id":"{id}","State":{{"Status":"{status}","Running":{running}}}}}"#
            ))
        };
        match path {
            "/networks/n1" => ok(r#"{"Id":"n1","Containers":{
                "crun":{"EndpointID":"e-run"},"cexit":{"EndpointID":"e-exit"},
                "cdead":{"EndpointID":"e-dead"},"cnew":{"EndpointID":"e-new"},
                "cgone":{"EndpointID":"e-gone"}}}"#),
            "/networks/slow" => None,
            "/containers/crun/json" => c("crun", true, "running"),
            "/containers/cexit/json" => c("cexit", false, "exited"),
            "/containers/cdead/json" => c("cdead", false, "dead"),
            "/containers/cnew/json" => c("cnew", false, "created"),
            _ => not_found(),
        }
    }

    fn eps(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, e)| (n.to_string(), e.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn running_exited_dead_absent_and_unsure() {
        let dir = tempfile::tempdir().unwrap();
        let api = serve(&dir, docker);
        let says = ask(
            &api,
            &eps(&[
                ("n1", "e-run"),
                ("n1", "e-exit"),
                ("n1", "e-dead"),
                ("n1", "e-none"),
                ("n1", "e-gone"),
                ("n1", "e-new"),
                ("n2", "e-x"),
            ]),
        )
        .await;
        assert_eq!(says[0], DockerSays::Running);
        assert_eq!(says[1], DockerSays::Stopped("exited".into()));
        assert_eq!(says[2], DockerSays::Stopped("dead".into()));
        assert_eq!(says[3], DockerSays::Absent, "no container holds it");
        assert_eq!(says[4], DockerSays::Absent, "its container is gone");
        assert!(matches!(&says[5], DockerSays::Unknown(w) if w.contains("created")));
        assert!(matches!(&says[6], DockerSays::Unknown(w) if w.contains("does not know")));
    }

    #[tokio::test]
    async fn docker_unreachable_or_slow_proves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let nowhere = DockerApi::new(dir.path().join("missing.sock"), Duration::from_millis(300));
        let says = ask(&nowhere, &eps(&[("n1", "e-exit"), ("n1", "e-run")])).await;
        assert!(
            says.iter().all(|s| matches!(s, DockerSays::Unknown(_))),
            "{says:?}"
        );
        let api = serve(&dir, docker);
        let says = ask(&api, &eps(&[("slow", "e-exit")])).await;
        assert!(
            matches!(&says[0], DockerSays::Unknown(w) if w.contains("no answer")),
            "{says:?}"
        );
    }
}
