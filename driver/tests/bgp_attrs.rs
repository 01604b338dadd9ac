//! The announcer's BGP attributes against a real gobgpd, of each line: 3.x
//! (`gobgpd`, Debian's) and 4.x (`gobgpd-v4`, built by ci/install.sh).
//!
//! Needs gobgpd and the gobgp CLI of that line (skipped with the reason
//! otherwise; under `CI=true` a missing tool fails). One gobgpd, AS 65000,
//! that listens for no BGP peer (`port = -1`) and serves its API on a unix
//! socket in a temporary folder: no namespace, no port, no root needed.
//!
//! Checked on both lines, through `gobgp global rib -j` (gobgpd's own view
//! of the paths, read by the CLI of its own line, not by our codec): the
//! client detects the line;
//! the attributes we send (prepend as our AS repeated, MED, LOCAL_PREF,
//! communities with the global one added, large communities) arrive as
//! asked; a change of attributes replaces the path; a fresh announcer (a
//! restarted driver) that wants the same attributes leaves the paths alone,
//! and one that wants others replaces them. And, on both lines, the
//! announcer's ledger (issue 19, point 12): after a restart only the paths
//! it proves it added are adopted; an operator's own path in our pool with
//! our next hop stays, and so does one that replaced ours (withdrawn by the
//! UUID AddPath answered, which the replacement no longer has).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipnet::IpNet;
use ipvlan_bgp::bgp::announcer::{Announcement, Announcer};
use ipvlan_bgp::bgp::gobgp::{ApiLine, Gobgp, GobgpAddr, GobgpApi};
use ipvlan_bgp::bgp::ledger::Ledger;
use ipvlan_bgp::model::attrs::RouteAttrs;
use serde_json::Value;

use common::{skip, Outcome};

const TOML: &str = r#"
[global.config]
  as = 65000
  router-id = "192.0.2.1"
  port = -1
"#;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn n(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// `gobgp global rib -j -a FAMILY`: prefix -> the attributes of its path,
/// as gobgpd reports them (a JSON list of `{"type": N, ...}`).
fn rib(cli: &str, sock: &Path, family: &str) -> BTreeMap<String, Vec<Value>> {
    let out = Command::new(cli)
        .arg("--target")
        .arg(format!("unix://{}", sock.display()))
        .args(["global", "rib", "-j", "-a", family])
        .output()
        .expect("gobgp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("gobgp -j");
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(p, paths)| {
                    (
                        p.clone(),
                        paths[0]["attrs"].as_array().cloned().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The attribute of `type` among `attrs`.
fn attr(attrs: &[Value], ty: u64) -> Option<&Value> {
    attrs.iter().find(|a| a["type"].as_u64() == Some(ty))
}

/// The path's age in gobgpd (unix seconds it was made): unchanged when a
/// path was left alone.
fn ages(cli: &str, sock: &Path) -> BTreeMap<String, u64> {
    let out = Command::new(cli)
        .arg("--target")
        .arg(format!("unix://{}", sock.display()))
        .args(["global", "rib", "-j"])
        .output()
        .expect("gobgp");
    let v: Value = serde_json::from_slice(&out.stdout).expect("gobgp -j");
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(p, paths)| (p.clone(), paths[0]["age"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

async fn connect(addr: &GobgpAddr) -> Gobgp {
    for _ in 0..100 {
        if let Ok(c) = Gobgp::connect(addr, Duration::from_secs(2)).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gobgpd never answered on {addr}");
}

fn main() {
    common::run_async_trials(vec![
        (
            "attributes_reach_gobgpd_v3_change_and_survive_a_restart",
            || {
                Box::pin(attributes_reach_gobgpd_change_and_survive_a_restart(
                    ApiLine::V3,
                ))
            },
        ),
        (
            "attributes_reach_gobgpd_v4_change_and_survive_a_restart",
            || {
                Box::pin(attributes_reach_gobgpd_change_and_survive_a_restart(
                    ApiLine::V4,
                ))
            },
        ),
        ("only_its_own_paths_are_adopted_and_withdrawn_v3", || {
            Box::pin(only_its_own_paths_are_adopted_and_withdrawn(ApiLine::V3))
        }),
        ("only_its_own_paths_are_adopted_and_withdrawn_v4", || {
            Box::pin(only_its_own_paths_are_adopted_and_withdrawn(ApiLine::V4))
        }),
    ])
}

/// A gobgpd of `line` (AS 65000, no BGP port) on a unix socket in a
/// temporary folder, a client that detected its line, and the name of the
/// line's CLI; `Err` names the tool that is missing.
async fn gobgpd(line: ApiLine) -> Result<(tempfile::TempDir, Daemon, Gobgp, &'static str), String> {
    let (daemon, cli) = match line {
        ApiLine::V3 => ("gobgpd", "gobgp"),
        ApiLine::V4 => ("gobgpd-v4", "gobgp-v4"),
    };
    for tool in [daemon, cli] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("{tool} is not installed (ci/install.sh)"));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("api.sock");
    let toml = dir.path().join("g.toml");
    std::fs::write(&toml, TOML).expect("toml");
    let log = std::fs::File::create(dir.path().join("g.log")).expect("log");
    let running = Daemon(
        Command::new(daemon)
            .args(["-p", "--pprof-disable", "-f"])
            .arg(&toml)
            .arg(format!("--api-hosts=unix://{}", sock.display()))
            // 4.x serves metrics on 127.0.0.1:6060 despite --pprof-disable.
            .args(if line == ApiLine::V4 {
                &["--metrics-path="][..]
            } else {
                &[]
            })
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start gobgpd"),
    );
    let addr = GobgpAddr::Unix(sock.clone());
    let mut client = connect(&addr).await;
    assert_eq!(client.line(), line, "{daemon} detected as the other line");
    // gobgpd reads its TOML after the API is up: wait for its AS.
    for _ in 0..50 {
        let g = client.get_bgp().await.map(|g| g.asn);
        if g.is_ok_and(|asn| asn == 65000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((dir, running, client, cli))
}

/// `gobgp global rib add|del PREFIX nexthop NH`, as an operator would.
fn gobgp_cli(cli: &str, sock: &Path, verb: &str, prefix: &str, next_hop: &str) {
    let out = Command::new(cli)
        .arg("--target")
        .arg(format!("unix://{}", sock.display()))
        .args(["global", "rib", verb, prefix, "nexthop", next_hop])
        .output()
        .expect("gobgp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 19, point 12: after a restart the announcer adopts only the paths
/// its ledger proves it added. An operator's own path in one of our pools
/// with our next hop is left alone (and counted); one that replaced ours
/// for a prefix we withdraw stays too (the UUID of ours is gone); ours
/// still there goes.
async fn only_its_own_paths_are_adopted_and_withdrawn(line: ApiLine) -> Outcome {
    let (dir, _gobgpd, mut client, cli) = match gobgpd(line).await {
        Ok(g) => g,
        Err(why) => return skip(&why),
    };
    let sock = dir.path().join("api.sock");
    let state = tempfile::tempdir().expect("state dir");
    let ledger = || Ledger::open(Some(state.path().to_path_buf()));
    let limit = Duration::from_secs(5);
    let nh = ip("192.0.2.1");
    let plain = || Announcement {
        next_hop: nh,
        attrs: RouteAttrs::default(),
    };
    let pools = [n("10.1.1.0/24")];
    let wanted: BTreeMap<IpNet, Announcement> = ["10.1.1.2/32", "10.1.1.3/32"]
        .into_iter()
        .map(|p| (n(p), plain()))
        .collect();
    let mut a = Announcer::new(vec![], limit, ledger());
    a.resync(&mut client, &pools, &[nh], &wanted)
        .await
        .expect("resync");
    a.sync(&mut client, &wanted, None).await.expect("sync");
    // The operator's own path, in our pool, with our next hop.
    gobgp_cli(cli, &sock, "add", "10.1.1.9/32", "192.0.2.1");
    // Someone replaces our path for .3 with theirs while we are down.
    gobgp_cli(cli, &sock, "add", "10.1.1.3/32", "192.0.2.1");
    drop(a);
    // Restarted: only .2 is still wanted.
    let wanted: BTreeMap<IpNet, Announcement> = [(n("10.1.1.2/32"), plain())].into();
    let mut a = Announcer::new(vec![], limit, ledger());
    a.resync(&mut client, &pools, &[nh], &wanted)
        .await
        .expect("resync");
    assert_eq!(
        a.counts.foreign, 1,
        "the operator's .9 is counted, not adopted"
    );
    a.sync(&mut client, &wanted, None).await.expect("sync");
    let left: Vec<String> = rib(cli, &sock, "ipv4").into_keys().collect();
    assert_eq!(
        left,
        ["10.1.1.2/32", "10.1.1.3/32", "10.1.1.9/32"],
        "the operator's paths stay"
    );
    assert_eq!(a.counts.additions, 0, "ours was adopted, not added again");
    // Ours goes when no longer wanted; the operator's stay.
    a.sync(&mut client, &BTreeMap::new(), None)
        .await
        .expect("sync");
    let left: Vec<String> = rib(cli, &sock, "ipv4").into_keys().collect();
    assert_eq!(left, ["10.1.1.3/32", "10.1.1.9/32"]);
    // And a further restart adopts nothing.
    let mut a = Announcer::new(vec![], limit, ledger());
    a.resync(&mut client, &pools, &[nh], &BTreeMap::new())
        .await
        .expect("resync");
    assert_eq!((a.count(), a.counts.foreign), (0, 2));
    Ok(())
}

async fn attributes_reach_gobgpd_change_and_survive_a_restart(line: ApiLine) -> Outcome {
    let (dir, _gobgpd, mut client, cli) = match gobgpd(line).await {
        Ok(g) => g,
        Err(why) => return skip(&why),
    };
    let sock = dir.path().join("api.sock");

    let global = 65000 << 16 | 999;
    let full = RouteAttrs {
        communities: vec![65000 << 16 | 100],
        large_communities: vec![[65000, 1, 2]],
        local_pref: Some(200),
        med: Some(50),
        as_path_prepend: Some(2),
    };
    let med_only = RouteAttrs {
        med: Some(7),
        ..RouteAttrs::default()
    };
    let mut wanted = BTreeMap::from([
        (
            n("10.1.1.2/32"),
            Announcement {
                next_hop: ip("192.0.2.1"),
                attrs: full.clone(),
            },
        ),
        (
            n("10.1.1.3/32"),
            Announcement {
                next_hop: ip("192.0.2.1"),
                attrs: RouteAttrs::default(),
            },
        ),
        (
            n("fd00:1::2/128"),
            Announcement {
                next_hop: ip("2001:db8::1"),
                attrs: med_only.clone(),
            },
        ),
    ]);
    let pools = [n("10.1.1.0/24"), n("fd00:1::/64")];
    let nhs = [ip("192.0.2.1"), ip("2001:db8::1")];
    let limit = Duration::from_secs(5);
    // The driver's state directory: its ledger proves what it added.
    let state = tempfile::tempdir().expect("state dir");
    let ledger = || Ledger::open(Some(state.path().to_path_buf()));
    let mut a = Announcer::new(vec![global], limit, ledger());
    a.resync(&mut client, &pools, &nhs, &wanted)
        .await
        .expect("resync");
    a.sync(&mut client, &wanted, None).await.expect("sync");

    let v4 = rib(cli, &sock, "ipv4");
    let p = &v4["10.1.1.2/32"];
    assert_eq!(attr(p, 1).unwrap()["value"], 0, "ORIGIN IGP: {p:?}");
    let seg = &attr(p, 2).expect("AS_PATH")["as_paths"][0];
    assert_eq!(seg["segment_type"], 2);
    assert_eq!(seg["asns"], serde_json::json!([65000, 65000]));
    assert_eq!(attr(p, 4).expect("MED")["metric"], 50);
    assert_eq!(attr(p, 5).expect("LOCAL_PREF")["value"], 200);
    let comms = &attr(p, 8).expect("COMMUNITIES")["communities"];
    assert_eq!(
        comms,
        &serde_json::json!([65000u32 << 16 | 100, global]),
        "ours plus the global one"
    );
    let lc = &attr(p, 32).expect("LARGE_COMMUNITY")["value"][0];
    assert_eq!(
        (&lc["ASN"], &lc["LocalData1"], &lc["LocalData2"]),
        (
            &serde_json::json!(65000),
            &serde_json::json!(1),
            &serde_json::json!(2)
        )
    );
    // No attributes asked: only ORIGIN, NEXT_HOP and the global community.
    let plain = &v4["10.1.1.3/32"];
    assert!(attr(plain, 2).is_none() && attr(plain, 4).is_none() && attr(plain, 5).is_none());
    assert_eq!(
        attr(plain, 8).unwrap()["communities"],
        serde_json::json!([global])
    );
    let v6 = rib(cli, &sock, "ipv6");
    assert_eq!(attr(&v6["fd00:1::2/128"], 4).expect("MED")["metric"], 7);

    // A restarted driver wanting the same: nothing is replaced.
    let before = ages(cli, &sock);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut a2 = Announcer::new(vec![global], limit, ledger());
    a2.resync(&mut client, &pools, &nhs, &wanted)
        .await
        .expect("resync");
    assert_eq!(a2.count(), 3);
    a2.sync(&mut client, &wanted, None).await.expect("sync");
    assert_eq!(ages(cli, &sock), before, "same attributes: left alone");

    // Attributes change (a container reconnected with others): replaced.
    wanted.get_mut(&n("10.1.1.2/32")).unwrap().attrs = RouteAttrs {
        med: Some(5),
        as_path_prepend: Some(0),
        ..full.clone()
    };
    a2.sync(&mut client, &wanted, None).await.expect("sync");
    let p = &rib(cli, &sock, "ipv4")["10.1.1.2/32"];
    assert_eq!(attr(p, 4).expect("MED")["metric"], 5);
    assert!(attr(p, 2).is_none(), "prepend 0: no AS path: {p:?}");
    assert_eq!(ages(cli, &sock)["10.1.1.3/32"], before["10.1.1.3/32"]);

    // A restart with other options (another prepend): the path is replaced.
    wanted
        .get_mut(&n("10.1.1.2/32"))
        .unwrap()
        .attrs
        .as_path_prepend = Some(3);
    let mut a3 = Announcer::new(vec![global], limit, ledger());
    a3.resync(&mut client, &pools, &nhs, &wanted)
        .await
        .expect("resync");
    a3.sync(&mut client, &wanted, None).await.expect("sync");
    let p = &rib(cli, &sock, "ipv4")["10.1.1.2/32"];
    assert_eq!(
        attr(p, 2).expect("AS_PATH")["as_paths"][0]["asns"],
        serde_json::json!([65000, 65000, 65000])
    );

    // Withdrawn with its attributes: gone.
    wanted.clear();
    a3.sync(&mut client, &wanted, None).await.expect("sync");
    assert!(rib(cli, &sock, "ipv4").is_empty() && rib(cli, &sock, "ipv6").is_empty());
    Ok(())
}
