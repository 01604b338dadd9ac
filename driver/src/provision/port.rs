//! The container port of dual-uplink mode: one veth pair per data plane,
//! its containers' end ("pa") the parent of their links, the host's end
//! ("pb") routed to every uplink (docs/dual-uplink.md, "The decision").
//!
//! In: a network whose parent is a port ([`Parent::port`]), the uplinks'
//! names, this instance's [`Marks`] and a [`LinkKernel`]. Out: the pair
//! made (one RTM_NEWLINK, both ends marked `port:<key>`, MTU = the
//! smallest uplink MTU) or checked (present, marked, each the other's
//! peer), both ends up; for L2 data planes (ipvlan L2, macvlan) the
//! network's gateway addresses on `pb` (IPv6 without DAD) in place of a
//! shim, and forwarding on `pb` and the uplinks. For ipvlan L3/L3S: both
//! ends one locally administered MAC ([`port_mac`]) and `IFF_NOARP`,
//! `forwarding=0` on `pa`, the egress rule `oif pa lookup T` and `default
//! dev pa` in table T (both families, our protocol), and each joined
//! endpoint's /32 and /128 `dev pb` ([`add_endpoint`], [`remove_endpoint`]).
//! [`whole`] says whether a port still looks like that (the repair loop's
//! check). [`release`] takes a deleted network's gateways off `pb`, or the
//! pair (and its rules) with the last network on it. [`check_free`]: at
//! start, T and the rule's preference must hold nothing of anyone else.
//!
//! [`Parent::port`]: crate::model::network::Parent::port

use tracing::{info, warn};

use super::links::{self, Expect, Undo};
use super::sysctl::enable_forwarding;
use crate::kernel::{
    Addr, DevRoute, KernelError, Link, LinkKernel, LinkKind, Result, Rule, MAIN_TABLE,
};
use crate::model::names::{self, Marks, Role};
use crate::model::network::{host_route, EndpointSpec, NetworkSpec};

/// `--port-table`'s default.
pub const DEFAULT_TABLE: u32 = 173;
/// `--port-rule-pref`'s default.
pub const DEFAULT_RULE_PREF: u32 = 7373;

/// Where the ipvlan L3 port's egress goes, and the tag of what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Table T (`--port-table`).
    pub table: u32,
    /// The egress rule's preference (`--port-rule-pref`).
    pub pref: u32,
    /// The driver's route protocol (`--route-protocol`).
    pub protocol: u8,
}

/// The driver's default route protocol (`--route-protocol`'s default,
/// `config::DEFAULT_ROUTE_PROTOCOL`, which a test holds equal: the config
/// reads this module, not the other way round).
pub const DEFAULT_PROTOCOL: u8 = 73;

impl Default for PortConfig {
    fn default() -> PortConfig {
        PortConfig {
            table: DEFAULT_TABLE,
            pref: DEFAULT_RULE_PREF,
            protocol: DEFAULT_PROTOCOL,
        }
    }
}

/// The one MAC both ends of an ipvlan L3 port carry: locally administered,
/// unicast, derived from this instance's identity and the port's key, so
/// it stays the same across restarts (the identity is kept in the state).
pub fn port_mac(marks: &Marks, key: &str) -> [u8; 6] {
    // FNV-1a, 64 bits: stable across builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in marks.instance().bytes().chain([b':']).chain(key.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// The egress rules of an L3 port (IPv4, IPv6).
fn egress_rules(pa: &str, cfg: &PortConfig) -> [Rule; 2] {
    [false, true].map(|v6| Rule {
        v6,
        priority: cfg.pref,
        oif: Some(pa.to_string()),
        table: cfg.table,
        protocol: cfg.protocol,
    })
}

/// `default dev pa` in table T, both families.
fn egress_routes(pa: u32, cfg: &PortConfig) -> [DevRoute; 2] {
    ["0.0.0.0/0", "::/0"].map(|d| DevRoute {
        dst: d.parse().unwrap_or_default(),
        oif: pa,
        table: cfg.table,
        protocol: cfg.protocol,
    })
}

/// Whether `spec` is on an L3 port (ipvlan L3/L3S without a parent).
fn is_l3(spec: &NetworkSpec) -> bool {
    spec.parent.port && !spec.dataplane.is_l2()
}

/// At start (dual-uplink mode): a rule at the egress rule's preference, or
/// a route in table T, that is not ours refuses the start, naming it.
pub fn check_free<K: LinkKernel>(k: &mut K, cfg: &PortConfig) -> std::result::Result<(), String> {
    let ours = |oif: &Option<String>, proto: u8| {
        proto == cfg.protocol && oif.as_deref().is_some_and(|o| o.starts_with("ipbgp-"))
    };
    let rules = k
        .rules()
        .map_err(|e| format!("read the routing rules: {e}"))?;
    if let Some(r) = rules
        .iter()
        .find(|r| r.priority == cfg.pref && !ours(&r.oif, r.protocol))
    {
        return Err(format!(
            "a routing rule at preference {} is not ours ({} oif {} lookup {} proto {}): choose a free --port-rule-pref",
            cfg.pref,
            if r.v6 { "IPv6" } else { "IPv4" },
            r.oif.as_deref().unwrap_or("any"),
            r.table,
            r.protocol
        ));
    }
    let routes = k
        .dev_routes(cfg.table)
        .map_err(|e| format!("read table {}: {e}", cfg.table))?;
    let foreign: Vec<String> = routes
        .iter()
        .filter(|r| r.protocol != cfg.protocol)
        .map(|r| format!("{} proto {}", r.dst, r.protocol))
        .collect();
    if !foreign.is_empty() {
        return Err(format!(
            "routing table {} holds routes that are not ours ({}): choose a free --port-table",
            cfg.table,
            foreign.join(", ")
        ));
    }
    Ok(())
}

/// The names and mark of `spec`'s port: (pa, pb, mark).
pub fn port_names(marks: &Marks, spec: &NetworkSpec) -> (String, String, String) {
    let key = spec.dataplane.port_key();
    let (a, b) = names::port(&key);
    (a, b, marks.mark(Role::Port, &key))
}

/// Makes `spec`'s port exist and up, and (L2 data planes) its gateways sit
/// on `pb`. Returns `pa` (the containers' parent). A new pair is pushed on
/// `undo`, and so is every gateway address added to an existing `pb`.
pub fn ensure<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    uplinks: &[String],
    cfg: &PortConfig,
    spec: &NetworkSpec,
    undo: &mut Undo,
) -> Result<Link> {
    let (a, b, mark) = port_names(marks, spec);
    let mac = is_l3(spec).then(|| port_mac(marks, &spec.dataplane.port_key()));
    let mut mtus = Vec::new();
    for u in uplinks {
        if let Some(l) = k.link(u)? {
            mtus.push(l);
        }
    }
    let mtu = super::uplinks::smallest_mtu(&mtus);
    let want = Expect {
        name: &a,
        kind: LinkKind::Veth,
        parent: None,
        mark: &mark,
    };
    let (pa, pb) = links::ensure_pair(k, &want, &b, mtu, mac)?;
    if pa.created {
        undo.push(&want);
        info!(port = %a, host_end = %b, mtu = ?mtu, "created the container port");
    }
    let (pa, pb_index) = (pa.link, pb.index);
    if is_l3(spec) {
        // First: writing net.ipv4.ip_forward sets every link's forwarding,
        // pa's too, which must stay 0 (below).
        for u in uplinks {
            enable_forwarding(k, spec, u, &b);
        }
    }
    if let Some(mac) = mac {
        // Before up: one MAC on both ends, no ARP (an L3 slave answers none).
        for l in [&pa, &pb] {
            let new_mac = (l.mac != mac).then_some(mac);
            if !l.noarp || new_mac.is_some() {
                k.set_link(l.index, Some(true), new_mac)?;
            }
        }
        // An address in the block without a container dies at pa.
        for family in ["ipv4", "ipv6"] {
            let path = format!("net/{family}/conf/{a}/forwarding");
            if k.sysctl(&path)?.is_some_and(|v| v != "0") {
                k.set_sysctl(&path, "0")?;
            }
        }
    }
    for i in [pa.index, pb_index] {
        k.set_up(i, true)?;
    }
    if is_l3(spec) {
        for r in egress_rules(&a, cfg) {
            k.add_rule(&r)?;
        }
        for r in egress_routes(pa.index, cfg) {
            k.add_dev_route(&r)?;
        }
    }
    if spec.dataplane.is_l2() {
        let have: Vec<Addr> = k.addresses()?;
        for gateway in spec.gateways() {
            if !have.iter().any(|x| x.index == pb_index && x.net == gateway) {
                k.add_address(pb_index, gateway)?;
                undo.push_address(pb_index, gateway);
            }
        }
        for u in uplinks {
            enable_forwarding(k, spec, u, &b);
        }
    }
    Ok(pa)
}

/// Whether `spec`'s port is as [`ensure`] leaves it: both ends present,
/// marked, up, and (L2) every gateway on `pb`; (L3) one MAC, NOARP, `pa`
/// not forwarding and, with `deep`, its rules, table T's routes and the
/// `joined` endpoints' routes (two dumps of every routing table: the
/// caller asks for them now and then, not every round). `addrs`: one
/// address dump.
pub fn whole<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    (joined, deep): (&[EndpointSpec], bool),
    addrs: &[Addr],
) -> bool {
    let (a, b, mark) = port_names(marks, spec);
    if is_l3(spec) && !l3_whole(k, marks, cfg, spec, (joined, deep), (&a, &b)) {
        return false;
    }
    let ok = |l: &Option<Link>| {
        l.as_ref().is_some_and(|l| {
            l.up && names::same_record(l.alias.as_deref(), &mark)
                && l.kind.as_deref() == Some("veth")
        })
    };
    let (Ok(pa), Ok(pb)) = (k.link(&a), k.link(&b)) else {
        return true; // unreadable: nothing to conclude
    };
    if !ok(&pa) || !ok(&pb) {
        return false;
    }
    let pb = pb.map(|l| l.index);
    !spec.dataplane.is_l2()
        || spec
            .gateways()
            .all(|g| addrs.iter().any(|x| Some(x.index) == pb && x.net == g))
}

/// The L3 parts of [`whole`]: MACs and NOARP, the rules, table T's
/// default routes, the joined endpoints' routes `dev pb`.
fn l3_whole<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    (joined, deep): (&[EndpointSpec], bool),
    (a, b): (&str, &str),
) -> bool {
    let mac = port_mac(marks, &spec.dataplane.port_key());
    let (Ok(Some(pa)), Ok(Some(pb))) = (k.link(a), k.link(b)) else {
        return false;
    };
    if [&pa, &pb].iter().any(|l| !l.noarp || l.mac != mac) {
        return false;
    }
    // A later write of net.ipv4.ip_forward (anyone's) sets it on pa too.
    let forwarding = |k: &mut K, f: &str| k.sysctl(&format!("net/{f}/conf/{a}/forwarding"));
    if ["ipv4", "ipv6"]
        .iter()
        .any(|f| forwarding(k, f).ok().flatten().is_some_and(|v| v != "0"))
    {
        return false;
    }
    if !deep {
        return true;
    }
    let (Ok(rules), Ok(table), Ok(main)) =
        (k.rules(), k.dev_routes(cfg.table), k.dev_routes(MAIN_TABLE))
    else {
        return true; // unreadable: nothing to conclude
    };
    egress_rules(a, cfg).iter().all(|r| rules.contains(r))
        && egress_routes(pa.index, cfg)
            .iter()
            .all(|r| table.contains(r))
        && joined
            .iter()
            .flat_map(|e| endpoint_routes(e, pb.index, cfg))
            .all(|r| main.contains(&r))
}

/// An endpoint's /32 and /128 `dev pb` (L3 port).
fn endpoint_routes(ep: &EndpointSpec, pb: u32, cfg: &PortConfig) -> Vec<DevRoute> {
    ep.addrs()
        .map(|a| DevRoute {
            dst: host_route(a),
            oif: pb,
            table: MAIN_TABLE,
            protocol: cfg.protocol,
        })
        .collect()
}

/// The routes `dev pb` of an endpoint of `spec` (none off an L3 port), and
/// whether pb exists to carry them.
fn routes_of<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    ep: &EndpointSpec,
) -> Result<Option<Vec<DevRoute>>> {
    if !is_l3(spec) {
        return Ok(Some(Vec::new()));
    }
    let (_, b, _) = port_names(marks, spec);
    Ok(k.link(&b)?.map(|pb| endpoint_routes(ep, pb.index, cfg)))
}

/// At Join, before the endpoint is announced (L3 port; nothing otherwise):
/// its /32 and /128 `dev pb`, so the host delivers what arrives for it
/// over either uplink.
pub fn add_endpoint<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    ep: &EndpointSpec,
) -> Result<()> {
    let routes = routes_of(k, marks, cfg, spec, ep)?.ok_or_else(|| {
        KernelError::NotFound(format!(
            "the container port's host end of {} is gone",
            spec.parent.name
        ))
    })?;
    routes.iter().try_for_each(|r| k.add_dev_route(r))
}

/// At Leave and DeleteEndpoint (L3 port): the endpoint's routes `dev pb`
/// go (gone already, with pb or alone, is fine).
pub fn remove_endpoint<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    ep: &EndpointSpec,
) -> Result<()> {
    let routes = routes_of(k, marks, cfg, spec, ep)?.unwrap_or_default();
    routes.iter().try_for_each(|r| k.del_dev_route(r))
}

/// A network on a port is gone: with `still_used` (another network of
/// ours on the same port) its gateways leave `pb`; otherwise the pair goes
/// (only if it carries our mark; deleting one end takes the other).
/// Returns what could not be done.
pub fn release<K: LinkKernel>(
    k: &mut K,
    marks: &Marks,
    cfg: &PortConfig,
    spec: &NetworkSpec,
    still_used: bool,
) -> Vec<String> {
    let (a, b, mark) = port_names(marks, spec);
    let mut failed = Vec::new();
    if still_used {
        if let Ok(Some(pb)) = k.link(&b) {
            if names::same_record(pb.alias.as_deref(), &mark) {
                for g in spec.gateways() {
                    if let Err(e) = k.del_address(pb.index, g) {
                        failed.push(format!("{b}: {e}"));
                    }
                }
            }
        }
        return failed;
    }
    if is_l3(spec) {
        // Table T's routes go with pa; the rules name it and stay otherwise.
        for r in egress_rules(&a, cfg) {
            if let Err(e) = k.del_rule(&r) {
                failed.push(format!("rule oif {a} lookup {}: {e}", cfg.table));
            }
        }
    }
    let want = Expect {
        name: &a,
        kind: LinkKind::Veth,
        parent: None,
        mark: &mark,
    };
    match links::delete(k, &want) {
        Ok(_) => info!(port = %a, "deleted the container port with its last network"),
        Err(e @ KernelError::Conflict(_)) => {
            warn!(link = %a, error = %e, "left a link that is not ours in place")
        }
        Err(e) => failed.push(format!("{a}: {e}")),
    }
    failed
}
