//! The underlay's wires: namespaces registered for cleanup, one bridge per
//! segment in the switch namespace, and veth pairs from a node (host or
//! router) into a segment's bridge. Every node of every topology is wired
//! through [`wire`]: a node on two segments (a router, a dual-homed host)
//! is wired once per segment.
//!
//! In: names (run id, segments, interfaces). Out: namespaces and links,
//! each created directly in its namespace (nothing ever appears in the
//! machine's own namespace), each namespace's deletion on the cleanup stack.

use std::time::Duration;

use anyhow::Result;

use crate::cleanup::Cleanup;
use crate::netns::Netns;
use crate::scenario::SegmentDef;
use crate::util::run_cmd;

/// The switch namespace of run `id`, with one bridge (up) per segment.
pub fn switch(cleanup: &Cleanup, id: &str, segments: &[SegmentDef]) -> Result<Netns> {
    let switch = make_ns(cleanup, &format!("{id}-sw"))?;
    let mut lines = Vec::new();
    for seg in segments {
        lines.push(format!("link add {} type bridge", bridge_name(&seg.name)));
        lines.push(format!("link set {} up", bridge_name(&seg.name)));
    }
    switch.ip_batch(&lines)?;
    Ok(switch)
}

/// A veth pair from `ns` (`iface`) to the switch (`port`), the port enslaved to
/// the segment's bridge and up. Both ends are created directly in their
/// namespaces: nothing ever appears in the machine's own namespace.
pub fn wire(ns: &Netns, iface: &str, switch: &Netns, port: &str, segment: &str) -> Result<()> {
    run_cmd(
        "ip",
        &[
            "link",
            "add",
            "name",
            iface,
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &switch.name,
        ],
        Duration::from_secs(20),
    )?;
    switch.ip_batch(&[
        format!("link set {port} master {}", bridge_name(segment)),
        format!("link set {port} up"),
    ])
}

/// The bridge of a segment in the switch namespace.
fn bridge_name(segment: &str) -> String {
    format!("b-{segment}")
}

/// A namespace, its deletion registered on the cleanup stack.
pub fn make_ns(cleanup: &Cleanup, name: &str) -> Result<Netns> {
    let ns = Netns::create(name)?;
    let n = name.to_string();
    cleanup.push(format!("delete namespace {name}"), move || {
        Netns::delete(&n)
    });
    Ok(ns)
}

/// Drops ARP and NDP about any address of the scenario's networks on every
/// bridge of the switch (nftables, bridge family): containers on different
/// hosts cannot meet through L2 adjacency, only through routes. ARP and
/// NDP between the hosts' own (underlay) addresses still pass: BGP and
/// next hops need them.
pub fn isolate_l2(switch: &Netns, networks: &[crate::scenario::NetworkDef]) -> Result<()> {
    use std::collections::BTreeSet;
    let v4: BTreeSet<ipnet::Ipv4Net> = networks
        .iter()
        .flat_map(|n| n.subnets.values().copied())
        .collect();
    let v6: BTreeSet<ipnet::Ipv6Net> = networks
        .iter()
        .flat_map(|n| n.subnets6.values().copied())
        .collect();
    let mut rules = vec![
        "table bridge harness_isolate_l2 {".to_string(),
        "  chain forward {".into(),
        "    type filter hook forward priority 0; policy accept;".into(),
    ];
    for n in &v4 {
        rules.push(format!("    ether type arp arp saddr ip {n} counter drop"));
        rules.push(format!("    ether type arp arp daddr ip {n} counter drop"));
    }
    for n in &v6 {
        rules.push(format!(
            "    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-redirect }} ip6 saddr {n} counter drop"
        ));
        // The target address of a solicitation: its first 64 bits (a
        // subnet of /64 or longer lies inside them).
        if n.prefix_len() >= 64 {
            let top = (u128::from(n.network()) >> 64) as u64;
            rules.push(format!(
                "    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} @th,64,64 {top:#x} counter drop"
            ));
        }
    }
    rules.extend(["  }".into(), "}".into()]);
    let path = std::env::temp_dir().join(format!("{}-isolate.nft", switch.name));
    std::fs::write(&path, rules.join("\n") + "\n")?;
    let nft = crate::util::require("nft")?.display().to_string();
    let p = path.display().to_string();
    let out = switch.exec(&nft, &["-f", &p], Duration::from_secs(20));
    let _ = std::fs::remove_file(&path);
    let out = out?;
    if !out.status.success() {
        anyhow::bail!(
            "nft -f (isolate_l2): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
