//! Dual-uplink mode on the in-memory kernel: the container port made with
//! the first network of its data plane and deleted with the last, its
//! gateways on the host end, its repair, and the refusals.

use super::*;

const NET_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const IPVLAN_L2: Dataplane = Dataplane::Ipvlan {
    mode: IpvlanMode::L2,
    flag: IpvlanFlag::Bridge,
};

/// A host with two uplinks (MTU 9000 and 1450) and a dummy.
fn dual_host() -> FakeKernel {
    let fk = host();
    fk.add_device("up1", None, None, None);
    fk.add_device("up2", None, None, None);
    fk.add_device("dum0", Some("dummy"), None, None);
    fk.set_mtu("up1", 9000);
    fk.set_mtu("up2", 1450);
    fk
}

fn uplinks() -> Vec<String> {
    vec!["up1".into(), "up2".into()]
}

fn start_dual(dir: &Path, fk: &FakeKernel) -> Driver<FakeKernel> {
    let parents = HostParents {
        uplinks: uplinks(),
        ..HostParents::default()
    };
    Driver::start_with(Store::new(dir), fk.clone(), parents, None)
        .unwrap()
        .0
}

/// A network on the container port of `dataplane`.
fn port_net(id: &str, subnets: &str, dataplane: Dataplane) -> NetworkSpec {
    let mut spec = net(id, "eth0", subnets, dataplane);
    spec.parent = Parent::port(&dataplane);
    spec
}

fn addrs_on(fk: &FakeKernel, name: &str) -> Vec<IpNet> {
    let Some(l) = fk.link_named(name) else {
        return Vec::new();
    };
    let mut v: Vec<IpNet> = fk
        .all_addresses()
        .into_iter()
        .filter(|a| a.index == l.index)
        .map(|a| a.net)
        .collect();
    v.sort();
    v
}

fn n(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn a_container_port_comes_with_the_first_network_of_its_mode_and_goes_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let fk = dual_host();
    let mut d = start_dual(dir.path(), &fk);
    d.create_network(port_net(NET_A, "10.1.1.0/24,fd00:1:1::/64", MACVLAN))
        .unwrap();
    let (pa, pb) = ("ipbgp-mvb-a", "ipbgp-mvb-b");
    let mark = format!("ipvlan-bgp:{}:port:mvb", d.marks.instance());
    for end in [pa, pb] {
        let l = fk
            .link_named(end)
            .unwrap_or_else(|| panic!("{end} missing"));
        assert_eq!(l.kind.as_deref(), Some("veth"), "{end}");
        assert_eq!(l.alias.as_deref(), Some(mark.as_str()), "{end}");
        assert!(l.up, "{end} down");
        assert_eq!(l.mtu, 1450, "{end}: the smallest uplink MTU");
    }
    // The gateways sit on the host end, no shim is made.
    assert_eq!(addrs_on(&fk, pb), [n("10.1.1.1/24"), n("fd00:1:1::1/64")]);
    assert!(addrs_on(&fk, pa).is_empty());
    assert!(fk.link_named(&names::shim(NET_A)).is_none());
    // A container's link sits on pa.
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.join(NET_A, EP_1, "/nonexistent").unwrap();
    let c = fk.link_named(&names::endpoint(EP_1)).unwrap();
    assert_eq!(c.parent, Some(fk.link_named(pa).unwrap().index));
    assert_eq!(c.kind.as_deref(), Some("macvlan"));
    // A second network of the mode shares the pair; another mode gets its own.
    d.create_network(port_net(NET_B, "10.1.2.0/24", MACVLAN))
        .unwrap();
    d.create_network(port_net(NET_C, "10.1.3.0/24", IPVLAN_L2))
        .unwrap();
    assert_eq!(
        addrs_on(&fk, pb),
        [n("10.1.1.1/24"), n("10.1.2.1/24"), n("fd00:1:1::1/64")]
    );
    assert_eq!(addrs_on(&fk, "ipbgp-l2b-b"), [n("10.1.3.1/24")]);
    // A restart keeps the ports (the sweep knows them).
    drop(d);
    let mut d = start_dual(dir.path(), &fk);
    assert!(fk.link_named(pa).is_some() && fk.link_named("ipbgp-l2b-a").is_some());
    // The first network goes: its gateways leave pb, the pair stays.
    d.leave(NET_A, EP_1).unwrap();
    d.delete_endpoint(NET_A, EP_1).unwrap();
    d.delete_network(NET_A).unwrap();
    assert_eq!(addrs_on(&fk, pb), [n("10.1.2.1/24")]);
    // The last one of the mode: the pair goes, the other mode's stays.
    d.delete_network(NET_B).unwrap();
    assert!(fk.link_named(pa).is_none() && fk.link_named(pb).is_none());
    assert!(fk.link_named("ipbgp-l2b-a").is_some());
    d.delete_network(NET_C).unwrap();
    assert!(fk.link_named("ipbgp-l2b-a").is_none());
    foreign_intact(&fk, "the ports' lives");
}

#[test]
fn a_port_set_down_or_stripped_is_repaired_and_counted_and_a_deleted_one_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let fk = dual_host();
    let mut d = start_dual(dir.path(), &fk);
    d.create_network(port_net(NET_A, "10.1.1.0/24,fd00:1:1::/64", MACVLAN))
        .unwrap();
    let (pa, pb) = ("ipbgp-mvb-a", "ipbgp-mvb-b");
    assert_eq!(d.repair(), 0);
    assert_eq!(d.port_repairs(), 0);
    // Set down by hand: the kernel drops pb's IPv6 gateway with it.
    fk.set_down(pb);
    d.repair();
    assert_eq!(d.port_repairs(), 1);
    assert!(fk.link_named(pb).unwrap().up);
    assert_eq!(addrs_on(&fk, pb), [n("10.1.1.1/24"), n("fd00:1:1::1/64")]);
    // An IPv4 gateway removed.
    fk.remove_address(pb, n("10.1.1.1/24"));
    d.repair();
    assert_eq!(d.port_repairs(), 2);
    assert!(addrs_on(&fk, pb).contains(&n("10.1.1.1/24")));
    // pa set down.
    fk.set_down(pa);
    d.repair();
    assert_eq!(d.port_repairs(), 3);
    assert!(fk.link_named(pa).unwrap().up);
    // Deleted while the driver was stopped: made again at start.
    drop(d);
    fk.remove_device(pa);
    assert!(fk.link_named(pb).is_none(), "a veth goes with its peer");
    let d = start_dual(dir.path(), &fk);
    assert!(fk.link_named(pa).unwrap().up);
    assert_eq!(addrs_on(&fk, pb), [n("10.1.1.1/24"), n("fd00:1:1::1/64")]);
    assert!(d.unavailable().is_empty());
}

#[test]
fn a_foreign_link_under_a_port_name_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fk = dual_host();
    fk.add_device("ipbgp-mvb-a", Some("veth"), None, Some("someone's"));
    let mut d = start_dual(dir.path(), &fk);
    let e = d
        .create_network(port_net(NET_A, "10.1.1.0/24", MACVLAN))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not ours"), "{e}");
    assert!(d.state().networks.is_empty());
    let l = fk.link_named("ipbgp-mvb-a").unwrap();
    assert_eq!(l.alias.as_deref(), Some("someone's"));
    assert!(fk.link_named("ipbgp-mvb-b").is_none());
}

#[test]
fn ipvlan_l3_on_a_dummy_parent_is_refused_in_any_mode() {
    let dir = tempfile::tempdir().unwrap();
    let fk = dual_host();
    let (mut d, _) = start(dir.path(), &fk);
    for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
        let dp = Dataplane::Ipvlan {
            mode,
            flag: IpvlanFlag::Bridge,
        };
        let e = d
            .create_network(net(NET_A, "dum0", "10.1.1.0/24", dp))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parent dum0 is a dummy")
                && e.contains("a dummy drops both")
                && e.contains("container port"),
            "{e}"
        );
        assert!(d.state().networks.is_empty());
    }
    // L2 data planes on a dummy are not refused (the shim holds the gateway).
    d.create_network(net(NET_A, "dum0", "10.1.1.0/24", IPVLAN_L2))
        .unwrap();
}

const IPVLAN_L3: Dataplane = Dataplane::Ipvlan {
    mode: IpvlanMode::L3,
    flag: IpvlanFlag::Bridge,
};

fn rules_of(fk: &FakeKernel) -> Vec<crate::kernel::Rule> {
    fk.clone().rules().unwrap()
}

fn dev_routes_of(fk: &FakeKernel, table: u32) -> Vec<(IpNet, u32, u8)> {
    let mut v: Vec<_> = fk
        .clone()
        .dev_routes(table)
        .unwrap()
        .into_iter()
        .map(|r| (r.dst, r.oif, r.protocol))
        .collect();
    v.sort();
    v
}

#[test]
fn an_ipvlan_l3_port_has_one_mac_no_arp_the_egress_rule_and_each_joined_endpoints_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut fk = dual_host();
    let (pa, pb) = ("ipbgp-l3b-a", "ipbgp-l3b-b");
    fk.set_sysctl(&format!("net/ipv4/conf/{pa}/forwarding"), "1")
        .unwrap();
    let mut d = start_dual(dir.path(), &fk);
    d.create_network(port_net(NET_A, "10.1.1.0/24,fd00:1:1::/64", IPVLAN_L3))
        .unwrap();
    let (a, b) = (fk.link_named(pa).unwrap(), fk.link_named(pb).unwrap());
    assert_eq!(a.mac, b.mac, "one MAC on both ends");
    assert_eq!(a.mac[0] & 0x03, 0x02, "locally administered, unicast");
    assert!(a.noarp && b.noarp && a.up && b.up, "{a:?} {b:?}");
    assert_eq!(a.mtu, 1450);
    assert_eq!(
        fk.sysctl_value(&format!("net/ipv4/conf/{pa}/forwarding"))
            .as_deref(),
        Some("0")
    );
    assert!(addrs_on(&fk, pb).is_empty(), "no gateway on an L3 port");
    assert!(fk.link_named(&names::shim(NET_A)).is_none());
    let rule = |v6| crate::kernel::Rule {
        v6,
        priority: 7373,
        oif: Some(pa.into()),
        table: 173,
        protocol: 73,
    };
    assert_eq!(rules_of(&fk), [rule(false), rule(true)]);
    assert_eq!(
        dev_routes_of(&fk, 173),
        [(n("0.0.0.0/0"), a.index, 73), (n("::/0"), a.index, 73)]
    );
    // Join: the endpoint's /32 and /128 dev pb, before it is announced.
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24,fd00:1:1::2/64"))
        .unwrap();
    assert!(dev_routes_of(&fk, 254).is_empty());
    d.join(NET_A, EP_1, "/nonexistent").unwrap();
    let mine = [
        (n("10.1.1.2/32"), b.index, 73),
        (n("fd00:1:1::2/128"), b.index, 73),
    ];
    assert_eq!(dev_routes_of(&fk, 254), mine);
    let c = fk.link_named(&names::endpoint(EP_1)).unwrap();
    assert_eq!(
        (c.parent, c.kind.as_deref()),
        (Some(a.index), Some("ipvlan"))
    );
    // Leave: they go; a new Join brings them back.
    d.leave(NET_A, EP_1).unwrap();
    assert!(dev_routes_of(&fk, 254).is_empty());
    d.join(NET_A, EP_1, "/nonexistent").unwrap();
    assert_eq!(dev_routes_of(&fk, 254), mine);
    // Drift is repaired and counted: a rule, an endpoint's route, NOARP.
    assert_eq!(d.repair(), 0);
    assert_eq!(d.port_repairs(), 0);
    fk.del_rule(&rule(true)).unwrap();
    d.repair();
    assert_eq!(d.port_repairs(), 0, "rules are read back every 30 s only");
    d.port_deep_at = None;
    d.repair();
    assert_eq!((d.port_repairs(), rules_of(&fk).len()), (1, 2));
    fk.del_dev_route(&crate::kernel::DevRoute {
        dst: n("10.1.1.2/32"),
        oif: b.index,
        table: 254,
        protocol: 73,
    })
    .unwrap();
    d.port_deep_at = None;
    d.repair();
    assert_eq!(d.port_repairs(), 2);
    assert_eq!(dev_routes_of(&fk, 254), mine);
    fk.set_link(b.index, Some(false), Some([2, 0, 0, 0, 0, 9]))
        .unwrap();
    d.repair();
    assert_eq!(d.port_repairs(), 3);
    let b2 = fk.link_named(pb).unwrap();
    assert!(b2.noarp && b2.mac == a.mac);
    // Someone writes net.ipv4.ip_forward, which turns pa's forwarding on.
    let fwd = format!("net/ipv4/conf/{pa}/forwarding");
    fk.set_sysctl(&fwd, "1").unwrap();
    d.repair();
    assert_eq!(d.port_repairs(), 4);
    assert_eq!(fk.sysctl_value(&fwd).as_deref(), Some("0"));
    // A restart keeps it all (the same MAC: it comes from the identity).
    drop(d);
    let mut d = start_dual(dir.path(), &fk);
    assert_eq!(fk.link_named(pa).unwrap().mac, a.mac);
    assert_eq!(dev_routes_of(&fk, 254), mine);
    // The last network goes: routes, rules, table and pair with it.
    d.leave(NET_A, EP_1).unwrap();
    d.delete_endpoint(NET_A, EP_1).unwrap();
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named(pa).is_none() && fk.link_named(pb).is_none());
    assert!(rules_of(&fk).is_empty(), "{:?}", rules_of(&fk));
    assert!(dev_routes_of(&fk, 173).is_empty() && dev_routes_of(&fk, 254).is_empty());
}

#[test]
fn a_foreign_rule_at_the_preference_or_a_foreign_route_in_the_table_refuses_the_start() {
    use crate::kernel::{DevRoute, Rule};
    use crate::provision::port::{check_free, PortConfig};
    let mut fk = dual_host();
    let cfg = PortConfig::default();
    assert_eq!(check_free(&mut fk, &cfg), Ok(()));
    // Ours from an earlier run: free.
    let ours = Rule {
        v6: false,
        priority: 7373,
        oif: Some("ipbgp-l3b-a".into()),
        table: 173,
        protocol: 73,
    };
    fk.add_rule(&ours).unwrap();
    assert_eq!(check_free(&mut fk, &cfg), Ok(()));
    let foreign = Rule {
        oif: None,
        protocol: 4,
        table: 100,
        ..ours.clone()
    };
    fk.add_rule(&foreign).unwrap();
    let e = check_free(&mut fk, &cfg).unwrap_err();
    assert!(
        e.contains("preference 7373 is not ours") && e.contains("--port-rule-pref"),
        "{e}"
    );
    fk.del_rule(&foreign).unwrap();
    let up1 = fk.link_named("up1").unwrap().index;
    fk.add_dev_route(&DevRoute {
        dst: n("10.9.0.0/16"),
        oif: up1,
        table: 173,
        protocol: 4,
    })
    .unwrap();
    let e = check_free(&mut fk, &cfg).unwrap_err();
    assert!(
        e.contains("table 173 holds routes that are not ours (10.9.0.0/16 proto 4)"),
        "{e}"
    );
}
