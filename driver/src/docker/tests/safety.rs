//! Safe on a shared host: the segment's addresses are not the driver's to
//! take, instances never touch each other's links, a replayed Join is
//! checked against the kernel, and a parent lost while the driver runs is
//! noticed by the repair round.

use super::*;
use crate::model::names::Marks;

const GW_MAC: [u8; 6] = [0xaa, 0xbb, 0xcc, 0, 0, 1];

fn l3(host_link: bool, id: &str, parent: &str, subnets: &str) -> NetworkSpec {
    let mut spec = net(
        id,
        parent,
        subnets,
        Dataplane::Ipvlan {
            mode: IpvlanMode::L3,
            flag: IpvlanFlag::Bridge,
        },
    );
    spec.host_link = host_link;
    spec
}

/// Docker's macvlan recipe on a host whose eth0 is on that LAN
/// (`--subnet 192.168.1.0/24 --gateway 192.168.1.1 -o parent=eth0`), an
/// IPv6 subnet on eth1's prefix, a subnet inside an operator's connected
/// route: each refused, naming what overlaps and where, with nothing made.
#[test]
fn a_subnet_on_the_hosts_own_segments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let mut k = fk.clone();
    let eth0 = fk.link_named("eth0").unwrap().index;
    let eth1 = fk.link_named("eth1").unwrap().index;
    k.add_address(eth0, "192.168.1.5/24".parse().unwrap())
        .unwrap();
    k.add_address(eth1, "fd00:77::5/64".parse().unwrap())
        .unwrap();
    fk.add_route("10.32.0.0/16".parse().unwrap(), "eth1");
    let (mut d, _) = start(dir.path(), &fk);
    let links = names_of(&fk);
    let addrs = fk.all_addresses();
    for (spec, wants) in [
        (
            net(NET_A, "eth0", "192.168.1.0/24", MACVLAN),
            [
                "192.168.1.0/24",
                "192.168.1.5/24, an address of this host on eth0",
            ],
        ),
        (
            net(NET_A, "eth0", "10.5.0.0/24,fd00:77::/64", MACVLAN),
            [
                "fd00:77::/64",
                "fd00:77::5/64, an address of this host on eth1",
            ],
        ),
        (
            l3(false, NET_A, "eth0", "10.32.1.0/24"),
            ["10.32.1.0/24", "10.32.0.0/16, a route of this host on eth1"],
        ),
        // A subnet around the host's address is as bad as one inside it.
        (
            net(NET_A, "eth0", "192.168.0.0/16", MACVLAN),
            ["192.168.0.0/16", "192.168.1.5/24"],
        ),
    ] {
        let e = d.create_network(spec).unwrap_err().to_string();
        for w in wants {
            assert!(e.contains(w), "{w:?} not in {e}");
        }
        assert!(e.contains("belong to the segment"), "{e}");
        assert_eq!(names_of(&fk), links);
        assert_eq!(fk.all_addresses(), addrs);
        assert!(fk.probes().is_empty(), "refused before any probe");
        assert!(d.state().networks.is_empty());
    }
    // A subnet of its own is fine; its shim's connected route does not
    // count against a replay of the same network.
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    foreign_intact(&fk, "the refusals");
}

/// Someone on the segment holds the gateway: the network is refused with
/// who answered, and nothing is left (no shim, no address, no VLAN parent
/// made for it). Both families; the L3 host link too; plain L3 holds no
/// gateway and probes nothing.
#[test]
fn a_gateway_the_segment_answers_for_is_never_taken() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.add_neighbour("eth0", "10.1.1.1".parse().unwrap(), GW_MAC);
    fk.add_neighbour("eth1.10", "fd00:2::1".parse().unwrap(), GW_MAC);
    fk.add_neighbour("eth0", "10.3.1.1".parse().unwrap(), GW_MAC);
    let (mut d, _) = start(dir.path(), &fk);
    let links = names_of(&fk);
    let cases = [
        (
            net(NET_A, "eth0", "10.1.1.0/24", MACVLAN),
            "10.1.1.1 is answered on eth0 by aa:bb:cc:00:00:01: the segment already has this address; pick another --gateway",
        ),
        (
            net(NET_A, "eth1.10", "10.2.1.0/24,fd00:2::/64", MACVLAN),
            "fd00:2::1 is answered on eth1.10 by aa:bb:cc:00:00:01",
        ),
        (
            l3(true, NET_A, "eth0", "10.3.1.0/24"),
            "10.3.1.1 is answered on eth0",
        ),
    ];
    for (spec, want) in cases {
        let e = d.create_network(spec).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e}");
        assert_eq!(names_of(&fk), links, "nothing made, the VLAN rolled back");
        assert!(fk.all_addresses().is_empty());
        assert!(d.state().networks.is_empty());
    }
    assert_eq!(fk.probes().len(), 3);
    // Plain L3 holds no gateway: nothing to ask.
    d.create_network(l3(false, NET_A, "eth0", "10.3.1.0/24"))
        .unwrap();
    assert_eq!(fk.probes().len(), 3);
    // A free gateway: asked once, with both families.
    d.create_network(net(NET_B, "eth1", "10.4.1.0/24,fd00:4::/64", MACVLAN))
        .unwrap();
    let probes = fk.probes();
    assert_eq!(
        probes.last().unwrap(),
        &(
            "eth1".to_string(),
            vec!["10.4.1.1".parse().unwrap(), "fd00:4::1".parse().unwrap()]
        )
    );
}

/// The probe runs when the shim is first made, never when the driver
/// puts back its own network's shim or gateway (restart, repair, replay).
#[test]
fn restore_and_repair_never_probe_again() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    let spec = net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN);
    d.create_network(spec.clone()).unwrap();
    assert_eq!(fk.probes().len(), 1);
    // From now on the segment "answers" for the gateway (our own shim
    // would, to a probe that reached it): no path may ask.
    fk.add_neighbour("eth0", "10.1.1.1".parse().unwrap(), GW_MAC);
    let shim = names::shim(NET_A);
    fk.set_down(&shim);
    d.repair();
    fk.remove_device(&shim);
    assert_eq!(d.restore_shims(), 1);
    d.create_network(spec).unwrap();
    drop(d);
    fk.remove_device(&shim);
    let (d, _) = start(dir.path(), &fk);
    assert!(d.unavailable().is_empty(), "{:?}", d.unavailable());
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    assert_eq!(fk.probes().len(), 1);
}

/// Two instances (two state directories) on one host: each marks its
/// links with its own identity; one's restart, sweep and deletions never
/// touch the other's links, shims or the VLAN parent both use.
#[test]
fn two_instances_never_touch_each_others_links() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fk = host();
    let (mut a, _) = start(dir_a.path(), &fk);
    let (mut b, _) = start(dir_b.path(), &fk);
    assert_ne!(a.marks(), b.marks());
    a.create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
        .unwrap();
    a.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    a.join(NET_A, EP_1, "/nonexistent").unwrap();
    // B's network on the VLAN that A made, an L3 one: no shim, only its
    // container's link sits on eth1.10.
    b.create_network(l3(false, NET_B, "eth1.10", "10.2.1.0/24"))
        .unwrap();
    b.create_endpoint(NET_B, ep(EP_2, "10.2.1.2/24")).unwrap();
    b.join(NET_B, EP_2, "/nonexistent").unwrap();
    let a_links = [names::shim(NET_A), names::endpoint(EP_1)];
    let snapshot = |names: &[String]| -> Vec<Option<crate::kernel::Link>> {
        names.iter().map(|n| fk.link_named(n)).collect()
    };
    let before = snapshot(&a_links);
    assert!(before.iter().all(|l| l
        .as_ref()
        .is_some_and(|l| a.marks().is_own(l.alias.as_deref()))));
    // B restarts (restore and sweep), twice: A's links stay as they were.
    drop(b);
    let (b, _) = start(dir_b.path(), &fk);
    drop(b);
    let (mut b, _) = start(dir_b.path(), &fk);
    assert_eq!(snapshot(&a_links), before);
    // A goes away entirely; the VLAN it made stays while B's link sits on it.
    a.leave(NET_A, EP_1).unwrap();
    a.delete_endpoint(NET_A, EP_1).unwrap();
    a.delete_network(NET_A).unwrap();
    let vlan = fk
        .link_named("eth1.10")
        .expect("the VLAN parent B still uses");
    assert!(a.marks().is_own(vlan.alias.as_deref()));
    assert!(fk.link_named(&names::endpoint(EP_2)).is_some());
    // A restarts with nothing in its state: B's links are not its orphans.
    drop(a);
    let (a, _) = start(dir_a.path(), &fk);
    assert!(fk.link_named("eth1.10").is_some());
    assert!(fk.link_named(&names::endpoint(EP_2)).is_some());
    // Once B's last link is gone, A's next start sweeps its orphan VLAN.
    b.leave(NET_B, EP_2).unwrap();
    b.delete_endpoint(NET_B, EP_2).unwrap();
    b.delete_network(NET_B).unwrap();
    assert!(
        fk.link_named("eth1.10").is_some(),
        "A's VLAN is not B's to delete"
    );
    drop(a);
    let _ = start(dir_a.path(), &fk);
    assert!(fk.link_named("eth1.10").is_none());
    foreign_intact(&fk, "two instances");
}

/// A marked VLAN parent is not deleted while another network's link still
/// sits on it, even when the network that made it goes.
#[test]
fn a_vlan_goes_only_when_nothing_sits_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
        .unwrap();
    // Someone's macvlan on our VLAN (another driver's container link).
    fk.add_device("ibeforeign", Some("macvlan"), Some("eth1.10"), None);
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named("eth1.10").is_some());
    assert!(fk.link_named("ibeforeign").is_some());
    fk.remove_device("ibeforeign");
    drop(d);
    // The next start sweeps the VLAN, now unused.
    let _ = start(dir.path(), &fk);
    assert!(fk.link_named("eth1.10").is_none());
}

/// A state of the previous version (no identity; links marked without
/// one): its links are adopted by record and re-marked; links with such
/// marks that the state does not name (another instance's) stay as they are.
#[test]
fn earlier_marks_are_adopted_only_by_the_state_that_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    d.join(NET_A, EP_1, "/nonexistent").unwrap();
    d.join(NET_A, EP_2, "/nonexistent").unwrap();
    drop(d);
    // As the previous version left things: marks without an identity, and
    // a state without one; EP_2's link is inside its container.
    let mut k = fk.clone();
    let shim = fk.link_named(&names::shim(NET_A)).unwrap();
    let l1 = fk.link_named(&names::endpoint(EP_1)).unwrap();
    k.set_alias(shim.index, &names::legacy_mark(Role::Shim, NET_A))
        .unwrap();
    k.set_alias(l1.index, &names::legacy_mark(Role::Endpoint, EP_1))
        .unwrap();
    fk.remove_device(&names::endpoint(EP_2));
    let theirs = names::legacy_mark(Role::Shim, NET_B);
    fk.add_device(
        &names::shim(NET_B),
        Some("macvlan"),
        Some("eth0"),
        Some(&theirs),
    );
    let mut store = Store::new(dir.path());
    let mut st = store.load().unwrap();
    st.instance = None;
    store.save(&st).unwrap();
    let (mut d, _) = start(dir.path(), &fk);
    let m: Marks = d.marks().clone();
    assert_eq!(
        store.load().unwrap().instance.as_deref(),
        Some(m.instance())
    );
    assert_eq!(
        fk.link_named(&shim.name).unwrap().alias,
        Some(m.mark(Role::Shim, NET_A))
    );
    assert_eq!(
        fk.link_named(&l1.name).unwrap().alias,
        Some(m.mark(Role::Endpoint, EP_1))
    );
    assert_eq!(
        fk.link_named(&names::shim(NET_B)).unwrap().alias,
        Some(theirs.clone())
    );
    // Docker brings EP_2's link back with its earlier mark: ours, deleted.
    fk.add_device(
        &names::endpoint(EP_2),
        Some("macvlan"),
        Some("eth0"),
        Some(&names::legacy_mark(Role::Endpoint, EP_2)),
    );
    d.leave(NET_A, EP_2).unwrap();
    d.delete_endpoint(NET_A, EP_2).unwrap();
    assert!(fk.link_named(&names::endpoint(EP_2)).is_none());
    d.leave(NET_A, EP_1).unwrap();
    d.delete_endpoint(NET_A, EP_1).unwrap();
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named(&shim.name).is_none());
    // Another instance's link of an earlier version survives it all, and
    // the next start's sweep too.
    drop(d);
    let _ = start(dir.path(), &fk);
    assert_eq!(
        fk.link_named(&names::shim(NET_B)).unwrap().alias,
        Some(theirs)
    );
}

/// A Join for an endpoint that is already joined is answered as before
/// only when nothing changed; otherwise the kernel decides.
#[test]
fn a_replayed_join_is_checked_against_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    let sandboxes = tempfile::tempdir().unwrap();
    let sb = |n: &str| {
        let p = sandboxes.path().join(n);
        std::fs::write(&p, "").unwrap();
        p.display().to_string()
    };
    let (one, two) = (sb("one"), sb("two"));
    let link = names::endpoint(EP_1);
    let first = d.join(NET_A, EP_1, &one).unwrap();
    let index = fk.link_named(&link).unwrap().index;
    // A true replay (Docker never got the answer): the same, nothing made.
    assert_eq!(d.join(NET_A, EP_1, &one).unwrap(), first);
    assert_eq!(fk.link_named(&link).unwrap().index, index);
    // Docker moved the link into sandbox one, which lives on: another
    // Join, from another sandbox or the same, is refused.
    fk.remove_device(&link);
    for s in [&two, &one] {
        let e = d.join(NET_A, EP_1, s).unwrap_err().to_string();
        assert!(
            e.contains("already joined to sandbox") && e.contains(&one),
            "{e}"
        );
        assert!(fk.link_named(&link).is_none(), "no second link");
    }
    assert_eq!(d.state().networks[NET_A].endpoints[EP_1].sandbox, one);
    // Sandbox one is gone, its link with it: the Join makes it again.
    std::fs::remove_file(&one).unwrap();
    assert_eq!(d.join(NET_A, EP_1, &two).unwrap(), first);
    assert!(fk.link_named(&link).is_some());
    assert_eq!(d.state().networks[NET_A].endpoints[EP_1].sandbox, two);
    // Its link is back in the host namespace (a lost Leave): another
    // sandbox takes it, and the state says which.
    let three = sb("three");
    assert_eq!(d.join(NET_A, EP_1, &three).unwrap(), first);
    assert_eq!(d.state().networks[NET_A].endpoints[EP_1].sandbox, three);
    assert_eq!(
        Store::new(dir.path()).load().unwrap().networks[NET_A].endpoints[EP_1].sandbox,
        three
    );
    assert_eq!(view.borrow().announcements.len(), 1);
}

/// A parent that disappears while the driver runs: the repair round marks
/// the network unavailable (withdrawn, counted), and repairs it when the
/// parent is back, without waiting for a Join.
#[test]
fn a_parent_lost_while_running_is_noticed_by_the_repair_round() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.add_device("eth5", None, None, None);
    let (mut d, view) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth5", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_network(net(NET_B, "eth0", "10.2.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.join(NET_A, EP_1, "/x").unwrap();
    d.create_endpoint(NET_B, ep(EP_2, "10.2.1.2/24")).unwrap();
    d.join(NET_B, EP_2, "/x").unwrap();
    assert_eq!(view.borrow().announcements.len(), 2);
    fk.remove_device("eth5");
    assert_eq!(d.repair(), 0);
    let why = d.unavailable().get(NET_A).cloned().unwrap_or_default();
    assert!(why.contains("eth5") && why.contains("disappeared"), "{why}");
    assert_eq!(d.parents_lost(), 1);
    assert_eq!(
        view.borrow().announcements.keys().collect::<Vec<_>>(),
        vec![&"10.2.1.2/32".parse::<IpNet>().unwrap()]
    );
    // Counted once, however many rounds it stays away.
    d.repair();
    assert_eq!(d.parents_lost(), 1);
    // Back: the next round repairs it (its shim made again).
    fk.add_device("eth5", None, None, None);
    assert_eq!(d.repair(), 1);
    assert!(d.unavailable().is_empty());
    assert!(fk.link_named(&names::shim(NET_A)).is_some());
    assert_eq!(view.borrow().announcements.len(), 2);
}
