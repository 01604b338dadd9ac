//! Configuring gobgpd from the driver's own flags (`--asn`, `--router-id`,
//! `--peer`, the timers, BFD and graceful restart), for operators who do not
//! want to write a gobgpd config file.
//!
//! In: the wanted global settings and peers ([`SpeakerConfig`], parsed from
//! the command line here: [`PeerSpec`]; a peer's TCP MD5 password from a
//! file (`password-file=PATH`) or the environment (`password-env=NAME`),
//! never from the command line: `/proc/PID/cmdline` is world-readable), and
//! the line gobgpd speaks. Out, in
//! two steps the session orders around its first announcements:
//! [`start`] (StartBgp when gobgpd has not started BGP yet, with multipath
//! and the import policy that honours GRACEFUL_SHUTDOWN; or the policies
//! our own earlier start failed to install), then, once our
//! paths are in gobgpd, [`add_peers`] (AddPeer for every peer it does not
//! have, UpdatePeer for one of ours whose BFD settings changed). Paths added
//! after a peer's first End-of-RIB would make its graceful-restart helpers
//! flush our stale copies (docs/gobgp-v4.md §5): hence StartBgp → AddPath →
//! AddPeer. Idempotent: run on every (re)connection, so a restarted gobgpd
//! gets its config back, as the restarting speaker (R and F bits) so that
//! its peers keep our paths until its End-of-RIB. It never deletes or
//! rewrites what the operator configured by hand. Every call carries the
//! gobgpd deadline.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tonic::Status;
use tracing::{info, warn};

pub use super::gobgp::Secret;
use super::gobgp::{
    ApiLine, Bfd, GlobalInfo, Gobgp, GobgpApi, GracefulRestart, PeerInfo, PeerNextHop6,
    PeerSettings, StartSettings,
};
use super::owed_policies::{MarkError, OwedPolicies};

/// Shortest and longest BFD interval accepted (RFC 5880 allows less; below
/// 10 ms no daemon here keeps up, above 10 s BFD detects nothing the hold
/// timer would not).
pub const BFD_INTERVAL_MIN: Duration = Duration::from_millis(10);
pub const BFD_INTERVAL_MAX: Duration = Duration::from_secs(10);
/// Detect multipliers accepted: 1 would declare a peer down on one lost packet.
pub const BFD_MULTIPLIER_MIN: u8 = 2;

/// How long gobgpd, as the restarting speaker, waits for its peers'
/// End-of-RIB before sending its own updates: this host only originates its
/// own prefixes, so waiting buys nothing beyond letting every live peer
/// come up; a dead peer would otherwise hold our updates to the live ones
/// for gobgpd's default of 360 s.
pub const DEFERRAL_TIME: u32 = 5;

/// A duration written in `--peer` or a flag: `300ms`, `9s`, `2m`, or a bare
/// number of seconds (as `hold=` has always taken).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| {
            format!("{s:?} is not a duration (e.g. 300ms, 9s, 2m; a bare number is seconds)")
        })?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Whole seconds (BGP's timers are in seconds): `9`, `9s`, `2m`.
fn parse_seconds(key: &str, v: &str) -> Result<u64, String> {
    let d = parse_duration(v)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "{key}={v}: BGP timers are whole seconds (got {d:?})"
        ));
    }
    Ok(d.as_secs())
}

/// A BFD interval, checked: a bare `300` means 300 seconds, which no one
/// wants; the error says how to write 300 ms.
pub fn parse_bfd_interval(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d > BFD_INTERVAL_MAX {
        let hint = if v.trim().chars().all(|c| c.is_ascii_digit()) {
            format!(
                " (a bare number is seconds: for milliseconds write {}ms)",
                v.trim()
            )
        } else {
            String::new()
        };
        return Err(format!(
            "BFD interval {v} is {d:?}: BFD intervals are {BFD_INTERVAL_MIN:?} to {BFD_INTERVAL_MAX:?}{hint}"
        ));
    }
    if d < BFD_INTERVAL_MIN {
        return Err(format!(
            "BFD interval {v} is {d:?}: BFD intervals are {BFD_INTERVAL_MIN:?} to {BFD_INTERVAL_MAX:?}"
        ));
    }
    Ok(d)
}

/// A BFD detect multiplier, checked.
pub fn parse_bfd_multiplier(v: &str) -> Result<u8, String> {
    v.trim()
        .parse::<u8>()
        .ok()
        .filter(|m| *m >= BFD_MULTIPLIER_MIN)
        .ok_or_else(|| {
            format!("BFD multiplier {v:?}: expected {BFD_MULTIPLIER_MIN}..255 (packets missed before the peer is down)")
        })
}

/// A peer's BFD choice in `--peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BfdChoice {
    Off,
    /// On with the default interval (`--bfd-interval`).
    On,
    Interval(Duration),
}

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
    /// `None`: the global `--bfd` decides.
    pub bfd: Option<BfdChoice>,
    pub bfd_multiplier: Option<u8>,
}

const PEER_OPTIONS: &str = "passive, rr-client, password-file=PATH, password-env=NAME, hold=DURATION, keepalive=DURATION, connect-retry=DURATION, multihop=TTL, bfd=on|off|INTERVAL, bfd-multiplier=N (durations: 300ms, 9s, 2m; a bare number is seconds)";

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
            bfd: None,
            bfd_multiplier: None,
        };
        for opt in parts {
            let opt = opt.trim();
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            let secs = |v: &str| parse_seconds(k, v).map_err(|e| format!("peer {s}: {e}"));
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
                "hold" | "hold-time" => p.hold_time = Some(secs(v)?),
                "keepalive" => p.keepalive = Some(secs(v)?),
                "connect-retry" => p.connect_retry = Some(secs(v)?),
                "multihop" => {
                    p.multihop = Some(
                        v.parse()
                            .ok()
                            .filter(|t| (1..=255).contains(t))
                            .ok_or_else(|| {
                                format!("peer {s}: multihop={v:?} needs a TTL 1..255")
                            })?,
                    )
                }
                "bfd" => {
                    p.bfd = Some(match v {
                        "on" | "" => BfdChoice::On,
                        "off" => BfdChoice::Off,
                        d => BfdChoice::Interval(
                            parse_bfd_interval(d).map_err(|e| format!("peer {s}: bfd={d}: {e}"))?,
                        ),
                    })
                }
                "bfd-multiplier" => {
                    p.bfd_multiplier =
                        Some(parse_bfd_multiplier(v).map_err(|e| format!("peer {s}: {e}"))?)
                }
                _ => {
                    return Err(format!(
                        "peer {s}: unknown option {opt:?}; options are {PEER_OPTIONS}"
                    ))
                }
            }
        }
        if let (Some(h), Some(k)) = (p.hold_time, p.keepalive) {
            if h != 0 && (h < 3 || k == 0 || k > h) {
                return Err(format!(
                    "peer {s}: hold={h}s keepalive={k}s: the hold time must be 0 or at least 3 s, and the keepalive at least 1 s and at most the hold time"
                ));
            }
        }
        Ok(p)
    }
}

/// Graceful restart as the driver configures it on its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrConfig {
    /// Seconds helpers keep our paths while we restart (`--graceful-restart-time`).
    pub restart_time: u32,
    /// Long-lived graceful restart stale time in seconds, after the restart
    /// time (`--long-lived-stale-time`); `None` off.
    pub long_lived: Option<u32>,
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
    /// BFD on every peer unless it says `bfd=off` (`--bfd`).
    pub bfd: bool,
    pub bfd_interval: Duration,
    pub bfd_multiplier: u8,
    /// `None`: graceful restart off (`--graceful-restart-time 0`).
    pub graceful_restart: Option<GrConfig>,
    /// What gobgpd sends its peers when the driver starts it (`--export`).
    pub export: Export,
}

/// `--export`: which paths a gobgpd the driver starts sends its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Export {
    /// Only the paths this host originates (its containers, networks,
    /// blocks): a host with two uplinks is no transit between its routers.
    #[default]
    Own,
    /// Every best path, learned ones too (gobgpd's default): a host that
    /// must pass routes on (a route reflector, a host between two peers).
    All,
}

impl SpeakerConfig {
    pub fn manages_gobgpd(&self) -> bool {
        self.asn.is_some()
    }

    /// The BFD settings of `p`, if it runs BFD.
    pub fn bfd_of(&self, p: &PeerSpec) -> Option<Bfd> {
        let interval = match p.bfd {
            Some(BfdChoice::Off) => return None,
            Some(BfdChoice::Interval(d)) => d,
            Some(BfdChoice::On) => self.bfd_interval,
            None if self.bfd => self.bfd_interval,
            None => return None,
        };
        Some(Bfd {
            interval,
            multiplier: p.bfd_multiplier.unwrap_or(self.bfd_multiplier),
        })
    }

    /// The peers that would run BFD (what a 3.x gobgpd must refuse).
    pub fn bfd_peers(&self) -> Vec<IpAddr> {
        self.peers
            .iter()
            .filter(|p| self.bfd_of(p).is_some())
            .map(|p| p.address)
            .collect()
    }

    /// AddPeer's settings for `p`; `restarting`: gobgpd was just (re)started
    /// and acts as the restarting speaker.
    pub fn settings(&self, p: &PeerSpec, our_asn: u32, restarting: bool) -> PeerSettings {
        PeerSettings {
            address: p.address,
            peer_asn: p.asn.unwrap_or(our_asn),
            password: p.password.clone(),
            passive: p.passive,
            rr_client: p.rr_client,
            multihop: p.multihop,
            hold_time: p.hold_time.unwrap_or(self.hold_time),
            keepalive: p.keepalive.unwrap_or(self.keepalive),
            connect_retry: p.connect_retry.unwrap_or(self.connect_retry),
            bfd: self.bfd_of(p),
            graceful_restart: self.graceful_restart.map(|g| GracefulRestart {
                restart_time: g.restart_time,
                deferral_time: DEFERRAL_TIME,
                restarting,
                long_lived: g.long_lived,
            }),
        }
    }
}

/// Why the driver must not run against this gobgpd at all: a setting the
/// line cannot honour. Checked once the line is known; never ignored.
pub fn refuse(cfg: &SpeakerConfig, line: ApiLine) -> Result<(), String> {
    let bfd = cfg.bfd_peers();
    if line == ApiLine::V3 && cfg.manages_gobgpd() && !bfd.is_empty() {
        let peers: Vec<String> = bfd.iter().map(|a| a.to_string()).collect();
        return Err(format!(
            "BFD is configured (--bfd, or bfd= in --peer for {}) but this gobgpd speaks GoBGP's 3.x API, which has no BFD: BFD needs gobgpd 4.6 or later (ci/install.sh installs gobgpd-v4 4.8.0; see docs/gobgp-v4.md), or drop the BFD settings",
            peers.join(", ")
        ));
    }
    Ok(())
}

/// What [`start`] found or did.
#[derive(Debug, Clone, Default)]
pub struct Started {
    pub global: GlobalInfo,
    /// We started BGP on this connection: gobgpd was (re)started.
    pub fresh: bool,
}

/// Starts BGP on gobgpd when it has not started yet (with multipath, the
/// import policy that makes a path carrying GRACEFUL_SHUTDOWN lose to any
/// other, and with `--export own` the export policy that sends peers only
/// our own paths). Without `--asn`, or when gobgpd runs BGP already (its
/// operator's config, or our own start before a driver restart), its
/// policies are left alone: a gobgpd that restarts comes back empty and
/// gets them again here. `v6_next_hops` (dual-uplink mode): the export
/// policy's per-peer IPv6 next hops ([`crate::bgp::uplink_next_hops`]).
///
/// `owed`, kept by the caller across connections and, with a state
/// directory, across the driver's restarts ([`super::owed_policies`]): our
/// StartBgp ran but its policies are not known to be in (an install after
/// it failed, or the driver died in between). gobgpd then runs BGP because
/// of us, without our policies; the next call must not take it for an
/// operator's gobgpd (it would never install the export policy, and a
/// dual-homed host would pass learned paths on): when gobgpd runs the AS
/// and router ID the mark names, it installs them again (idempotent)
/// before anything else, as on a fresh start. The mark is written before
/// StartBgp: when it cannot be, BGP is not started (a start that could not
/// be proven ours after a restart could leave transit behind for good).
/// StopBgp would not reset it: on 4.x it ends gobgpd's server for good
/// ("server stopped" until the process restarts).
pub async fn start(
    client: &mut Gobgp,
    cfg: &SpeakerConfig,
    v6_next_hops: &[PeerNextHop6],
    owed: &mut OwedPolicies,
) -> Result<Started, StartError> {
    let global = client.get_bgp().await?;
    let Some(asn) = cfg.asn else {
        return Ok(Started {
            global,
            fresh: false,
        });
    };
    if global.asn != 0 && global.asn == asn && owed.owed_by(global.asn, &global.router_id).await {
        let router_id = cfg.router_id.clone().unwrap_or_default();
        install_policies(client, cfg, &router_id, v6_next_hops).await?;
        owed.settle().await;
        info!(asn, router_id = %global.router_id, line = %client.line(), export = ?cfg.export, "installed the policies our last StartBgp on gobgpd left owed");
        return Ok(Started {
            global: client.get_bgp().await?,
            fresh: true,
        });
    }
    if global.asn != 0 {
        if global.asn != asn {
            // A mark of ours for another AS is stale: warned and dropped.
            owed.owed_by(global.asn, &global.router_id).await;
            warn!(
                gobgpd_asn = global.asn,
                our_asn = asn,
                "gobgpd already runs BGP with another AS; leaving it as it is"
            );
        }
        return Ok(Started {
            global,
            fresh: false,
        });
    }
    // An IPv6-only host has no IPv4 address to take the router ID from.
    let router_id = cfg.router_id.clone().ok_or_else(|| {
        Status::failed_precondition(
            "no BGP router ID: this host has no IPv4 address to take it from; set --router-id (an IPv4-formatted number unique in the fabric)",
        )
    })?;
    // The proof that this start is ours, before it happens.
    owed.promise(asn, &router_id).await?;
    client
        .start_bgp(&StartSettings {
            asn,
            router_id: router_id.clone(),
            listen_port: cfg.listen_port,
            use_multiple_paths: true,
        })
        .await?;
    install_policies(client, cfg, &router_id, v6_next_hops).await?;
    owed.settle().await;
    info!(asn, router_id = %router_id, line = %client.line(), export = ?cfg.export, "started BGP on gobgpd (multipath, GRACEFUL_SHUTDOWN honoured on import; export: own = only this host's paths go to peers, all = every best path)");
    Ok(Started {
        global: client.get_bgp().await?,
        fresh: true,
    })
}

/// Why [`start`] failed: gobgpd refused or missed its deadline, or the
/// owed policies' mark could not be written (BGP was not started).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", super::gobgp::describe(.0))]
    Gobgpd(#[from] Status),
    #[error(transparent)]
    Mark(#[from] MarkError),
}

/// Test hook: the export policy's next install on a gobgpd whose BGP we
/// start with one of these router IDs fails once (as a gobgpd that refuses
/// or misses its deadline would make it), after StartBgp succeeded.
#[cfg(any(test, feature = "test-support"))]
pub static FAIL_EXPORT_INSTALL: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The policies [`start`] installs right after StartBgp: the import policy
/// that honours GRACEFUL_SHUTDOWN, and with `--export own` the export
/// policy, before any peer is added (add_peers comes after): no learned
/// path is ever sent on, not even for a moment.
#[cfg_attr(not(any(test, feature = "test-support")), allow(unused_variables))]
async fn install_policies(
    client: &mut Gobgp,
    cfg: &SpeakerConfig,
    router_id: &str,
    v6_next_hops: &[PeerNextHop6],
) -> Result<(), Status> {
    client.honour_graceful_shutdown().await?;
    if cfg.export == Export::Own {
        #[cfg(any(test, feature = "test-support"))]
        {
            let mut armed = FAIL_EXPORT_INSTALL
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(i) = armed.iter().position(|r| r == router_id) {
                armed.remove(i);
                return Err(Status::unavailable(
                    "export policy install failed (test hook)",
                ));
            }
        }
        client.export_only_own_paths(v6_next_hops).await?;
        for p in v6_next_hops {
            info!(peer = %p.peer, ipv6_next_hop = %p.next_hop, "export policy: our IPv6 paths go to this uplink peer with its uplink's IPv6 address as next hop");
        }
    }
    Ok(())
}

/// AddPeer for every configured peer gobgpd does not have; UpdatePeer for a
/// peer we configured whose BFD settings differ from ours (4.x). Peers the
/// operator added by hand are left alone. `fresh`: gobgpd was (re)started,
/// so new peers get graceful restart as the restarting speaker.
pub async fn add_peers(client: &mut Gobgp, cfg: &SpeakerConfig, fresh: bool) -> Result<(), Status> {
    let Some(asn) = cfg.asn else {
        return Ok(());
    };
    let existing: Vec<PeerInfo> = client.list_peers(None).await?;
    for p in &cfg.peers {
        let have = existing
            .iter()
            .find(|e| e.address.parse::<IpAddr>().ok() == Some(p.address));
        let want = cfg.settings(p, asn, fresh);
        match have {
            None => match client.add_peer(&want).await {
                Ok(()) => info!(
                    peer = %p.address,
                    asn = want.peer_asn,
                    hold = want.hold_time,
                    bfd = ?want.bfd.map(|b| format!("{:?} x {}", b.interval, b.multiplier)),
                    graceful_restart = ?want.graceful_restart.map(|g| g.restart_time),
                    restarting = fresh && want.graceful_restart.is_some(),
                    "added BGP peer"
                ),
                Err(e) if super::gobgp::already_exists(&e) || e.message().contains("existing") => {}
                Err(e) => return Err(e),
            },
            Some(h) if client.line() == ApiLine::V4 && h.bfd.map(|b| b.settings) != want.bfd => {
                // Restarting only applies to a new session: an update must
                // not set the R bit on a running one.
                let want = cfg.settings(p, asn, false);
                client.update_peer(&want).await?;
                info!(peer = %p.address, bfd = ?want.bfd, "updated BGP peer's BFD settings");
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Deletes and adds again the peer at `address` if it is one of ours (a
/// session stuck in its handshake: [`super::stuck`]); answers whether it
/// was. A peer the operator configured is left alone.
pub async fn re_add_peer(
    client: &mut Gobgp,
    cfg: &SpeakerConfig,
    address: &str,
) -> Result<bool, Status> {
    let (Some(asn), Ok(addr)) = (cfg.asn, address.parse::<IpAddr>()) else {
        return Ok(false);
    };
    let Some(p) = cfg.peers.iter().find(|p| p.address == addr) else {
        return Ok(false);
    };
    client.delete_peer(address).await?;
    client.add_peer(&cfg.settings(p, asn, false)).await?;
    Ok(true)
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
        // What AddPeer gets (both codecs put it in auth_password: their tests).
        let m = SpeakerConfig::default().settings(&p, 65000, false);
        assert_eq!(
            m.password.as_ref().map(Secret::expose),
            Some("s3cret with space")
        );
        assert!(!format!("{m:?}").contains("s3cret"), "Debug shows it");

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

    /// Durations take units; bare numbers stay seconds (as `hold=` always
    /// took them); BGP timers are whole seconds.
    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("9s"), Ok(Duration::from_secs(9)));
        assert_eq!(parse_duration("9"), Ok(Duration::from_secs(9)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        for bad in ["", "ms", "9h", "-1", "nine", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let p: PeerSpec = "192.0.2.2,hold=9s,keepalive=3s,connect-retry=1m"
            .parse()
            .unwrap();
        assert_eq!(
            (p.hold_time, p.keepalive, p.connect_retry),
            (Some(9), Some(3), Some(60))
        );
        let e = "192.0.2.2,hold=500ms".parse::<PeerSpec>().unwrap_err();
        assert!(e.contains("whole seconds"), "{e}");
        let e = "192.0.2.2,hold=9,keepalive=10"
            .parse::<PeerSpec>()
            .unwrap_err();
        assert!(e.contains("at most the hold time"), "{e}");
        assert!("192.0.2.2,hold=2,keepalive=1".parse::<PeerSpec>().is_err());
        assert!("192.0.2.2,hold=0,keepalive=1".parse::<PeerSpec>().is_ok());
    }

    #[test]
    fn bfd_settings_parse_and_absurd_ones_are_refused() {
        let p: PeerSpec = "192.0.2.2,bfd=300ms,bfd-multiplier=3".parse().unwrap();
        assert_eq!(p.bfd, Some(BfdChoice::Interval(Duration::from_millis(300))));
        assert_eq!(p.bfd_multiplier, Some(3));
        let p: PeerSpec = "192.0.2.2,bfd=on".parse().unwrap();
        assert_eq!(p.bfd, Some(BfdChoice::On));
        let p: PeerSpec = "192.0.2.2,bfd".parse().unwrap();
        assert_eq!(p.bfd, Some(BfdChoice::On));
        let p: PeerSpec = "192.0.2.2,bfd=off".parse().unwrap();
        assert_eq!(p.bfd, Some(BfdChoice::Off));
        let p: PeerSpec = "192.0.2.2,bfd=1".parse().unwrap();
        assert_eq!(p.bfd, Some(BfdChoice::Interval(Duration::from_secs(1))));
        // A bare 300 is 300 s: refused, saying how to write milliseconds.
        let e = "192.0.2.2,bfd=300".parse::<PeerSpec>().unwrap_err();
        assert!(e.contains("300ms") && e.contains("seconds"), "{e}");
        let e = "192.0.2.2,bfd=5ms".parse::<PeerSpec>().unwrap_err();
        assert!(e.contains("10ms"), "{e}");
        for m in ["0", "1", "256", "x"] {
            let e = format!("192.0.2.2,bfd-multiplier={m}")
                .parse::<PeerSpec>()
                .unwrap_err();
            assert!(e.contains("2..255"), "{e}");
        }
        assert!(parse_bfd_interval("10s").is_ok());
        assert!(parse_bfd_interval("11s").is_err());
    }

    #[test]
    fn bfd_comes_from_the_peer_or_the_global_default() {
        let cfg = |bfd: bool| SpeakerConfig {
            asn: Some(65000),
            bfd,
            bfd_interval: Duration::from_millis(300),
            bfd_multiplier: 3,
            peers: vec![
                "192.0.2.2".parse().unwrap(),
                "192.0.2.3,bfd=100ms,bfd-multiplier=5".parse().unwrap(),
                "192.0.2.4,bfd=off".parse().unwrap(),
                "192.0.2.5,bfd=on".parse().unwrap(),
            ],
            ..SpeakerConfig::default()
        };
        let bfd = |ms: u64, m: u8| {
            Some(Bfd {
                interval: Duration::from_millis(ms),
                multiplier: m,
            })
        };
        let c = cfg(false);
        let got: Vec<Option<Bfd>> = c.peers.iter().map(|p| c.bfd_of(p)).collect();
        assert_eq!(got, [None, bfd(100, 5), None, bfd(300, 3)]);
        let c = cfg(true);
        let got: Vec<Option<Bfd>> = c.peers.iter().map(|p| c.bfd_of(p)).collect();
        assert_eq!(got, [bfd(300, 3), bfd(100, 5), None, bfd(300, 3)]);
        assert_eq!(c.bfd_peers().len(), 3);
        // 3.x cannot run BFD: refused with a message naming 4.x; 4.x is fine.
        let e = refuse(&c, ApiLine::V3).unwrap_err();
        assert!(e.contains("4.6") && e.contains("3.x"), "{e}");
        assert!(refuse(&c, ApiLine::V4).is_ok());
        let mut none = cfg(false);
        none.peers.truncate(1);
        assert!(refuse(&none, ApiLine::V3).is_ok());
    }

    #[test]
    fn peer_settings_carry_timers_bfd_and_graceful_restart() {
        let cfg = SpeakerConfig {
            asn: Some(65000),
            hold_time: 9,
            keepalive: 3,
            connect_retry: 5,
            bfd: true,
            bfd_interval: Duration::from_millis(300),
            bfd_multiplier: 3,
            graceful_restart: Some(GrConfig {
                restart_time: 120,
                long_lived: None,
            }),
            ..SpeakerConfig::default()
        };
        let p: PeerSpec = "192.0.2.2:65001,hold=30,keepalive=10".parse().unwrap();
        let s = cfg.settings(&p, 65000, true);
        assert_eq!(
            (s.peer_asn, s.hold_time, s.keepalive, s.connect_retry),
            (65001, 30, 10, 5)
        );
        let gr = s.graceful_restart.unwrap();
        assert_eq!(
            (gr.restart_time, gr.deferral_time, gr.restarting),
            (120, DEFERRAL_TIME, true)
        );
        assert!(s.bfd.is_some());
        let p: PeerSpec = "192.0.2.3".parse().unwrap();
        assert_eq!(
            cfg.settings(&p, 65000, false).peer_asn,
            65000,
            "iBGP by default"
        );
        let off = SpeakerConfig {
            graceful_restart: None,
            ..cfg
        };
        assert!(off.settings(&p, 65000, true).graceful_restart.is_none());
    }
}
