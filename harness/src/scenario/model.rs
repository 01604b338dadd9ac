//! A whole scenario: the file as written ([`RawScenario`]) and the checked
//! [`Scenario`] it becomes, with its [`Step`]s.
//!
//! In: TOML, through serde (`RawScenario`); the parse fills `Scenario`.
//! Out: the one type the runner, the topology and the reports read. Owns
//! the top-level fields and their defaults.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use toml::Spanned;

use super::schema::{
    BgpSection, Capability, ContainerDef, DriverSection, Engine, EtcdSection, GobgpLine, HostDef,
    NetworkDef, RouterDef, SegmentDef,
};
use super::step_kinds::StepKind;
use super::steps::Action;

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub line: usize,
    pub action: Action,
    /// Its row in the table of step kinds (what its time means, who plays it).
    pub kind: &'static StepKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) description: String,
    #[serde(default)]
    pub(super) requires: Vec<Capability>,
    #[serde(default = "default_engines")]
    pub(super) engines: Vec<String>,
    /// The GoBGP lines the test suite runs the scenario on (`"v4"`, or
    /// `["v4", "v3"]`); default [`super::check::gobgp::DEFAULT_LINES`].
    pub(super) gobgp: Option<toml::Value>,
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
    /// A real etcd cluster for the cluster-wide IPAM.
    pub(super) etcd: Option<EtcdSection>,
    /// Drop ARP and NDP about container addresses on every segment.
    #[serde(default)]
    pub(super) isolate_l2: bool,
    /// The test suite runs this file with no other scenario beside it.
    #[serde(default)]
    pub(super) alone: bool,
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
    vec![Engine::Emulator.name().into()]
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
    /// The GoBGP lines the test suite runs it on (each engine on each line;
    /// `harness run` uses the first unless `--gobgp-version` says otherwise).
    /// Empty when the scenario has no BGP at all.
    pub gobgp: Vec<GobgpLine>,
    pub underlay: Ipv4Net,
    /// The underlay's L2 segments (one, named `underlay`, unless the file declares more).
    pub segments: Vec<SegmentDef>,
    pub bgp: BgpSection,
    pub driver: DriverSection,
    /// The etcd cluster of the cluster-wide IPAM, if any.
    pub etcd: Option<EtcdSection>,
    /// ARP and NDP about any network's subnets are dropped on every
    /// segment's bridge (nftables in the switch): containers on different
    /// hosts never meet through L2 adjacency, only through routes.
    pub isolate_l2: bool,
    /// The test suite runs it with no other scenario beside it: its timers
    /// (BFD's 300 ms x 3 through a dockerd plugin's restart) need the
    /// machine's cores, which four scenarios at once on 2 cores do not
    /// leave it (`harness run` and its `--jobs` ignore this).
    pub alone: bool,
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
