//! What a failed scenario prints: for every host its links, addresses,
//! routes, gobgpd's neighbours and RIB (unless flooded), the driver's
//! status and the tails of their logs; each router's view; each
//! container's addresses and routes. And how to enter the hosts (`--keep`).
//!
//! In: the [`World`] and the running containers' namespaces. Out: text,
//! one `===== ... =====` section per host, router and container (the HTML
//! page splits it there). Owns nothing; reads only, every command with a
//! timeout.

use std::path::PathBuf;
use std::time::Duration;

use super::world::World;
use crate::util::tail;

impl World {
    /// A shell-ish dump of everything on every host, for failed scenarios.
    pub fn diagnostics(&self, containers: &[(String, PathBuf)]) -> String {
        let mut out = String::new();
        let short = Duration::from_secs(5);
        for h in &self.hosts {
            out.push_str(&format!(
                "\n===== host {} ({}, namespace {}) =====\n",
                h.def.name, h.addr, h.ns.name
            ));
            for args in [
                &["-d", "-br", "link"][..],
                &["-br", "addr"][..],
                &["route", "show", "table", "main"][..],
                &["-6", "route", "show", "table", "main"][..],
            ] {
                out.push_str(&format!("$ ip {}\n", args.join(" ")));
                match h.ns.ip(args) {
                    Ok(s) => out.push_str(&s),
                    Err(e) => out.push_str(&format!("({e:#})\n")),
                }
            }
            if h.gobgpd.pid().is_some() || h.gobgp_api().exists() {
                let mut small_rib = false;
                for args in [
                    &["neighbor"][..],
                    &["global", "rib", "summary"][..],
                    &["global", "rib"][..],
                    &["global", "rib", "-a", "ipv6"][..],
                ] {
                    // A flooded RIB is too long to print (and slow to list).
                    let full_rib = args.starts_with(&["global", "rib"]) && args[2..] != ["summary"];
                    if full_rib && !small_rib {
                        continue;
                    }
                    let cli = self.gobgp_line().cli();
                    out.push_str(&format!("$ {cli} {}\n", args.join(" ")));
                    let target = h.gobgp_target();
                    let mut full: Vec<&str> = target.iter().map(String::as_str).collect();
                    full.extend_from_slice(args);
                    match h.ns.exec(cli, &full, short) {
                        Ok(o) => {
                            let text = String::from_utf8_lossy(&o.stdout);
                            if args == ["global", "rib", "summary"] {
                                small_rib = rib_destinations(&text).is_some_and(|n| n <= 200);
                            }
                            out.push_str(&text);
                            out.push_str(&String::from_utf8_lossy(&o.stderr));
                        }
                        Err(e) => out.push_str(&format!("({e:#})\n")),
                    }
                }
                out.push_str(&format!(
                    "--- gobgpd log (tail) {} ---\n{}\n",
                    h.gobgpd.log.display(),
                    tail(&h.gobgpd.log, 25)
                ));
            }
            if h.runs_driver() {
                if let Ok(st) = self.driver_status(h.index) {
                    out.push_str(&format!(
                        "$ ipvlan-bgp status\n{}",
                        ipvlan_bgp::api::status::render_text(&st)
                    ));
                }
                out.push_str(&format!(
                    "--- driver log (tail) {} ---\n{}\n",
                    h.driver.log.display(),
                    tail(&h.driver.log, 40)
                ));
            }
        }
        for r in &self.routers {
            out.push_str(&r.diagnostics());
        }
        for (name, path) in containers.iter().take(12) {
            out.push_str(&format!(
                "\n===== container {name} ({}) =====\n",
                path.display()
            ));
            let net = format!("--net={}", path.display());
            for args in [
                ["-br", "addr", ""],
                ["route", "show", ""],
                ["-6", "route", "show"],
            ] {
                let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
                let mut full = vec![net.as_str(), "ip"];
                full.extend(args);
                match crate::util::run_output("nsenter", &full, short) {
                    Ok(o) => out.push_str(&String::from_utf8_lossy(&o.stdout)),
                    Err(e) => out.push_str(&format!("({e:#})\n")),
                }
            }
        }
        if let Some(e) = &self.etcd {
            out.push_str(&e.diagnostics());
        }
        out
    }

    /// How to enter each host, for `--keep`.
    pub fn enter_hints(&self) -> String {
        let mut s = String::new();
        for h in &self.hosts {
            s.push_str(&format!(
                "  {}: ip netns exec {} bash\n",
                h.def.name, h.ns.name
            ));
        }
        s.push_str(&format!(
            "  switch: ip netns exec {} bash\n  logs: {}\n",
            self.switch.name,
            self.dir.display()
        ));
        s
    }
}

/// The destination count in `gobgp global rib summary` ("Destination: N, Path: M").
pub(super) fn rib_destinations(summary: &str) -> Option<usize> {
    let rest = &summary[summary.find("Destination:")? + "Destination:".len()..];
    rest.split(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rib_summary_is_read() {
        let s = "Table ipv4-unicast\nDestination: 20001, Path: 20001\n";
        assert_eq!(super::rib_destinations(s), Some(20001));
        assert_eq!(super::rib_destinations("nothing"), None);
    }
}
