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
