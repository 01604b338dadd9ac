//! The host's uplinks in dual-uplink mode (`--uplink`, two or more).
//!
//! In: the uplinks' names and a [`LinkKernel`]. Out: at start, each uplink
//! checked (it exists, is up, has an address) or an error naming what is
//! wrong ([`check`]); the smallest uplink MTU (the container port's,
//! [`smallest_mtu`]); and the host settings the design relies on, read and
//! warned about, never changed ([`host_warnings`]: one line per setting,
//! naming the sysctl and what was measured without it, docs/dual-uplink.md).

use crate::kernel::{Link, LinkKernel};

/// Checks every uplink: it exists, is up and has an address (the next hops
/// of its ToR lie in its connected subnets, and the BGP session to the ToR
/// runs over it). Returns the links, in the order given.
pub fn check<K: LinkKernel>(k: &mut K, names: &[String]) -> Result<Vec<Link>, String> {
    let addrs = k
        .addresses()
        .map_err(|e| format!("read the uplinks' addresses: {e}"))?;
    let mut out = Vec::new();
    for name in names {
        let link = k
            .link(name)
            .map_err(|e| format!("--uplink {name}: {e}"))?
            .ok_or_else(|| format!("--uplink {name}: no such interface on this host"))?;
        if !link.up {
            return Err(format!(
                "--uplink {name} is down: bring it up (ip link set {name} up) before starting the driver"
            ));
        }
        if !addrs.iter().any(|a| a.index == link.index) {
            return Err(format!(
                "--uplink {name} has no address: give it its point-to-point address towards its ToR before starting the driver"
            ));
        }
        out.push(link);
    }
    Ok(out)
}

/// The smallest MTU of `uplinks` (what a packet of a container may carry
/// out of either), `None` when none is known.
pub fn smallest_mtu(uplinks: &[Link]) -> Option<u32> {
    uplinks.iter().map(|l| l.mtu).filter(|m| *m > 0).min()
}

/// An uplink as `status` and `/metrics` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UplinkState {
    pub name: String,
    /// `up` (up with carrier), `no-carrier` (up, no carrier), `down`
    /// (admin down), or `missing`.
    pub state: String,
    /// Installed learned routes with a next hop through it.
    pub routes: usize,
}

/// The state of each uplink now, with the installed routes through it
/// (`routes_by_oif`: per interface index, from the route installer).
pub fn states<K: LinkKernel>(
    k: &mut K,
    names: &[String],
    routes_by_oif: &std::collections::BTreeMap<u32, usize>,
) -> Vec<UplinkState> {
    names
        .iter()
        .map(|name| {
            let link = k.link(name).ok().flatten();
            let state = match &link {
                None => "missing",
                Some(l) if !l.up => "down",
                Some(l) if !l.running => "no-carrier",
                Some(_) => "up",
            };
            UplinkState {
                name: name.clone(),
                state: state.to_string(),
                routes: link
                    .and_then(|l| routes_by_oif.get(&l.index).copied())
                    .unwrap_or(0),
            }
        })
        .collect()
}

/// One warning per host setting that differs from what the design needs,
/// each naming the sysctl and the measured consequence. Read only.
pub fn host_warnings<K: LinkKernel>(k: &mut K, uplinks: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut read = |path: &str| k.sysctl(path).ok().flatten().map(|v| v.trim().to_string());
    for family in ["ipv4", "ipv6"] {
        let path = format!("net/{family}/fib_multipath_hash_policy");
        if let Some(v) = read(&path).filter(|v| v != "1") {
            out.push(format!(
                "{} is {v}, not 1: forwarded container traffic is hashed without ports, so one container pair uses one uplink (measured: 16 of 16 flows on one uplink)",
                path.replace('/', ".")
            ));
        }
    }
    for name in uplinks {
        for family in ["ipv4", "ipv6"] {
            let path = format!("net/{family}/conf/{name}/ignore_routes_with_linkdown");
            let all = read(&format!(
                "net/{family}/conf/all/ignore_routes_with_linkdown"
            ));
            if let Some(v) = read(&path).filter(|v| v != "1" && all.as_deref() != Some("1")) {
                out.push(format!(
                    "{} is {v}, not 1: when {name}'s ToR dies (carrier lost) its next hop stays in use until BGP withdraws, and again ~250 ms after it returns (measured: 52-56 packets lost per flow instead of 1-4)",
                    path.replace('/', ".")
                ));
            }
        }
        let path = format!("net/ipv6/conf/{name}/keep_addr_on_down");
        let all = read("net/ipv6/conf/all/keep_addr_on_down");
        if let Some(v) = read(&path).filter(|v| v != "1" && all.as_deref() != Some("1")) {
            out.push(format!(
                "{} is {v}, not 1: an admin down/up of {name} removes its static IPv6 address, and with it the IPv6 session to its ToR until something adds it again (measured: 1 address before, 0 after)",
                path.replace('/', ".")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::FakeKernel;

    fn host() -> FakeKernel {
        let mut k = FakeKernel::new();
        let up1 = k.add_device("up1", None, None, None);
        let up2 = k.add_device("up2", None, None, None);
        k.add_device("bare", None, None, None);
        k.add_address(up1, "192.0.2.1/30".parse().unwrap()).unwrap();
        k.add_address(up2, "198.51.100.1/30".parse().unwrap())
            .unwrap();
        k
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn uplinks_must_exist_be_up_and_have_an_address() {
        let mut k = host();
        let links = check(&mut k, &names(&["up1", "up2"])).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(smallest_mtu(&links), Some(1500));
        let err = check(&mut k, &names(&["up1", "nope"])).unwrap_err();
        assert!(err.contains("--uplink nope: no such interface"), "{err}");
        let err = check(&mut k, &names(&["up1", "bare"])).unwrap_err();
        assert!(err.contains("--uplink bare has no address"), "{err}");
        let i = k.link("up2").unwrap().unwrap().index;
        k.set_up(i, false).unwrap();
        let err = check(&mut k, &names(&["up1", "up2"])).unwrap_err();
        assert!(err.contains("--uplink up2 is down"), "{err}");
    }

    #[test]
    fn each_uplink_has_a_state_and_the_routes_through_it() {
        let mut k = host();
        let i1 = k.link("up1").unwrap().unwrap().index;
        let i2 = k.link("up2").unwrap().unwrap().index;
        let by_oif = [(i1, 7), (i2, 3), (99, 1)].into_iter().collect();
        let st = |k: &mut FakeKernel| {
            states(k, &names(&["up1", "up2", "gone"]), &by_oif)
                .into_iter()
                .map(|s| (s.name, s.state, s.routes))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            st(&mut k),
            [
                ("up1".into(), "up".into(), 7),
                ("up2".into(), "up".into(), 3),
                ("gone".into(), "missing".into(), 0)
            ]
        );
        k.set_down("up2");
        assert_eq!(st(&mut k)[1], ("up2".into(), "down".into(), 3));
    }

    #[test]
    fn host_settings_are_warned_about_one_line_each_never_changed() {
        let mut k = host();
        let ups = names(&["up1", "up2"]);
        let set = [
            ("net/ipv4/fib_multipath_hash_policy", "0"),
            ("net/ipv6/fib_multipath_hash_policy", "1"),
            ("net/ipv4/conf/all/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/all/ignore_routes_with_linkdown", "1"),
            ("net/ipv4/conf/up1/ignore_routes_with_linkdown", "1"),
            ("net/ipv4/conf/up2/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/up1/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/up2/ignore_routes_with_linkdown", "0"),
            ("net/ipv6/conf/all/keep_addr_on_down", "0"),
            ("net/ipv6/conf/up1/keep_addr_on_down", "1"),
            ("net/ipv6/conf/up2/keep_addr_on_down", "0"),
        ];
        for (p, v) in set {
            k.set_sysctl(p, v).unwrap();
        }
        let w = host_warnings(&mut k, &ups);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].starts_with("net.ipv4.fib_multipath_hash_policy is 0, not 1: "));
        assert!(w[0].contains("one container pair uses one uplink"));
        assert!(w[1].starts_with("net.ipv4.conf.up2.ignore_routes_with_linkdown is 0"));
        assert!(w[2].starts_with("net.ipv6.conf.up2.keep_addr_on_down is 0"));
        for (p, v) in set {
            assert_eq!(
                k.sysctl_value(p).as_deref(),
                Some(v),
                "a host check changed {p}"
            );
        }
        // Everything as the design wants it: no warning.
        for p in [
            "net/ipv4/fib_multipath_hash_policy",
            "net/ipv4/conf/up2/ignore_routes_with_linkdown",
            "net/ipv6/conf/all/keep_addr_on_down",
        ] {
            k.set_sysctl(p, "1").unwrap();
        }
        assert_eq!(host_warnings(&mut k, &ups), Vec::<String>::new());
    }
}
