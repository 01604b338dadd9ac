//! The steps' schema: what each `do = "..."` of a `[[steps]]` entry
//! carries, as serde deserializes it ([`Action`]), and the small types of
//! its fields.
//!
//! In: a step's TOML table (without its `name`). Out: an [`Action`]. Owns
//! the steps' field names and defaults; the list of kinds with what each
//! does is [`super::step_kinds`], each step's checks are `check/steps.rs`.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Deserialize;

use super::schema::{yes, DaemonKind, Family};
use crate::util::Dur;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    #[default]
    Icmp,
    Tcp,
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
    /// Start one container while `from` (a container on another host)
    /// waits for its route: from the route's arrival on `from`'s host (its
    /// event), `from` pings the route's address every 2 ms; the first echo
    /// must be answered (no probe lost after the route arrives).
    StartProbedFromRoute {
        container: String,
        from: String,
        /// Which address: `ipv4` (default) or `ipv6`.
        family: Option<Family>,
        #[serde(default = "default_within")]
        within: Dur,
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
    /// A route (ours, tagged) for `prefix` (a CIDR, a container name, or
    /// `block-of:CONTAINER`: the cluster IPAM's block that the container's
    /// host holds its address in) on `host`.
    ExpectRoute {
        host: String,
        prefix: String,
        #[serde(default = "yes")]
        present: bool,
        /// Next hop: a host name or an address.
        via: Option<String>,
        /// Every next hop, exactly: one route for the prefix whose next
        /// hops (one, or several: RTA_MULTIPATH) are these and no others.
        next_hops: Option<Vec<String>>,
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
    /// Every host of `hosts` (default: every Docker host but the one the
    /// container of `prefix` runs on) has lost its route for `prefix`,
    /// within `within` of the end of the last event: all hosts polled
    /// together every 10 ms; its time is when the last one lost it.
    ExpectWithdrawn {
        /// A CIDR or a container (its /32, or /128 with `family = "ipv6"`).
        prefix: String,
        hosts: Option<Vec<String>>,
        #[serde(default = "default_within")]
        within: Dur,
        /// How long the absence must then last everywhere (default 2 s, scaled).
        hold: Option<Dur>,
        family: Option<Family>,
    },
    /// Start recording the kernel's route events for `prefix` in a host's
    /// namespace (the driver's tagged routes) or a router's (any protocol:
    /// FRR's zebra, BIRD), from a netlink subscription: a withdrawal is seen
    /// however briefly it lasts. The route must be there when it starts.
    RouteEventsStart {
        id: String,
        host: Option<String>,
        router: Option<String>,
        /// A CIDR or a container (its /32, or /128 with `family = "ipv6"`).
        prefix: String,
        family: Option<Family>,
    },
    /// Stop recording; fail if the route was deleted more than
    /// `max_withdrawals` times (default 0) meanwhile, listing each event.
    RouteEventsStop {
        id: String,
        #[serde(default)]
        max_withdrawals: u64,
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
    /// round or any route event since the watch began, if a host held a
    /// route it should not, or if the watch read fewer than `min_rounds`
    /// (default 20) rounds, naming each.
    RouteWatchStop {
        id: String,
        #[serde(default)]
        max_lost: u64,
        #[serde(default = "default_min_rounds")]
        min_rounds: u64,
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
        /// `true`: the address is a host route (/32, /128) and every
        /// on-link route but the default is a host route (routed, not
        /// bridged: the cluster IPAM); `false`: the address has a longer
        /// reach (Docker's IPAM: the subnet's length).
        host_route: Option<bool>,
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
    /// `docker plugin upgrade` of a host's disabled managed plugin to a
    /// second version pushed to the run's registry (`[driver] registry`);
    /// checks the plugin then names the new reference and keeps its
    /// settings. Does not enable it (`start-daemon` does).
    UpgradePlugin {
        host: String,
    },
    LinkDown {
        host: String,
    },
    LinkUp {
        host: String,
    },
    /// `ipvlan-bgp drain` on a host (its CLI against the host's driver
    /// socket): every announcement gets GRACEFUL_SHUTDOWN and is made less
    /// preferred; with `wait`, the CLI waits until it says the host is safe
    /// to stop (its wait option, at most `timeout`).
    Drain {
        host: String,
        #[serde(default)]
        wait: bool,
        timeout: Option<Dur>,
    },
    /// `ipvlan-bgp undrain` on a host: announcements back to normal.
    Undrain {
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
        /// None of these may be on the path.
        absent_communities: Option<Vec<String>>,
        large_communities: Option<Vec<String>>,
        local_pref: Option<u32>,
        med: Option<u32>,
        /// FRR keeps the path as stale (a peer's graceful restart), or not.
        stale: Option<bool>,
        #[serde(default = "default_within")]
        within: Dur,
    },
    /// The paths an FRR router has from neighbour `from` (a host) in
    /// `family` are exactly `prefixes`: nothing it learned elsewhere and
    /// passed on (a dual-homed host is no transit). See
    /// `runner/router_received.rs`.
    ExpectRouterReceived {
        router: String,
        from: String,
        /// CIDRs or container names (their /32 or /128); may be empty.
        prefixes: Vec<String>,
        family: Option<Family>,
        #[serde(default = "default_within")]
        within: Dur,
        /// Keep checking for so long after it first holds.
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
    /// Run a command inside a running container (`docker exec`; dockerd
    /// engine only); fails if it fails.
    Exec {
        container: String,
        command: Vec<String>,
    },
    /// One Docker plugin request (`NetworkDriver.*`) straight to a host's
    /// driver, the engine unaware: what the engine cannot make (another
    /// driver instance's networks and endpoints).
    PluginCall {
        host: String,
        #[serde(default = "default_call_daemon")]
        daemon: DaemonKind,
        /// `CreateNetwork`, `Join`, ... (without `NetworkDriver.`).
        method: String,
        /// The request as Docker sends it (a TOML table, sent as JSON).
        #[serde(default)]
        body: serde_json::Value,
        /// The request must fail, and its error must contain this.
        expect_error: Option<String>,
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
    /// dotted path such as `bgp.rejected.outside-pools`) satisfies every
    /// test given; for the numeric tests a key not yet in a map of counters
    /// counts as 0, any other missing field fails.
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
    /// Start `flows` UDP flows (distinct source ports) from one container
    /// (or host) to an echo in another, a datagram per flow every
    /// `interval`, in the background (`probe/flows.rs`).
    FlowsStart {
        /// Names the flows for their `flows-stop`.
        id: String,
        from: String,
        to: String,
        #[serde(default = "default_flows")]
        flows: u16,
        #[serde(default = "default_flow_interval")]
        interval: Dur,
        family: Option<Family>,
    },
    /// Stop background flows; fail if a flow is still out at the stop, if
    /// a flow lost more than `max_loss`
    /// datagrams (default 0 unless `max_outage` is given) or its longest
    /// outage exceeds `max_outage`.
    FlowsStop {
        id: String,
        /// Datagrams each flow may lose (there and back together).
        max_loss: Option<u64>,
        /// The longest outage any flow may have.
        max_outage: Option<Dur>,
    },
    /// Read the packet counters (`rx_packets`, `tx_packets`) of every
    /// uplink of `hosts` (dual-homed hosts), for an `uplink-counters-stop`.
    UplinkCountersStart {
        id: String,
        hosts: Vec<String>,
    },
    /// Read the counters again: each uplink of each host must carry at
    /// least `min_share` percent (default 25) of the host's packets since
    /// the start, in each direction.
    UplinkCountersStop {
        id: String,
        #[serde(default = "default_min_share")]
        min_share: u8,
    },
    /// Take one of a dual-homed host's uplinks (`up1`, ...) down on the
    /// host (admin down): only the host's kernel knows at once.
    UplinkDown {
        host: String,
        uplink: String,
    },
    UplinkUp {
        host: String,
        uplink: String,
    },
    /// Take a router's end of its link to a dual-homed host down: the host
    /// sees carrier loss on that uplink, the router's daemons run on.
    TorPortDown {
        router: String,
        host: String,
    },
    TorPortUp {
        router: String,
        host: String,
    },
    /// Drop everything on a router's link to a dual-homed host, both ways
    /// (nftables in the router's namespace); the link stays up, so only
    /// BFD or the hold timer notices.
    Blackhole {
        router: String,
        host: String,
    },
    /// Remove that blackhole.
    BlackholeEnd {
        router: String,
        host: String,
    },
    /// SIGKILL etcd members (`e1`, `e2`, ... of the `[etcd]` section).
    EtcdKill {
        members: Vec<String>,
    },
    /// Start killed etcd members again (their data kept); does not wait.
    EtcdStart {
        members: Vec<String>,
    },
    /// SIGSTOP etcd members: they hang, their sockets stay open (a frozen
    /// store: calls time out instead of being refused).
    EtcdFreeze {
        members: Vec<String>,
    },
    /// SIGCONT frozen etcd members.
    EtcdThaw {
        members: Vec<String>,
    },
    /// `ipvlan-bgp ipam release-host ID` run on `host` (through its
    /// driver), for the dead host `release` (its id: its underlay address).
    IpamReleaseHost {
        host: String,
        release: String,
    },
    /// The cross-host audit of a network of the cluster IPAM: see `runner/ipam.rs`.
    ExpectIpam {
        network: String,
        /// The live hosts to audit (default: every Docker host of the network).
        hosts: Option<Vec<String>>,
        /// Hosts whose blocks must all be released in etcd.
        #[serde(default)]
        gone: Vec<String>,
        /// No host holds more blocks than this.
        max_blocks: Option<usize>,
        #[serde(default = "default_within")]
        within: Dur,
    },
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

fn default_call_daemon() -> DaemonKind {
    DaemonKind::Driver2
}

fn default_log_daemon() -> DaemonKind {
    DaemonKind::Driver
}

fn default_flows() -> u16 {
    64
}

fn default_flow_interval() -> Dur {
    Dur(std::time::Duration::from_millis(10))
}

fn default_min_share() -> u8 {
    25
}

fn default_interval() -> Dur {
    Dur(std::time::Duration::from_millis(20))
}

/// A route watch that read fewer rounds proves little: a loss shorter than
/// a round could slip between two.
fn default_min_rounds() -> u64 {
    20
}
