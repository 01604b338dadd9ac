//! Scenario files: topology as data, then steps and expectations.
//!
//! In: a TOML file (see `scenarios/*.toml`; each starts with its picture).
//! Out: a validated [`Scenario`] in which every host, network and container
//! a step names exists, or an error that names the file, the line and what
//! is wrong. Parsing never touches the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{anyhow, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;
use toml::Spanned;

use crate::util::Dur;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Macvlan,
    Ipvlan,
    /// A kernel *without* ipvlan (to check how its absence is reported).
    #[serde(rename = "no-ipvlan")]
    NoIpvlan,
    Gobgpd,
    Dockerd,
    Frr,
    Bird,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BgpMode {
    /// Every host peers with every other host.
    #[default]
    Mesh,
    /// Every host peers with the reflector host only.
    RouteReflector,
    /// No BGP at all (data plane only).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BgpConfigBy {
    /// gobgpd gets a TOML file (the operator's way, as in the original project).
    #[default]
    Gobgpd,
    /// gobgpd starts empty and the driver configures it (`--asn`, `--peer`).
    Driver,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    #[serde(default)]
    pub mode: BgpMode,
    /// The reflector's host name when `mode = "route-reflector"`.
    pub reflector: Option<String>,
    #[serde(default)]
    pub config: BgpConfigBy,
    #[serde(default = "default_hold")]
    pub hold_time: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive: u64,
    #[serde(default = "default_connect_retry")]
    pub connect_retry: u64,
}

fn default_hold() -> u64 {
    9
}
fn default_keepalive() -> u64 {
    3
}
fn default_connect_retry() -> u64 {
    1
}

impl Default for BgpSection {
    fn default() -> Self {
        BgpSection {
            mode: BgpMode::Mesh,
            reflector: None,
            config: BgpConfigBy::Gobgpd,
            hold_time: default_hold(),
            keepalive: default_keepalive(),
            connect_retry: default_connect_retry(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DriverSection {
    /// Extra flags for every host's driver.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// gobgpd and the driver: a Docker host.
    #[default]
    Docker,
    /// gobgpd only, configured as route reflector for the other hosts.
    Reflector,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    pub name: String,
    #[serde(default = "default_asn")]
    pub asn: u32,
    /// Underlay address with prefix length; default `.<index+1>` in the underlay subnet.
    pub address: Option<Ipv4Net>,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub driver_args: Vec<String>,
    /// With the dockerd engine: run this host's dockerd with `--live-restore`.
    #[serde(default)]
    pub dockerd_live_restore: bool,
    /// The segment the host's underlay NIC is on (default: the first).
    pub segment: Option<String>,
    /// A router whose address on the host's segment is the host's default route.
    pub gateway: Option<String>,
    /// BGP neighbours (hosts or routers); default: as `[bgp] mode` says.
    pub peers: Option<Vec<String>>,
}

/// An L2 segment of the underlay: a bridge in the switch namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    pub name: String,
    pub subnet: Ipv4Net,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// FRR: zebra + bgpd (routes go into the router's kernel).
    Frr,
    /// BIRD 2.
    Bird,
}

/// A real router: FRR or BIRD in its own namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterDef {
    pub name: String,
    pub kind: RouterKind,
    pub asn: u32,
    /// Segment -> the router's address on it (with prefix length).
    pub links: BTreeMap<String, Ipv4Net>,
    /// BGP neighbours: hosts or routers sharing a segment with this router.
    #[serde(default)]
    pub neighbors: Vec<String>,
    /// iBGP neighbours that are route-reflector clients of this router.
    #[serde(default)]
    pub rr_clients: Vec<String>,
    /// Prefixes the router originates.
    #[serde(default)]
    pub originate: Vec<Ipv4Net>,
}

fn default_asn() -> u32 {
    65000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    pub name: String,
    /// `-o key=value` options (the parent defaults to the host's underlay NIC).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Subnet per host: the network exists on these hosts.
    pub subnets: BTreeMap<String, Ipv4Net>,
    /// Create the network on every host before the first step (default true).
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerDef {
    pub name: String,
    pub host: String,
    pub network: String,
    /// `count = N` declares `name1` .. `nameN`; steps may use `name` for the group.
    pub count: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    #[default]
    Icmp,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonKind {
    Gobgpd,
    Driver,
    /// The dockerd engine's daemon on that host.
    Dockerd,
}

fn default_within() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}

/// What a step does. `do = "..."` selects the variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Wait until every BGP session of every host is established.
    WaitBgp {
        #[serde(default = "default_within")]
        within: Dur,
    },
    CreateNetwork {
        network: String,
        hosts: Option<Vec<String>>,
        /// The creation must fail, and the error the user sees must contain this.
        expect_error: Option<String>,
    },
    DeleteNetwork {
        network: String,
        hosts: Option<Vec<String>>,
    },
    Start {
        containers: Vec<String>,
        /// The start must fail, and the error the user sees must contain this.
        expect_error: Option<String>,
        /// Each container must be up within this time; failed attempts are
        /// retried until then (without it: one attempt, no time limit).
        within: Option<Dur>,
    },
    /// The containers' sandboxes die without the driver being told: the
    /// emulator removes the namespace (no Leave, no DeleteEndpoint until the
    /// teardown cleans up as dockerd would after a crash); dockerd gets
    /// `docker kill`.
    KillContainer {
        containers: Vec<String>,
    },
    Stop {
        containers: Vec<String>,
    },
    /// Every `from` reaches every `to` (containers or hosts).
    ExpectReachable {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default = "default_within")]
        within: Dur,
        #[serde(default)]
        probe: Probe,
    },
    /// No `from` reaches any `to`; with `hold`, that stays true for so long.
    ExpectUnreachable {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default = "default_within")]
        within: Dur,
        hold: Option<Dur>,
    },
    /// Every pair among `members` (default: all running containers) reaches each other.
    ExpectMatrix {
        members: Option<Vec<String>>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// A route (ours, tagged) for `prefix` (a CIDR or a container name) on `host`.
    ExpectRoute {
        host: String,
        prefix: String,
        #[serde(default = "yes")]
        present: bool,
        /// Next hop: a host name or an address.
        via: Option<String>,
        /// Whose route: `ours` (the driver's tag, the default), `static`,
        /// `kernel`, `boot` or a protocol number.
        protocol: Option<String>,
        #[serde(default = "default_within")]
        within: Dur,
        /// Keep checking for so long after it first holds; with
        /// `present = false` the default is 2 s (scaled).
        hold: Option<Dur>,
    },
    /// The host's whole set of tagged (learned) routes is exactly `routes`:
    /// nothing missing, nothing extra, each through its `via` when given.
    /// Fails with the difference (missing, extra, wrong next hop).
    ExpectRoutes {
        host: String,
        /// Each a CIDR, a container name or a group name (its members that
        /// are running), or `{ prefix = "...", via = "..." }`.
        routes: Vec<RouteEntry>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// A container's own view: its address on eth0 and its routes, as the
    /// data plane promises them (ipvlan L3: a connected default route and no
    /// gateway; macvlan and ipvlan L2: a default route via the gateway).
    ExpectContainer {
        /// A container (or a group: each member).
        container: String,
        /// eth0 holds the address the engine's IPAM gave it (or not).
        address: Option<bool>,
        /// How the default route leaves: straight out of eth0, or via a gateway.
        default_route: Option<DefaultRoute>,
        /// `true`: the default route is via the network's gateway (Docker's
        /// IPAM: the subnet's first address); `false`: no route in the
        /// container has a next hop at all.
        gateway: Option<bool>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// The best path for `prefix` in a host's gobgpd RIB (`gobgp -j global
    /// rib`) carries these route-reflection attributes: ORIGINATOR_ID and
    /// CLUSTER_LIST (RFC 4456). Names resolve to addresses as `via` does (a
    /// host's router ID is its underlay address; a one-link router's is its
    /// address).
    ExpectBgpPath {
        host: String,
        /// A CIDR or a container name (its /32).
        prefix: String,
        /// ORIGINATOR_ID: a host or router name, or an address.
        originator: Option<String>,
        /// CLUSTER_LIST, in order: host or router names, or addresses.
        cluster_list: Option<Vec<String>>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// The host's driver has rejected at least one learned route for `reason`.
    ExpectRejected {
        host: String,
        reason: String,
        #[serde(default = "default_within")]
        within: Dur,
    },
    Kill {
        host: String,
        daemon: DaemonKind,
    },
    StopDaemon {
        host: String,
        daemon: DaemonKind,
    },
    StartDaemon {
        host: String,
        daemon: DaemonKind,
    },
    Restart {
        host: String,
        daemon: DaemonKind,
    },
    LinkDown {
        host: String,
    },
    LinkUp {
        host: String,
    },
    /// Originate a path on a host's gobgpd with the `gobgp` CLI (a rogue announcement).
    Inject {
        host: String,
        prefix: Ipv4Net,
        next_hop: Ipv4Addr,
    },
    /// A router's own view (vtysh / birdc) holds `prefix` via `via` (or not).
    ExpectRouterRoute {
        router: String,
        /// A CIDR or a container name (its /32).
        prefix: String,
        #[serde(default = "yes")]
        present: bool,
        /// Next hop: a host or router name, or an address.
        via: Option<String>,
        #[serde(default = "default_within")]
        within: Dur,
        /// Keep checking for so long after it first holds; with
        /// `present = false` the default is 2 s (scaled).
        hold: Option<Dur>,
    },
    /// A router dies: its daemons are killed and its links go down.
    RouterDown {
        router: String,
    },
    /// The router's links come up and its daemons start again.
    RouterUp {
        router: String,
    },
    /// Run a command inside a host's namespace (a firewall rule, a sysctl...).
    Run {
        host: String,
        command: Vec<String>,
    },
    /// Plant a route with the driver's protocol tag by hand (a stale leftover).
    PlantRoute {
        host: String,
        prefix: Ipv4Net,
        via: Ipv4Addr,
    },
    /// SIGSTOP a host's daemon (the pid the harness started): it hangs, its
    /// sockets stay open.
    Freeze {
        host: String,
        daemon: DaemonKind,
    },
    /// SIGCONT a frozen daemon.
    Thaw {
        host: String,
        daemon: DaemonKind,
    },
    /// Do nothing for a while (a link that stays down, a freeze that lasts).
    Pause {
        #[serde(rename = "for")]
        duration: Dur,
    },
    /// Poll the host driver's status JSON until the value at `field` (a
    /// dotted path such as `bgp.rejected.outside-pools`; missing counts as 0
    /// for the numeric tests) satisfies every test given.
    ExpectStatus {
        host: String,
        field: String,
        equals: Option<toml::Value>,
        at_least: Option<f64>,
        at_most: Option<f64>,
        #[serde(default = "default_within")]
        within: Dur,
        /// Keep checking for so long after it first holds.
        hold: Option<Dur>,
    },
    /// Count the lines of a host's daemon log (default the driver's) that
    /// contain `contains`, until the count satisfies the bounds.
    ExpectLog {
        host: String,
        #[serde(default = "default_log_daemon")]
        daemon: DaemonKind,
        contains: String,
        at_least: Option<u64>,
        at_most: Option<u64>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// Remember links of a host (index, kind, parent, MAC, alias, flags) for
    /// a later `expect-link` with `unchanged_since`.
    LinkSnapshot {
        id: String,
        host: String,
        links: Vec<String>,
    },
    /// A link exists (or not) in a host's namespace; optionally of a kind,
    /// with an alias starting with `alias_prefix`, or exactly as it was in a
    /// snapshot (same index, so never deleted and re-made).
    ExpectLink {
        host: String,
        links: Vec<String>,
        #[serde(default = "yes")]
        present: bool,
        kind: Option<String>,
        alias_prefix: Option<String>,
        unchanged_since: Option<String>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// How many links in a host's namespace carry the driver's mark (alias
    /// `ipvlan-bgp:...`); fails listing every link with its alias.
    ExpectMarkedLinks {
        host: String,
        at_least: Option<u64>,
        at_most: Option<u64>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// Remember each BGP session of a host's gobgpd (uptime, updates
    /// received) for a later `expect-bgp-steady`.
    BgpSnapshot {
        id: String,
        host: String,
    },
    /// Every session of the snapshot is still established, never reset
    /// (same uptime), and received no new UPDATE since.
    ExpectBgpSteady {
        host: String,
        since: String,
    },
    /// Originate `count` /32s from `first` on a host's gobgpd through its
    /// gRPC API (AddPathStream), in the background; `flood-wait` joins it.
    Flood {
        id: String,
        host: String,
        count: u32,
        first: Ipv4Addr,
        /// Default: the host's own underlay address.
        next_hop: Option<Ipv4Addr>,
    },
    /// Wait until a background flood has been accepted by gobgpd.
    FloodWait {
        id: String,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// Start pinging pairs every `interval` in the background.
    ProbeStart {
        /// Names the probe for its `probe-stop`.
        id: String,
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default = "default_interval")]
        interval: Dur,
    },
    /// Stop a background probe; fail if more than `max_loss` probes were lost.
    ProbeStop {
        id: String,
        /// Probes allowed to go unanswered (default 0), unless `max_outage` is given.
        max_loss: Option<u64>,
        /// Instead of a loss count: the longest run of lost probes must be shorter than this.
        max_outage: Option<Dur>,
    },
}

/// What a step's time means for the report's `convergence_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// It changes the world (start, stop, kill, link change, restart...):
    /// the expectations after it measure convergence from its end.
    Event,
    /// It polls until something holds: its convergence is the time from the
    /// end of the last event until it first held.
    Expectation,
    /// It measures its own convergence (a probe's longest outage, a flood's
    /// acceptance time from its start).
    Own,
    /// It neither changes the world nor waits for it (snapshots, pauses,
    /// one-shot comparisons).
    Neither,
}

impl Action {
    pub fn measure(&self) -> Measure {
        use Action::*;
        match self {
            CreateNetwork { .. }
            | DeleteNetwork { .. }
            | Start { .. }
            | KillContainer { .. }
            | Stop { .. }
            | Kill { .. }
            | StopDaemon { .. }
            | StartDaemon { .. }
            | Restart { .. }
            | LinkDown { .. }
            | LinkUp { .. }
            | Inject { .. }
            | RouterDown { .. }
            | RouterUp { .. }
            | Run { .. }
            | PlantRoute { .. }
            | Freeze { .. }
            | Thaw { .. }
            | Flood { .. } => Measure::Event,
            WaitBgp { .. }
            | ExpectReachable { .. }
            | ExpectUnreachable { .. }
            | ExpectMatrix { .. }
            | ExpectRoute { .. }
            | ExpectRoutes { .. }
            | ExpectContainer { .. }
            | ExpectBgpPath { .. }
            | ExpectRejected { .. }
            | ExpectRouterRoute { .. }
            | ExpectStatus { .. }
            | ExpectLog { .. }
            | ExpectLink { .. }
            | ExpectMarkedLinks { .. } => Measure::Expectation,
            FloodWait { .. } | ProbeStop { .. } => Measure::Own,
            Pause { .. }
            | LinkSnapshot { .. }
            | BgpSnapshot { .. }
            | ExpectBgpSteady { .. }
            | ProbeStart { .. } => Measure::Neither,
        }
    }
}

/// How a container's default route leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultRoute {
    /// `default dev eth0`: no next hop (ipvlan L3/L3S).
    Connected,
    /// `default via GW dev eth0`.
    Gateway,
}

/// One route of an `expect-routes` set.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteEntry {
    /// A CIDR or a container name (its /32), through any next hop.
    Prefix(String),
    /// With a next hop: a host or router name, or an address.
    Via { prefix: String, via: String },
}

impl RouteEntry {
    pub fn prefix(&self) -> &str {
        match self {
            RouteEntry::Prefix(p) | RouteEntry::Via { prefix: p, .. } => p,
        }
    }
    pub fn via(&self) -> Option<&str> {
        match self {
            RouteEntry::Prefix(_) => None,
            RouteEntry::Via { via, .. } => Some(via),
        }
    }
}

fn default_log_daemon() -> DaemonKind {
    DaemonKind::Driver
}

fn default_interval() -> Dur {
    Dur(std::time::Duration::from_millis(20))
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub line: usize,
    pub action: Action,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    #[serde(default)]
    requires: Vec<Capability>,
    #[serde(default = "default_engines")]
    engines: Vec<String>,
    #[serde(default = "default_underlay")]
    underlay: Ipv4Net,
    #[serde(default)]
    bgp: BgpSection,
    #[serde(default)]
    driver: DriverSection,
    #[serde(default)]
    segments: Vec<SegmentDef>,
    hosts: Vec<Spanned<HostDef>>,
    #[serde(default)]
    routers: Vec<Spanned<RouterDef>>,
    #[serde(default)]
    networks: Vec<Spanned<NetworkDef>>,
    #[serde(default)]
    containers: Vec<Spanned<ContainerDef>>,
    #[serde(default)]
    steps: Vec<Spanned<toml::Table>>,
}

fn default_engines() -> Vec<String> {
    vec!["emulator".into()]
}

fn default_underlay() -> Ipv4Net {
    "192.0.2.0/24".parse().expect("valid")
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub file: String,
    pub description: String,
    pub requires: BTreeSet<Capability>,
    /// Engines this scenario runs on (the test suite runs it on each).
    pub engines: Vec<String>,
    pub underlay: Ipv4Net,
    /// The underlay's L2 segments (one, named `underlay`, unless the file declares more).
    pub segments: Vec<SegmentDef>,
    pub bgp: BgpSection,
    pub driver: DriverSection,
    pub hosts: Vec<HostDef>,
    pub routers: Vec<RouterDef>,
    pub networks: Vec<NetworkDef>,
    /// Containers after expanding `count`, in declaration order.
    pub containers: Vec<ContainerDef>,
    /// Group name -> member names.
    pub groups: BTreeMap<String, Vec<String>>,
    pub steps: Vec<Step>,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        Scenario::parse(&src, path)
    }

    pub fn parse(src: &str, path: &Path) -> Result<Scenario> {
        let file = path.display().to_string();
        let raw: RawScenario = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            anyhow!("{file}:{line}: {}", e.message())
        })?;
        let at = |offset: usize, msg: String| anyhow!("{file}:{}: {msg}", line_of(src, offset));

        let explicit_segments = !raw.segments.is_empty();
        let segments: Vec<SegmentDef> = if explicit_segments {
            raw.segments.clone()
        } else {
            vec![SegmentDef {
                name: "underlay".into(),
                subnet: raw.underlay,
            }]
        };
        for (k, seg) in segments.iter().enumerate() {
            if !valid_name(&seg.name) || segments[..k].iter().any(|o| o.name == seg.name) {
                return Err(anyhow!(
                    "{file}: segment name {:?} is invalid or used twice",
                    seg.name
                ));
            }
        }
        let mut hosts = Vec::new();
        let mut per_segment: BTreeMap<String, u32> = BTreeMap::new();
        for (i, h) in raw.hosts.iter().enumerate() {
            let mut host = h.get_ref().clone();
            let off = h.span().start;
            if !valid_name(&host.name) {
                return Err(at(
                    off,
                    format!("host name {:?}: use 1-8 letters, digits or '-'", host.name),
                ));
            }
            if hosts.iter().any(|o: &HostDef| o.name == host.name) {
                return Err(at(off, format!("host {} is declared twice", host.name)));
            }
            let seg_name = host
                .segment
                .clone()
                .unwrap_or_else(|| segments[0].name.clone());
            let seg = segments
                .iter()
                .find(|s| s.name == seg_name)
                .ok_or_else(|| {
                    at(
                        off,
                        format!("host {}: unknown segment {seg_name:?}", host.name),
                    )
                })?;
            let k = per_segment.entry(seg_name.clone()).or_default();
            // Without explicit segments hosts are .1, .2, ...; with them .10, .11, ... (routers take the low ones).
            let offset = if explicit_segments {
                10 + *k
            } else {
                i as u32 + 1
            };
            *k += 1;
            let addr = match host.address {
                Some(a) => a,
                None => Ipv4Net::new(
                    Ipv4Addr::from(u32::from(seg.subnet.network()) + offset),
                    seg.subnet.prefix_len(),
                )
                .map_err(|e| at(off, e.to_string()))?,
            };
            if !seg.subnet.contains(&addr.addr()) {
                return Err(at(
                    off,
                    format!(
                        "address {addr} is outside segment {} ({})",
                        seg.name, seg.subnet
                    ),
                ));
            }
            host.address = Some(addr);
            host.segment = Some(seg_name);
            hosts.push(host);
        }
        if hosts.is_empty() {
            return Err(anyhow!("{file}: no [[hosts]]"));
        }
        let host_names: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
        if raw.bgp.mode == BgpMode::RouteReflector {
            match &raw.bgp.reflector {
                Some(r) if host_names.contains(r) => {}
                Some(r) => return Err(anyhow!("{file}: [bgp] reflector {r:?} is not a host")),
                None => {
                    return Err(anyhow!(
                        "{file}: [bgp] mode = \"route-reflector\" needs reflector = \"<host>\""
                    ))
                }
            }
        }

        let mut routers: Vec<RouterDef> = Vec::new();
        for r in &raw.routers {
            let def = r.get_ref().clone();
            let off = r.span().start;
            if !valid_name(&def.name)
                || host_names.contains(&def.name)
                || routers.iter().any(|o| o.name == def.name)
            {
                return Err(at(
                    off,
                    format!("router name {:?} is invalid or used twice", def.name),
                ));
            }
            if def.links.is_empty() {
                return Err(at(off, format!("router {} has no links", def.name)));
            }
            for (seg, addr) in &def.links {
                let s = segments.iter().find(|s| &s.name == seg).ok_or_else(|| {
                    at(off, format!("router {}: unknown segment {seg:?}", def.name))
                })?;
                if !s.subnet.contains(&addr.addr()) {
                    return Err(at(
                        off,
                        format!(
                            "router {}: {addr} is outside segment {seg} ({})",
                            def.name, s.subnet
                        ),
                    ));
                }
            }
            routers.push(def);
        }
        let mut requires: BTreeSet<Capability> = raw.requires.iter().copied().collect();
        for r in &routers {
            requires.insert(match r.kind {
                RouterKind::Frr => Capability::Frr,
                RouterKind::Bird => Capability::Bird,
            });
        }
        let mut s = Scenario {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
            file: file.clone(),
            description: raw.description.clone(),
            requires,
            engines: raw.engines.clone(),
            underlay: raw.underlay,
            segments,
            bgp: raw.bgp.clone(),
            driver: raw.driver.clone(),
            hosts,
            routers,
            networks: Vec::new(),
            containers: Vec::new(),
            groups: BTreeMap::new(),
            steps: Vec::new(),
        };
        let (hosts, routers) = (s.hosts.clone(), s.routers.clone());
        for (r, span) in routers.iter().zip(&raw.routers) {
            let off = span.span().start;
            for n in &r.neighbors {
                s.shared_address(&r.name, n).ok_or_else(|| {
                    at(off, format!("router {}: neighbour {n:?} is not a host or router on one of its segments", r.name))
                })?;
            }
            for c in &r.rr_clients {
                if !r.neighbors.contains(c) {
                    return Err(at(
                        off,
                        format!(
                            "router {}: rr client {c:?} is not among its neighbors",
                            r.name
                        ),
                    ));
                }
            }
        }
        for (h, span) in hosts.iter().zip(&raw.hosts) {
            let off = span.span().start;
            if let Some(g) = &h.gateway {
                let seg = h.segment.as_deref().unwrap_or_default();
                if !routers
                    .iter()
                    .any(|r| &r.name == g && r.links.contains_key(seg))
                {
                    return Err(at(
                        off,
                        format!(
                            "host {}: gateway {g:?} is not a router on segment {seg}",
                            h.name
                        ),
                    ));
                }
            }
            for p in h.peers.iter().flatten() {
                s.shared_address(&h.name, p).ok_or_else(|| {
                    at(
                        off,
                        format!(
                            "host {}: peer {p:?} is not a host or router on its segment",
                            h.name
                        ),
                    )
                })?;
            }
        }

        let mut networks = Vec::new();
        for n in &raw.networks {
            let net = n.get_ref().clone();
            let off = n.span().start;
            if networks.iter().any(|o: &NetworkDef| o.name == net.name) {
                return Err(at(off, format!("network {} is declared twice", net.name)));
            }
            for h in net.subnets.keys() {
                if !host_names.contains(h) {
                    return Err(at(
                        off,
                        format!("network {}: unknown host {h:?} in subnets", net.name),
                    ));
                }
            }
            networks.push(net);
        }

        let mut containers = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in &raw.containers {
            let def = c.get_ref();
            let off = c.span().start;
            if !host_names.contains(&def.host) {
                return Err(at(
                    off,
                    format!("container {}: unknown host {:?}", def.name, def.host),
                ));
            }
            let Some(net) = networks.iter().find(|n| n.name == def.network) else {
                return Err(at(
                    off,
                    format!("container {}: unknown network {:?}", def.name, def.network),
                ));
            };
            if !net.subnets.contains_key(&def.host) {
                return Err(at(
                    off,
                    format!(
                        "container {}: network {} has no subnet on host {}",
                        def.name, def.network, def.host
                    ),
                ));
            }
            let names: Vec<String> = match def.count {
                None => vec![def.name.clone()],
                Some(0) => return Err(at(off, "count must be at least 1".into())),
                Some(n) => (1..=n).map(|i| format!("{}{i}", def.name)).collect(),
            };
            for name in &names {
                if host_names.contains(name)
                    || containers.iter().any(|o: &ContainerDef| &o.name == name)
                {
                    return Err(at(off, format!("name {name} is used twice")));
                }
                containers.push(ContainerDef {
                    name: name.clone(),
                    count: None,
                    ..def.clone()
                });
            }
            groups.entry(def.name.clone()).or_default().extend(names);
        }

        s.networks = networks;
        s.containers = containers;
        s.groups = groups;
        if s.engines.is_empty() {
            return Err(anyhow!("{file}: engines must name at least one engine"));
        }
        for e in &s.engines {
            if e != "emulator" && e != "dockerd" {
                return Err(anyhow!(
                    "{file}: engine {e:?}: use \"emulator\" or \"dockerd\""
                ));
            }
        }
        for (i, t) in raw.steps.iter().enumerate() {
            let line = line_of(src, t.span().start);
            let mut table = t.get_ref().clone();
            let name = match table.remove("name") {
                Some(toml::Value::String(n)) => Some(n),
                Some(_) => return Err(anyhow!("{file}:{line}: step name must be a string")),
                None => None,
            };
            let action: Action =
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        anyhow!("{file}:{line}: step {}: {}", i + 1, e.message())
                    })?;
            let name = name.unwrap_or_else(|| {
                format!(
                    "{} {}",
                    table.get("do").and_then(|v| v.as_str()).unwrap_or("step"),
                    summary(&table)
                )
                .trim()
                .to_string()
            });
            s.check_action(&action)
                .map_err(|e| anyhow!("{file}:{line}: step {} ({name}): {e}", i + 1))?;
            s.steps.push(Step { name, line, action });
        }
        Ok(s)
    }

    /// The address of `b` on a segment it shares with `a` (hosts and routers).
    pub fn shared_address(&self, a: &str, b: &str) -> Option<Ipv4Net> {
        let a_segs = self.links_of(a);
        self.links_of(b)
            .into_iter()
            .find(|(seg, _)| a_segs.iter().any(|(s, _)| s == seg))
            .map(|(_, addr)| addr)
    }

    /// (segment, address) of every link of a host or router.
    pub fn links_of(&self, name: &str) -> Vec<(String, Ipv4Net)> {
        if let Some(h) = self.host(name) {
            return h.segment.clone().zip(h.address).into_iter().collect();
        }
        self.router(name)
            .map(|r| r.links.iter().map(|(s, a)| (s.clone(), *a)).collect())
            .unwrap_or_default()
    }

    /// The AS number of a host or router.
    pub fn asn_of(&self, name: &str) -> Option<u32> {
        self.host(name)
            .map(|h| h.asn)
            .or_else(|| self.router(name).map(|r| r.asn))
    }

    pub fn router(&self, name: &str) -> Option<&RouterDef> {
        self.routers.iter().find(|r| r.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&HostDef> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerDef> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Expands group names; keeps host names as they are.
    pub fn expand(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            match self.groups.get(n) {
                Some(members) if self.container(n).is_none() => out.extend(members.iter().cloned()),
                _ => out.push(n.clone()),
            }
        }
        out
    }

    fn check_container(&self, n: &str) -> std::result::Result<(), String> {
        if self.container(n).is_some() || self.groups.contains_key(n) {
            Ok(())
        } else {
            Err(format!("unknown container {n:?}"))
        }
    }

    fn check_member(&self, n: &str) -> std::result::Result<(), String> {
        if self.host(n).is_some() {
            Ok(())
        } else {
            self.check_container(n)
                .map_err(|_| format!("{n:?} is neither a container nor a host"))
        }
    }

    /// A prefix a step names: a CIDR or a container (its /32).
    fn check_prefix(&self, prefix: &str) -> std::result::Result<(), String> {
        if prefix.parse::<Ipv4Net>().is_err() {
            self.check_container(prefix)
                .map_err(|_| format!("prefix {prefix:?} is neither a CIDR nor a container"))?;
        }
        Ok(())
    }

    /// A next hop a step names: an address, a host or a router.
    fn check_via(&self, v: &str) -> std::result::Result<(), String> {
        if v.parse::<Ipv4Addr>().is_err() && self.host(v).is_none() && self.router(v).is_none() {
            return Err(format!(
                "via {v:?} is neither an address, a host nor a router"
            ));
        }
        Ok(())
    }

    fn check_host(&self, n: &str) -> std::result::Result<(), String> {
        self.host(n)
            .map(|_| ())
            .ok_or_else(|| format!("unknown host {n:?}"))
    }

    fn check_action(&self, a: &Action) -> std::result::Result<(), String> {
        match a {
            Action::WaitBgp { .. } => Ok(()),
            Action::CreateNetwork { network, hosts, .. }
            | Action::DeleteNetwork { network, hosts } => {
                let net = self
                    .networks
                    .iter()
                    .find(|n| &n.name == network)
                    .ok_or_else(|| format!("unknown network {network:?}"))?;
                for h in hosts.iter().flatten() {
                    self.check_host(h)?;
                    if !net.subnets.contains_key(h) {
                        return Err(format!("network {network} has no subnet on host {h}"));
                    }
                }
                Ok(())
            }
            Action::Start {
                expect_error: Some(_),
                within: Some(_),
                ..
            } => Err("expect_error and within exclude each other".into()),
            Action::Start { containers, .. }
            | Action::Stop { containers }
            | Action::KillContainer { containers } => {
                if containers.is_empty() {
                    return Err("no containers listed".into());
                }
                containers.iter().try_for_each(|c| self.check_container(c))
            }
            Action::ExpectReachable { from, to, .. }
            | Action::ExpectUnreachable { from, to, .. }
            | Action::ProbeStart { from, to, .. } => {
                if from.is_empty() || to.is_empty() {
                    return Err("from and to must not be empty".into());
                }
                from.iter().chain(to).try_for_each(|m| self.check_member(m))
            }
            Action::ExpectMatrix { members, .. } => members
                .iter()
                .flatten()
                .try_for_each(|m| self.check_member(m)),
            Action::ExpectRoute {
                host,
                prefix,
                via,
                protocol,
                ..
            } => {
                self.check_host(host)?;
                if let Some(p) = protocol {
                    route_protocol(p)?;
                }
                self.check_prefix(prefix)?;
                via.iter().try_for_each(|v| self.check_via(v))
            }
            Action::ExpectContainer {
                container,
                address,
                default_route,
                gateway,
                ..
            } => {
                self.check_container(container)?;
                if address.is_none() && default_route.is_none() && gateway.is_none() {
                    return Err("give address, default_route or gateway".into());
                }
                if *default_route == Some(DefaultRoute::Connected) && *gateway == Some(true) {
                    return Err("a connected default route has no gateway".into());
                }
                Ok(())
            }
            Action::ExpectBgpPath {
                host,
                prefix,
                originator,
                cluster_list,
                ..
            } => {
                self.check_host(host)?;
                self.check_prefix(prefix)?;
                if originator.is_none() && cluster_list.is_none() {
                    return Err("give originator or cluster_list".into());
                }
                originator
                    .iter()
                    .chain(cluster_list.iter().flatten())
                    .try_for_each(|v| self.check_via(v))
            }
            Action::ExpectRoutes { host, routes, .. } => {
                self.check_host(host)?;
                let mut seen = BTreeSet::new();
                for r in routes {
                    self.check_prefix(r.prefix())?;
                    r.via().iter().try_for_each(|v| self.check_via(v))?;
                    if !seen.insert(r.prefix()) {
                        return Err(format!("{} is listed twice", r.prefix()));
                    }
                }
                Ok(())
            }
            Action::ExpectRejected { host, .. }
            | Action::LinkDown { host }
            | Action::LinkUp { host }
            | Action::Inject { host, .. }
            | Action::PlantRoute { host, .. } => self.check_host(host),
            Action::Run { host, command } => {
                self.check_host(host)?;
                if command.is_empty() {
                    return Err("command must not be empty".into());
                }
                for arg in command {
                    for name in placeholders(arg)? {
                        self.check_container(&name)
                            .map_err(|e| format!("{e} in {arg:?}"))?;
                    }
                }
                Ok(())
            }
            Action::Freeze { host, daemon } | Action::Thaw { host, daemon } => {
                self.check_host(host)?;
                if *daemon == DaemonKind::Dockerd {
                    return Err("freeze/thaw works on gobgpd and the driver".into());
                }
                Ok(())
            }
            Action::Pause { .. } | Action::FloodWait { .. } => Ok(()),
            Action::ExpectStatus {
                host,
                field,
                equals,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if field.is_empty() || field.split('.').any(str::is_empty) {
                    return Err(format!(
                        "field {field:?}: use a dotted path such as bgp.kernel_drift"
                    ));
                }
                if equals.is_none() && at_least.is_none() && at_most.is_none() {
                    return Err("give equals, at_least or at_most".into());
                }
                Ok(())
            }
            Action::ExpectLog {
                host,
                daemon,
                contains,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if *daemon == DaemonKind::Dockerd {
                    return Err("expect-log reads gobgpd's or the driver's log".into());
                }
                if contains.is_empty() {
                    return Err("contains must not be empty".into());
                }
                if at_least.is_none() && at_most.is_none() {
                    return Err("give at_least or at_most".into());
                }
                Ok(())
            }
            Action::LinkSnapshot { host, links, .. } => {
                self.check_host(host)?;
                if links.is_empty() {
                    return Err("no links listed".into());
                }
                Ok(())
            }
            Action::ExpectLink {
                host,
                links,
                present,
                kind,
                alias_prefix,
                unchanged_since,
                ..
            } => {
                self.check_host(host)?;
                if links.is_empty() {
                    return Err("no links listed".into());
                }
                if !present
                    && (kind.is_some() || alias_prefix.is_some() || unchanged_since.is_some())
                {
                    return Err(
                        "present = false takes no kind, alias_prefix or unchanged_since".into(),
                    );
                }
                Ok(())
            }
            Action::ExpectMarkedLinks {
                host,
                at_least,
                at_most,
                ..
            } => {
                self.check_host(host)?;
                if at_least.is_none() && at_most.is_none() {
                    return Err("give at_least or at_most".into());
                }
                Ok(())
            }
            Action::BgpSnapshot { host, .. } | Action::ExpectBgpSteady { host, .. } => {
                self.check_host(host)
            }
            Action::Flood { host, count, .. } => {
                self.check_host(host)?;
                if *count == 0 {
                    return Err("count must be at least 1".into());
                }
                Ok(())
            }
            Action::Kill { host, daemon }
            | Action::StopDaemon { host, daemon }
            | Action::StartDaemon { host, daemon }
            | Action::Restart { host, daemon } => {
                self.check_host(host)?;
                if *daemon != DaemonKind::Gobgpd
                    && self.host(host).map(|h| h.role) == Some(Role::Reflector)
                {
                    return Err(format!("host {host} is a reflector and runs no {daemon:?}"));
                }
                if *daemon == DaemonKind::Dockerd && !self.engines.iter().any(|e| e == "dockerd") {
                    return Err(
                        "dockerd can only be controlled in a scenario with engines = [\"dockerd\"]"
                            .into(),
                    );
                }
                Ok(())
            }
            Action::ProbeStop { .. } => Ok(()),
            Action::ExpectRouterRoute {
                router,
                prefix,
                via,
                ..
            } => {
                self.router(router)
                    .ok_or_else(|| format!("unknown router {router:?}"))?;
                self.check_prefix(prefix)?;
                via.iter().try_for_each(|v| self.check_via(v))
            }
            Action::RouterDown { router } | Action::RouterUp { router } => self
                .router(router)
                .map(|_| ())
                .ok_or_else(|| format!("unknown router {router:?}")),
        }
    }
}

/// The route protocol number a scenario names (`ours` is the driver's default tag).
pub fn route_protocol(p: &str) -> std::result::Result<u8, String> {
    match p {
        "ours" => Ok(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL),
        "kernel" => Ok(2),
        "boot" => Ok(3),
        "static" => Ok(4),
        n => n.parse().map_err(|_| {
            format!("protocol {p:?}: use ours, kernel, boot, static or a number 0-255")
        }),
    }
}

/// The container names written as `{{name}}` in a `run` argument (replaced
/// by the running container's address). Double braces, because single ones
/// are nft's and the shell's.
pub fn placeholders(arg: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {arg:?}"))?;
        out.push(after[..close].to_string());
        rest = &after[close + 2..];
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 8 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn summary(t: &toml::Table) -> String {
    let mut parts = Vec::new();
    for key in [
        "host",
        "daemon",
        "network",
        "containers",
        "from",
        "to",
        "prefix",
        "name",
        "field",
        "contains",
        "links",
        "id",
    ] {
        if let Some(v) = t.get(key) {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            parts.push(if key == "from" || key == "to" {
                format!("{key} {s}")
            } else {
                s
            });
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "two hosts"
requires = ["macvlan"]

[[hosts]]
name = "h1"

[[hosts]]
name = "h2"
asn = 65001

[[networks]]
name = "blue"
options = { dataplane = "macvlan" }
subnets = { h1 = "10.1.1.0/24", h2 = "10.1.2.0/24" }

[[containers]]
name = "c"
host = "h1"
network = "blue"
count = 3

[[containers]]
name = "d"
host = "h2"
network = "blue"

[[steps]]
do = "start"
containers = ["c", "d"]

[[steps]]
name = "all see all"
do = "expect-reachable"
from = ["c1"]
to = ["d", "h2"]
within = "5s"
"#;

    fn parse(src: &str) -> Result<Scenario> {
        Scenario::parse(src, Path::new("scenarios/x.toml"))
    }

    #[test]
    fn parses_and_expands() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.hosts[0].address, Some("192.0.2.1/24".parse().unwrap()));
        assert_eq!(s.hosts[1].address, Some("192.0.2.2/24".parse().unwrap()));
        assert_eq!(s.containers.len(), 4);
        assert_eq!(
            s.expand(&["c".into(), "h1".into()]),
            vec!["c1", "c2", "c3", "h1"]
        );
        assert_eq!(s.steps[0].name, "start c,d");
        assert_eq!(s.steps[1].name, "all see all");
        assert_eq!(s.steps[1].line, 32);
        assert!(
            matches!(s.steps[1].action, Action::ExpectReachable { within: Dur(d), .. } if d.as_secs() == 5)
        );
    }

    #[test]
    fn unknown_step_field_names_the_line() {
        let bad = GOOD.replace("within = \"5s\"", "withn = \"5s\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:32: step 2"), "{e}");
        assert!(e.contains("withn"), "{e}");
    }

    #[test]
    fn unknown_container_names_the_line() {
        let bad = GOOD.replace("to = [\"d\", \"h2\"]", "to = [\"zz\"]");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains(":32:") && e.contains("\"zz\""), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let bad = GOOD.replace("name = \"h2\"", "name = h2");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("scenarios/x.toml:9:"), "{e}");
    }

    #[test]
    fn bad_durations_and_actions_are_refused() {
        let e = parse(&GOOD.replace("\"5s\"", "\"5 parsecs\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":32:") && e.contains("unit"), "{e}");
        let e = parse(&GOOD.replace("do = \"start\"", "do = \"launch\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":28:") && e.contains("launch"), "{e}");
    }

    #[test]
    fn run_placeholders_are_double_braced() {
        assert_eq!(placeholders("{{c1}}/32").unwrap(), vec!["c1"]);
        assert_eq!(placeholders("a {{c1}} {{d}}").unwrap(), vec!["c1", "d"]);
        assert!(placeholders("chain { type filter ; }").unwrap().is_empty());
        assert!(placeholders("{{c1").is_err());
        let bad = GOOD.replace(
            "[[steps]]\ndo = \"start\"",
            "[[steps]]\ndo = \"run\"\nhost = \"h1\"\ncommand = [\"ip\", \"{{zz}}\"]\n\n[[steps]]\ndo = \"start\"",
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("\"zz\""), "{e}");
    }

    #[test]
    fn expect_routes_takes_prefixes_containers_and_vias() {
        let src = format!(
            "{GOOD}\n[[steps]]\ndo = \"expect-routes\"\nhost = \"h2\"\nroutes = [\"c1\", {{ prefix = \"10.9.0.0/24\", via = \"h1\" }}]\n"
        );
        let s = parse(&src).unwrap();
        match &s.steps[2].action {
            Action::ExpectRoutes { routes, .. } => {
                assert_eq!(routes.len(), 2);
                assert_eq!((routes[0].prefix(), routes[0].via()), ("c1", None));
                assert_eq!(routes[1].via(), Some("h1"));
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(s.steps[2].action.measure(), Measure::Expectation);
        let e = parse(&src.replace("\"c1\", {", "\"zz\", {"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zz"), "{e}");
        let e = parse(&src.replace("via = \"h1\"", "via = \"nowhere\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn network_on_missing_host_is_refused() {
        let e = parse(&GOOD.replace("h2 = \"10.1.2.0/24\"", "h9 = \"10.1.2.0/24\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("h9"), "{e}");
    }
}
