//! Names to things in the running world: a container or host as a probe
//! member (its namespace and address of a family), pairs of them, an
//! address or prefix a step names (an IP, a host, a router, a running or
//! killed container), `{{c1}}` in a command; and one probe round's answers
//! kept for the report's grid.
//!
//! In: names from a step. Out: [`Member`]s, addresses, prefixes, or the
//! error naming what is not running or unknown.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;

use super::{Runner, PROBE_TIMEOUT};
use crate::probe::{ping_pairs, tcp_pairs, Member};
use crate::report::ReachCell;
use crate::scenario::{Family, Probe};

impl Runner<'_> {
    /// A container or host as a probe sees it, by its address of `family`
    /// (default: IPv4 where it has one, else IPv6).
    pub(super) fn member(&self, name: &str, family: Option<Family>) -> Result<Member> {
        // A killed container can still be a target (its address), not a source.
        if let Some(c) = self
            .running
            .get(name)
            .or_else(|| self.killed.iter().find(|c| c.name == name))
        {
            return Ok(Member {
                label: name.into(),
                netns: c.netns.clone(),
                addr: match family {
                    Some(f) => c.addr_of(f)?,
                    None => c.any_addr(),
                },
            });
        }
        if let Ok(h) = self.w.host(name) {
            return Ok(Member {
                label: name.into(),
                netns: h.ns.path(),
                addr: h.addr_of(family.unwrap_or_default())?,
            });
        }
        bail!("{name} is not running (start it first)")
    }

    /// Every (from, to) pair of distinct members, by their addresses of `family`.
    pub(super) fn pairs_of(
        &self,
        from: &[String],
        to: &[String],
        family: Option<Family>,
    ) -> Result<Vec<(Member, Member)>> {
        let from = self.s.expand(from);
        let to = self.s.expand(to);
        let mut out = Vec::new();
        for f in &from {
            for t in &to {
                if f != t {
                    out.push((self.member(f, family)?, self.member(t, family)?));
                }
            }
        }
        Ok(out)
    }

    /// Keeps a reachability step's latest probe round (`ok[i]` for
    /// `pairs[i]`) for the step's report: its grid in the HTML page.
    pub(super) fn record_reach(&mut self, pairs: &[(Member, Member)], ok: &[bool]) {
        self.reach = pairs
            .iter()
            .zip(ok)
            .map(|((a, b), ok)| ReachCell {
                from: a.label.clone(),
                to: b.label.clone(),
                ok: *ok,
            })
            .collect();
    }

    pub(super) fn probe(
        &mut self,
        pairs: &[(Member, Member)],
        kind: Probe,
    ) -> std::result::Result<Vec<bool>, String> {
        match kind {
            Probe::Icmp => ping_pairs(pairs, PROBE_TIMEOUT),
            Probe::Tcp => tcp_pairs(&mut self.tcp, pairs, PROBE_TIMEOUT),
        }
        .map_err(|e| format!("the probe itself failed: {e:#}"))
    }

    /// `{{c1}}` in a command argument becomes c1's address (IPv4 where it
    /// has one, else IPv6).
    pub(super) fn substitute(&self, arg: &str) -> Result<String> {
        let mut out = arg.to_string();
        for name in crate::scenario::placeholders(arg).map_err(|e| anyhow!(e))? {
            let c = self
                .running
                .get(&name)
                .or_else(|| self.killed.iter().find(|c| c.name == name))
                .ok_or_else(|| anyhow!("{name} is not running (its address is unknown)"))?;
            out = out.replace(&format!("{{{{{name}}}}}"), &c.any_addr().to_string());
        }
        Ok(out)
    }

    /// An address written as an IP, a host name (its underlay address; a
    /// dual-homed host: its address on its uplink to `seen_from`) or a
    /// router name (its address on a segment shared with `seen_from`).
    pub(super) fn resolve_addr(&self, seen_from: &str, v: &str) -> Result<IpAddr> {
        self.resolve_addr_of(seen_from, v, Family::Ipv4)
    }

    /// As [`Runner::resolve_addr`], a name giving its address of `family`.
    pub(super) fn resolve_addr_of(
        &self,
        seen_from: &str,
        v: &str,
        family: Family,
    ) -> Result<IpAddr> {
        if let Ok(a) = v.parse() {
            return Ok(a);
        }
        if let Ok(h) = self.w.host(v) {
            // A dual-homed host: its address on the uplink to `seen_from`.
            if !h.def.uplink_links.is_empty() {
                if let Some(a) = self.s.shared_address_of(seen_from, v, family) {
                    return Ok(a.addr());
                }
            }
            return h.addr_of(family);
        }
        self.s
            .router(v)
            .ok_or_else(|| anyhow!("{v} is neither an address, a host nor a router"))?;
        self.s
            .shared_address_of(seen_from, v, family)
            .or_else(|| self.s.links_of_family(v, family).first().map(|(_, a)| *a))
            .map(|a| a.addr())
            .ok_or_else(|| anyhow!("router {v} has no {family:?} address"))
    }

    /// A CIDR, or a running (or killed) container's /32 (or, when it has
    /// no IPv4 address or `family` says so, its /128).
    pub(super) fn prefix_of(&self, p: &str) -> Result<IpNet> {
        self.prefix_of_family(p, None)
    }

    pub(super) fn prefix_of_family(&self, p: &str, family: Option<Family>) -> Result<IpNet> {
        if let Some(name) = p.strip_prefix("block-of:") {
            let c = self
                .running
                .get(name)
                .ok_or_else(|| anyhow!("{name} is not running"))?;
            let a = match family {
                Some(f) => c.addr_of(f)?,
                None => c.any_addr(),
            };
            let held = self.held_blocks()?;
            let host = &self.w.hosts[c.host].def.name;
            return held
                .get(&c.host)
                .and_then(|bs| bs.iter().find(|b| b.contains(&a)))
                .copied()
                .ok_or_else(|| anyhow!("{host} holds no block with {name}'s address {a}"));
        }
        match p.parse::<IpNet>() {
            Ok(n) => Ok(n),
            Err(_) => {
                let c = self
                    .running
                    .get(p)
                    .or_else(|| self.killed.iter().find(|c| c.name == p))
                    .ok_or_else(|| anyhow!("{p} is not running"))?;
                let a = match family {
                    Some(f) => c.addr_of(f)?,
                    None => c.any_addr(),
                };
                Ok(IpNet::from(a))
            }
        }
    }
}
