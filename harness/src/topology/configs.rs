//! The BGP speakers' configuration files, generated from a scenario side by
//! side so that one can read that every speaker gets the same sessions and
//! timers: gobgpd's TOML (for a host whose gobgpd the driver does not
//! configure), FRR's `bgpd.conf` and BIRD's `bird.conf`.
//!
//! Every session carries both families (IPv4 and IPv6 unicast), whichever
//! family its addresses are (`[bgp] transport`): gobgpd's neighbours list
//! both afi-safis, FRR activates each neighbour in both address families,
//! BIRD gives each BGP protocol an `ipv4` and an `ipv6` channel (and runs a
//! kernel protocol per family).
//!
//! In: the speaker's AS and router ID, its neighbours resolved to
//! addresses ([`Neighbor`]) and the scenario's [`Timers`]. Out: the file's
//! text; writing it and starting the daemon is the caller's
//! (`host_daemons` for gobgpd, `routers` for FRR and BIRD; the neighbours
//! come from `sessions`). Pure functions, no I/O.
//!
//! A router facing Docker hosts in a real fabric also takes an
//! [`EdgePolicy`] (import only the container pools, a max-prefix per
//! neighbour, itself as next hop towards the hosts): the documented
//! examples (`example_fabric`, docs/router-config.md) pass one; the
//! scenarios' routers pass `None`, as their routers also exchange underlay
//! prefixes and injected paths outside any pool.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::scenario::{BfdSection, BgpSection, GobgpLine, RouterDef};

/// The address families every session carries (gobgpd's afi-safi names).
pub const AFI_SAFIS: [&str; 2] = ["ipv4-unicast", "ipv6-unicast"];

/// A BGP neighbour of a speaker, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub name: String,
    /// The neighbour's address of the session's family (`[bgp] transport`).
    pub addr: IpAddr,
    pub asn: u32,
    /// The speaker reflects routes to this neighbour.
    pub rr_client: bool,
    /// The speaker runs BFD with this neighbour (its side; `[bgp.bfd]`'s timers).
    pub bfd: bool,
    /// The speaker waits for this neighbour to connect and never dials it
    /// (gobgpd's `passive-mode`, the driver's `--peer ...,passive`): set on
    /// one side of a session between two gobgpd hosts, so that they never
    /// both dial. gobgpd 4.8 can deadlock a session after a connection
    /// collision (docs/gobgp-v4.md §9).
    pub passive: bool,
}

/// BGP timers (seconds) for every session of the scenario: the daemons'
/// defaults (connect-retry 120 s, hold 90 s) would stall a restart scenario.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub hold: u64,
    pub keepalive: u64,
    pub connect_retry: u64,
    /// BFD's interval and multiplier, for the neighbours that run it.
    pub bfd: Option<BfdSection>,
}

impl From<&BgpSection> for Timers {
    fn from(b: &BgpSection) -> Timers {
        Timers {
            hold: b.hold_time,
            keepalive: b.keepalive,
            connect_retry: b.connect_retry,
            bfd: b.bfd,
        }
    }
}

/// The name of the bfdd profile FRR's neighbours with BFD use.
pub const BFD_PROFILE: &str = "harness";

/// What a fabric router applies to its sessions with Docker hosts: accept
/// only the container pools (the prefixes in them, up to /32 and /128),
/// at most `max_prefix` of them per neighbour and family (beyond: the
/// session is reset: FRR brings it back after 5 minutes, BIRD restarts
/// the protocol), and send the hosts its own address as next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePolicy {
    pub pools: Vec<IpNet>,
    pub max_prefix: u32,
}

/// FRR's prefix-list names for the pools (IPv4, IPv6).
const FRR_POOLS: [&str; 2] = ["container-pools", "container-pools6"];

impl EdgePolicy {
    fn pools(&self, v6: bool) -> impl Iterator<Item = &IpNet> {
        self.pools.iter().filter(move |p| p.addr().is_ipv6() == v6)
    }

    /// FRR's prefix-lists: the pools of each family and their longer
    /// prefixes; a family without pools accepts nothing.
    fn frr_prefix_lists(&self) -> String {
        let mut c = String::new();
        for (v6, kw) in [(false, "ip"), (true, "ipv6")] {
            let name = FRR_POOLS[usize::from(v6)];
            let len = if v6 { 128 } else { 32 };
            let mut seq = 5;
            for p in self.pools(v6) {
                c.push_str(&format!(
                    "{kw} prefix-list {name} seq {seq} permit {p} le {len}\n"
                ));
                seq += 5;
            }
            if seq == 5 {
                c.push_str(&format!("{kw} prefix-list {name} seq 5 deny any\n"));
            }
        }
        c.push_str("!\n");
        c
    }

    /// BIRD's import filters, `container_pools4` and `container_pools6`
    /// (a family without pools imports nothing: `import none`).
    fn bird_filters(&self) -> String {
        let mut c = String::new();
        for (v6, name) in [(false, "container_pools4"), (true, "container_pools6")] {
            let set: Vec<String> = self.pools(v6).map(|p| format!("{p}+")).collect();
            if !set.is_empty() {
                c.push_str(&format!(
                    "filter {name} {{\n  if net ~ [ {} ] then accept;\n  reject;\n}}\n",
                    set.join(", ")
                ));
            }
        }
        c
    }

    /// BIRD's import clause and limit for a channel.
    fn bird_import(&self, v6: bool) -> String {
        if self.pools(v6).next().is_none() {
            return "import none;".into();
        }
        format!(
            "import filter container_pools{}; import limit {} action restart; next hop self;",
            if v6 { 6 } else { 4 },
            self.max_prefix
        )
    }
}

/// FRR's `bfd` block: one profile with the scenario's BFD timers.
fn frr_bfd_block(b: BfdSection) -> String {
    format!(
        "bfd\n profile {BFD_PROFILE}\n  transmit-interval {ms}\n  receive-interval {ms}\n  detect-multiplier {m}\n !\n!\n",
        ms = b.interval.0.as_millis(),
        m = b.multiplier
    )
}

/// gobgpd's TOML for host `host` (AS `asn`, address `addr`, also its router
/// ID and, for its clients, its route-reflector cluster ID; `addr6` its
/// IPv6 underlay address, listened on too), for the GoBGP `line` it runs.
///
/// The two lines read the same keys for everything written here; 4.x also
/// reads `[neighbors.bfd.config]` (intervals in microseconds), which 3.x
/// does not know: a neighbour with BFD on a 3.x host is refused here (the
/// scenario check refuses it first). Every neighbour waits 1 s, not 30 s,
/// before it reconnects after a reset (`idle-hold-time-after-reset`): a
/// scenario that kills a peer must not wait half a minute for its return.
pub fn gobgpd(
    line: GobgpLine,
    host: &str,
    asn: u32,
    addr: Ipv4Addr,
    addr6: Option<std::net::Ipv6Addr>,
    neighbors: &[Neighbor],
    t: Timers,
) -> anyhow::Result<String> {
    let listen = match addr6 {
        Some(a6) => format!("\"{addr}\", \"{a6}\""),
        None => format!("\"{addr}\""),
    };
    let mut c = format!(
        "# generated by the harness for host {host} (gobgpd {line})\n[global.config]\n  as = {asn}\n  router-id = \"{addr}\"\n  local-address-list = [{listen}]\n"
    );
    for n in neighbors {
        c.push_str(&format!(
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{a}\"\n    peer-as = {asn}\n  [neighbors.timers.config]\n    connect-retry = {cr}\n    hold-time = {h}\n    keepalive-interval = {k}\n    idle-hold-time-after-reset = 1\n",
            a = n.addr,
            asn = n.asn,
            cr = t.connect_retry,
            h = t.hold,
            k = t.keepalive
        ));
        if n.passive {
            c.push_str("  [neighbors.transport.config]\n    passive-mode = true\n");
        }
        if let (true, Some(b)) = (n.bfd, t.bfd) {
            if line == GobgpLine::V3 {
                anyhow::bail!(
                    "host {host}: BFD towards {} needs gobgpd 4.x; 3.x has no BFD",
                    n.name
                );
            }
            let us = b.interval.0.as_micros();
            c.push_str(&format!(
                "  [neighbors.bfd.config]\n    enabled = true\n    desired-minimum-tx-interval = {us}\n    required-minimum-receive = {us}\n    detection-multiplier = {}\n",
                b.multiplier
            ));
        }
        if n.rr_client {
            c.push_str(&format!(
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{addr}\"\n"
            ));
        }
        for family in AFI_SAFIS {
            c.push_str(&format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
            ));
        }
    }
    Ok(c)
}

/// FRR's `bfdd.conf`: one profile with the scenario's BFD timers, which
/// every neighbour with BFD names in `bgpd.conf`; `None` when no neighbour
/// of the router runs BFD (then bfdd is not started). Each session's state
/// changes (with the reason: control expired, neighbour down, admin down)
/// and each packet bfdd cannot place go to the router's log: a BFD session
/// that drops in a scenario says why, and whose it was.
pub fn frr_bfdd(def: &RouterDef, neighbors: &[Neighbor], t: Timers) -> Option<String> {
    let b = t.bfd.filter(|_| neighbors.iter().any(|n| n.bfd))?;
    Some(format!(
        "hostname {name}\nlog stdout debugging\ndebug bfd peer\ndebug bfd network\n!\n{}",
        frr_bfd_block(b),
        name = def.name,
    ))
}

/// FRR's integrated `frr.conf` for a fabric router: `bgpd.conf` with the
/// edge policy, then the `bfd` block of `bfdd.conf` when a neighbour runs BFD.
pub fn frr_integrated(
    def: &RouterDef,
    router_id: Ipv4Addr,
    neighbors: &[Neighbor],
    t: Timers,
    policy: &EdgePolicy,
) -> String {
    let mut c = frr(def, router_id, neighbors, t, Some(policy), None);
    if let Some(b) = t.bfd.filter(|_| neighbors.iter().any(|n| n.bfd)) {
        c.push_str(&frr_bfd_block(b));
    }
    c
}

/// FRR's `bgpd.conf` for router `def`, with `policy` on every neighbour.
pub fn frr(
    def: &RouterDef,
    router_id: Ipv4Addr,
    neighbors: &[Neighbor],
    t: Timers,
    policy: Option<&EdgePolicy>,
    multipath: Option<&[IpAddr]>,
) -> String {
    let mut c = format!(
        "frr defaults datacenter\nhostname {name}\nlog stdout informational\n!\n{lists}router bgp {asn}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n",
        name = def.name,
        asn = def.asn,
        lists = policy.map(EdgePolicy::frr_prefix_lists).unwrap_or_default(),
    );
    // A fabric of dual-homed hosts (RFC 7938): a rack's containers are
    // heard from two ToRs in two ASes, equal but for the neighbour AS. The
    // ToRs take whatever a host sends: that a dual-homed host is no transit
    // (sends only the paths it originates) is the driver's export policy
    // (`--export own`), which the scenarios check at the ToRs
    // (`expect-router-received`), not a filter of the routers'.
    if multipath.is_some() {
        // A new session's first updates (a returning uplink's) go out at
        // once, not after FRR's 1 s update-group coalesce time: the
        // returning host's strict rp_filter drops meanwhile what the other
        // host already sends that way (~1.1 s of loss, dual-uplink).
        c.push_str(" bgp bestpath as-path multipath-relax\n coalesce-time 0\n");
    }
    for n in neighbors {
        c.push_str(&format!(
            " neighbor {a} remote-as {asn}\n neighbor {a} description {name}\n neighbor {a} timers {k} {h}\n neighbor {a} timers connect {cr}\n",
            a = n.addr,
            asn = n.asn,
            name = n.name,
            k = t.keepalive,
            h = t.hold,
            cr = t.connect_retry
        ));
        if n.bfd && t.bfd.is_some() {
            c.push_str(&format!(
                " neighbor {a} bfd\n neighbor {a} bfd profile {BFD_PROFILE}\n",
                a = n.addr
            ));
        }
    }
    // Every neighbour is activated in both families explicitly (FRR
    // activates only IPv4 unicast by default).
    for (af, v6) in [("ipv4", false), ("ipv6", true)] {
        c.push_str(&format!(" !\n address-family {af} unicast\n"));
        for p in def.originate.iter().filter(|p| p.addr().is_ipv6() == v6) {
            c.push_str(&format!("  network {p}\n"));
        }
        if let Some(hosts) = multipath {
            c.push_str(&format!("  maximum-paths {FRR_MAX_PATHS}\n"));
            // On a shared segment eBGP passes the next hop on unchanged: a
            // spine would send a ToR of one rack straight to the one ToR of
            // the other rack its best path names, and the spine's equal
            // paths would carry nothing (dual-uplink-racks: 99.9 % of the
            // inbound over one uplink). Through the spine instead.
            if policy.is_none() {
                for n in neighbors.iter().filter(|n| !hosts.contains(&n.addr)) {
                    c.push_str(&format!("  neighbor {} next-hop-self\n", n.addr));
                }
            }
        }
        for n in neighbors {
            c.push_str(&format!("  neighbor {} activate\n", n.addr));
        }
        for n in neighbors.iter().filter(|n| n.rr_client) {
            c.push_str(&format!("  neighbor {} route-reflector-client\n", n.addr));
        }
        if let Some(p) = policy {
            for n in neighbors {
                c.push_str(&format!(
                    "  neighbor {a} prefix-list {l} in\n  neighbor {a} maximum-prefix {m} restart 5\n  neighbor {a} next-hop-self\n",
                    a = n.addr,
                    l = FRR_POOLS[usize::from(v6)],
                    m = p.max_prefix
                ));
            }
        }
        c.push_str(" exit-address-family\n");
    }
    c.push_str("!\n");
    c
}

/// FRR's `maximum-paths` in a fabric of dual-homed hosts.
pub const FRR_MAX_PATHS: u32 = 16;

/// BIRD 2's `bird.conf` for router `def`: its originated prefixes as static
/// blackholes, one BGP protocol per neighbour (with `policy`'s import
/// filter, limit and next hop, and BFD where the neighbour runs it), BGP
/// routes into the kernel.
pub fn bird(
    def: &RouterDef,
    router_id: Ipv4Addr,
    neighbors: &[Neighbor],
    t: Timers,
    policy: Option<&EdgePolicy>,
) -> String {
    let mut c = format!(
        "router id {router_id};\nprotocol device {{ }}\nprotocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\nprotocol kernel kernel6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; }}\n"
    );
    let bfd = t.bfd.filter(|_| neighbors.iter().any(|n| n.bfd));
    if let Some(b) = bfd {
        let ms = b.interval.0.as_millis();
        c.push_str(&format!(
            "protocol bfd {{\n  interface \"*\" {{ min rx interval {ms} ms; min tx interval {ms} ms; multiplier {}; }};\n}}\n",
            b.multiplier
        ));
    }
    if let Some(p) = policy {
        c.push_str(&p.bird_filters());
    }
    for (name, chan, v6) in [("own_routes", "ipv4", false), ("own_routes6", "ipv6", true)] {
        let mine: Vec<&IpNet> = def
            .originate
            .iter()
            .filter(|p| p.addr().is_ipv6() == v6)
            .collect();
        if !mine.is_empty() {
            c.push_str(&format!("protocol static {name} {{\n  {chan};\n"));
            for p in mine {
                c.push_str(&format!("  route {p} blackhole;\n"));
            }
            c.push_str("}\n");
        }
    }
    for n in neighbors {
        let local: IpAddr = match n.addr {
            IpAddr::V4(a) => def
                .links
                .values()
                .find(|l| l.contains(&a))
                .map(|l| l.addr().into()),
            IpAddr::V6(a) => def
                .links6
                .values()
                .find(|l| l.contains(&a))
                .map(|l| l.addr().into()),
        }
        .unwrap_or(router_id.into());
        // A family whose session runs over the other family needs the
        // router's own address of it as next hop (BIRD has no other).
        let (own4, own6) = (
            def.links.values().find(|l| match n.addr {
                IpAddr::V4(a) => l.contains(&a),
                IpAddr::V6(_) => true,
            }),
            def.links6.values().find(|l| match n.addr {
                IpAddr::V6(a) => l.contains(&a),
                IpAddr::V4(_) => true,
            }),
        );
        let nh4 = match (n.addr, own4) {
            (IpAddr::V6(_), Some(a)) => format!(" next hop address {};", a.addr()),
            _ => String::new(),
        };
        let nh6 = match (n.addr, own6) {
            (IpAddr::V4(_), Some(a)) => format!(" next hop address {};", a.addr()),
            _ => String::new(),
        };
        let import = |v6: bool| match policy {
            Some(p) => p.bird_import(v6),
            None => "import all;".to_string(),
        };
        c.push_str(&format!(
            "protocol bgp {name} {{\n  local {local} as {asn};\n  neighbor {addr} as {peer_asn};\n  hold time {h}; keepalive time {k};\n  connect delay time 1; connect retry time {cr};\n{rr}{bfd}  ipv4 {{ {i4} export where source = RTS_STATIC || source = RTS_BGP;{nh4} }};\n  ipv6 {{ {i6} export where source = RTS_STATIC || source = RTS_BGP;{nh6} }};\n}}\n",
            i4 = import(false),
            i6 = import(true),
            bfd = if n.bfd && bfd.is_some() { "  bfd on;\n" } else { "" },
            name = bird_name(&n.name),
            asn = def.asn,
            addr = n.addr,
            peer_asn = n.asn,
            h = t.hold,
            k = t.keepalive,
            cr = t.connect_retry,
            rr = if n.rr_client { "  rr client;\n" } else { "" }
        ));
    }
    c
}

/// BIRD's protocol name for a neighbour: letters, digits and underscores.
pub fn bird_name(n: &str) -> String {
    format!("n_{}", n.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers {
        hold: 9,
        keepalive: 3,
        connect_retry: 2,
        bfd: None,
    };

    fn nbrs() -> Vec<Neighbor> {
        vec![
            Neighbor {
                name: "h2".into(),
                addr: Ipv4Addr::new(192, 0, 2, 12).into(),
                asn: 65001,
                rr_client: true,
                bfd: false,
                passive: false,
            },
            Neighbor {
                name: "tor-b".into(),
                addr: Ipv4Addr::new(192, 0, 2, 13).into(),
                asn: 65100,
                rr_client: false,
                bfd: true,
                passive: false,
            },
        ]
    }

    #[test]
    fn gobgpd_config_is_toml_with_every_neighbour_and_only_clients_reflected() {
        let text = gobgpd(
            GobgpLine::V3,
            "h1",
            65001,
            Ipv4Addr::new(192, 0, 2, 11),
            None,
            &nbrs(),
            T,
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["global"]["config"]["as"].as_integer(), Some(65001));
        assert_eq!(
            v["global"]["config"]["router-id"].as_str(),
            Some("192.0.2.11")
        );
        let n = v["neighbors"].as_array().unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[0]["config"]["neighbor-address"].as_str(),
            Some("192.0.2.12")
        );
        assert_eq!(n[1]["config"]["peer-as"].as_integer(), Some(65100));
        assert_eq!(n[0]["timers"]["config"]["hold-time"].as_integer(), Some(9));
        assert_eq!(
            n[0]["timers"]["config"]["connect-retry"].as_integer(),
            Some(2)
        );
        assert_eq!(
            n[0]["route-reflector"]["config"]["route-reflector-client"].as_bool(),
            Some(true)
        );
        assert!(n[1].get("route-reflector").is_none());
        // Without [bgp.bfd] no neighbour gets a BFD section, whatever its flag.
        assert!(n[1].get("bfd").is_none());
        assert_eq!(
            n[0]["timers"]["config"]["idle-hold-time-after-reset"].as_integer(),
            Some(1)
        );
        for nb in n {
            let fams: Vec<&str> = nb["afi-safis"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["config"]["afi-safi-name"].as_str().unwrap())
                .collect();
            assert_eq!(fams, ["ipv4-unicast", "ipv6-unicast"]);
        }
    }

    #[test]
    fn gobgpd_over_ipv6_listens_on_both_addresses() {
        let v6 = vec![Neighbor {
            name: "h2".into(),
            addr: "fd00::2".parse().unwrap(),
            asn: 65000,
            rr_client: false,
            bfd: false,
            passive: false,
        }];
        let a6 = "fd00::1".parse().unwrap();
        let text = gobgpd(
            GobgpLine::V4,
            "h1",
            65000,
            Ipv4Addr::new(192, 0, 2, 1),
            Some(a6),
            &v6,
            T,
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            v["global"]["config"]["local-address-list"],
            toml::Value::Array(vec!["192.0.2.1".into(), "fd00::1".into()])
        );
        assert_eq!(
            v["neighbors"][0]["config"]["neighbor-address"].as_str(),
            Some("fd00::2")
        );
    }

    const BFD: Timers = Timers {
        bfd: Some(crate::scenario::BfdSection {
            interval: crate::util::Dur(std::time::Duration::from_millis(300)),
            multiplier: 3,
        }),
        ..T
    };

    /// BFD goes only to the neighbours that run it, in microseconds, and
    /// only on 4.x: a 3.x gobgpd is never given a section it cannot honour.
    #[test]
    fn gobgpd_bfd_section_on_v4_only_for_bfd_neighbours() {
        let a = Ipv4Addr::new(192, 0, 2, 11);
        let text = gobgpd(GobgpLine::V4, "h1", 65001, a, None, &nbrs(), BFD).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let n = v["neighbors"].as_array().unwrap();
        assert!(n[0].get("bfd").is_none(), "{text}");
        let b = &n[1]["bfd"]["config"];
        assert_eq!(b["enabled"].as_bool(), Some(true));
        assert_eq!(b["desired-minimum-tx-interval"].as_integer(), Some(300_000));
        assert_eq!(b["required-minimum-receive"].as_integer(), Some(300_000));
        assert_eq!(b["detection-multiplier"].as_integer(), Some(3));
        let e = gobgpd(GobgpLine::V3, "h1", 65001, a, None, &nbrs(), BFD)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs gobgpd 4.x"), "{e}");
    }

    #[test]
    fn frr_bfd_profile_and_neighbours() {
        let mut r = router();
        r.kind = crate::scenario::RouterKind::Frr;
        let b = frr_bfdd(&r, &nbrs(), BFD).unwrap();
        assert!(b.contains(" profile harness\n  transmit-interval 300\n  receive-interval 300\n  detect-multiplier 3\n"), "{b}");
        assert!(frr_bfdd(&r, &nbrs(), T).is_none());
        let mut none = nbrs();
        none[1].bfd = false;
        assert!(frr_bfdd(&r, &none, BFD).is_none());
        let c = frr(&r, Ipv4Addr::new(192, 0, 2, 1), &nbrs(), BFD, None, None);
        assert!(
            c.contains(" neighbor 192.0.2.13 bfd\n neighbor 192.0.2.13 bfd profile harness\n"),
            "{c}"
        );
        assert!(!c.contains("192.0.2.12 bfd"), "{c}");
        assert!(!frr(&r, Ipv4Addr::new(192, 0, 2, 1), &nbrs(), T, None, None).contains(" bfd"));
    }

    fn router() -> RouterDef {
        toml::from_str(
            r#"
            name = "tor-a"
            kind = "bird"
            asn = 65100
            links = { rack1 = "192.0.2.1/24", rack2 = "198.51.100.1/24" }
            neighbors = ["h2", "tor-b"]
            originate = ["10.99.0.0/24", "fd00:99::/64"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn frr_multipath_relaxes_the_as_path_and_allows_16_paths_in_both_families() {
        let host: IpAddr = "203.0.113.2".parse().unwrap();
        let c = frr(
            &router(),
            Ipv4Addr::new(192, 0, 2, 1),
            &nbrs(),
            T,
            None,
            Some(&[host]),
        );
        assert!(
            c.contains(" bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp bestpath as-path multipath-relax\n coalesce-time 0\n"),
            "{c}"
        );
        assert_eq!(c.matches("  maximum-paths 16\n").count(), 2, "{c}");
        // No filter of the router's own against a dual-homed host: that it
        // sends only its own paths is the driver's to prove.
        assert!(
            !c.contains("filter-list") && !c.contains("as-path access-list"),
            "{c}"
        );
        let plain = frr(
            &router(),
            Ipv4Addr::new(192, 0, 2, 1),
            &nbrs(),
            T,
            None,
            None,
        );
        assert!(
            !plain.contains("multipath")
                && !plain.contains("maximum-paths")
                && !plain.contains("filter-list"),
            "{plain}"
        );
    }

    #[test]
    fn frr_config_sets_timers_and_reflects_only_clients() {
        let c = frr(
            &router(),
            Ipv4Addr::new(192, 0, 2, 1),
            &nbrs(),
            T,
            None,
            None,
        );
        assert!(
            c.contains("router bgp 65100\n bgp router-id 192.0.2.1\n"),
            "{c}"
        );
        assert!(c.contains(" neighbor 192.0.2.13 remote-as 65100\n"), "{c}");
        assert!(c.contains(" neighbor 192.0.2.12 timers 3 9\n"), "{c}");
        assert!(c.contains(" neighbor 192.0.2.12 timers connect 2\n"), "{c}");
        assert!(c.contains("  network 10.99.0.0/24\n"), "{c}");
        assert!(
            c.contains("  neighbor 192.0.2.12 route-reflector-client\n"),
            "{c}"
        );
        assert!(!c.contains("192.0.2.13 route-reflector-client"), "{c}");
        // Both families, each neighbour activated in each, each prefix in its own.
        let v6 = &c[c.find("address-family ipv6 unicast").unwrap()..];
        assert!(v6.contains("  network fd00:99::/64\n"), "{c}");
        assert!(!v6.contains("10.99.0.0/24"), "{c}");
        assert!(v6.contains("  neighbor 192.0.2.13 activate\n"), "{c}");
        assert!(
            v6.contains("  neighbor 192.0.2.12 route-reflector-client\n"),
            "{c}"
        );
        assert_eq!(c.matches("activate").count(), 4, "{c}");
    }

    #[test]
    fn bird_config_uses_the_address_on_the_neighbours_segment() {
        // The router ID is its address on the other segment: `local` must not be it.
        let c = bird(&router(), Ipv4Addr::new(198, 51, 100, 1), &nbrs(), T, None);
        assert!(c.contains("protocol bgp n_tor_b {\n  local 192.0.2.1 as 65100;\n  neighbor 192.0.2.13 as 65100;\n"), "{c}");
        assert!(c.contains("  route 10.99.0.0/24 blackhole;\n"), "{c}");
        assert!(
            c.contains("protocol static own_routes6 {\n  ipv6;\n  route fd00:99::/64 blackhole;\n"),
            "{c}"
        );
        assert!(c.contains("hold time 9; keepalive time 3;"), "{c}");
        assert_eq!(c.matches("rr client;").count(), 1, "{c}");
        assert_eq!(c.matches("  ipv6 { import all;").count(), 2, "{c}");
        assert!(c.contains("protocol kernel kernel6 { ipv6 {"), "{c}");
    }
}
