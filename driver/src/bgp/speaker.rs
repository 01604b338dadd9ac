//! Configuring gobgpd from the driver's own flags (`--asn`, `--router-id`,
//! `--peer`), for operators who do not want to write a gobgpd config file.
//!
//! In: the wanted global settings and peers; a peer's TCP MD5 password from
//! a file (`password-file=PATH`) or the environment (`password-env=NAME`),
//! never from the command line (`/proc/PID/cmdline` is world-readable).
//! Out: StartBgp when gobgpd has
//! not started BGP yet, AddPeer for every peer it does not have. Idempotent:
//! run on every (re)connection, so a restarted gobgpd gets its config back.
//! It never deletes or rewrites what the operator configured by hand.
//! Every call carries the gobgpd deadline.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tonic::Code;
use tracing::{info, warn};

use super::gobgp::apipb::{
    AddPeerRequest, AfiSafi, AfiSafiConfig, EbgpMultihop, GetBgpRequest, Global, ListPeerRequest,
    Peer, PeerConf, RouteReflector, StartBgpRequest, Timers, TimersConfig, Transport,
};
use super::gobgp::{deadline, families, next_within, Client};

/// One `--peer ADDRESS[:ASN][,option...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub address: IpAddr,
    /// `None`: same AS as ours (iBGP).
    pub asn: Option<u32>,
    pub passive: bool,
    /// Read from `password-file=` or `password-env=` while parsing.
    pub password: Option<Secret>,
    pub rr_client: bool,
    pub hold_time: Option<u64>,
    pub keepalive: Option<u64>,
    pub connect_retry: Option<u64>,
    pub multihop: Option<u32>,
}

/// A peer's password: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Linux's longest TCP MD5 key (`TCP_MD5SIG_MAXKEYLEN`).
const MAX_PASSWORD: usize = 80;

/// The password in `path`: its first line (a trailing newline is not part of
/// it). Refused when every local user may read the file, or when it is
/// empty or longer than the kernel takes.
fn password_from_file(path: &Path) -> Result<Secret, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{shown} is readable by every local user; chmod o-r {shown} (0600 or 0640)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let line = text.lines().next().unwrap_or_default();
    check_password(line).map_err(|e| format!("{shown}: {e}"))
}

/// The password in the environment variable `name`.
fn password_from_env(name: &str) -> Result<Secret, String> {
    let v = std::env::var(name).map_err(|_| format!("the environment has no {name}"))?;
    check_password(&v).map_err(|e| format!("${name}: {e}"))
}

fn check_password(p: &str) -> Result<Secret, String> {
    if p.is_empty() {
        return Err("the password is empty".into());
    }
    if p.len() > MAX_PASSWORD {
        return Err(format!(
            "the password has {} bytes; Linux takes at most {MAX_PASSWORD} (TCP MD5)",
            p.len()
        ));
    }
    Ok(Secret(p.to_string()))
}

/// `spec` with any `password=` value masked, for error messages.
fn redacted(spec: &str) -> String {
    spec.split(',')
        .map(|o| match o.trim().split_once('=') {
            Some(("password", _)) => "password=***",
            _ => o,
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // Messages quote the spec: never with a password in it.
        let s = &redacted(s)[..];
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default().trim();
        // IPv6 addresses contain ':'; write them as [addr]:asn.
        let (addr, asn) = if let Some(rest) = head.strip_prefix('[') {
            let (a, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("peer {s}: missing ']'"))?;
            (a, tail.strip_prefix(':'))
        } else if head.matches(':').count() == 1 {
            let (a, n) = head.split_once(':').unwrap_or((head, ""));
            (a, Some(n))
        } else {
            (head, None)
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| format!("peer {s}: {addr:?} is not an IP address"))?;
        let asn = match asn {
            None | Some("") => None,
            Some(n) => Some(
                n.parse::<u32>()
                    .ok()
                    .filter(|a| *a != 0)
                    .ok_or_else(|| format!("peer {s}: AS {n:?} is not a number 1..4294967295"))?,
            ),
        };
        let mut p = PeerSpec {
            address,
            asn,
            passive: false,
            password: None,
            rr_client: false,
            hold_time: None,
            keepalive: None,
            connect_retry: None,
            multihop: None,
        };
        for opt in parts {
            let opt = opt.trim();
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            let num = |v: &str| -> Result<u64, String> {
                v.parse()
                    .map_err(|_| format!("peer {s}: {k}={v:?} needs a number of seconds"))
            };
            match k {
                "passive" => p.passive = true,
                "rr-client" => p.rr_client = true,
                "password" => {
                    return Err(format!(
                        "peer {s}: a password on the command line is readable by every local user (/proc/PID/cmdline); give password-file=PATH (mode 0600) or password-env=NAME"
                    ))
                }
                "password-file" => {
                    p.password = Some(
                        password_from_file(Path::new(v))
                            .map_err(|e| format!("peer {s}: password-file: {e}"))?,
                    )
                }
                "password-env" => {
                    p.password = Some(
                        password_from_env(v).map_err(|e| format!("peer {s}: password-env: {e}"))?,
                    )
                }
                "hold" | "hold-time" => p.hold_time = Some(num(v)?),
                "keepalive" => p.keepalive = Some(num(v)?),
                "connect-retry" => p.connect_retry = Some(num(v)?),
                "multihop" => {
                    p.multihop = Some(
                        v.parse()
                            .ok()
                            .filter(|t| (1..=255).contains(t))
                            .ok_or_else(|| format!("peer {s}: multihop={v:?} needs a TTL 1..255"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "peer {s}: unknown option {opt:?}; options are passive, rr-client, password-file=PATH, password-env=NAME, hold=S, keepalive=S, connect-retry=S, multihop=TTL"
                    ))
                }
            }
        }
        Ok(p)
    }
}

/// What the driver configures on gobgpd.
#[derive(Debug, Clone, Default)]
pub struct SpeakerConfig {
    pub asn: Option<u32>,
    pub router_id: Option<String>,
    pub listen_port: i32,
    pub peers: Vec<PeerSpec>,
    pub hold_time: u64,
    pub keepalive: u64,
    pub connect_retry: u64,
}

impl SpeakerConfig {
    pub fn manages_gobgpd(&self) -> bool {
        self.asn.is_some()
    }
}

/// Makes gobgpd match the config; safe to call on every connection. Each
/// call (and each message of ListPeer) waits at most `limit`.
pub async fn configure(
    client: &mut Client,
    cfg: &SpeakerConfig,
    limit: Duration,
) -> Result<(), tonic::Status> {
    let Some(asn) = cfg.asn else {
        return Ok(());
    };
    let global = deadline("GetBgp", limit, client.get_bgp(GetBgpRequest {}))
        .await?
        .into_inner()
        .global
        .unwrap_or_default();
    if global.asn == 0 {
        // An IPv6-only host has no IPv4 address to take the router ID from.
        let router_id = cfg.router_id.clone().ok_or_else(|| {
            tonic::Status::failed_precondition(
                "no BGP router ID: this host has no IPv4 address to take it from; set --router-id (an IPv4-formatted number unique in the fabric)",
            )
        })?;
        deadline(
            "StartBgp",
            limit,
            client.start_bgp(StartBgpRequest {
                global: Some(Global {
                    asn,
                    router_id: router_id.clone(),
                    listen_port: cfg.listen_port,
                    listen_addresses: vec![],
                }),
            }),
        )
        .await?;
        info!(asn, router_id = %router_id, "started BGP on gobgpd");
    } else if global.asn != asn {
        warn!(
            gobgpd_asn = global.asn,
            our_asn = asn,
            "gobgpd already runs BGP with another AS; leaving it as it is"
        );
    }
    let existing: Vec<String> = {
        let mut s = deadline(
            "ListPeer",
            limit,
            client.list_peer(ListPeerRequest::default()),
        )
        .await?
        .into_inner();
        let mut v = Vec::new();
        while let Some(r) = next_within("ListPeer", limit, &mut s).await? {
            if let Some(c) = r.peer.and_then(|p| p.conf) {
                v.push(c.neighbor_address);
            }
        }
        v
    };
    for p in &cfg.peers {
        if existing
            .iter()
            .any(|e| e.parse::<IpAddr>().ok() == Some(p.address))
        {
            continue;
        }
        let peer = peer_message(p, asn, cfg);
        let add = client.add_peer(AddPeerRequest { peer: Some(peer) });
        match deadline("AddPeer", limit, add).await {
            Ok(_) => info!(peer = %p.address, asn = p.asn.unwrap_or(asn), "added BGP peer"),
            Err(e) if e.code() == Code::AlreadyExists || e.message().contains("existing") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A peer for AddPeer. Both IPv4 and IPv6 unicast are enabled, whatever the
/// family of the session's own addresses: a session over IPv4 carries IPv6
/// routes too (and the other way round), and a peer that does not offer a
/// family simply does not get it negotiated.
fn peer_message(p: &PeerSpec, our_asn: u32, cfg: &SpeakerConfig) -> Peer {
    Peer {
        conf: Some(PeerConf {
            auth_password: p
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
            description: "configured by ipvlan-bgp".into(),
            local_asn: 0,
            neighbor_address: p.address.to_string(),
            peer_asn: p.asn.unwrap_or(our_asn),
        }),
        ebgp_multihop: p.multihop.map(|ttl| EbgpMultihop {
            enabled: true,
            multihop_ttl: ttl,
        }),
        route_reflector: p.rr_client.then(|| RouteReflector {
            route_reflector_client: true,
            route_reflector_cluster_id: String::new(),
        }),
        state: None,
        timers: Some(Timers {
            config: Some(TimersConfig {
                connect_retry: p.connect_retry.unwrap_or(cfg.connect_retry),
                hold_time: p.hold_time.unwrap_or(cfg.hold_time),
                keepalive_interval: p.keepalive.unwrap_or(cfg.keepalive),
                minimum_advertisement_interval: 0,
                idle_hold_time_after_reset: 0,
            }),
        }),
        transport: Some(Transport {
            passive_mode: p.passive,
            ..Transport::default()
        }),
        afi_safis: families()
            .into_iter()
            .map(|family| AfiSafi {
                config: Some(AfiSafiConfig {
                    family: Some(family),
                    enabled: true,
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs_parse() {
        let p: PeerSpec = "192.0.2.2".parse().unwrap();
        assert_eq!(p.asn, None);
        let p: PeerSpec =
            "192.0.2.2:65010,passive,rr-client,hold=9,keepalive=3,connect-retry=1,multihop=2"
                .parse()
                .unwrap();
        assert_eq!(p.asn, Some(65010));
        assert!(p.passive && p.rr_client);
        assert_eq!(p.password, None);
        assert_eq!(
            (p.hold_time, p.keepalive, p.connect_retry, p.multihop),
            (Some(9), Some(3), Some(1), Some(2))
        );
        let p: PeerSpec = "[2001:db8::2]:65001".parse().unwrap();
        assert_eq!(p.asn, Some(65001));
        let p: PeerSpec = "2001:db8::2".parse().unwrap();
        assert_eq!(p.asn, None);
        assert!("192.0.2.2:x".parse::<PeerSpec>().is_err());
        assert!("192.0.2.2,bogus".parse::<PeerSpec>().is_err());
        assert!("host".parse::<PeerSpec>().is_err());
    }

    /// A password never comes from the command line: `password=` is
    /// refused (without repeating it); `password-file=` and
    /// `password-env=` are read, and what is read reaches AddPeer.
    #[test]
    fn passwords_come_from_a_file_or_the_environment_never_argv() {
        let err = "192.0.2.2:65010,password=s3cret,multihop=2"
            .parse::<PeerSpec>()
            .unwrap_err();
        assert!(err.contains("password-file=PATH"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the error repeats the password: {err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("peer.pw");
        std::fs::write(&file, "s3cret with space\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p: PeerSpec = format!(
            "192.0.2.2:65010,password-file={},multihop=2",
            file.display()
        )
        .parse()
        .unwrap();
        assert_eq!(
            p.password.as_ref().map(Secret::expose),
            Some("s3cret with space")
        );
        assert_eq!(p.multihop, Some(2));
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "Debug shows the password"
        );
        let m = peer_message(&p, 65000, &SpeakerConfig::default());
        assert_eq!(m.conf.unwrap().auth_password, "s3cret with space");

        // A file every local user may read, an empty one, a missing one, one
        // longer than a TCP MD5 key: refused, naming the file.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let spec = format!("192.0.2.2,password-file={}", file.display());
        let err = spec.parse::<PeerSpec>().unwrap_err();
        assert!(
            err.contains("every local user") && err.contains("peer.pw"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(&file, "\n").unwrap();
        assert!(spec.parse::<PeerSpec>().unwrap_err().contains("empty"));
        std::fs::write(&file, "x".repeat(81)).unwrap();
        assert!(spec.parse::<PeerSpec>().unwrap_err().contains("at most 80"));
        let missing = format!("192.0.2.2,password-file={}/nope", dir.path().display());
        assert!(missing.parse::<PeerSpec>().unwrap_err().contains("nope"));

        // The environment: a name of this test's own.
        let name = "IPVLAN_BGP_TEST_PEER_PASSWORD_7f3a";
        let spec = format!("192.0.2.2,password-env={name}");
        assert!(spec.parse::<PeerSpec>().unwrap_err().contains(name));
        std::env::set_var(name, "from-env");
        let p: PeerSpec = spec.parse().unwrap();
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("from-env"));
        std::env::remove_var(name);
    }

    #[test]
    fn peers_get_both_families_whatever_their_address() {
        for addr in ["192.0.2.2", "[2001:db8::2]:65001"] {
            let p: PeerSpec = addr.parse().unwrap();
            let m = peer_message(&p, 65000, &SpeakerConfig::default());
            let fams: Vec<(i32, i32, bool)> = m
                .afi_safis
                .iter()
                .filter_map(|a| a.config.as_ref())
                .map(|c| {
                    let f = c.family.unwrap_or_default();
                    (f.afi, f.safi, c.enabled)
                })
                .collect();
            assert_eq!(fams, [(1, 1, true), (2, 1, true)], "{addr}");
        }
    }
}
