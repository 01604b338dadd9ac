//! What this host looks like to the BGP side, and what that makes of the View.
//!
//! In: the host's links and addresses (one read through the kernel facade),
//! the default gateways the route installer publishes (in [`Metrics`]), the
//! [`View`], the [`BgpConfig`] and the peers gobgpd reports. Out: [`HostInfo`],
//! the import policy's inputs ([`policy_inputs`]), and the announcements with
//! the next hop of their family ([`wanted_announcements`]: unspecified in
//! dual-uplink mode, else `--next-hop`, else the parent's address), whole or
//! again for the prefixes a view change touched ([`update_wanted`]). IPv6: a global one, never link-local, never a
//! temporary, deprecated, tentative or DAD-failed one; the BGP session's own
//! local address first, else the one chosen before, else the lowest
//! ([`NextHopChoice`]): the order the kernel lists addresses in never
//! changes it, so it never re-announces everything.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::warn;

use super::announcement::Announcement;
use super::config::BgpConfig;
use super::policy::{self, ParentInfo, PolicyInputs};
#[cfg(doc)]
use crate::kernel::Addr;
use crate::kernel::LinkKernel;
use crate::metrics::{Metrics, PeerStatus};
use crate::view::View;

/// What the host looks like: its addresses, the parents' networks, and the
/// gateways of its default routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// ifindex, name, networks of its addresses.
    pub links: Vec<(u32, String, Vec<IpNet>)>,
    /// Addresses never to give peers as a next hop ([`Addr::is_stable`]:
    /// temporary, deprecated, tentative, DAD failed).
    pub unstable: BTreeSet<IpAddr>,
    /// Gateways of the main table's default routes (IPv4 and IPv6).
    pub default_gateways: BTreeSet<IpAddr>,
}

/// What the IPv6 next hop is chosen from besides the parent's addresses,
/// kept across host refreshes.
#[derive(Debug, Clone, Default)]
pub struct NextHopChoice {
    /// Local addresses of this host's established BGP sessions (gobgpd's
    /// ListPeer): preferred, since peers reach us there already.
    pub session_local: BTreeSet<IpAddr>,
    /// The IPv6 next hop chosen last, per parent: kept while it stays usable.
    chosen: BTreeMap<String, IpAddr>,
}

impl HostInfo {
    /// Reads links and addresses. The default gateways come from the route
    /// installer (`Metrics` `bgp.default_gateways`), which sees every dump
    /// and route notification anyway: a dump here every refresh would cost
    /// ~140 ms at 100k installed routes. See [`HostInfo::with_gateways`].
    pub fn read(kernel: &mut impl LinkKernel) -> Result<HostInfo, crate::kernel::KernelError> {
        let links = kernel.links()?;
        let addrs = kernel.addresses()?;
        Ok(HostInfo {
            default_gateways: BTreeSet::new(),
            unstable: addrs
                .iter()
                .filter(|a| !a.is_stable())
                .map(|a| a.net.addr())
                .collect(),
            links: links
                .into_iter()
                .map(|l| {
                    let nets = addrs
                        .iter()
                        .filter(|a| a.index == l.index)
                        .map(|a| a.net)
                        .collect();
                    (l.index, l.name, nets)
                })
                .collect(),
        })
    }

    /// The same host with the default gateways the installer published.
    pub fn with_gateways(mut self, metrics: &Metrics) -> HostInfo {
        self.default_gateways = metrics.bgp(|b| b.default_gateways.iter().copied().collect());
        self
    }

    fn link(&self, name: &str) -> Option<&(u32, String, Vec<IpNet>)> {
        self.links.iter().find(|(_, n, _)| n == name)
    }

    /// The networks of the addresses on `link`, if it exists.
    pub(super) fn addresses_of(&self, link: &str) -> Option<&[IpNet]> {
        self.link(link).map(|l| l.2.as_slice())
    }

    /// The first IPv4 address on `parent`: the next hop we announce.
    pub fn parent_v4(&self, parent: &str) -> Option<IpAddr> {
        self.link(parent)?
            .2
            .iter()
            .find(|n| matches!(n, IpNet::V4(_)))
            .map(|n| n.addr())
    }

    /// The global IPv6 addresses on `parent` (ULA included) that may be a
    /// next hop: never link-local (a peer cannot use it without knowing the
    /// interface, and a route reflector passes it to hosts on other links),
    /// never unstable (temporary, deprecated, tentative, DAD failed).
    pub(super) fn parent_v6_candidates(&self, parent: &str) -> BTreeSet<IpAddr> {
        let Some(link) = self.link(parent) else {
            return BTreeSet::new();
        };
        link.2
            .iter()
            .map(|n| n.addr())
            .filter(|a| {
                a.is_ipv6()
                    && !policy::is_link_local(a)
                    && !a.is_loopback()
                    && !a.is_multicast()
                    && !a.is_unspecified()
                    && !self.unstable.contains(a)
            })
            .collect()
    }

    /// The IPv6 next hop we announce on `parent`: a BGP session's local
    /// address if it is one of the candidates, else the one chosen before
    /// if it still is, else the lowest. Whatever order the kernel lists the
    /// addresses in, the same one.
    pub fn parent_v6(&self, parent: &str, choice: &NextHopChoice) -> Option<IpAddr> {
        let candidates = self.parent_v6_candidates(parent);
        choice
            .session_local
            .iter()
            .find(|a| candidates.contains(*a))
            .or_else(|| {
                choice
                    .chosen
                    .get(parent)
                    .filter(|a| candidates.contains(*a))
            })
            .or_else(|| candidates.first())
            .copied()
    }

    /// This host's next hop for `prefix` on `parent`: its address of the same family.
    pub fn parent_next_hop(
        &self,
        parent: &str,
        prefix: &IpNet,
        choice: &NextHopChoice,
    ) -> Option<IpAddr> {
        match prefix {
            IpNet::V4(_) => self.parent_v4(parent),
            IpNet::V6(_) => self.parent_v6(parent, choice),
        }
    }
}

/// The import policy's inputs. `peers`: the BGP neighbours gobgpd reports
/// (the learner adds the peers and next hops of the paths it holds).
pub fn policy_inputs(
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    peers: &[PeerStatus],
) -> PolicyInputs {
    let mut pools: Vec<IpNet> = view.pools.iter().copied().collect();
    pools.extend(cfg.accept_pools.iter().copied());
    let mut parent_names: BTreeSet<String> = view.parents.clone();
    parent_names.extend(cfg.default_parent.clone());
    // Dual-uplink mode: next hops are the ToRs, on the uplinks' subnets.
    parent_names.extend(cfg.uplinks.iter().cloned());
    PolicyInputs {
        pools,
        network_subnets: view.pools.iter().copied().collect(),
        local_endpoints: view.local_endpoints.clone(),
        endpoints_via_host: view.endpoints_via_host.clone(),
        connected: host
            .links
            .iter()
            .flat_map(|(_, _, nets)| nets.iter().map(|n| n.trunc()))
            .filter(|n| !view.pools.contains(n))
            .collect(),
        own_addresses: host
            .links
            .iter()
            .flat_map(|(_, _, nets)| nets.iter().map(|n| n.addr()))
            .collect(),
        parents: parent_names
            .iter()
            .filter_map(|name| {
                host.link(name).map(|(index, name, nets)| ParentInfo {
                    name: name.clone(),
                    index: *index,
                    nets: nets.iter().map(|n| n.trunc()).collect(),
                })
            })
            .collect(),
        neighbors: peers
            .iter()
            .filter_map(|p| p.address.parse::<IpAddr>().ok())
            .collect(),
        // Our own announcements' next hop is in use as well.
        next_hops: cfg.next_hops.iter().copied().collect(),
        default_gateways: host.default_gateways.clone(),
    }
}

/// Prefix -> next hop and attributes for everything the view announces and we can announce.
/// The next hop is of the prefix's family: `--next-hop` of that family, else
/// the parent's address of that family (IPv6: a global one).
pub fn wanted_announcements(
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    choice: &mut NextHopChoice,
    warned: &mut BTreeSet<String>,
) -> BTreeMap<IpNet, Announcement> {
    let mut out = BTreeMap::new();
    decide_each(
        view.announcements.iter(),
        view,
        (host, cfg),
        choice,
        warned,
        &mut out,
    );
    out
}

/// `wanted`, the announcements [`wanted_announcements`] made of an earlier
/// view with the same host, configuration and next-hop choice, decided
/// again for the `touched` prefixes only (those whose entries differ in
/// `view`, [`crate::view::diff::announced_changes`]): afterwards it equals
/// what [`wanted_announcements`] makes of `view`.
pub fn update_wanted(
    wanted: &mut BTreeMap<IpNet, Announcement>,
    touched: &BTreeSet<IpNet>,
    view: &View,
    host: &HostInfo,
    cfg: &BgpConfig,
    choice: &mut NextHopChoice,
    warned: &mut BTreeSet<String>,
) {
    for prefix in touched {
        wanted.remove(prefix);
    }
    let entries = touched
        .iter()
        .filter_map(|p| view.announcements.get_key_value(p));
    decide_each(entries, view, (host, cfg), choice, warned, wanted);
}

/// Decides each of `entries` (prefix, parent) of `view` into `out`: its
/// next hop and attributes, or nothing (and a warning, once per parent and
/// family) when it has no next hop. Every prefix is decided with the
/// choice as it was before; the IPv6 next hops chosen are remembered after.
fn decide_each<'a>(
    entries: impl Iterator<Item = (&'a IpNet, &'a String)>,
    view: &View,
    (host, cfg): (&HostInfo, &BgpConfig),
    choice: &mut NextHopChoice,
    warned: &mut BTreeSet<String>,
    out: &mut BTreeMap<IpNet, Announcement>,
) {
    let mut chosen = BTreeMap::new();
    for (prefix, parent) in entries {
        let from_parent = || {
            let nh = host.parent_next_hop(parent, prefix, choice);
            if let (IpNet::V6(_), Some(a)) = (prefix, nh) {
                chosen.insert(parent.clone(), a);
            }
            nh
        };
        // Dual-uplink mode: unspecified, so that gobgpd gives each peer its
        // own session address (an explicit one would reach the ToR behind
        // the other uplink unchanged, off its link).
        let unspecified = (!cfg.uplinks.is_empty()).then(|| unspecified_for(prefix));
        match unspecified
            .or_else(|| cfg.next_hop_for(prefix))
            .or_else(from_parent)
        {
            Some(next_hop) => {
                let attrs = view.attrs.get(prefix).cloned().unwrap_or_default();
                out.insert(*prefix, Announcement { next_hop, attrs });
            }
            None => {
                let (family, what) = match prefix {
                    IpNet::V4(_) => ("IPv4", "an IPv4 address"),
                    IpNet::V6(_) => ("IPv6", "a global IPv6 address (link-local is not enough)"),
                };
                if warned.insert(format!("{parent} {family}")) {
                    warn!(parent = %parent, family, "parent has no {what} to use as next hop; set --next-hop for {family} or address the parent; not announcing its {family} prefixes");
                }
            }
        }
    }
    // Remembered for the next time (parents without IPv6 prefixes now keep theirs).
    choice.chosen.extend(chosen);
}

/// `0.0.0.0` or `::`, of `prefix`'s family.
fn unspecified_for(prefix: &IpNet) -> IpAddr {
    match prefix {
        IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bgp::gobgp::GobgpAddr;
    use crate::bgp::speaker::SpeakerConfig;
    use crate::kernel::fake::FakeKernel;
    use crate::kernel::{ifa, Addr};
    use std::time::Duration;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// A BGP configuration for tests (also the announcer's measurement).
    pub(crate) fn cfg(next_hops: &[&str]) -> BgpConfig {
        BgpConfig {
            gobgp: GobgpAddr::Unix("/run/gobgpd.sock".into()),
            call_timeout: Duration::from_secs(5),
            speaker: SpeakerConfig::default(),
            next_hops: next_hops.iter().map(|a| a.parse().unwrap()).collect(),
            communities: Vec::new(),
            protocol: 73,
            accept_pools: Vec::new(),
            limits: crate::bgp::learner::Limits::installing(100),
            stale_time: Duration::from_secs(60),
            default_parent: None,
            uplinks: Vec::new(),
            stop_gobgpd_on_exit: false,
        }
    }

    fn med(m: u32) -> crate::model::attrs::RouteAttrs {
        crate::model::attrs::RouteAttrs {
            med: Some(m),
            ..Default::default()
        }
    }

    /// Dual-uplink mode: every announcement's next hop is unspecified
    /// (gobgpd gives each ToR its own session address), and the uplinks'
    /// connected subnets are where learned next hops may lie.
    #[test]
    fn dual_uplink_mode_announces_an_unspecified_next_hop_and_accepts_the_uplinks_subnets() {
        let view = View {
            announcements: [
                (n("10.1.1.2/32"), "ipbgp-l3-pa".to_string()),
                (n("fd00:1:1::2/128"), "ipbgp-l3-pa".to_string()),
            ]
            .into_iter()
            .collect(),
            ..View::default()
        };
        let host = HostInfo {
            links: vec![
                (7, "up1".into(), vec![n("192.0.2.1/30"), n("fd00:a::1/64")]),
                (8, "up2".into(), vec![n("198.51.100.1/30")]),
                (9, "eth9".into(), vec![n("203.0.113.1/24")]),
            ],
            ..HostInfo::default()
        };
        let mut c = cfg(&[]);
        c.uplinks = vec!["up1".into(), "up2".into()];
        let w = wanted_announcements(
            &view,
            &host,
            &c,
            &mut NextHopChoice::default(),
            &mut BTreeSet::new(),
        );
        assert_eq!(
            w[&n("10.1.1.2/32")].next_hop,
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            w[&n("fd00:1:1::2/128")].next_hop,
            "::".parse::<IpAddr>().unwrap()
        );
        let p = policy_inputs(&view, &host, &c, &[]);
        let parents: Vec<(&str, Vec<IpNet>)> = p
            .parents
            .iter()
            .map(|p| (p.name.as_str(), p.nets.clone()))
            .collect();
        assert_eq!(
            parents,
            vec![
                ("up1", vec![n("192.0.2.0/30"), n("fd00:a::/64")]),
                ("up2", vec![n("198.51.100.0/30")]),
            ]
        );
    }

    /// Each prefix gets a next hop of its own family: `--next-hop` of that
    /// family, else the parent's address; for IPv6 a global one, never the
    /// link-local one (nothing is announced for IPv6 without a global one).
    #[test]
    fn announcements_take_a_next_hop_of_their_family() {
        let view = View {
            announcements: [
                (n("10.1.1.2/32"), "eth1".to_string()),
                (n("fd00:1:1::2/128"), "eth1".to_string()),
                (n("fd00:1:2::/64"), "eth1".to_string()),
            ]
            .into_iter()
            .collect(),
            attrs: [(n("10.1.1.2/32"), med(7))].into_iter().collect(),
            ..View::default()
        };
        let host = |nets: &[&str]| HostInfo {
            links: vec![(7, "eth1".into(), nets.iter().map(|s| n(s)).collect())],
            ..HostInfo::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let dual = host(&["fe80::1/64", "192.0.2.1/24", "2001:db8:f::1/64"]);
        let w = wanted_announcements(
            &view,
            &dual,
            &cfg(&[]),
            &mut NextHopChoice::default(),
            &mut BTreeSet::new(),
        );
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("192.0.2.1"));
        assert_eq!(w[&n("fd00:1:1::2/128")].next_hop, ip("2001:db8:f::1"));
        assert_eq!(w[&n("fd00:1:2::/64")].next_hop, ip("2001:db8:f::1"));
        // Attributes ride along with their prefix only.
        assert_eq!(w[&n("10.1.1.2/32")].attrs, med(7));
        assert!(w[&n("fd00:1:1::2/128")].attrs.is_empty());
        // Only a link-local IPv6 address: IPv4 is announced, IPv6 is not.
        let v4_only = host(&["fe80::1/64", "192.0.2.1/24"]);
        let mut warned = BTreeSet::new();
        let w = wanted_announcements(
            &view,
            &v4_only,
            &cfg(&[]),
            &mut NextHopChoice::default(),
            &mut warned,
        );
        assert_eq!(w.keys().copied().collect::<Vec<_>>(), [n("10.1.1.2/32")]);
        assert_eq!(warned.len(), 1, "one warning per parent and family");
        // `--next-hop` of one family replaces the parent's address of that family only.
        let w = wanted_announcements(
            &view,
            &v4_only,
            &cfg(&["2001:db8::7"]),
            &mut NextHopChoice::default(),
            &mut warned,
        );
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("192.0.2.1"));
        assert_eq!(w[&n("fd00:1:1::2/128")].next_hop, ip("2001:db8::7"));
        let w = wanted_announcements(
            &view,
            &dual,
            &cfg(&["198.51.100.1", "2001:db8::7"]),
            &mut NextHopChoice::default(),
            &mut warned,
        );
        assert_eq!(w[&n("10.1.1.2/32")].next_hop, ip("198.51.100.1"));
        assert_eq!(w[&n("fd00:1:2::/64")].next_hop, ip("2001:db8::7"));
    }

    /// A fake kernel with `eth1` holding `addrs` (added in that order),
    /// each with its `IFA_F_*` flags, read as the session reads the host.
    fn read_host(addrs: &[(&str, u32)]) -> HostInfo {
        let k = FakeKernel::new();
        let eth1 = k.add_device("eth1", None, None, None);
        let mut driver_side = k.clone();
        for (a, flags) in addrs {
            driver_side.add_address(eth1, n(a)).unwrap();
            k.set_address_flags(n(a), *flags);
        }
        HostInfo::read(&mut driver_side).unwrap()
    }

    /// The IPv6 next hop, from what the kernel reports: never a temporary,
    /// deprecated, tentative, optimistic or DAD-failed address; the same
    /// whatever order the kernel lists the addresses in; the one chosen
    /// before while it stays usable; the BGP session's own local address
    /// when it is one of the parent's.
    #[test]
    fn the_ipv6_next_hop_is_stable_and_prefers_the_session_address() {
        let view = View {
            announcements: [(n("fd00:1:1::2/128"), "eth1".to_string())]
                .into_iter()
                .collect(),
            ..View::default()
        };
        let unstable = [
            ("2001:db8:f::a/64", ifa::TEMPORARY),
            ("2001:db8:f::b/64", ifa::DEPRECATED),
            ("2001:db8:f::c/64", ifa::TENTATIVE),
            ("2001:db8:f::d/64", ifa::OPTIMISTIC),
            ("2001:db8:f::e/64", ifa::DADFAILED | ifa::TENTATIVE),
        ];
        let stable = [
            ("2001:db8:f::20/64", 0),
            ("2001:db8:f::10/64", ifa::PERMANENT),
        ];
        let all: Vec<_> = unstable.iter().chain(&stable).copied().collect();
        let nh = |h: &HostInfo, c: &mut NextHopChoice| {
            let w = wanted_announcements(&view, h, &cfg(&[]), c, &mut BTreeSet::new());
            w.get(&n("fd00:1:1::2/128")).map(|a| a.next_hop)
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());

        let host = read_host(&all);
        let bad: BTreeSet<IpAddr> = unstable.iter().map(|(a, _)| n(a).addr()).collect();
        assert_eq!(host.unstable, bad, "each unstable flag is seen as such");
        let mut choice = NextHopChoice::default();
        assert_eq!(nh(&host, &mut choice), ip("2001:db8:f::10"));
        // The kernel lists them the other way round: the same next hop.
        let mut reversed = all.clone();
        reversed.reverse();
        let host_rev = read_host(&reversed);
        assert_ne!(host_rev.links, host.links, "the dump order differs");
        assert_eq!(
            nh(&host_rev, &mut NextHopChoice::default()),
            ip("2001:db8:f::10")
        );
        // Chosen once, kept while it stays: a lower address added later
        // changes nothing; once it goes, the next one is chosen.
        let mut more = all.clone();
        more.insert(0, ("2001:db8:f::1/64", 0));
        assert_eq!(nh(&read_host(&more), &mut choice), ip("2001:db8:f::10"));
        more.retain(|(a, _)| *a != "2001:db8:f::10/64");
        assert_eq!(nh(&read_host(&more), &mut choice), ip("2001:db8:f::1"));
        // The chosen one turns deprecated: never kept for that.
        let mut deprecated = more.clone();
        deprecated[0].1 = ifa::DEPRECATED;
        assert_eq!(
            nh(&read_host(&deprecated), &mut choice),
            ip("2001:db8:f::20")
        );
        // The session's own address wins; one not on the parent does not count.
        choice.session_local = [ip("2001:db8:e::1").unwrap(), ip("2001:db8:f::20").unwrap()].into();
        assert_eq!(nh(&read_host(&more), &mut choice), ip("2001:db8:f::20"));
        // A session from an unstable address is not followed there.
        choice.session_local = [ip("2001:db8:f::a").unwrap()].into();
        assert_eq!(nh(&read_host(&more), &mut choice), ip("2001:db8:f::20"));
        // Only unstable ones: nothing announced (never a temporary address).
        assert_eq!(
            nh(&read_host(&unstable), &mut NextHopChoice::default()),
            None
        );
    }

    /// IPv4 shares the bit of IPv6's temporary flag with "secondary": a
    /// secondary IPv4 address is stable.
    #[test]
    fn a_secondary_ipv4_address_is_stable() {
        let a = |net: &str, flags| Addr {
            index: 1,
            net: n(net),
            flags,
        };
        assert!(a("192.0.2.2/24", ifa::TEMPORARY).is_stable());
        assert!(!a("2001:db8::2/64", ifa::TEMPORARY).is_stable());
        assert!(!a("192.0.2.2/24", ifa::TENTATIVE).is_stable());
    }

    /// A small deterministic generator (xorshift): the same sequence of
    /// views on every run, no dependency.
    pub(crate) struct Steps(u64);

    impl Steps {
        pub(crate) fn new(seed: u64) -> Steps {
            Steps(seed.max(1))
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        /// One endpoint's change to `v`, as a Join, Leave, a parent moved
        /// or new attributes make it: on one of 64 addresses (IPv4 and
        /// IPv6), behind eth1 (both families addressed) or eth2 (IPv4 only).
        pub(crate) fn change(&mut self, v: &mut View) {
            let i = self.below(32);
            let prefix = if self.below(2) == 0 {
                n(&format!("10.1.0.{i}/32"))
            } else {
                n(&format!("fd00:1::{i:x}/128"))
            };
            match self.below(4) {
                0 => {
                    v.announcements.remove(&prefix);
                    v.attrs.remove(&prefix);
                }
                1 => {
                    v.attrs.insert(prefix, med(self.below(3) as u32));
                }
                _ => {
                    let parent = if self.below(3) == 0 { "eth2" } else { "eth1" };
                    v.announcements.insert(prefix, parent.to_string());
                }
            }
        }
    }

    fn two_parents() -> HostInfo {
        HostInfo {
            links: vec![
                (
                    7,
                    "eth1".into(),
                    vec![n("192.0.2.1/24"), n("2001:db8::1/64")],
                ),
                (8, "eth2".into(), vec![n("198.51.100.1/24")]),
            ],
            ..HostInfo::default()
        }
    }

    /// After each of a sequence of view changes, the announcements decided
    /// again for the touched prefixes only equal those decided whole, and
    /// so does the next-hop choice they leave.
    #[test]
    fn deciding_only_the_touched_prefixes_equals_deciding_all() {
        let host = two_parents();
        let c = cfg(&[]);
        let mut steps = Steps::new(7);
        let mut view = View::default();
        let (mut full_choice, mut part_choice) =
            (NextHopChoice::default(), NextHopChoice::default());
        let mut warned = BTreeSet::new();
        let mut part = BTreeMap::new();
        let mut touched_any = 0;
        for _ in 0..2000 {
            let before = view.clone();
            for _ in 0..=steps.below(3) {
                steps.change(&mut view);
            }
            let touched = crate::view::diff::announced_changes(&before, &view);
            touched_any += touched.len();
            update_wanted(
                &mut part,
                &touched,
                &view,
                &host,
                &c,
                &mut part_choice,
                &mut warned,
            );
            let full = wanted_announcements(&view, &host, &c, &mut full_choice, &mut warned);
            assert_eq!(part, full, "after touching {touched:?}");
            assert_eq!(part_choice.chosen, full_choice.chosen);
        }
        assert!(touched_any > 1000 && !part.is_empty());
    }
}
