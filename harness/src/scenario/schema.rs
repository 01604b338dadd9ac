//! The scenario file's sections: capabilities and engines, the `[bgp]` and
//! `[driver]` sections, segments, hosts, routers, networks, containers, as
//! serde deserializes them from TOML; and the names shared with the steps
//! (address families, daemons).
//!
//! In: TOML, through serde. Out: the types the rest of the harness reads.
//! Owns field names and defaults; no checks across fields (`check/`), no
//! steps (`steps.rs`), no whole file (`model.rs`).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

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
    /// etcd and etcdctl (the cluster-wide IPAM's store; implied by `[etcd]`).
    Etcd,
    /// A Docker registry (`docker-registry`, distribution 2.x; implied by
    /// `[driver] registry`).
    Registry,
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

/// A GoBGP release line: which gobgpd (and `gobgp` CLI) a run's hosts use.
/// 3.x is what Debian and Ubuntu ship (`apipb.GobgpApi`); 4.x is built from
/// its Go module by `ci/install.sh full` (`api.GoBgpService`, BFD from 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GobgpLine {
    V3,
    V4,
}

impl GobgpLine {
    /// Every line, in the order messages list them.
    pub const ALL: [GobgpLine; 2] = [GobgpLine::V3, GobgpLine::V4];

    /// Its name as scenario files, `--gobgp-version` and reports write it.
    pub fn name(self) -> &'static str {
        match self {
            GobgpLine::V3 => "v3",
            GobgpLine::V4 => "v4",
        }
    }

    /// The daemon's program name (found on `PATH`): Debian's `gobgpd`, or
    /// the pinned 4.x that `ci/install.sh full` puts in /usr/local/bin.
    pub fn daemon(self) -> &'static str {
        match self {
            GobgpLine::V3 => "gobgpd",
            GobgpLine::V4 => "gobgpd-v4",
        }
    }

    /// The CLI of the same line (the two lines' CLIs speak only their own API).
    pub fn cli(self) -> &'static str {
        match self {
            GobgpLine::V3 => "gobgp",
            GobgpLine::V4 => "gobgp-v4",
        }
    }
}

impl std::fmt::Display for GobgpLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GobgpLine {
    type Err = String;
    fn from_str(s: &str) -> Result<GobgpLine, String> {
        GobgpLine::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("GoBGP line {s:?}: use \"v3\" or \"v4\""))
    }
}

/// BFD timers for the sessions that run it (`[bgp.bfd]`): FRR's bfdd
/// profile and gobgpd 4.x's `[neighbors.bfd.config]` get the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BfdSection {
    /// Desired transmit and required receive interval (default 300 ms).
    #[serde(default = "default_bfd_interval")]
    pub interval: Dur,
    /// Detection multiplier (default 3): the peer is down after
    /// `interval x multiplier` without a packet.
    #[serde(default = "default_bfd_multiplier")]
    pub multiplier: u8,
}

fn default_bfd_interval() -> Dur {
    Dur(std::time::Duration::from_millis(300))
}
fn default_bfd_multiplier() -> u8 {
    3
}

/// A node's side of BFD: `bfd = false` (none of its sessions), `bfd = true`
/// (all, the default when `[bgp.bfd]` is given) or `bfd = ["tor1a", ...]`
/// (only the sessions with these neighbours).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum BfdSide {
    All(bool),
    Only(Vec<String>),
}

impl BfdSide {
    /// Whether this side runs BFD towards `peer`, given whether the
    /// scenario configures BFD at all.
    pub fn towards(side: Option<&BfdSide>, scenario_has_bfd: bool, peer: &str) -> bool {
        scenario_has_bfd
            && match side {
                None | Some(BfdSide::All(true)) => true,
                Some(BfdSide::All(false)) => false,
                Some(BfdSide::Only(v)) => v.iter().any(|p| p == peer),
            }
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
    /// BFD on every session (unless a host or router says otherwise with
    /// its `bfd`): needs gobgpd 4.x on the hosts and bfdd on FRR routers.
    pub bfd: Option<BfdSection>,
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
            bfd: None,
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
    /// The driver as the README deploys it: only the flags the deployment
    /// needs (socket, state, parent, gobgpd, AS and peers) plus `args`,
    /// none of the harness's tuning: no stale-routes time, no peer timers
    /// (the driver's defaults, not `[bgp]`'s), no router ID; networks are
    /// made without `--gateway` (Docker picks it, as `docker network
    /// create` in the README does).
    #[serde(default)]
    pub defaults: bool,
    /// A Docker registry (`docker-registry`) for the run, on this host's
    /// underlay address (port 5000, in its namespace; storage in the run's
    /// folder), trusted by every host's dockerd (`--insecure-registry`):
    /// what `docker plugin push` and `docker plugin upgrade` talk to (the
    /// `upgrade-plugin` step). Needs `plugin = true`.
    pub registry: Option<String>,
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
    /// Capabilities this host's driver runs without (names as `setpriv`
    /// takes them: `dac_override`, `dac_read_search`): dropped from its
    /// bounding and inheritable sets, so root gets EACCES where a driver
    /// confined so would. Not with `[driver] plugin`.
    #[serde(default)]
    pub driver_drop_caps: Vec<String>,
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
    /// Instead of `segment`: routers this host has a point-to-point link to,
    /// one each (two or more: a dual-homed host, issue 23). Each link is
    /// `up1`, `up2`, ... in the host (in this order), its own /30 (and /64
    /// on a dual-stack scenario) from the harness's pools; the host's
    /// `peers` default to these routers and its driver gets `--uplink`s.
    #[serde(default)]
    pub uplinks: Vec<String>,
    /// The uplinks addressed (filled by the scenario check, not the file).
    #[serde(skip)]
    pub uplink_links: Vec<Uplink>,
    /// A router whose address on the host's segment is the host's default route.
    pub gateway: Option<String>,
    /// BGP neighbours (hosts or routers); default: as `[bgp] mode` says.
    pub peers: Option<Vec<String>>,
    /// This host's side of BFD (with `[bgp.bfd]`): `false`, `true` (the
    /// default) or the neighbours to run it with.
    pub bfd: Option<BfdSide>,
}

/// One point-to-point uplink of a host (`[[hosts]] uplinks`), addressed by
/// the scenario check: the host's end `iface` (`up1`, ...) and the router's
/// end, each with its address on the link's own subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// The host's end: `up1`, `up2`, ...
    pub iface: String,
    pub router: String,
    /// The name lookups give the link as a segment (`h1.up1`: no declared
    /// segment can have it, a declared name has no dot).
    pub segment: String,
    pub host_addr: Ipv4Net,
    pub router_addr: Ipv4Net,
    pub host_addr6: Option<Ipv6Net>,
    pub router_addr6: Option<Ipv6Net>,
}

impl Uplink {
    /// The router's end of the link (`u-h1-1`: unique in the router, at
    /// most 13 characters).
    pub fn router_iface(&self, host: &str) -> String {
        format!("u-{host}-{}", self.iface.trim_start_matches("up"))
    }
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
    /// This router's side of BFD (with `[bgp.bfd]`; FRR's bfdd): `false`,
    /// `true` (the default) or the neighbours to run it with.
    pub bfd: Option<BfdSide>,
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
    /// Who hands out its addresses: Docker's own IPAM (`docker`, the
    /// default: one subnet per host) or the driver's cluster-wide one
    /// (`ipvlan-bgp`: `--ipam-driver ipvlan-bgp`, one subnet on every host,
    /// each host with blocks of its own; needs `[etcd]`).
    #[serde(default)]
    pub ipam: IpamKind,
    /// With `ipam = "ipvlan-bgp"`: `--ipam-opt block-size=N`.
    pub block_size: Option<u8>,
    /// IPv4 gateway per host (`docker network create --gateway`); default
    /// the subnet's first address. Two hosts on one segment with the same
    /// subnet on macvlan need different ones: the driver refuses a gateway
    /// the segment already answers for.
    #[serde(default)]
    pub gateways: BTreeMap<String, std::net::Ipv4Addr>,
}

/// Which IPAM hands out a network's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum IpamKind {
    /// Docker's default IPAM (host-local).
    #[default]
    #[serde(rename = "docker")]
    Docker,
    /// The driver's cluster-wide IPAM on etcd.
    #[serde(rename = "ipvlan-bgp")]
    Cluster,
}

/// A real etcd cluster for the cluster-wide IPAM: `members` etcd processes,
/// each in a namespace of its own wired to a segment, and every Docker
/// host's driver given `--etcd-endpoints` (and with `tls`, `--etcd-ca`,
/// `--etcd-cert`, `--etcd-key`; with `auth`, `--etcd-user` with a password
/// file, one user per host, whose role reaches only the IPAM's prefix).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    #[serde(default = "default_members")]
    pub members: usize,
    /// Client connections over TLS, with a client certificate per host.
    #[serde(default)]
    pub tls: bool,
    /// etcd's auth on: a user and password per host.
    #[serde(default)]
    pub auth: bool,
    /// The segment the members are wired to (default: the first).
    pub segment: Option<String>,
    /// A router on that segment: the members' default route (a routed underlay).
    pub gateway: Option<String>,
    /// The members' addresses (chosen by the checks: the top of the segment).
    #[serde(skip)]
    pub addresses: Vec<ipnet::Ipv4Net>,
}

fn default_members() -> usize {
    3
}

pub(super) fn yes() -> bool {
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
    /// A fixed address (`docker run --ip`), on a network of the cluster IPAM.
    pub ip: Option<std::net::Ipv4Addr>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonKind {
    Gobgpd,
    Driver,
    /// A second driver instance on the host (the binary beside a managed
    /// plugin, say): its own state directory and socket, `--gobgp none`,
    /// the host's parent; started only by a step, never by the harness.
    Driver2,
    /// The dockerd engine's daemon on that host.
    Dockerd,
}
