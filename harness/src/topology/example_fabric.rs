//! The documented example fabric's router (docs/router-config.md, printed
//! by `harness router-config`): a top-of-rack router, AS 65100 at
//! 192.168.1.1/24, facing the README's two Docker hosts 192.168.1.248 and
//! 192.168.1.251 (AS 65000), with the scenarios' timers (hold 9 s,
//! keepalive 3 s) and, when asked, their BFD (300 ms x 3).
//!
//! In: the router kind, the container pools, the max-prefix, BFD on or
//! off. Out: the router's configuration text, written by the same
//! functions of [`super::configs`] that write the scenarios' routers, with
//! an [`EdgePolicy`]. Pure, no I/O.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::IpNet;

use super::configs::{self, EdgePolicy, Neighbor, Timers};
use crate::scenario::{BfdSection, BgpSection, RouterDef, RouterKind};
use crate::util::Dur;

/// The ToR's address on the hosts' segment (also its router ID).
pub const TOR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The README's Docker hosts.
pub const HOSTS: [(&str, Ipv4Addr); 2] = [
    ("docker-248", Ipv4Addr::new(192, 168, 1, 248)),
    ("docker-251", Ipv4Addr::new(192, 168, 1, 251)),
];
pub const HOSTS_ASN: u32 = 65000;
pub const TOR_ASN: u32 = 65100;
/// The README's pool, when none is given.
pub const DEFAULT_POOL: &str = "10.1.0.0/16";
/// Routes accepted per host and family before the session is reset:
/// above the containers one host runs (one /32 or /128 each) plus its
/// subnets.
pub const DEFAULT_MAX_PREFIX: u32 = 10000;

/// The example ToR's configuration: FRR's integrated `frr.conf` or BIRD's
/// `bird.conf`.
pub fn router_config(kind: RouterKind, pools: &[IpNet], max_prefix: u32, bfd: bool) -> String {
    let def = RouterDef {
        name: "tor".into(),
        kind,
        asn: TOR_ASN,
        links: BTreeMap::from([(
            "hosts".to_string(),
            ipnet::Ipv4Net::new(TOR, 24).expect("valid prefix length"),
        )]),
        links6: BTreeMap::new(),
        neighbors: HOSTS.iter().map(|(n, _)| n.to_string()).collect(),
        rr_clients: Vec::new(),
        originate: Vec::new(),
        bfd: None,
    };
    let neighbors: Vec<Neighbor> = HOSTS
        .iter()
        .map(|(name, addr)| Neighbor {
            name: name.to_string(),
            addr: (*addr).into(),
            asn: HOSTS_ASN,
            rr_client: false,
            bfd,
            passive: false,
        })
        .collect();
    let t = Timers {
        bfd: bfd.then_some(BfdSection {
            interval: Dur(Duration::from_millis(300)),
            multiplier: 3,
        }),
        ..Timers::from(&BgpSection::default())
    };
    let policy = EdgePolicy {
        pools: pools.to_vec(),
        max_prefix,
    };
    match kind {
        RouterKind::Frr => configs::frr_integrated(&def, TOR, &neighbors, t, &policy),
        RouterKind::Bird => configs::bird(&def, TOR, &neighbors, t, Some(&policy)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Vec<IpNet> {
        vec![DEFAULT_POOL.parse().unwrap()]
    }

    #[test]
    fn frr_example_filters_the_pools_and_limits_each_host() {
        let c = router_config(RouterKind::Frr, &pools(), 500, true);
        assert!(c.starts_with("frr defaults datacenter\n"), "{c}");
        assert!(
            c.contains("ip prefix-list container-pools seq 5 permit 10.1.0.0/16 le 32\n"),
            "{c}"
        );
        assert!(
            c.contains("ipv6 prefix-list container-pools6 seq 5 deny any\n"),
            "{c}"
        );
        for h in ["192.168.1.248", "192.168.1.251"] {
            assert!(
                c.contains(&format!(" neighbor {h} remote-as 65000\n")),
                "{c}"
            );
            assert!(
                c.contains(&format!("  neighbor {h} prefix-list container-pools in\n")),
                "{c}"
            );
            assert!(
                c.contains(&format!("  neighbor {h} prefix-list container-pools6 in\n")),
                "{c}"
            );
            assert!(
                c.contains(&format!("  neighbor {h} maximum-prefix 500 restart 5\n")),
                "{c}"
            );
            assert!(
                c.contains(&format!(" neighbor {h} bfd profile harness\n")),
                "{c}"
            );
        }
        assert!(
            c.contains("\nbfd\n profile harness\n  transmit-interval 300\n"),
            "{c}"
        );
        let plain = router_config(RouterKind::Frr, &pools(), 500, false);
        assert!(!plain.contains("bfd"), "{plain}");
    }

    #[test]
    fn bird_example_filters_each_family() {
        let v6: IpNet = "fd00:1::/48".parse().unwrap();
        let c = router_config(RouterKind::Bird, &[pools()[0], v6], 500, true);
        assert!(
            c.contains("if net ~ [ 10.1.0.0/16+ ] then accept;\n  reject;"),
            "{c}"
        );
        assert!(c.contains("if net ~ [ fd00:1::/48+ ] then accept;"), "{c}");
        assert_eq!(
            c.matches("import limit 500 action restart;").count(),
            4,
            "{c}"
        );
        assert_eq!(c.matches("  bfd on;\n").count(), 2, "{c}");
        assert!(c.contains("protocol bfd {\n"), "{c}");
        // Without an IPv6 pool the IPv6 channels import nothing.
        let v4 = router_config(RouterKind::Bird, &pools(), 500, false);
        assert_eq!(
            v4.matches("  ipv6 { import none; export where source = RTS_STATIC")
                .count(),
            2,
            "{v4}"
        );
        assert!(!v4.contains("bfd"), "{v4}");
    }
}
