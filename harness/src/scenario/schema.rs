//! The scenario file's schema: the serde types a TOML file deserializes
//! into (hosts, routers, segments, networks, containers, the `[bgp]` and
//! `[driver]` sections, every step [`Action`]) and the checked [`Scenario`]
//! they become.
//!
//! In: TOML, through serde (`RawScenario` is the file as written). Out:
//! the types the rest of the harness reads. Owns field names, defaults and
//! each step's [`Measure`]; no checks across fields (that is `validate`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// A container engine, by the name scenario files, `--engine` and reports
/// use (see `crate::engine` for what each is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Engine {
    /// Requests exactly as dockerd 20.10 sends them, sandboxes as libnetwork makes them.
    Emulator,
    /// A real dockerd per host.
    Dockerd,
}

impl Engine {
    /// Every engine, in the order messages list them.
    pub const ALL: [Engine; 2] = [Engine::Emulator, Engine::Dockerd];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Emulator => "emulator",
            Engine::Dockerd => "dockerd",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Engine::ALL
                    .iter()
                    .map(|e| format!("{:?}", e.name()))
                    .collect();
                format!("engine {s:?}: use {}", names.join(" or "))
            })
    }
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
    /// Several redundant reflectors (host names or host templates): every
    /// client peers with each of them. After validation this holds every
    /// reflector, `reflector` included.
    #[serde(default)]
    pub reflectors: Vec<String>,
    #[serde(default)]
    pub config: BgpConfigBy,
    #[serde(default = "default_hold")]
    pub hold_time: u64,
    #[serde(default = "default_keepalive")]
    pub keepalive: u64,
    #[serde(default = "default_connect_retry")]
    pub connect_retry: u64,
    /// The underlay family BGP sessions run over (both families of routes
    /// are carried on every session either way).
    #[serde(default)]
    pub transport: Family,
}

/// An address family: where a step or a session picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
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
            reflectors: Vec::new(),
            config: BgpConfigBy::Gobgpd,
            hold_time: default_hold(),
            keepalive: default_keepalive(),
            connect_retry: default_connect_retry(),
            transport: Family::Ipv4,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DriverSection {
    /// Extra flags for every host's driver.
    #[serde(default)]
    pub args: Vec<String>,
    /// Run the driver as a managed (v2) Docker plugin (`plugin/build.sh`,
    /// `docker plugin create/set/enable`) instead of a process the harness
    /// starts; dockerd engine only. The host's gobgpd stays the harness's
    /// and the plugin reaches it through its `host-run` mount.
    #[serde(default)]
    pub plugin: bool,
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
    /// A host template: `count = N` declares `name1` .. `nameN`, each with
    /// the next underlay address (from `address` when given); `name` names
    /// the group wherever a field takes hosts (`reflectors`, a network's or
    /// a container's `hosts`).
    pub count: Option<usize>,
    #[serde(default = "default_asn")]
    pub asn: u32,
    /// Underlay address with prefix length; default `.<index+1>` in the underlay subnet.
    pub address: Option<Ipv4Net>,
    /// IPv6 underlay address (with prefix length) on a dual-stack segment;
    /// default `::<index+1>` (as the IPv4 one) in the segment's `subnet6`.
    pub address6: Option<Ipv6Net>,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub driver_args: Vec<String>,
    /// With the dockerd engine: run this host's dockerd with `--live-restore`.
    #[serde(default)]
    pub dockerd_live_restore: bool,
    /// With `[driver] plugin`: this host's plugin runs its own gobgpd
    /// (`GOBGP=embedded`, configured by the driver from ASN and PEERS)
    /// instead of using the gobgpd the harness runs on the host.
    #[serde(default)]
    pub embedded_gobgpd: bool,
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
    /// Dual stack: the segment's IPv6 subnet beside the IPv4 one.
    pub subnet6: Option<Ipv6Net>,
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
    /// Segment -> the router's IPv6 address on it (dual-stack segments).
    #[serde(default)]
    pub links6: BTreeMap<String, Ipv6Net>,
    /// BGP neighbours: hosts or routers sharing a segment with this router.
    #[serde(default)]
    pub neighbors: Vec<String>,
    /// iBGP neighbours that are route-reflector clients of this router.
    #[serde(default)]
    pub rr_clients: Vec<String>,
    /// Prefixes the router originates (either family).
    #[serde(default)]
    pub originate: Vec<IpNet>,
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
    #[serde(default)]
    pub subnets: BTreeMap<String, Ipv4Net>,
    /// Instead of `subnets`: one subnet per host from a pattern in which
    /// `{n}` is the host's number (its 1-based position among the hosts,
    /// templates expanded), e.g. `"10.2.{n}.0/24"`.
    pub subnet: Option<String>,
    /// With `subnet`: the hosts (names or templates) the network exists on;
    /// default every Docker host.
    pub hosts: Option<Vec<String>>,
    /// IPv6 subnet per host (`docker network create --ipv6 --subnet V6`):
    /// beside `subnets` a dual-stack network, alone an IPv6-only one.
    #[serde(default)]
    pub subnets6: BTreeMap<String, Ipv6Net>,
    /// Instead of `subnets6`: a pattern with `{n}`, e.g. `"fd00:10:{n}::/64"`.
    pub subnet6: Option<String>,
    /// Create the network on every host before the first step (default true).
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

impl NetworkDef {
    /// Whether the network exists on `host` (has a subnet of either family there).
    pub fn on(&self, host: &str) -> bool {
        self.subnets.contains_key(host) || self.subnets6.contains_key(host)
    }

    /// Every host the network exists on, in name order.
    pub fn hosts_on(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = self.subnets.keys().cloned().collect();
        v.extend(self.subnets6.keys().cloned());
        v.into_iter().collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerDef {
    pub name: String,
    /// The host (after validation always set; empty when `hosts` is given).
    #[serde(default)]
    pub host: String,
    /// Instead of `host`: the same containers on each of these hosts (names
    /// or templates), named `<host>-<name><k>`; steps may use `name` for all
    /// of them and `<host>-<name>` for one host's.
    pub hosts: Option<Vec<String>>,
    /// `--driver-opt k=v` for its endpoint (dockerd passes them as top-level
    /// keys of CreateEndpoint's `Options`), e.g. `{ bgp_med = "5" }`.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    pub network: String,
    /// `count = N` declares `name1` .. `nameN`; steps may use `name` for the group.
    pub count: Option<usize>,
    /// A Docker health check (dockerd engine only).
    pub health: Option<HealthDef>,
}

/// `docker run --health-cmd CMD --health-interval I --health-retries R`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDef {
    /// Run by the container's shell (`CMD-SHELL`).
    pub cmd: String,
    pub interval: Option<Dur>,
    pub retries: Option<u32>,
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
        /// Which of the members' addresses: `ipv4` (default) or `ipv6`.
        family: Option<Family>,
    },
    /// No `from` reaches any `to`; with `hold`, that stays true for so long.
    ExpectUnreachable {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default = "default_within")]
        within: Dur,
        hold: Option<Dur>,
        family: Option<Family>,
    },
    /// Every pair among `members` (default: all running containers) reaches each other.
    ExpectMatrix {
        members: Option<Vec<String>>,
        #[serde(default = "default_within")]
        within: Dur,
        family: Option<Family>,
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
        /// With a container's or host's name: which of its addresses
        /// (`ipv6`: the container's /128, the host's IPv6 underlay address).
        family: Option<Family>,
    },
    /// The host's whole set of tagged (learned) routes is exactly `routes`:
    /// nothing missing, nothing extra, each through its `via` when given.
    /// Fails with the difference (missing, extra, wrong next hop).
    ExpectRoutes {
        host: String,
        /// Each a CIDR, a container name or a group name (its members that
        /// are running; each container's /32 and /128, as it has them), or
        /// `{ prefix = "...", via = "..." }` (a named `via`: its address of
        /// each route's family).
        routes: Vec<RouteEntry>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// Every Docker host (or those in `hosts`) holds exactly the /32s of the
    /// running containers of every other host, each through that host's
    /// address, and nothing else (ours, tagged): the whole route set, on
    /// every host. Reports the time from the first and from the last
    /// container start (or stop) of the last container step; fails naming
    /// each host that differs with its missing, extra and misrouted prefixes.
    ExpectConverged {
        hosts: Option<Vec<String>>,
        #[serde(default = "default_within")]
        within: Dur,
        /// Keep checking every host for so long after all first held.
        hold: Option<Dur>,
    },
    /// Start reading the whole route set of every Docker host (or those in
    /// `hosts`) in the background, round after round, as `expect-converged`
    /// defines it from the containers running now; `route-watch-stop`
    /// reports every route that went missing meanwhile.
    RouteWatchStart {
        id: String,
        hosts: Option<Vec<String>>,
    },
    /// Stop a route watch; fail if more than `max_lost` (default 0)
    /// host-route pairs were missing (or through another next hop) in any
    /// round, or if a host held a route it should not, naming each.
    RouteWatchStop {
        id: String,
        #[serde(default)]
        max_lost: u64,
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
        /// With a container's name: its /32 (`ipv4`, default) or its /128.
        family: Option<Family>,
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
        prefix: IpNet,
        next_hop: IpAddr,
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
        family: Option<Family>,
    },
    /// An FRR router's BGP path for `prefix` (the one from `from`, a host
    /// or an address; default the best) carries these attributes and is
    /// (`best = true`) or is not the best. See `runner/router_bgp.rs`.
    ExpectRouterBgp {
        router: String,
        /// A CIDR or a container name (its /32).
        prefix: String,
        from: Option<String>,
        best: Option<bool>,
        /// The AS path as FRR writes it: `"65000 65000"`.
        as_path: Option<String>,
        /// Each must be on the path (others may be too).
        communities: Option<Vec<String>>,
        large_communities: Option<Vec<String>>,
        local_pref: Option<u32>,
        med: Option<u32>,
        #[serde(default = "default_within")]
        within: Dur,
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
    /// Run a command inside a running container (`docker exec`; dockerd
    /// engine only); fails if it fails.
    Exec {
        container: String,
        command: Vec<String>,
    },
    /// Plant a route with the driver's protocol tag by hand (a stale leftover).
    PlantRoute {
        host: String,
        prefix: IpNet,
        via: IpAddr,
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
    /// Scrape the host driver's `/metrics` over TCP (`address`, default
    /// 127.0.0.1:9473: give the driver `--metrics-listen`) until the series
    /// `metric` (as Prometheus writes it, labels included; absent counts as
    /// 0) satisfies every test given. See `runner/metrics.rs`.
    ExpectMetrics {
        host: String,
        address: Option<std::net::SocketAddr>,
        metric: String,
        equals: Option<f64>,
        at_least: Option<f64>,
        at_most: Option<f64>,
        #[serde(default = "default_within")]
        within: Dur,
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
        family: Option<Family>,
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
            | Exec { .. }
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
            | ExpectConverged { .. }
            | ExpectContainer { .. }
            | ExpectBgpPath { .. }
            | ExpectRejected { .. }
            | ExpectRouterRoute { .. }
            | ExpectRouterBgp { .. }
            | ExpectStatus { .. }
            | ExpectMetrics { .. }
            | ExpectLog { .. }
            | ExpectLink { .. }
            | ExpectMarkedLinks { .. } => Measure::Expectation,
            FloodWait { .. } | ProbeStop { .. } => Measure::Own,
            Pause { .. }
            | LinkSnapshot { .. }
            | BgpSnapshot { .. }
            | ExpectBgpSteady { .. }
            | ProbeStart { .. }
            | RouteWatchStart { .. }
            | RouteWatchStop { .. } => Measure::Neither,
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
pub(super) struct RawScenario {
    pub(super) description: String,
    #[serde(default)]
    pub(super) requires: Vec<Capability>,
    #[serde(default = "default_engines")]
    pub(super) engines: Vec<String>,
    #[serde(default = "default_underlay")]
    pub(super) underlay: Ipv4Net,
    /// Dual stack: the default segment's IPv6 subnet.
    pub(super) underlay6: Option<Ipv6Net>,
    #[serde(default)]
    pub(super) bgp: BgpSection,
    #[serde(default)]
    pub(super) driver: DriverSection,
    #[serde(default)]
    pub(super) segments: Vec<SegmentDef>,
    pub(super) hosts: Vec<Spanned<HostDef>>,
    #[serde(default)]
    pub(super) routers: Vec<Spanned<RouterDef>>,
    #[serde(default)]
    pub(super) networks: Vec<Spanned<NetworkDef>>,
    #[serde(default)]
    pub(super) containers: Vec<Spanned<ContainerDef>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<toml::Table>>,
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
    pub engines: Vec<Engine>,
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
    /// Host template name -> the host names it declared.
    pub host_groups: BTreeMap<String, Vec<String>>,
    pub steps: Vec<Step>,
}
