//! The hosts most benches run on: two hosts over iBGP (b1, b2; IPv4 or
//! dual stack), or a bench's own scenario ([`hosts_from`]), with the bench
//! network created where asked, and the wait until their BGP sessions are up.
//!
//! In: run [`Options`] and the hosts the network goes on. Out: the built
//! [`World`], an [`Emulator`] that created the network, and the network.

use std::time::Duration;

use anyhow::Result;

use super::measure::poll_until;
use crate::engine::{ContainerEngine, Emulator, Subnets};
use crate::scenario::{NetworkDef, Scenario};
use crate::topology::{Options, World};

const TWO_HOSTS: &str = r#"
description = "convergence benchmark"
[driver]
# 10.28.0.0/15: room for `bench learned-routes` up to 131,072 routes.
args = ["--accept-pool", "10.30.0.0/16", "--accept-pool", "10.28.0.0/15"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
"#;

/// [`TWO_HOSTS`] with a dual-stack underlay and network (the convergence
/// bench measures both families on the same joins).
const TWO_HOSTS_DUAL: &str = r#"
description = "convergence benchmark, dual stack"
underlay6 = "fd00:30::/64"
[driver]
args = ["--accept-pool", "10.30.0.0/16", "--accept-pool", "fd00:31::/32"]
[[hosts]]
name = "b1"
[[hosts]]
name = "b2"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { b1 = "10.30.1.0/24", b2 = "10.30.2.0/24" }
subnets6 = { b1 = "fd00:31:1::/64", b2 = "fd00:31:2::/64" }
"#;

/// Two hosts over iBGP with the network created on `on`, sessions up.
pub(super) fn two_hosts(opts: &Options, on: &[&str]) -> Result<(World, Emulator, NetworkDef)> {
    hosts_from(TWO_HOSTS, opts, on)
}

/// The same, dual stack, on data plane `dataplane` (`macvlan`, or an
/// ipvlan mode: `l3`, `l2`, which need a kernel with ipvlan).
pub(super) fn two_hosts_dual(
    opts: &Options,
    on: &[&str],
    dataplane: &str,
) -> Result<(World, Emulator, NetworkDef)> {
    let options = match dataplane {
        "macvlan" => "options = { dataplane = \"macvlan\" }".to_string(),
        "l3" | "l2" | "l3s" => format!("options = {{ ipvlan_mode = \"{dataplane}\" }}"),
        other => anyhow::bail!("data plane {other:?}: use macvlan, l3, l2 or l3s"),
    };
    let text = TWO_HOSTS_DUAL.replace("options = { dataplane = \"macvlan\" }", &options);
    hosts_from(&text, opts, on)
}

/// The hosts of the scenario `text` (full iBGP mesh) with its first
/// network created on `on`, sessions up.
pub(super) fn hosts_from(
    text: &str,
    opts: &Options,
    on: &[&str],
) -> Result<(World, Emulator, NetworkDef)> {
    let s = Scenario::parse(text, std::path::Path::new("bench-two-hosts.toml"))?;
    let w = World::build(&s, opts, &|m| eprintln!("[bench] {m}"))?;
    let mut e = Emulator::default();
    let net = s.networks[0].clone();
    for h in on {
        e.create_network(&w, w.host_index(h)?, &net, Subnets::of(&net, h))?;
    }
    sessions_up(&w)?;
    Ok((w, e, net))
}

/// Waits (60 s at most, scaled) until every host's BGP sessions are up.
pub(super) fn sessions_up(w: &World) -> Result<Duration> {
    poll_until(Duration::from_secs(60), || {
        Ok((0..w.hosts.len()).all(|i| {
            w.bgp_sessions(i)
                .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                .unwrap_or(false)
        }))
    })
}
