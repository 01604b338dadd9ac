//! The Docker side on the in-memory kernel: operations, restarts, repairs,
//! and that nothing foreign is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;

use super::ops::Reach;
use super::*;
use crate::kernel::fake::{FakeKernel, Op};
use crate::model::attrs::RouteAttrs;
use crate::model::names::{self, Role};
use crate::model::network::{
    Announce, Dataplane, EndpointSpec, IpvlanFlag, IpvlanMode, MacvlanMode, NetworkSpec, Parent,
};
use crate::model::state;

mod port;
mod safety;

const NET_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NET_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const EP_1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const EP_2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const FOREIGN: [&str; 3] = ["ibs1", "ibp94s0f0", "ibe0123456789ab"];
const MACVLAN: Dataplane = Dataplane::Macvlan {
    mode: MacvlanMode::Bridge,
};

/// A network on `subnets`: IPv4, IPv6, or both separated by a comma;
/// the first address of each is its gateway.
fn net(id: &str, parent: &str, subnets: &str, dataplane: Dataplane) -> NetworkSpec {
    let mut spec = NetworkSpec {
        id: id.into(),
        parent: Parent::parse(parent).unwrap(),
        dataplane,
        subnet: None,
        gateway: None,
        subnet6: None,
        gateway6: None,
        announce: Announce::Endpoint,
        internal: false,
        host_link: false,
        attrs: Default::default(),
        cluster_ipam: false,
    };
    for s in subnets.split(',') {
        match s.parse().unwrap() {
            IpNet::V4(s) => {
                spec.subnet = Some(s);
                spec.gateway = ipnet::Ipv4Net::new(s.hosts().next().unwrap(), s.prefix_len()).ok();
            }
            IpNet::V6(s) => {
                spec.subnet6 = Some(s);
                let first = Ipv6Addr::from(u128::from(s.network()) + 1);
                spec.gateway6 = ipnet::Ipv6Net::new(first, s.prefix_len()).ok();
            }
        }
    }
    spec
}

/// An endpoint on `addrs`: IPv4, IPv6, or both separated by a comma.
fn ep(id: &str, addrs: &str) -> EndpointSpec {
    let mut spec = EndpointSpec {
        id: id.into(),
        address: None,
        address6: None,
        mac: None,
        attrs: Default::default(),
    };
    for a in addrs.split(',') {
        match a.parse().unwrap() {
            IpNet::V4(a) => spec.address = Some(a),
            IpNet::V6(a) => spec.address6 = Some(a),
        }
    }
    spec
}

/// A host with eth0, eth1 and foreign links named like ours: an
/// InfiniBand-like device, a veth, and a macvlan on eth0 (our kind and
/// parent), none of them marked.
fn host() -> FakeKernel {
    let fk = FakeKernel::new();
    fk.add_device("eth0", None, None, None);
    fk.add_device("eth1", None, None, None);
    fk.add_device("ibs1", None, None, None);
    fk.add_device("ibp94s0f0", Some("veth"), None, None);
    fk.add_device("ibe0123456789ab", Some("macvlan"), Some("eth0"), None);
    fk
}

fn start(dir: &Path, fk: &FakeKernel) -> (Driver<FakeKernel>, watch::Receiver<Arc<View>>) {
    Driver::start(Store::new(dir), fk.clone(), None).unwrap()
}

fn foreign_intact(fk: &FakeKernel, when: &str) {
    for f in FOREIGN {
        let l = fk.link_named(f);
        assert!(l.is_some_and(|l| l.alias.is_none()), "{f} after {when}");
    }
}

fn names_of(fk: &FakeKernel) -> Vec<String> {
    fk.all_links().into_iter().map(|l| l.name).collect()
}

#[test]
fn foreign_links_survive_start_restore_sweep_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    foreign_intact(&fk, "start");
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.join(NET_A, EP_1, "/nonexistent").unwrap();
    drop(d);
    // Restore and sweep with a network and an endpoint in the state.
    let (mut d, _) = start(dir.path(), &fk);
    foreign_intact(&fk, "restore");
    assert!(fk.link_named(&names::shim(NET_A)).is_some());
    d.leave(NET_A, EP_1).unwrap();
    d.delete_endpoint(NET_A, EP_1).unwrap();
    d.delete_network(NET_A).unwrap();
    foreign_intact(&fk, "network deletion");
    drop(d);
    let _ = start(dir.path(), &fk);
    foreign_intact(&fk, "a start with an empty state");
    assert_eq!(
        names_of(&fk),
        ["lo", "eth0", "eth1", "ibs1", "ibp94s0f0", "ibe0123456789ab"]
    );
}

#[test]
fn marked_orphans_are_swept_owned_links_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    let d_marks = d.marks().clone();
    drop(d);
    fk.add_device(
        "ibe999999999999",
        Some("macvlan"),
        Some("eth0"),
        Some(&d_marks.mark(Role::Endpoint, EP_2)),
    );
    fk.add_device(
        "ibpx",
        Some("veth"),
        None,
        Some(&d_marks.mark(Role::Probe, "1")),
    );
    let _ = start(dir.path(), &fk);
    assert!(fk.link_named("ibe999999999999").is_none());
    assert!(fk.link_named("ibpx").is_none());
    assert!(fk.link_named(&names::shim(NET_A)).is_some());
    foreign_intact(&fk, "sweep");
}

#[test]
fn our_name_without_our_mark_is_refused_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let link = names::endpoint(EP_1);
    fk.add_device(&link, Some("macvlan"), Some("eth0"), None);
    fk.add_device(&names::shim(NET_B), Some("macvlan"), Some("eth0"), None);
    let (mut d, view) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    let e = d.join(NET_A, EP_1, "/x").unwrap_err().to_string();
    assert!(e.contains(&link) && e.contains("not ours"), "{e}");
    assert!(fk.link_named(&link).unwrap().alias.is_none());
    assert!(!d.state().networks[NET_A].endpoints[EP_1].joined);
    assert!(view.borrow().announcements.is_empty());
    // DeleteEndpoint drops our record and leaves their link.
    d.delete_endpoint(NET_A, EP_1).unwrap();
    assert!(fk.link_named(&link).is_some());
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named(&link).unwrap().alias.is_none());
    let e = d
        .create_network(net(NET_B, "eth0", "10.1.2.0/24", MACVLAN))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not ours"), "{e}");
    assert!(!d.state().networks.contains_key(NET_B));
    assert!(fk.link_named(&names::shim(NET_B)).unwrap().alias.is_none());
}

#[test]
fn a_shared_vlan_is_created_once_and_goes_with_the_last_network() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_network(net(NET_B, "eth1.10", "10.1.2.0/24", MACVLAN))
        .unwrap();
    let vlans: Vec<String> = fk
        .created()
        .into_iter()
        .filter(|n| n == "eth1.10")
        .collect();
    assert_eq!(vlans.len(), 1);
    let vlan = fk.link_named("eth1.10").unwrap();
    assert_eq!(vlan.kind.as_deref(), Some("vlan"));
    assert_eq!(vlan.alias, Some(d.marks().mark(Role::Vlan, "eth1.10")));
    // The network that created it goes first: the VLAN stays.
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named("eth1.10").is_some());
    assert!(fk.link_named(&names::shim(NET_B)).is_some());
    d.delete_network(NET_B).unwrap();
    assert!(fk.link_named("eth1.10").is_none());
    // A VLAN the operator made stays with its last network gone.
    fk.add_device("eth1.20", Some("vlan"), Some("eth1"), None);
    d.create_network(net(NET_A, "eth1.20", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.delete_network(NET_A).unwrap();
    assert!(fk.link_named("eth1.20").is_some());
    foreign_intact(&fk, "VLAN networks");
}

#[test]
fn no_vlan_support_is_said_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.without("vlan");
    let (mut d, _) = start(dir.path(), &fk);
    let e = d
        .create_network(net(NET_A, "eth1.10", "10.1.1.0/24", MACVLAN))
        .unwrap_err()
        .to_string();
    assert!(e.contains("802.1Q"), "{e}");
    assert!(fk.link_named("eth1.10").is_none());
}

#[test]
fn reserved_subnets_are_refused_before_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    for s in [
        "0.0.0.0/8",
        "127.0.0.0/24",
        "169.254.0.0/16",
        "224.1.0.0/16",
        "240.0.0.0/24",
        "0.0.0.0/1",
    ] {
        let e = d
            .create_network(net(NET_A, "eth0", s, MACVLAN))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{s}: {e}");
    }
    assert!(fk.created().is_empty());
    assert!(d.state().networks.is_empty());
    d.create_network(net(NET_A, "eth0", "198.51.100.0/24", MACVLAN))
        .unwrap();
}

#[test]
fn failures_mid_create_network_leave_nothing() {
    // With a VLAN parent: SetAlias and SetUp hit the new VLAN, AddAddress
    // the shim made after it.
    for (op, vlan) in [
        (Op::Create, false),
        (Op::AddAddress, false),
        (Op::SetAlias, false),
        (Op::SetUp, false),
        (Op::Create, true),
        (Op::SetAlias, true),
        (Op::SetUp, true),
        (Op::AddAddress, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, _) = start(dir.path(), &fk);
        let before = names_of(&fk);
        let parent = if vlan { "eth1.10" } else { "eth0" };
        fk.fail_next(op, libc::ENOBUFS);
        assert!(
            d.create_network(net(NET_A, parent, "10.1.1.0/24", MACVLAN))
                .is_err(),
            "{op:?}"
        );
        assert_eq!(names_of(&fk), before, "{op:?} vlan={vlan}");
        assert!(d.state().networks.is_empty());
        assert!(Store::new(dir.path()).load().unwrap().networks.is_empty());
    }
}

#[test]
fn failures_mid_join_leave_nothing() {
    for op in [Op::Create, Op::SetAlias] {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        let before = names_of(&fk);
        fk.fail_next(op, libc::ENOMEM);
        assert!(d.join(NET_A, EP_1, "/x").is_err());
        assert_eq!(names_of(&fk), before, "{op:?}");
        assert!(!d.state().networks[NET_A].endpoints[EP_1].joined);
        assert!(view.borrow().announcements.is_empty());
        // And it works once the kernel does.
        d.join(NET_A, EP_1, "/x").unwrap();
        assert_eq!(view.borrow().announcements.len(), 1);
    }
}

#[test]
fn a_dead_sandbox_is_not_announced_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sandboxes = tempfile::tempdir().unwrap();
    let alive = sandboxes.path().join("alive");
    let dead = sandboxes.path().join("dead");
    std::fs::write(&alive, "").unwrap();
    std::fs::write(&dead, "").unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    d.join(NET_A, EP_1, alive.to_str().unwrap()).unwrap();
    d.join(NET_A, EP_2, dead.to_str().unwrap()).unwrap();
    assert_eq!(view.borrow().announcements.len(), 2);
    drop(d);
    std::fs::remove_file(&dead).unwrap();
    let (mut d, view) = start(dir.path(), &fk);
    let announced: Vec<IpNet> = view.borrow().announcements.keys().copied().collect();
    assert_eq!(announced, vec!["10.1.1.2/32".parse::<IpNet>().unwrap()]);
    assert!(!d.state().networks[NET_A].endpoints[EP_2].joined);
    // Docker's later calls for the dead container still succeed.
    d.leave(NET_A, EP_2).unwrap();
    d.delete_endpoint(NET_A, EP_2).unwrap();
    assert_eq!(view.borrow().announcements.len(), 1);
}

#[test]
fn a_missing_parent_is_an_error_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.add_device("eth5", None, None, None);
    let (mut d, _) = start(dir.path(), &fk);
    let mut spec = net(NET_A, "eth5", "10.1.1.0/24", MACVLAN);
    spec.announce = Announce::Subnet;
    d.create_network(spec).unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    drop(d);
    fk.remove_device("eth5");
    let (mut d, view) = start(dir.path(), &fk);
    assert!(d.unavailable().contains_key(NET_A));
    assert!(view.borrow().announcements.is_empty());
    let e = d.join(NET_A, EP_1, "/x").unwrap_err().to_string();
    assert!(e.contains("eth5") && e.contains("does not exist"), "{e}");
    let e = d
        .create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("eth5"), "{e}");
    assert_eq!(d.repair(), 0);
    // The parent comes back: the next repair round restores the shim.
    fk.add_device("eth5", None, None, None);
    assert_eq!(d.repair(), 1);
    assert!(d.unavailable().is_empty());
    let shim = fk.link_named(&names::shim(NET_A)).unwrap();
    assert_eq!(shim.alias, Some(d.marks().mark(Role::Shim, NET_A)));
    assert!(shim.up);
    assert!(fk
        .all_addresses()
        .iter()
        .any(|a| a.index == shim.index && a.net == "10.1.1.1/24".parse::<IpNet>().unwrap()));
    assert_eq!(view.borrow().announcements.len(), 1);
    d.join(NET_A, EP_1, "/x").unwrap();
}

/// A state file of the version before marks: the links it records are
/// adopted by record (name, kind, parent), nothing else is.
#[test]
fn links_of_a_state_before_marks_are_adopted_by_record() {
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
    // As the earlier version left things: no marks, version 1; EP_2's
    // link is inside its container.
    let mut k = fk.clone();
    let shim = fk.link_named(&names::shim(NET_A)).unwrap();
    let l1 = fk.link_named(&names::endpoint(EP_1)).unwrap();
    k.set_alias(shim.index, "").unwrap();
    k.set_alias(l1.index, "").unwrap();
    fk.remove_device(&names::endpoint(EP_2));
    let mut store = Store::new(dir.path());
    let mut st = store.load().unwrap();
    st.version = 1;
    store.save(&st).unwrap();
    let (mut d, _) = start(dir.path(), &fk);
    assert!(d.unavailable().is_empty(), "{:?}", d.unavailable());
    assert_eq!(
        fk.link_named(&shim.name).unwrap().alias,
        Some(d.marks().mark(Role::Shim, NET_A))
    );
    assert!(fk.link_named(&l1.name).unwrap().alias.is_some());
    assert_eq!(store.load().unwrap().version, state::VERSION);
    foreign_intact(&fk, "the upgrade");
    // Docker brings EP_2's link back, unmarked: it goes.
    fk.add_device(&names::endpoint(EP_2), Some("macvlan"), Some("eth0"), None);
    d.delete_endpoint(NET_A, EP_2).unwrap();
    assert!(fk.link_named(&names::endpoint(EP_2)).is_none());
    d.delete_endpoint(NET_A, EP_1).unwrap();
    assert!(fk.link_named(&l1.name).is_none());
}

#[test]
fn ipvlan_is_refused_where_the_kernel_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.without("ipvlan");
    let (mut d, _) = start(dir.path(), &fk);
    let l3 = Dataplane::Ipvlan {
        mode: IpvlanMode::L3,
        flag: IpvlanFlag::Bridge,
    };
    let e = d
        .create_network(net(NET_A, "eth0", "10.1.1.0/24", l3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dataplane=macvlan"), "{e}");
    foreign_intact(&fk, "the probe");
    assert_eq!(fk.all_links().len(), 6);
}
#[test]
fn the_state_on_disk_follows_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    // The first start wrote the instance's identity in a snapshot.
    let snapshot = dir.path().join(crate::store::STATE_FILE);
    let first = std::fs::read_to_string(&snapshot).unwrap();
    assert!(first.contains(d.marks().instance()), "{first}");
    let on_disk = |d: &Driver<FakeKernel>, when: &str| {
        assert_eq!(&Store::new(dir.path()).load().unwrap(), d.state(), "{when}");
    };
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    on_disk(&d, "create network");
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    on_disk(&d, "create endpoints");
    d.join(NET_A, EP_1, "/x").unwrap();
    on_disk(&d, "join");
    d.leave(NET_A, EP_1).unwrap();
    on_disk(&d, "leave");
    d.delete_endpoint(NET_A, EP_1).unwrap();
    on_disk(&d, "delete endpoint");
    // Only the journal grew: no snapshot was written after the start.
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), first);
    d.delete_network(NET_A).unwrap();
    on_disk(&d, "delete network");
    assert!(d.state().was_deleted(EP_2));
    // A restart replays the journal, then starts from a fresh snapshot.
    drop(d);
    let (d, _) = start(dir.path(), &fk);
    assert!(d.state().networks.is_empty() && d.state().was_deleted(EP_1));
    assert!(!dir.path().join(crate::store::JOURNAL_FILE).exists());
    on_disk(&d, "restart");
}

#[test]
fn a_failed_append_rolls_back_each_operation() {
    type Step = fn(&mut Driver<FakeKernel>) -> Result<()>;
    let steps: [(&str, Step); 6] = [
        ("create network", |d| {
            d.create_network(net(NET_B, "eth1", "10.2.0.0/24", MACVLAN))
        }),
        ("create endpoint", |d| {
            d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24"))
        }),
        ("join", |d| d.join(NET_A, EP_1, "/x").map(|_| ())),
        ("leave", |d| d.leave(NET_A, EP_1)),
        ("delete endpoint", |d| d.delete_endpoint(NET_A, EP_1)),
        ("delete network", |d| d.delete_network(NET_A)),
    ];
    for (i, (what, step)) in steps.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let fk = host();
        let (mut d, view) = start(dir.path(), &fk);
        d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
            .unwrap();
        d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
        if i == 3 {
            d.join(NET_A, EP_1, "/x").unwrap();
        }
        let before = d.state().clone();
        let seen = view.borrow().clone();
        d.store.fail_next_append = Some(20);
        let err = step(&mut d).unwrap_err();
        assert_eq!(err.class(), "state", "{what}: {err}");
        assert_eq!(d.state(), &before, "{what}");
        assert_eq!(*view.borrow(), seen, "{what}");
        assert_eq!(Store::new(dir.path()).load().unwrap(), before, "{what}");
        // The same request succeeds once the disk does.
        step(&mut d).unwrap();
        assert_eq!(&Store::new(dir.path()).load().unwrap(), d.state(), "{what}");
    }
}

/// The view the driver keeps up to date endpoint by endpoint equals the
/// view rebuilt from the whole state, after every operation: networks
/// announcing endpoints, a subnet, an internal one, and one whose parent
/// is gone.
#[test]
fn the_view_kept_change_by_change_equals_a_rebuild() {
    const NET_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    let ids: Vec<String> = (0..8).map(|i| format!("{i:x}").repeat(64)).collect();
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    let same = |d: &Driver<FakeKernel>, what: &str| {
        assert_eq!(
            **view.borrow(),
            View::from_state(d.state(), d.unavailable(), d.pending()),
            "{what}"
        );
    };
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    let mut b = net(NET_B, "eth1", "10.2.0.0/24", MACVLAN);
    b.announce = Announce::Subnet;
    d.create_network(b).unwrap();
    let mut c = net(NET_C, "eth1", "10.3.0.0/24", MACVLAN);
    c.internal = true;
    d.create_network(c).unwrap();
    same(&d, "networks");
    let place = [
        (NET_A, "10.1.1.2/24"),
        (NET_A, "10.1.1.3/24"),
        (NET_A, "10.1.1.4/24"),
        (NET_B, "10.2.0.2/24"),
        (NET_B, "10.2.0.3/24"),
        (NET_C, "10.3.0.2/24"),
    ];
    for (i, (n, a)) in place.iter().enumerate() {
        d.create_endpoint(n, ep(&ids[i], a)).unwrap();
        same(&d, &format!("create {a}"));
        d.join(n, &ids[i], "/x").unwrap();
        same(&d, &format!("join {a}"));
    }
    assert_eq!(view.borrow().announcements.len(), 4);
    d.leave(NET_A, &ids[0]).unwrap();
    same(&d, "leave");
    d.delete_endpoint(NET_A, &ids[0]).unwrap();
    same(&d, "delete after leave");
    // Docker gave up on Leave: the endpoint goes while joined.
    d.delete_endpoint(NET_A, &ids[1]).unwrap();
    same(&d, "delete while joined");
    d.delete_endpoint(NET_B, &ids[3]).unwrap();
    same(&d, "delete in a subnet network");
    d.leave(NET_C, &ids[5]).unwrap();
    same(&d, "leave an internal network");
    d.delete_network(NET_B).unwrap();
    same(&d, "delete a network with an endpoint");
    // A restart whose parent is gone: Leave and DeleteEndpoint still work.
    drop(d);
    fk.remove_device("eth0");
    let (mut d, view2) = start(dir.path(), &fk);
    assert!(d.unavailable().contains_key(NET_A));
    assert_eq!(
        **view2.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    d.leave(NET_A, &ids[2]).unwrap();
    d.delete_endpoint(NET_A, &ids[2]).unwrap();
    assert_eq!(
        **view2.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    assert!(view2.borrow().local_endpoints.len() == 1);
}

/// BGP attributes reach the view: an endpoint's merged over its
/// network's, a subnet announcement with the network's; kept change by
/// change as a rebuild would, and the same after a restart (they are in
/// the state records).
#[test]
fn route_attributes_reach_the_view_and_survive_a_restart() {
    let attrs = |c: &[u32], med: Option<u32>| RouteAttrs {
        communities: c.to_vec(),
        med,
        ..RouteAttrs::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    let mut a = net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN);
    a.attrs = attrs(&[1], Some(50));
    d.create_network(a).unwrap();
    let mut b = net(NET_B, "eth1", "10.2.0.0/24", MACVLAN);
    b.announce = Announce::Subnet;
    b.attrs = attrs(&[2], None);
    d.create_network(b).unwrap();
    let mut e1 = ep(EP_1, "10.1.1.2/24,fd00:1::2/64");
    e1.attrs = attrs(&[3], Some(10));
    d.create_endpoint(NET_A, e1).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    assert_eq!(
        view.borrow().attrs.len(),
        1,
        "nothing joined: the subnet only"
    );
    // Sandboxes that exist, so the restart keeps announcing them.
    let sandbox = dir.path().to_str().unwrap();
    d.join(NET_A, EP_1, sandbox).unwrap();
    d.join(NET_A, EP_2, sandbox).unwrap();
    let want: imbl::OrdMap<IpNet, RouteAttrs> = [
        ("10.1.1.2/32", attrs(&[1, 3], Some(10))),
        ("fd00:1::2/128", attrs(&[1, 3], Some(10))),
        ("10.1.1.3/32", attrs(&[1], Some(50))),
        ("10.2.0.0/24", attrs(&[2], None)),
    ]
    .into_iter()
    .map(|(p, a)| (p.parse::<IpNet>().unwrap(), a))
    .collect();
    assert_eq!(view.borrow().attrs, want);
    assert_eq!(
        **view.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    drop(d);
    let (d, view2) = start(dir.path(), &fk);
    assert_eq!(view2.borrow().attrs, want, "after a restart");
    let mut d = d;
    d.leave(NET_A, EP_1).unwrap();
    assert_eq!(view2.borrow().attrs.len(), 2, "left: no attributes");
    assert_eq!(
        **view2.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
}

fn addrs_on(fk: &FakeKernel, link: &str) -> Vec<String> {
    let index = fk.link_named(link).unwrap().index;
    let mut v: Vec<String> = fk
        .all_addresses()
        .iter()
        .filter(|a| a.index == index)
        .map(|a| a.net.to_string())
        .collect();
    v.sort();
    v
}

fn nets(v: &[&str]) -> BTreeSet<IpNet> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

/// Dual stack on macvlan: the shim holds both gateways, Join answers
/// both, the view carries both host routes, pools and local addresses;
/// IPv6 forwarding is switched on for the shim and the parent only.
#[test]
fn a_dual_stack_l2_network_serves_both_families() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
        .unwrap();
    let shim = names::shim(NET_A);
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    assert_eq!(
        fk.sysctl_value(&format!("net/ipv6/conf/{shim}/force_forwarding"))
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        fk.sysctl_value("net/ipv6/conf/eth0/force_forwarding")
            .as_deref(),
        Some("1")
    );
    assert_eq!(fk.sysctl_value("net/ipv6/conf/all/forwarding"), None);
    assert_eq!(fk.sysctl_value("net/ipv4/ip_forward").as_deref(), Some("1"));
    assert_eq!(view.borrow().pools, nets(&["10.1.1.0/24", "fd00:1::/64"]));
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24,fd00:1::2/64"))
        .unwrap();
    let j = d.join(NET_A, EP_1, "/x").unwrap();
    assert_eq!(j.v4, Some(Reach::Gateway("10.1.1.1".parse().unwrap())));
    assert_eq!(j.v6, Some(Reach::Gateway("fd00:1::1".parse().unwrap())));
    let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
    assert_eq!(announced, nets(&["10.1.1.2/32", "fd00:1::2/128"]));
    let local: Vec<String> = view
        .borrow()
        .local_endpoints
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(local, ["10.1.1.2", "fd00:1::2"]);
    assert_eq!(
        **view.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    d.leave(NET_A, EP_1).unwrap();
    assert!(view.borrow().announcements.is_empty());
    d.delete_endpoint(NET_A, EP_1).unwrap();
    assert!(view.borrow().local_endpoints.is_empty());
    // A replayed Join answers the same.
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24,fd00:1::3/64"))
        .unwrap();
    let j1 = d.join(NET_A, EP_2, "/x").unwrap();
    assert_eq!(d.join(NET_A, EP_2, "/x").unwrap(), j1);
}

/// IPv6-only on ipvlan L3: no shim, a connected IPv6 default route, no
/// IPv4 at all, nothing forwarded; `announce=subnet` announces the prefix.
#[test]
fn an_ipv6_only_l3_network_gets_a_connected_default() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, view) = start(dir.path(), &fk);
    let l3 = Dataplane::Ipvlan {
        mode: IpvlanMode::L3,
        flag: IpvlanFlag::Bridge,
    };
    let mut spec = net(NET_A, "eth0", "fd00:1::/64", l3);
    spec.gateway6 = None;
    d.create_network(spec).unwrap();
    assert!(fk.link_named(&names::shim(NET_A)).is_none());
    d.create_endpoint(NET_A, ep(EP_1, "fd00:1::2/64")).unwrap();
    let j = d.join(NET_A, EP_1, "/x").unwrap();
    assert_eq!((j.v4, j.v6), (None, Some(Reach::Connected)));
    let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
    assert_eq!(announced, nets(&["fd00:1::2/128"]));
    assert_eq!(view.borrow().pools, nets(&["fd00:1::/64"]));
    assert!(fk.sysctl_value("net/ipv4/ip_forward").is_none());
    let mut b = net(NET_B, "eth1", "10.2.0.0/24,fd00:2::/64", l3);
    b.announce = Announce::Subnet;
    d.create_network(b).unwrap();
    let announced: BTreeSet<IpNet> = view.borrow().announcements.keys().copied().collect();
    assert_eq!(
        announced,
        nets(&["fd00:1::2/128", "10.2.0.0/24", "fd00:2::/64"])
    );
    assert_eq!(
        **view.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    // The status and OperInfo show both families.
    let spec = d.network_spec(NET_B).unwrap();
    assert_eq!(spec.subnets_text(), "10.2.0.0/24, fd00:2::/64");
    assert_eq!(d.oper_info(NET_A, EP_1).unwrap().address, "fd00:1::2/64");
}

/// Before Linux 6.17 (no force_forwarding) the host-wide IPv6 switch is
/// left alone: the network works on its host, the log says what to do.
#[test]
fn the_host_wide_ipv6_forwarding_switch_is_never_flipped() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    fk.without("force_forwarding");
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "fd00:1::/64", MACVLAN))
        .unwrap();
    assert_eq!(addrs_on(&fk, &names::shim(NET_A)), ["fd00:1::1/64"]);
    assert_eq!(fk.sysctl_value("net/ipv6/conf/all/forwarding"), None);
    assert_eq!(fk.sysctl_value("net/ipv6/conf/eth0/force_forwarding"), None);
    // IPv6-only: IPv4 forwarding is none of its business either.
    assert_eq!(fk.sysctl_value("net/ipv4/ip_forward"), None);
}

#[test]
fn ipv6_subnets_of_two_networks_must_not_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
        .unwrap();
    let before = names_of(&fk);
    let e = d
        .create_network(net(NET_B, "eth0", "10.2.0.0/24,fd00:1::/48", MACVLAN))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fd00:1::/48 overlaps subnet fd00:1::/64"), "{e}");
    assert_eq!(names_of(&fk), before);
    assert_eq!(d.state().networks.len(), 1);
    // Reserved IPv6 ranges are refused by the driver itself too.
    let e = d
        .create_network(net(NET_B, "eth0", "fe80::/64", MACVLAN))
        .unwrap_err()
        .to_string();
    assert!(e.contains("link-local"), "{e}");
    d.create_network(net(NET_B, "eth0", "10.2.0.0/24,fd00:2::/64", MACVLAN))
        .unwrap();
}

/// The repair round puts back what a shim set down by hand lost (its
/// IPv6 gateway), and leaves whole shims alone.
#[test]
fn repair_restores_a_shim_set_down_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
        .unwrap();
    let shim = names::shim(NET_A);
    assert_eq!(d.restore_shims(), 0, "a whole shim is left alone");
    fk.set_down(&shim);
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24"]);
    d.repair();
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    assert!(fk.link_named(&shim).unwrap().up);
    assert_eq!(d.restore_shims(), 0);
    // Gone altogether: made again.
    fk.remove_device(&shim);
    assert_eq!(d.restore_shims(), 1);
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    foreign_intact(&fk, "the repair");
}

/// A restart recreates a missing shim with both gateways, and puts back
/// an IPv6 gateway the kernel dropped (a shim set down by hand loses
/// its IPv6 addresses; measured on Linux 6.18).
#[test]
fn a_restart_restores_the_ipv6_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
        .unwrap();
    drop(d);
    let shim = names::shim(NET_A);
    fk.remove_device(&shim);
    let (d, _) = start(dir.path(), &fk);
    assert!(d.unavailable().is_empty());
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
    drop(d);
    fk.remove_address(&shim, "fd00:1::1/64".parse().unwrap());
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24"]);
    let (_d, _) = start(dir.path(), &fk);
    assert_eq!(addrs_on(&fk, &shim), ["10.1.1.1/24", "fd00:1::1/64"]);
}

/// Issue 19, point 3: a restart never stops announcing a live container
/// on a guess. Two containers joined with their sandboxes in a directory
/// that also holds another one; each restart below sees them differently.
#[test]
fn a_restart_forgets_a_sandbox_only_on_evidence() {
    let a: IpNet = "10.1.1.2/32".parse().unwrap();
    let b: IpNet = "10.1.1.3/32".parse().unwrap();
    let announced = |v: &watch::Receiver<Arc<View>>| -> Vec<IpNet> {
        v.borrow().announcements.keys().copied().collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let exec = tempfile::tempdir().unwrap();
    let netns = exec.path().join("netns");
    std::fs::create_dir(&netns).unwrap();
    for f in ["c1", "c2", "someone-else"] {
        std::fs::write(netns.join(f), "").unwrap();
    }
    let fk = host();
    let boot = |id: &str| Some(id.to_string());
    let restart = |boot_id: Option<String>| {
        Driver::start_on(Store::new(dir.path()), fk.clone(), None, boot_id).unwrap()
    };
    let (mut d, view) = restart(boot("boot-1"));
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    d.join(NET_A, EP_1, netns.join("c1").to_str().unwrap())
        .unwrap();
    d.join(NET_A, EP_2, netns.join("c2").to_str().unwrap())
        .unwrap();
    assert_eq!(announced(&view), [a, b]);
    drop(d);
    let on_disk_joined = || {
        let st = Store::new(dir.path()).load().unwrap();
        let eps = &st.networks[NET_A].endpoints;
        (eps[EP_1].joined, eps[EP_2].joined)
    };

    // The directory is missing (the exec root not mounted here).
    let moved = exec.path().join("elsewhere");
    std::fs::rename(&netns, &moved).unwrap();
    let (d, view) = restart(boot("boot-1"));
    assert_eq!(announced(&view), [a, b], "directory missing");
    drop(d);
    assert_eq!(on_disk_joined(), (true, true), "a guess was written");
    // Empty (something else mounted over it).
    std::fs::create_dir(&netns).unwrap();
    let (d, view) = restart(boot("boot-1"));
    assert_eq!(announced(&view), [a, b], "directory empty");
    drop(d);
    // Holding others only: every one of ours vanished at once.
    std::fs::write(netns.join("someone-else"), "").unwrap();
    let (d, view) = restart(boot("boot-1"));
    assert_eq!(announced(&view), [a, b], "all vanished at once");
    drop(d);
    assert_eq!(on_disk_joined(), (true, true), "a guess was written");
    // Back in place, one container dead: evidence.
    std::fs::remove_dir_all(&netns).unwrap();
    std::fs::rename(&moved, &netns).unwrap();
    std::fs::remove_file(netns.join("c2")).unwrap();
    let (d, view) = restart(boot("boot-1"));
    assert_eq!(announced(&view), [a], "one dead, one alive");
    drop(d);
    assert_eq!(on_disk_joined(), (true, false));
}

/// Real dockerd keeps a killed container's namespace while the driver is
/// down: both sandboxes are alive to a look, and only Docker's word tells.
/// A container Docker says stopped is forgotten (on disk too, and the view
/// published); one Docker cannot speak for stays announced.
#[test]
fn docker_saying_a_container_stopped_forgets_it_and_silence_does_not() {
    use crate::view::decide::DockerSays;
    let a: IpNet = "10.1.1.2/32".parse().unwrap();
    let b: IpNet = "10.1.1.3/32".parse().unwrap();
    let announced = |v: &watch::Receiver<Arc<View>>| -> Vec<IpNet> {
        v.borrow().announcements.keys().copied().collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    for f in ["c1", "c2"] {
        std::fs::write(netns.path().join(f), "").unwrap();
    }
    let fk = host();
    let restart = || Driver::start_on(Store::new(dir.path()), fk.clone(), None, None).unwrap();
    let (mut d, _) = restart();
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    for (e, c) in [(EP_1, "c1"), (EP_2, "c2")] {
        d.join(NET_A, e, netns.path().join(c).to_str().unwrap())
            .unwrap();
    }
    drop(d);
    let (mut d, view) = restart();
    let asked = d.joined_at_start();
    let id = |n: &str, e: &str| (n.to_string(), e.to_string());
    assert_eq!(asked, [id(NET_A, EP_1), id(NET_A, EP_2)]);
    // Docker unreachable: nothing changes.
    let unreachable = DockerSays::Unknown("connection refused".into());
    assert_eq!(
        d.forget_stopped(&asked, &[unreachable.clone(), unreachable]),
        0
    );
    assert_eq!(announced(&view), [a, b]);
    // One exited, one running.
    let says = [DockerSays::Stopped("exited".into()), DockerSays::Running];
    assert_eq!(d.forget_stopped(&asked, &says), 1);
    assert_eq!(announced(&view), [b]);
    drop(d);
    let (mut d, view) = restart();
    assert_eq!(announced(&view), [b], "the decision was not saved");
    assert_eq!(d.joined_at_start(), [id(NET_A, EP_2)]);
    // Absent from Docker's network: gone too.
    assert_eq!(
        d.forget_stopped(&[id(NET_A, EP_2)], &[DockerSays::Absent]),
        1
    );
    assert!(announced(&view).is_empty());
}

/// After a reboot every sandbox recorded before is gone, whatever a look
/// at the files says; the new boot is recorded before anything else.
#[test]
fn a_reboot_is_evidence_that_every_sandbox_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let netns = tempfile::tempdir().unwrap();
    std::fs::write(netns.path().join("c1"), "").unwrap();
    let fk = host();
    let start_on = |boot: &str| {
        Driver::start_on(Store::new(dir.path()), fk.clone(), None, Some(boot.into())).unwrap()
    };
    let (mut d, _) = start_on("boot-1");
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.join(NET_A, EP_1, netns.path().join("c1").to_str().unwrap())
        .unwrap();
    drop(d);
    // The same boot: still announced (the file is there).
    let (d, view) = start_on("boot-1");
    assert_eq!(view.borrow().announcements.len(), 1);
    drop(d);
    // Another boot, the file (say, a reused name) still there: gone.
    let (mut d, view) = start_on("boot-2");
    assert!(view.borrow().announcements.is_empty());
    assert!(!d.state().networks[NET_A].endpoints[EP_1].joined);
    let st = Store::new(dir.path()).load().unwrap();
    assert_eq!(st.host.boot_id.as_deref(), Some("boot-2"));
    // A container joined on this boot survives the next restart.
    d.join(NET_A, EP_1, netns.path().join("c1").to_str().unwrap())
        .unwrap();
    drop(d);
    let (_d, view) = start_on("boot-2");
    assert_eq!(view.borrow().announcements.len(), 1);
}

/// One sandbox alive, another's directory gone from view (mounted
/// elsewhere): the second proves nothing and stays announced.
#[test]
fn a_sandbox_out_of_view_stays_announced_beside_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let here = tempfile::tempdir().unwrap();
    let there = tempfile::tempdir().unwrap();
    std::fs::write(here.path().join("c1"), "").unwrap();
    std::fs::write(there.path().join("c2"), "").unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    d.join(NET_A, EP_1, here.path().join("c1").to_str().unwrap())
        .unwrap();
    d.join(NET_A, EP_2, there.path().join("c2").to_str().unwrap())
        .unwrap();
    drop(d);
    let gone_from_view = there.path().to_path_buf();
    drop(there);
    assert!(!gone_from_view.exists());
    let (d, view) = start(dir.path(), &fk);
    assert_eq!(view.borrow().announcements.len(), 2);
    assert!(d.state().networks[NET_A].endpoints[EP_2].joined);
}

/// Issue 19, point 8: the routes of an earlier run go at start when this
/// run will not own them (BGP off, another protocol number); a plain
/// restart keeps them.
#[test]
fn routes_of_an_earlier_run_are_flushed_only_when_not_ours_any_more() {
    use crate::kernel::Route;
    use crate::rib::fake::FakeTable;
    use crate::rib::table::RouteTable;
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let mut table = FakeTable::default();
    let route = |dst: &str, protocol: u8| Route {
        dst: dst.parse().unwrap(),
        via: Some("192.0.2.9".parse().unwrap()),
        oif: None,
        protocol,
    };
    let protocols = |t: &mut FakeTable| -> Vec<u8> {
        t.dump()
            .unwrap()
            .iter()
            .map(|r| r.route.protocol)
            .collect::<BTreeSet<u8>>()
            .into_iter()
            .collect()
    };
    let run = |protocol: Option<u8>, t: &mut FakeTable| {
        let (mut d, _) = start(dir.path(), &fk);
        d.flush_earlier_routes(t, protocol);
        d.state().host.route_protocol
    };
    // A first run with BGP records its protocol; its routes are installed.
    assert_eq!(run(Some(73), &mut table), Some(73));
    table.create_exclusive(&[
        route("10.7.0.1/32", 73).into(),
        route("10.8.0.0/16", 4).into(),
    ]);
    // A plain restart (or a plugin upgrade) keeps them.
    assert_eq!(run(Some(73), &mut table), Some(73));
    assert_eq!(protocols(&mut table), [4, 73]);
    // Another protocol number: the old tag's routes go, nobody else's.
    assert_eq!(run(Some(80), &mut table), Some(80));
    assert_eq!(protocols(&mut table), [4]);
    // BGP off: the recorded tag's routes go.
    table.create_exclusive(&[route("10.7.0.2/32", 80).into()]);
    assert_eq!(run(None, &mut table), None);
    assert_eq!(protocols(&mut table), [4]);
    // ... and a later run with BGP flushes nothing of anyone's.
    table.create_exclusive(&[route("10.7.0.3/32", 73).into()]);
    assert_eq!(run(Some(80), &mut table), Some(80));
    assert_eq!(protocols(&mut table), [4, 73]);
}

/// Issue 19, point 8: the host settings the driver changes are recorded,
/// with their value before the first change, before they change.
#[test]
fn host_sysctls_are_recorded_before_their_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    assert_eq!(fk.sysctl_value("net/ipv4/ip_forward"), None);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1::/64", MACVLAN))
        .unwrap();
    assert_eq!(fk.sysctl_value("net/ipv4/ip_forward").as_deref(), Some("1"));
    let recorded = |dir: &Path| Store::new(dir).load().unwrap().host.sysctls;
    let want: BTreeMap<String, String> = [
        ("net/ipv4/ip_forward", "0"),
        ("net/ipv6/conf/eth0/force_forwarding", "0"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    assert_eq!(recorded(dir.path()), want);
    // A second network, and a restart: the first value stays recorded.
    d.create_network(net(NET_B, "eth1", "10.2.0.0/24", MACVLAN))
        .unwrap();
    drop(d);
    let (_d, _) = start(dir.path(), &fk);
    assert_eq!(recorded(dir.path()), want);
}

/// Issue 19, point 4: the health gate's verdicts survive a restart in the
/// endpoints' records.
#[test]
fn health_verdicts_persist_across_a_restart() {
    use crate::model::state::{HealthRecord, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let fk = host();
    let (mut d, _) = start(dir.path(), &fk);
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24")).unwrap();
    d.create_endpoint(NET_A, ep(EP_2, "10.1.1.3/24")).unwrap();
    let healthy = HealthRecord {
        container: "c1".into(),
        verdict: Verdict::Healthy,
    };
    let starting = HealthRecord {
        container: "c2".into(),
        verdict: Verdict::Starting,
    };
    d.remember_health(vec![
        (EP_1.into(), Some(healthy.clone())),
        (EP_2.into(), Some(starting)),
        ("gone".into(), Some(healthy.clone())),
    ]);
    d.remember_health(vec![(EP_2.into(), None)]);
    drop(d);
    let (d, _) = start(dir.path(), &fk);
    assert_eq!(d.remembered_health(), vec![(EP_1.to_string(), healthy)]);
}

/// What a Join asks the address watch, as the watch's callback records it.
type Asked = Arc<std::sync::Mutex<Vec<LiveRequest>>>;

/// A driver whose address watch records what it is asked, with a dual-stack
/// macvlan network and one endpoint (10.1.1.2, fd00:1:1::2) not yet joined.
fn watched_endpoint(
    dir: &Path,
) -> (
    FakeKernel,
    Driver<FakeKernel>,
    watch::Receiver<Arc<View>>,
    Asked,
) {
    let fk = host();
    let (mut d, view) = start(dir, &fk);
    let asked: Asked = Arc::default();
    let a = asked.clone();
    d.watch_addresses(Box::new(move |r| a.lock().unwrap().push(r)));
    d.create_network(net(NET_A, "eth0", "10.1.1.0/24,fd00:1:1::/64", MACVLAN))
        .unwrap();
    d.create_endpoint(NET_A, ep(EP_1, "10.1.1.2/24,fd00:1:1::2/64"))
        .unwrap();
    (fk, d, view, asked)
}

/// With a watcher set, a Join's endpoint is announced only when the watch
/// says its address is live; a watch that ends after a Leave, or after a
/// newer Join, announces nothing.
#[test]
fn an_endpoint_is_announced_once_its_address_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let (fk, mut d, view, asked) = watched_endpoint(dir.path());
    let v4: IpNet = "10.1.1.2/32".parse().unwrap();
    let v6: IpNet = "fd00:1:1::2/128".parse().unwrap();
    d.join(NET_A, EP_1, "/run/netns/c1").unwrap();
    let first = asked.lock().unwrap().pop().unwrap();
    assert_eq!(first.sandbox, "/run/netns/c1");
    assert_eq!(first.addrs.len(), 2);
    let defaults: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    assert_eq!(first.routes, defaults, "the container answers through them");
    assert!(first.tell_neighbours, "macvlan resolves neighbours");
    assert!(!view.borrow().announcements.contains_key(&v4));
    assert!(view.borrow().local_endpoints.contains(&v4.addr()));
    assert_eq!(
        **view.borrow(),
        View::from_state(d.state(), d.unavailable(), d.pending())
    );
    assert!(d.address_live(NET_A, EP_1, first.ticket, None));
    assert!(view.borrow().announcements.contains_key(&v4));
    assert!(view.borrow().announcements.contains_key(&v6));
    // Left before its address was live: the late watch announces nothing.
    d.leave(NET_A, EP_1).unwrap();
    fk.remove_device(&names::endpoint(EP_1));
    d.join(NET_A, EP_1, "/run/netns/c2").unwrap();
    let second = asked.lock().unwrap().pop().unwrap();
    d.leave(NET_A, EP_1).unwrap();
    assert!(!d.address_live(NET_A, EP_1, second.ticket, None));
    assert!(!view.borrow().announcements.contains_key(&v4));
    // An old watch does not announce a newer Join.
    fk.remove_device(&names::endpoint(EP_1));
    d.join(NET_A, EP_1, "/run/netns/c3").unwrap();
    assert!(!d.address_live(NET_A, EP_1, first.ticket, None));
    assert!(!view.borrow().announcements.contains_key(&v4));
    let third = asked.lock().unwrap().pop().unwrap();
    assert!(d.address_live(NET_A, EP_1, third.ticket, None));
    assert!(view.borrow().announcements.contains_key(&v4));
}

/// Once live, on macvlan (and ipvlan L2), this host's neighbour entry for
/// each of the endpoint's addresses on the network's shim says the
/// container's MAC (STALE, tagged with the driver's protocol), set before
/// the announcement; the same again changes nothing; an entry someone
/// pinned stays; a shim that is not ours gets nothing; ipvlan L3 (no
/// neighbour resolution) gets nothing.
#[test]
fn a_live_endpoint_gets_this_hosts_neighbour_entry_on_the_shim() {
    use crate::kernel::nud;
    use crate::provision::port::DEFAULT_PROTOCOL;
    let dir = tempfile::tempdir().unwrap();
    let (fk, mut d, view, asked) = watched_endpoint(dir.path());
    let shim = names::shim(NET_A);
    let (v4, v6): (IpAddr, IpAddr) = ("10.1.1.2".parse().unwrap(), "fd00:1:1::2".parse().unwrap());
    let mac = [2, 0x42, 0, 0, 0, 7];
    d.join(NET_A, EP_1, "/run/netns/c1").unwrap();
    let live = asked.lock().unwrap().pop().unwrap();
    assert_eq!(fk.neighbour_entry(&shim, v4), None, "not before it is live");
    assert!(d.address_live(NET_A, EP_1, live.ticket, Some(mac)));
    assert!(view.borrow().announcements.contains_key(&IpNet::from(v4)));
    for a in [v4, v6] {
        let n = fk.neighbour_entry(&shim, a).unwrap();
        assert_eq!(
            (n.mac, n.state, n.protocol),
            (Some(mac), nud::STALE, DEFAULT_PROTOCOL),
            "{a}"
        );
    }
    // A second container on the address (after a Leave), another MAC.
    d.leave(NET_A, EP_1).unwrap();
    fk.remove_device(&names::endpoint(EP_1));
    d.join(NET_A, EP_1, "/run/netns/c2").unwrap();
    let again = asked.lock().unwrap().pop().unwrap();
    let other = [2, 0x42, 0, 0, 0, 8];
    fk.pin_neighbour(&shim, v6, [2, 9, 9, 9, 9, 9]);
    assert!(d.address_live(NET_A, EP_1, again.ticket, Some(other)));
    assert_eq!(fk.neighbour_entry(&shim, v4).unwrap().mac, Some(other));
    let pinned = fk.neighbour_entry(&shim, v6).unwrap();
    assert_eq!(
        (pinned.mac, pinned.state),
        (Some([2, 9, 9, 9, 9, 9]), nud::PERMANENT),
        "someone's pinned entry is left alone"
    );
    assert!(
        view.borrow().announcements.contains_key(&IpNet::from(v4)),
        "announced anyway"
    );
    // A link under the shim's name that is not ours: nothing written on it.
    d.leave(NET_A, EP_1).unwrap();
    fk.remove_device(&names::endpoint(EP_1));
    fk.remove_device(&shim);
    fk.add_device(&shim, Some("macvlan"), Some("eth0"), Some("someone-else"));
    d.join(NET_A, EP_1, "/run/netns/c3").unwrap();
    let third = asked.lock().unwrap().pop().unwrap();
    assert!(d.address_live(NET_A, EP_1, third.ticket, Some(mac)));
    assert_eq!(fk.neighbour_entry(&shim, v4), None);
    assert!(
        view.borrow().announcements.contains_key(&IpNet::from(v4)),
        "announced anyway"
    );
    // ipvlan L3: no neighbour resolution, no shim: nothing.
    let l3 = Dataplane::Ipvlan {
        mode: IpvlanMode::L3,
        flag: IpvlanFlag::Bridge,
    };
    d.create_network(net(NET_B, "eth1", "10.1.2.0/24", l3))
        .unwrap();
    d.create_endpoint(NET_B, ep(EP_2, "10.1.2.2/24")).unwrap();
    d.join(NET_B, EP_2, "/run/netns/c4").unwrap();
    let l3_live = asked.lock().unwrap().pop().unwrap();
    assert!(!l3_live.tell_neighbours);
    assert!(d.address_live(NET_B, EP_2, l3_live.ticket, Some(mac)));
    // The first shim's entries went with it; none anywhere else.
    let entries = fk.neighbour_entries();
    assert!(entries.is_empty(), "{entries:?}");
}
