//! The topology drawing of the HTML page: segments as lines, hosts with
//! their containers above them, routers below, a dual-homed host's uplinks
//! as straight lines to its routers, BGP sessions as curves.
//!
//! In: a validated [`Scenario`]. Out: the drawing's data ([`Topology`],
//! with the sessions of [`crate::topology::sessions`], the planner the
//! world configures the daemons from) and its inline SVG. Pure functions;
//! every name goes through [`esc`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::report::markup::escape_markup as esc;
use crate::scenario::{RouterKind, Scenario};
use crate::topology::sessions;
pub use crate::topology::sessions::{Session, SessionKind};

/// A host or router of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Second line of the box: address, AS, role or router kind.
    pub label: String,
    /// The segments it has a link on.
    pub segments: Vec<String>,
    /// (container, network) on this host, in declaration order.
    pub containers: Vec<(String, String)>,
    /// The routers a dual-homed host has a point-to-point uplink to (drawn
    /// as one line each, straight from the host to the router).
    pub uplinks: Vec<String>,
}

/// What the page draws: segments, hosts, routers and the BGP sessions
/// between them, as the world configures them (see [`sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub segments: Vec<String>,
    pub hosts: Vec<Node>,
    pub routers: Vec<Node>,
    pub sessions: Vec<Session>,
}

/// The drawing's data from a (validated) scenario: its hosts with their
/// containers, its routers, and the BGP sessions as the world configures
/// them, from the one planner ([`sessions::sessions`]: a session is drawn
/// when both ends configure it, once).
pub fn topology(s: &Scenario) -> Topology {
    let first_segment = s.segments.first().map(|g| g.name.clone());
    let hosts: Vec<Node> = s
        .hosts
        .iter()
        .map(|h| {
            let mut label = h.address.map(|a| a.addr().to_string()).unwrap_or_default();
            if let Some(a6) = h.address6 {
                write!(label, " {}", a6.addr()).ok();
            }
            write!(label, " AS{}", h.asn).ok();
            if s.bgp.reflectors.contains(&h.name) {
                label.push_str(" RR");
            }
            Node {
                name: h.name.clone(),
                label,
                segments: if h.uplink_links.is_empty() {
                    h.segment
                        .clone()
                        .or(first_segment.clone())
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                },
                uplinks: h.uplink_links.iter().map(|u| u.router.clone()).collect(),
                containers: s
                    .containers
                    .iter()
                    .filter(|c| c.host == h.name)
                    .map(|c| (c.name.clone(), c.network.clone()))
                    .collect(),
            }
        })
        .collect();
    let routers: Vec<Node> = s
        .routers
        .iter()
        .map(|r| Node {
            name: r.name.clone(),
            label: match r.kind {
                RouterKind::Frr => format!("FRR AS{}", r.asn),
                RouterKind::Bird => format!("BIRD AS{}", r.asn),
            },
            segments: r.links.keys().cloned().collect(),
            containers: Vec::new(),
            uplinks: Vec::new(),
        })
        .collect();
    Topology {
        segments: s.segments.iter().map(|g| g.name.clone()).collect(),
        hosts,
        routers,
        sessions: sessions::sessions(s),
    }
}

const PALETTE: [&str; 8] = [
    "#2b8cbe", "#e6550d", "#31a354", "#756bb1", "#d6616b", "#8c6d31", "#17becf", "#636363",
];
const BOX_W: i64 = 150;
const GAP: i64 = 40;
const MAX_SHOWN: usize = 6;

/// The topology as an inline SVG: containers above their host, hosts on
/// top, one line per segment, routers below, BGP sessions as curves.
pub fn topology_svg(t: &Topology) -> String {
    let networks: BTreeSet<&str> = t
        .hosts
        .iter()
        .flat_map(|h| h.containers.iter().map(|(_, n)| n.as_str()))
        .collect();
    let colour = |net: &str| {
        let i = networks.iter().position(|n| *n == net).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let stack = t
        .hosts
        .iter()
        .map(|h| h.containers.len().min(MAX_SHOWN + 1))
        .max()
        .unwrap_or(0) as i64;
    let top = 10 + stack * 22;
    let host_y = top + 10;
    let host_h = 46;
    let seg_y0 = host_y + host_h + 70;
    let seg_y =
        |name: &str| seg_y0 + 18 * t.segments.iter().position(|s| s == name).unwrap_or(0) as i64;
    let seg_end = seg_y0 + 18 * t.segments.len().max(1) as i64;
    let router_y = seg_end + 60;
    let cols = t.hosts.len().max(t.routers.len()).max(1) as i64;
    // Room on the right for the segments' names.
    let width = 100 + cols * (BOX_W + GAP);
    let height = if t.routers.is_empty() {
        seg_end + 10
    } else {
        router_y + 60
    };
    let x_of = |i: usize, n: usize| {
        // Centre each row under the widest one.
        let row = n as i64 * (BOX_W + GAP) - GAP;
        (width - 80 - row) / 2 + i as i64 * (BOX_W + GAP)
    };
    let mut centre: BTreeMap<&str, (i64, i64, bool)> = BTreeMap::new();
    let mut svg = format!(
        "<svg class=\"topo\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"topology\">\n"
    );
    // Segments: a line spanning every node on it.
    let mut span: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let rows = [(&t.hosts, host_y + host_h), (&t.routers, router_y)];
    for (nodes, _) in rows {
        for (i, n) in nodes.iter().enumerate() {
            let cx = x_of(i, nodes.len()) + BOX_W / 2;
            for sname in &n.segments {
                let e = span.entry(sname.as_str()).or_insert((cx, cx));
                e.0 = e.0.min(cx);
                e.1 = e.1.max(cx);
            }
        }
    }
    for (sname, (x0, x1)) in &span {
        let y = seg_y(sname);
        writeln!(
            svg,
            "<line class=\"seg\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"seglabel\" x=\"{}\" y=\"{}\">{}</text>",
            x0 - 30,
            x1 + 30,
            x1 + 34,
            y + 4,
            esc(sname)
        )
        .ok();
    }
    for (row, (nodes, edge_y)) in rows.iter().enumerate() {
        let is_host = row == 0;
        for (i, n) in nodes.iter().enumerate() {
            let x = x_of(i, nodes.len());
            let y = if is_host { host_y } else { router_y };
            let cx = x + BOX_W / 2;
            for sname in &n.segments {
                writeln!(
                    svg,
                    "<line class=\"link\" x1=\"{cx}\" y1=\"{edge_y}\" x2=\"{cx}\" y2=\"{}\"/>",
                    seg_y(sname)
                )
                .ok();
            }
            let class = if is_host { "host" } else { "router" };
            writeln!(
                svg,
                "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{host_h}\" rx=\"6\"/>\
                 <text class=\"name\" x=\"{cx}\" y=\"{}\">{}</text><text class=\"sub\" x=\"{cx}\" y=\"{}\">{}</text>",
                y + 19,
                esc(&n.name),
                y + 36,
                esc(&n.label)
            )
            .ok();
            // Session ends: the bottom of a host, the top of a router.
            centre.insert(
                n.name.as_str(),
                (cx, if is_host { y + host_h } else { y }, is_host),
            );
            let shown = if n.containers.len() > MAX_SHOWN + 1 {
                MAX_SHOWN
            } else {
                n.containers.len()
            };
            for (k, (c, net)) in n.containers.iter().take(shown).enumerate() {
                let cy = y - 22 * (k as i64 + 1);
                writeln!(
                    svg,
                    "<rect class=\"ctr\" x=\"{}\" y=\"{cy}\" width=\"{}\" height=\"18\" rx=\"4\" style=\"fill:{}\"/><text class=\"ctrlabel\" x=\"{cx}\" y=\"{}\">{} · {}</text>",
                    x + 10,
                    BOX_W - 20,
                    colour(net),
                    cy + 13,
                    esc(c),
                    esc(net)
                )
                .ok();
            }
            if shown < n.containers.len() {
                let cy = y - 22 * (shown as i64 + 1);
                writeln!(
                    svg,
                    "<text class=\"more\" x=\"{cx}\" y=\"{}\">+{} more containers</text>",
                    cy + 13,
                    n.containers.len() - shown
                )
                .ok();
            }
        }
    }
    // Uplinks: a straight line from the host's bottom to the router's top.
    for h in &t.hosts {
        for r in &h.uplinks {
            if let (Some(&(x1, y1, _)), Some(&(x2, y2, _))) =
                (centre.get(h.name.as_str()), centre.get(r.as_str()))
            {
                writeln!(
                    svg,
                    "<line class=\"uplink\" x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\"/>"
                )
                .ok();
            }
        }
    }
    // Each node's session ends spread along its edge, ordered by where the
    // other end is, so that lines to one reflector fan out instead of meeting.
    let mut ends: BTreeMap<&str, Vec<(i64, usize)>> = BTreeMap::new();
    for (k, sess) in t.sessions.iter().enumerate() {
        if let (Some(a), Some(b)) = (centre.get(sess.a.as_str()), centre.get(sess.b.as_str())) {
            ends.entry(sess.a.as_str()).or_default().push((b.0, k));
            ends.entry(sess.b.as_str()).or_default().push((a.0, k));
        }
    }
    let end_x = |node: &str, k: usize| {
        let mut list = ends.get(node).cloned().unwrap_or_default();
        list.sort();
        let n = list.len() as i64;
        let i = list.iter().position(|e| e.1 == k).unwrap_or(0) as i64;
        let usable = BOX_W - 30;
        (i + 1) * usable / (n + 1) - usable / 2
    };
    for (k, sess) in t.sessions.iter().enumerate() {
        let (Some(&(x1, y1, h1)), Some(&(x2, y2, h2))) =
            (centre.get(sess.a.as_str()), centre.get(sess.b.as_str()))
        else {
            continue;
        };
        let (x1, x2) = (x1 + end_x(&sess.a, k), x2 + end_x(&sess.b, k));
        // Host to host: a curve dipping towards the segments, deeper for
        // hosts further apart; anything with a router: a gentle bow.
        let (mx, my) = if h1 && h2 {
            let depth = 12 + ((x2 - x1).abs() / (BOX_W + GAP)).min(5) * 10;
            ((x1 + x2) / 2, y1 + depth + (k as i64 % 3) * 4)
        } else if !h1 && !h2 {
            // Router to router: a bow above their row.
            ((x1 + x2) / 2, y1.min(y2) - 28)
        } else {
            ((x1 + x2) / 2 + 20, (y1 + y2) / 2)
        };
        let (class, title) = match sess.kind {
            SessionKind::Ibgp => ("ibgp", "iBGP"),
            SessionKind::Ebgp => ("ebgp", "eBGP"),
            SessionKind::RrClient => ("rr", "iBGP, route-reflector client"),
        };
        let (bfd_class, bfd_title) = if sess.bfd {
            (" bfd", ", with BFD")
        } else {
            ("", "")
        };
        writeln!(
            svg,
            "<path class=\"sess {class}{bfd_class}\" d=\"M{x1},{y1} Q{mx},{my} {x2},{y2}\"><title>{} – {}: {title}{bfd_title}</title></path>",
            esc(&sess.a),
            esc(&sess.b)
        )
        .ok();
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::report::html::fixtures::{scenario, MESH};
    use crate::scenario::BgpMode;

    fn pairs(t: &Topology) -> Vec<(String, String, SessionKind)> {
        t.sessions
            .iter()
            .map(|s| (s.a.clone(), s.b.clone(), s.kind))
            .collect()
    }

    #[test]
    fn a_mesh_has_one_session_per_pair_of_hosts() {
        let t = topology(&scenario(MESH));
        let p = pairs(&t);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().all(|x| x.2 == SessionKind::Ibgp));
        assert_eq!(t.hosts[0].containers, vec![("c1".into(), "blue".into())]);
        assert_eq!(t.segments, vec!["underlay".to_string()]);
    }

    #[test]
    fn reflector_clients_peer_with_each_reflector_only() {
        let src = MESH.replace(
            "description = \"d\"",
            "description = \"d\"\n[bgp]\nmode = \"route-reflector\"\nreflector = \"h1\"",
        );
        let t = topology(&scenario(&src));
        let p = pairs(&t);
        assert_eq!(
            p,
            vec![
                ("h1".into(), "h2".into(), SessionKind::RrClient),
                ("h1".into(), "h3".into(), SessionKind::RrClient)
            ]
        );
    }

    #[test]
    fn no_bgp_draws_no_session() {
        let src = MESH.replace(
            "description = \"d\"",
            "description = \"d\"\n[bgp]\nmode = \"none\"",
        );
        assert!(topology(&scenario(&src)).sessions.is_empty());
    }

    #[test]
    fn routers_and_ebgp_sessions_come_from_both_ends_configuration() {
        let t = topology(
            &Scenario::load(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scenarios/frr-ebgp-racks.toml"
            )))
            .expect("loads"),
        );
        let names: Vec<String> = t.routers.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["tor1", "tor2"]);
        let got: Vec<String> = t
            .sessions
            .iter()
            .map(|s| format!("{}-{} {:?}", s.a, s.b, s.kind))
            .collect();
        assert_eq!(
            got,
            [
                "h1-tor1 Ebgp",
                "h2-tor1 Ebgp",
                "h3-tor2 Ebgp",
                "tor1-tor2 Ebgp"
            ]
        );
    }

    #[test]
    fn a_dual_homed_host_draws_two_lines_to_its_routers_and_two_sessions() {
        let t = topology(&scenario(crate::scenario::fixtures::DUAL_HOMED));
        assert_eq!(t.hosts[0].uplinks, ["tor1a", "tor1b"]);
        assert!(t.hosts[0].segments.is_empty());
        let p: Vec<String> = pairs(&t)
            .iter()
            .map(|x| format!("{}-{}", x.0, x.1))
            .collect();
        assert_eq!(p, ["h1-tor1a", "h1-tor1b"]);
        assert_eq!(topology_svg(&t).matches("class=\"uplink\"").count(), 2);
    }

    #[test]
    fn a_session_only_one_end_configures_is_not_drawn() {
        // h3 peers with h1 only; h1 and h2 mesh (and so name h3 too).
        let src = MESH.replace("name = \"h3\"", "name = \"h3\"\npeers = [\"h1\"]");
        let got: Vec<(String, String, SessionKind)> = pairs(&topology(&scenario(&src)));
        assert_eq!(
            got,
            vec![
                ("h1".into(), "h2".into(), SessionKind::Ibgp),
                ("h1".into(), "h3".into(), SessionKind::Ibgp)
            ]
        );
    }

    #[test]
    fn every_scenario_file_draws_with_sessions_between_known_nodes() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"));
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let s = Scenario::load(&p).unwrap();
            let t = topology(&s);
            let known = |x: &str| t.hosts.iter().chain(&t.routers).any(|n| n.name == x);
            for x in &t.sessions {
                assert!(known(&x.a) && known(&x.b), "{}: {x:?}", p.display());
            }
            if s.bgp.mode != BgpMode::None && s.hosts.len() > 1 {
                assert!(!t.sessions.is_empty(), "{}: no session", p.display());
            }
            assert!(topology_svg(&t).ends_with("</svg>\n"));
            n += 1;
        }
        assert!(n > 10);
    }
}
