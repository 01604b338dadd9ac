//! Which GoBGP lines a scenario runs on, and its BFD settings: a scenario
//! with BGP names its lines (default [`DEFAULT_LINES`]); BFD needs gobgpd
//! 4.x on every host that runs it (3.x has none) and FRR's bfdd on the
//! routers (BIRD's BFD is not wired in the harness); a node's `bfd` list
//! names only its neighbours; the timers stay within what both speakers
//! accept.
//!
//! In: the file's `gobgp`, `[bgp.bfd]` and each node's `bfd`. Out:
//! `s.gobgp`, or the error naming the file and what to change.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::scenario::locate::Here;
use crate::scenario::model::{RawScenario, Scenario};
use crate::scenario::schema::{BfdSide, BgpMode, GobgpLine, RouterKind};

/// The lines a scenario with BGP runs on when its file names none: 4.x, the
/// line with BFD and graceful-restart control. The files that also run on
/// 3.x (Debian's) say `gobgp = ["v4", "v3"]` (the named subset in
/// docs/scenario-files.md).
pub const DEFAULT_LINES: [GobgpLine; 1] = [GobgpLine::V4];

/// Sets `s.gobgp` from the file, and checks BFD against the lines and nodes.
pub(in crate::scenario) fn lines_and_bfd(
    s: &mut Scenario,
    raw: &RawScenario,
    here: Here,
) -> Result<()> {
    let file = here.file;
    let line = |v: &toml::Value| -> Result<GobgpLine> {
        v.as_str()
            .ok_or_else(|| anyhow!("{file}: gobgp: {v} is not a line (\"v3\" or \"v4\")"))?
            .parse::<GobgpLine>()
            .map_err(|e| anyhow!("{file}: gobgp: {e}"))
    };
    let lines = match &raw.gobgp {
        None => DEFAULT_LINES.to_vec(),
        Some(toml::Value::Array(a)) => a.iter().map(line).collect::<Result<Vec<_>>>()?,
        Some(v) => vec![line(v)?],
    };
    if lines.is_empty() {
        return Err(anyhow!(
            "{file}: gobgp must name at least one line (\"v3\" or \"v4\")"
        ));
    }
    for (i, l) in lines.iter().enumerate() {
        if lines[..i].contains(l) {
            return Err(anyhow!("{file}: gobgp names {l} twice"));
        }
    }
    if s.bgp.mode == BgpMode::None {
        if raw.gobgp.is_some() {
            return Err(anyhow!(
                "{file}: gobgp names GoBGP lines, but [bgp] mode = \"none\" runs no gobgpd"
            ));
        }
        s.gobgp = Vec::new();
    } else {
        s.gobgp = lines;
    }
    let Some(bfd) = s.bgp.bfd else {
        if let Some(n) = s
            .hosts
            .iter()
            .filter(|h| h.bfd.is_some())
            .map(|h| &h.name)
            .chain(
                s.routers
                    .iter()
                    .filter(|r| r.bfd.is_some())
                    .map(|r| &r.name),
            )
            .next()
        {
            return Err(anyhow!(
                "{file}: {n} sets bfd, but the scenario has no [bgp.bfd] section (its timers)"
            ));
        }
        return Ok(());
    };
    if bfd.interval.0 < Duration::from_millis(10) || bfd.interval.0 > Duration::from_secs(60) {
        return Err(anyhow!(
            "{file}: [bgp.bfd] interval {:?} is outside 10ms..60s",
            bfd.interval.0
        ));
    }
    if bfd.multiplier == 0 {
        return Err(anyhow!("{file}: [bgp.bfd] multiplier must be at least 1"));
    }
    let names = |side: &Option<BfdSide>| match side {
        Some(BfdSide::Only(v)) => v.clone(),
        _ => Vec::new(),
    };
    for h in &s.hosts {
        for n in names(&h.bfd) {
            let peers = h.peers.clone().unwrap_or_default();
            if !peers.contains(&n) && s.host(&n).is_none() {
                return Err(anyhow!(
                    "{file}: host {}: bfd names {n}, not one of its peers",
                    h.name
                ));
            }
        }
    }
    for r in &s.routers {
        for n in names(&r.bfd) {
            if !r.neighbors.contains(&n) {
                return Err(anyhow!(
                    "{file}: router {}: bfd names {n}, not one of its neighbors",
                    r.name
                ));
            }
        }
        if r.kind == RouterKind::Bird && r.bfd != Some(BfdSide::All(false)) {
            return Err(anyhow!(
                "{file}: router {}: the harness runs BFD with FRR's bfdd only; give this BIRD router bfd = false",
                r.name
            ));
        }
    }
    if s.hosts.iter().any(|h| s.host_runs_bfd(&h.name)) && s.gobgp.contains(&GobgpLine::V3) {
        return Err(anyhow!(
            "{file}: BFD on the hosts' sessions needs gobgpd 4.x (3.x has no BFD): gobgp = \"v4\""
        ));
    }
    Ok(())
}

impl Scenario {
    /// Whether node `a` (a host or router) runs BFD on its session with `b`
    /// (its own side only: a session has BFD when both sides do).
    pub fn bfd_towards(&self, a: &str, b: &str) -> bool {
        let side = match (self.host(a), self.router(a)) {
            (Some(h), _) => h.bfd.as_ref(),
            (None, Some(r)) => r.bfd.as_ref(),
            (None, None) => return false,
        };
        BfdSide::towards(side, self.bgp.bfd.is_some(), b)
    }

    /// Whether host `h` runs BFD on any session at all (so its gobgpd must be 4.x).
    pub fn host_runs_bfd(&self, h: &str) -> bool {
        let Some(def) = self.host(h) else {
            return false;
        };
        self.bgp.bfd.is_some() && def.bfd != Some(BfdSide::All(false))
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, GOOD};
    use crate::scenario::schema::GobgpLine;

    #[test]
    fn lines_default_and_parse() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.gobgp, super::DEFAULT_LINES.to_vec());
        let s = parse(&format!("gobgp = \"v4\"\n{GOOD}")).unwrap();
        assert_eq!(s.gobgp, [GobgpLine::V4]);
        let s = parse(&format!("gobgp = [\"v4\", \"v3\"]\n{GOOD}")).unwrap();
        assert_eq!(s.gobgp, [GobgpLine::V4, GobgpLine::V3]);
        let e = parse(&format!("gobgp = [\"v4\", \"v4\"]\n{GOOD}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let e = parse(&format!("gobgp = \"v5\"\n{GOOD}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gobgp"), "{e}");
        let none = GOOD.replacen("[[hosts]]", "[bgp]\nmode = \"none\"\n\n[[hosts]]", 1);
        assert!(parse(&none).unwrap().gobgp.is_empty());
        let e = parse(&format!("gobgp = \"v4\"\n{none}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs no gobgpd"), "{e}");
    }

    #[test]
    fn bfd_needs_v4_its_section_and_known_neighbours() {
        let bfd = GOOD.replacen(
            "[[hosts]]",
            "[bgp.bfd]\ninterval = \"300ms\"\nmultiplier = 3\n\n[[hosts]]",
            1,
        );
        let e = parse(&format!("gobgp = [\"v4\", \"v3\"]\n{bfd}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs gobgpd 4.x"), "{e}");
        let s = parse(&format!("gobgp = \"v4\"\n{bfd}")).unwrap();
        assert!(s.bfd_towards("h1", "h2") && s.host_runs_bfd("h2"));
        assert_eq!(s.bgp.bfd.unwrap().interval.0.as_millis(), 300);
        // One side off: that host's sessions have none on its side.
        let off = bfd.replace("name = \"h2\"", "name = \"h2\"\nbfd = false");
        let s = parse(&format!("gobgp = \"v4\"\n{off}")).unwrap();
        assert!(s.bfd_towards("h1", "h2") && !s.bfd_towards("h2", "h1"));
        let e = parse(&GOOD.replace("name = \"h2\"", "name = \"h2\"\nbfd = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [bgp.bfd]"), "{e}");
        let e = parse(&format!(
            "gobgp = \"v4\"\n{}",
            bfd.replace("name = \"h2\"", "name = \"h2\"\nbfd = [\"h9\"]")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("h9"), "{e}");
        let e = parse(&format!(
            "gobgp = \"v4\"\n{}",
            bfd.replace("multiplier = 3", "multiplier = 0")
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("multiplier"), "{e}");
    }
}
