//! Hosts with uplinks (`[[hosts]] uplinks = ["tor1a", "tor1b"]`, issue 23):
//! each listed router gets one point-to-point link to the host, addressed
//! from the harness's pools: the k-th uplink of the scenario is
//! `203.0.113.4k/30` (router `.4k+1`, host `.4k+2`) and, on a dual-stack
//! scenario, `fd00:0:ff:k::/64` (router `::1`, host `::2`).
//!
//! In: the hosts after `check/hosts` (which leaves hosts with uplinks
//! unaddressed), the file's routers and segments. Out: those hosts with
//! their [`Uplink`]s, their address (the first uplink's), their `peers`
//! (default: the uplinks' routers); or the error naming the line.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::scenario::locate::Here;
use crate::scenario::model::RawScenario;
use crate::scenario::schema::{BgpConfigBy, HostDef, SegmentDef, Uplink};

/// The IPv4 pool the uplinks' /30s come from.
pub const POOL4: &str = "203.0.113.0/24";

/// Addresses every host that has `uplinks` (the others are left as they are).
pub(in crate::scenario) fn uplinks(
    raw: &RawScenario,
    hosts: &mut [HostDef],
    offsets: &[usize],
    segments: &[SegmentDef],
    here: Here,
) -> Result<()> {
    let pool: Ipv4Net = POOL4.parse().expect("valid pool");
    let dual_stack = segments.iter().any(|s| s.subnet6.is_some());
    let routers: BTreeSet<&str> = raw
        .routers
        .iter()
        .map(|r| r.get_ref().name.as_str())
        .collect();
    let mut k: u32 = 0;
    for (host, &off) in hosts.iter_mut().zip(offsets) {
        if host.uplinks.is_empty() {
            continue;
        }
        let at = |msg: String| here.at(off, format!("host {}: {msg}", host.name));
        if host.segment.is_some() {
            return Err(at(
                "give `segment` or `uplinks`, not both (a host with uplinks has no segment)".into(),
            ));
        }
        if host.address.is_some() || host.address6.is_some() {
            return Err(at(
                "a host with uplinks takes its addresses from the uplinks' pool; remove `address`/`address6`".into(),
            ));
        }
        if host.gateway.is_some() {
            return Err(at(
                "a host with uplinks has no `gateway`: its routes come over BGP from its uplinks' routers".into(),
            ));
        }
        if host.uplinks.len() < 2 {
            return Err(at(format!(
                "uplinks = {:?} names one router; a host with uplinks needs two or more (one uplink: use `segment`)",
                host.uplinks
            )));
        }
        if raw.bgp.config != BgpConfigBy::Driver {
            return Err(at(
                "uplinks need [bgp] config = \"driver\" (the driver configures gobgpd for multipath and one session per uplink)".into(),
            ));
        }
        let mut links = Vec::new();
        for (n, r) in host.uplinks.iter().enumerate() {
            if !routers.contains(r.as_str()) {
                return Err(at(format!("uplink {r:?} is not a [[routers]] entry")));
            }
            if host.uplinks[..n].contains(r) {
                return Err(at(format!("uplink {r:?} is listed twice")));
            }
            if 4 * (k + 1) > 1 << (32 - pool.prefix_len()) {
                return Err(at(format!(
                    "more uplinks in the scenario than the pool {pool} has /30s"
                )));
            }
            let base = u32::from(pool.network()) + 4 * k;
            let v4 = |i: u32| Ipv4Net::new(Ipv4Addr::from(base + i), 30).expect("/30");
            let v6 = |i: u128| {
                let net = (0xfd00_0000_00ffu128 << 80) | (u128::from(k) << 64);
                Ipv6Net::new(Ipv6Addr::from(net + i), 64).expect("/64")
            };
            links.push(Uplink {
                iface: format!("up{}", n + 1),
                router: r.clone(),
                segment: format!("{}.up{}", host.name, n + 1),
                host_addr: v4(2),
                router_addr: v4(1),
                host_addr6: dual_stack.then(|| v6(2)),
                router_addr6: dual_stack.then(|| v6(1)),
            });
            k += 1;
        }
        if let Some(seg) = segments
            .iter()
            .find(|s| s.subnet.contains(&pool.network()) || pool.contains(&s.subnet.network()))
        {
            return Err(at(format!(
                "segment {} ({}) overlaps the uplinks' pool {pool}",
                seg.name, seg.subnet
            )));
        }
        host.address = Some(links[0].host_addr);
        host.address6 = links[0].host_addr6;
        if host.peers.is_none() {
            host.peers = Some(host.uplinks.clone());
        }
        host.uplink_links = links;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, DUAL_HOMED as RACK};

    #[test]
    fn each_uplink_is_its_own_p2p_link_and_the_routers_are_the_peers() {
        let s = parse(RACK).unwrap();
        let h = s.host("h1").unwrap();
        let got: Vec<String> = h
            .uplink_links
            .iter()
            .map(|u| format!("{} {} {} {}", u.iface, u.router, u.host_addr, u.router_addr))
            .collect();
        assert_eq!(
            got,
            [
                "up1 tor1a 203.0.113.2/30 203.0.113.1/30",
                "up2 tor1b 203.0.113.6/30 203.0.113.5/30"
            ]
        );
        assert_eq!(h.address.unwrap().to_string(), "203.0.113.2/30");
        assert_eq!(h.peers.as_deref().unwrap(), ["tor1a", "tor1b"]);
        // The router and the host meet on the link, in both directions.
        assert_eq!(
            s.shared_address("h1", "tor1b").unwrap().to_string(),
            "203.0.113.5/30"
        );
        assert_eq!(
            s.shared_address("tor1b", "h1").unwrap().to_string(),
            "203.0.113.6/30"
        );
        assert!(h.uplink_links[0].host_addr6.is_none(), "not dual stack");
        let six = parse(&RACK.replace(
            "subnet = \"198.51.100.0/24\"",
            "subnet = \"198.51.100.0/24\"\nsubnet6 = \"fd00:51::/64\"",
        ))
        .unwrap();
        let u = &six.host("h1").unwrap().uplink_links[1];
        assert_eq!(u.host_addr6.unwrap().to_string(), "fd00:0:ff:1::2/64");
        assert_eq!(u.router_addr6.unwrap().to_string(), "fd00:0:ff:1::1/64");
    }

    /// The uplink steps name a host's uplink, a router it has one to, and
    /// hosts with uplinks; the flows two different members.
    #[test]
    fn uplink_steps_are_checked_against_the_topology() {
        let with = |step: &str| {
            let src = format!(
                "{}[[hosts]]\nname = \"h9\"\nsegment = \"spine\"\n[[steps]]\n{step}\n",
                RACK
            );
            parse(&src).map(|_| ()).map_err(|e| e.to_string())
        };
        with("do = \"uplink-down\"\nhost = \"h1\"\nuplink = \"up2\"").unwrap();
        with("do = \"tor-port-down\"\nrouter = \"tor1b\"\nhost = \"h1\"").unwrap();
        with("do = \"uplink-counters-start\"\nid = \"x\"\nhosts = [\"h1\"]").unwrap();
        let cases = [
            (
                "do = \"uplink-down\"\nhost = \"h1\"\nuplink = \"up3\"",
                "host h1 has no uplink \"up3\" (its uplinks: [\"up1\", \"up2\"])",
            ),
            (
                "do = \"tor-port-up\"\nrouter = \"tor1b\"\nhost = \"h9\"",
                "host h9 has no uplink to router tor1b",
            ),
            (
                "do = \"uplink-counters-start\"\nid = \"x\"\nhosts = [\"h9\"]",
                "host h9 has no uplinks",
            ),
            (
                "do = \"uplink-counters-stop\"\nid = \"x\"\nmin_share = 101",
                "min_share 101 is a percentage",
            ),
            (
                "do = \"flows-start\"\nid = \"f\"\nfrom = \"h1\"\nto = \"h1\"",
                "from and to must differ",
            ),
            (
                "do = \"flows-start\"\nid = \"f\"\nfrom = \"h1\"\nto = \"h9\"\nflows = 0",
                "flows must be at least 1",
            ),
        ];
        for (step, want) in cases {
            let e = with(step).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn bad_uplinks_are_refused_with_the_line() {
        let cases = [
            (
                RACK.replace("\"tor1a\", \"tor1b\"]", "\"tor1a\", \"tor9\"]"),
                "uplink \"tor9\" is not a [[routers]] entry",
            ),
            (
                RACK.replace("\"tor1a\", \"tor1b\"]", "\"tor1a\"]"),
                "names one router; a host with uplinks needs two or more",
            ),
            (
                RACK.replace("asn = 65001\n", "asn = 65001\nsegment = \"spine\"\n"),
                "give `segment` or `uplinks`, not both",
            ),
            (
                RACK.replace("\"tor1a\", \"tor1b\"]", "\"tor1a\", \"tor1a\"]"),
                "uplink \"tor1a\" is listed twice",
            ),
            (
                RACK.replace("config = \"driver\"", "config = \"gobgpd\""),
                "uplinks need [bgp] config = \"driver\"",
            ),
            (
                RACK.replace(
                    "subnet = \"198.51.100.0/24\"",
                    "subnet = \"203.0.113.128/25\"",
                )
                .replace("198.51.100.", "203.0.113.1"),
                "overlaps the uplinks' pool",
            ),
        ];
        for (src, want) in cases {
            let e = parse(&src).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.starts_with("scenarios/x.toml:"), "{e}");
        }
    }
}
