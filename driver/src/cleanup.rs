//! `ipvlan-bgp cleanup`: everything the driver made on this host, undone.
//!
//! In: the state directory (read, never trusted for names alone) and the
//! host's kernel, in the network namespace it runs in. Out: the links that
//! carry this instance's mark deleted (the identity its state names, see
//! [`names::Marks`]; an earlier version's identity-less mark only when the
//! state names its record; an 802.1Q parent only when no link sits on it
//! any more; what a running container still holds is in the container's
//! namespace, out of reach: remove containers and networks first), the
//! routes carrying the protocol tag the state recorded deleted, each sysctl
//! the driver changed put back to the value it recorded before the first
//! change (only where it still holds what the driver set), and the state
//! files, the announcer's ledger and the lock removed; a line for each, or
//! with `--dry-run` what would be done and nothing done. It takes the state
//! directory's lock ([`StateLock`]) first: while a driver holds it, a
//! cleanup refuses (naming the driver's pid) and a dry run says so. Nothing
//! that does not carry our mark or tag is touched.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::bgp::ledger::{LEDGER_FILE, LEDGER_JOURNAL};
use crate::bgp::owed_policies::OWED_FILE;
use crate::instance::{LockError, StateLock, LOCK_FILE};
use crate::kernel::real::Kernel;
use crate::kernel::LinkKernel;
use crate::model::names::{self, Marks, Role};
use crate::model::state::State;
use crate::rib::flush::flush;
use crate::store::{Store, JOURNAL_FILE, STATE_FILE};

/// What the driver sets the sysctls it changes to (see
/// [`crate::provision::sysctl`]).
const DRIVER_VALUE: &str = "1";

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The state directory of the driver to remove.
    #[arg(
        long,
        env = "IPVLAN_BGP_STATE_DIR",
        default_value = "/var/lib/ipvlan-bgp"
    )]
    pub state_dir: PathBuf,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The route protocol tag to remove when the state recorded none (a
    /// state written before it was recorded); by default the recorded one.
    #[arg(long)]
    pub route_protocol: Option<u8>,
}

/// What one cleanup did (or, on a dry run, would do), line by line.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub failures: usize,
    pub done: usize,
}

impl Report {
    fn did(&mut self, dry_run: bool, what: String) {
        self.done += 1;
        self.lines.push(if dry_run {
            format!("would remove {what}")
        } else {
            format!("removed {what}")
        });
    }

    fn note(&mut self, what: String) {
        self.lines.push(what);
    }

    fn failed(&mut self, what: String) {
        self.failures += 1;
        self.lines.push(format!("FAILED: {what}"));
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let _ = writeln!(s, "{l}");
        }
        s
    }
}

/// Runs `ipvlan-bgp cleanup` on this host's kernel.
pub fn run(args: &CleanupArgs) -> anyhow::Result<Report> {
    let mut kernel = Kernel::open().context("open netlink")?;
    let mut table = Kernel::open().context("open netlink for routes")?;
    cleanup(args, &mut kernel, &mut table)
}

/// [`run`] on any kernel and route table.
pub fn cleanup<K: LinkKernel, T: crate::rib::table::RouteTable>(
    args: &CleanupArgs,
    kernel: &mut K,
    table: &mut T,
) -> anyhow::Result<Report> {
    let dry = args.dry_run;
    let dir = &args.state_dir;
    let mut r = Report::default();
    // A dry run takes the lock only where one exists: it creates nothing.
    let _lock = if dir.exists() && (!dry || dir.join(LOCK_FILE).exists()) {
        match StateLock::acquire(dir) {
            Ok(l) => Some(l),
            Err(e @ LockError::Held { .. }) if dry => {
                r.note(format!("warning: {e}; a cleanup would refuse now"));
                None
            }
            Err(e @ LockError::Held { .. }) => return Err(anyhow::Error::new(e).context(
                "cleanup refused: a running driver would make again what it removes; stop it first",
            )),
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let state: State = Store::new(dir)
        .load()
        .with_context(|| format!("read the state in {}", dir.display()))?;
    r.note(format!(
        "state {}: {} networks, {} endpoints",
        dir.display(),
        state.networks.len(),
        state.endpoint_count()
    ));
    let joined: Vec<&str> = state
        .networks
        .values()
        .flat_map(|n| n.endpoints.values())
        .filter(|e| e.joined)
        .map(|e| names::short_id(&e.spec.id))
        .collect();
    if !joined.is_empty() {
        r.note(format!(
            "warning: {} endpoints are still joined ({}): their containers keep links the driver made, out of reach here, and lose their routes; remove those containers and networks first",
            joined.len(),
            joined.join(", ")
        ));
    }
    links(kernel, &state, dry, &mut r)?;
    port_rules(kernel, &state, args, &mut r);
    routes(table, &state, args, &mut r);
    sysctls(kernel, &state, dry, &mut r);
    files(dir, dry, &mut r);
    r.note(format!(
        "{}: {} {}, {} failed",
        if dry { "dry run" } else { "done" },
        r.done,
        if dry { "to remove" } else { "removed" },
        r.failures
    ));
    Ok(r)
}

/// Whether a link's alias marks it as this instance's: its identity (the
/// one `state` names), or an earlier version's identity-less mark of a
/// record `state` names. Another instance's links are never ours.
fn owns(state: &State, marks: Option<&Marks>, alias: Option<&str>) -> bool {
    let Some(m) = names::parse(alias) else {
        return false;
    };
    match m.instance {
        Some(i) => marks.is_some_and(|own| own.instance() == i),
        None => match m.role {
            Role::Endpoint => state
                .networks
                .values()
                .any(|n| n.endpoints.contains_key(m.id)),
            Role::Shim => state.networks.get(m.id).is_some_and(|n| n.spec.has_shim()),
            Role::Vlan => state
                .networks
                .values()
                .any(|n| n.spec.parent.vlan.is_some() && n.spec.parent.name == m.id),
            Role::Probe | Role::Port => false,
        },
    }
}

/// Every link of this instance (see [`owns`]); the ones stacked on others
/// first, so an 802.1Q parent goes after the shims on it, and only when no
/// other link (another instance's, the operator's) still sits on it.
fn links<K: LinkKernel>(k: &mut K, state: &State, dry: bool, r: &mut Report) -> anyhow::Result<()> {
    let marks = state.instance.as_deref().and_then(Marks::new);
    let mut ours: Vec<_> = k
        .links()
        .context("list links")?
        .into_iter()
        .filter(|l| owns(state, marks.as_ref(), l.alias.as_deref()))
        .collect();
    let others = k
        .links()
        .context("list links")?
        .into_iter()
        .filter(|l| names::is_marked(l.alias.as_deref()))
        .count()
        .saturating_sub(ours.len());
    if others > 0 {
        r.note(format!(
            "left {others} links marked by another ipvlan-bgp instance (another state directory)"
        ));
    }
    ours.sort_by_key(|l| l.kind.as_deref() == Some("vlan"));
    let removed: std::collections::BTreeSet<String> = ours
        .iter()
        .filter(|l| l.kind.as_deref() != Some("vlan"))
        .map(|l| l.name.clone())
        .collect();
    for l in ours {
        let what = format!(
            "link {} ({})",
            l.name,
            l.alias.as_deref().unwrap_or_default()
        );
        if l.kind.as_deref() == Some("vlan") {
            // In any namespace (a container's link sits on it too). On a dry
            // run our own links are still there: they do not count.
            let users: Vec<String> = k
                .users(l.index)
                .with_context(|| format!("list the links on {}", l.name))?
                .into_iter()
                .filter(|u| !(dry && removed.contains(u)))
                .collect();
            if !users.is_empty() {
                r.note(format!(
                    "left {what}: other links sit on it ({})",
                    users.join(", ")
                ));
                continue;
            }
        }
        if dry {
            r.did(true, what);
            continue;
        }
        match k.delete_link(l.index) {
            Ok(_) => r.did(false, what),
            Err(e) => r.failed(format!("{what}: {e}")),
        }
    }
    Ok(())
}

fn routes<T: crate::rib::table::RouteTable>(
    table: &mut T,
    state: &State,
    args: &CleanupArgs,
    r: &mut Report,
) {
    let Some(protocol) = state.host.route_protocol.or(args.route_protocol) else {
        r.note("no route protocol recorded (BGP was off): no routes to remove; give --route-protocol N for a state from before it was recorded".into());
        return;
    };
    match flush(table, protocol, args.dry_run) {
        Ok(f) => {
            for route in f.routes {
                let via: String = route.gateways().map(|v| format!(" via {v}")).collect();
                r.did(
                    args.dry_run,
                    format!("route {}{via} proto {protocol}", route.dst),
                );
            }
            for (route, e) in f.failed {
                r.failed(format!("route {} proto {protocol}: {e}", route.dst));
            }
        }
        Err(e) => r.failed(format!("list routes of protocol {protocol}: {e}")),
    }
}

/// The egress rules of ipvlan L3 container ports (dual-uplink mode):
/// `oif ipbgp-… lookup T` with our protocol (the recorded one, else
/// `--route-protocol`, else the default). Table T's routes went with the
/// ports' links; the endpoints' routes `dev pb` too.
fn port_rules<K: LinkKernel>(k: &mut K, state: &State, args: &CleanupArgs, r: &mut Report) {
    let protocol = state
        .host
        .route_protocol
        .or(args.route_protocol)
        .unwrap_or(crate::provision::port::DEFAULT_PROTOCOL);
    let rules = match k.rules() {
        Ok(rules) => rules,
        Err(e) => return r.failed(format!("list routing rules: {e}")),
    };
    for rule in rules.iter().filter(|x| {
        x.protocol == protocol && x.oif.as_deref().is_some_and(|o| o.starts_with("ipbgp-"))
    }) {
        let what = format!(
            "rule oif {} lookup {} pref {} proto {protocol}",
            rule.oif.as_deref().unwrap_or_default(),
            rule.table,
            rule.priority
        );
        if args.dry_run {
            r.did(true, what);
            continue;
        }
        match k.del_rule(rule) {
            Ok(()) => r.did(false, what),
            Err(e) => r.failed(format!("{what}: {e}")),
        }
    }
}

/// Each recorded sysctl back to its value before the driver's first
/// change, where it still holds what the driver set.
fn sysctls<K: LinkKernel>(k: &mut K, state: &State, dry: bool, r: &mut Report) {
    for (path, original) in &state.host.sysctls {
        let name = path.replace('/', ".");
        match k.sysctl(path) {
            Ok(Some(now)) if &now == original => {}
            Ok(Some(now)) if now == DRIVER_VALUE => {
                let what = format!("sysctl {name} = {now} (put back to {original})");
                if dry {
                    r.did(true, what);
                } else {
                    match k.set_sysctl(path, original) {
                        Ok(()) => r.did(false, what),
                        Err(e) => r.failed(format!("{what}: {e}")),
                    }
                }
            }
            Ok(Some(now)) => r.note(format!(
                "left sysctl {name} = {now}: not what the driver set ({DRIVER_VALUE}), someone changed it since"
            )),
            Ok(None) => {}
            Err(e) => r.failed(format!("read sysctl {name}: {e}")),
        }
    }
}

/// The state files, the announcer's ledger (kept, it would let a later
/// driver adopt paths as its own) and the owed policies' mark (kept, it
/// would let a later driver configure a gobgpd as its own), and the
/// directory if nothing else is in it.
fn files(dir: &std::path::Path, dry: bool, r: &mut Report) {
    for name in [
        STATE_FILE,
        JOURNAL_FILE,
        LEDGER_FILE,
        LEDGER_JOURNAL,
        OWED_FILE,
        &format!(".{STATE_FILE}.tmp"),
        &format!(".{LEDGER_FILE}.tmp"),
        &format!(".{OWED_FILE}.tmp"),
        // Last: held until the process ends, so no driver starts meanwhile.
        LOCK_FILE,
    ] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let what = format!("state file {}", path.display());
        if dry {
            r.did(true, what);
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => r.did(false, what),
            Err(e) => r.failed(format!("{what}: {e}")),
        }
    }
    if !dry && std::fs::remove_dir(dir).is_ok() {
        r.note(format!(
            "removed the empty state directory {}",
            dir.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Driver;
    use crate::kernel::fake::FakeKernel;
    use crate::kernel::Route;
    use crate::model::network::{Announce, Dataplane, MacvlanMode, NetworkSpec, Parent};
    use crate::rib::fake::FakeTable;
    use crate::rib::table::RouteTable;

    fn spec(id: &str, parent: &str, subnet: &str, gateway: &str) -> NetworkSpec {
        NetworkSpec {
            id: id.repeat(64),
            parent: Parent::parse(parent).unwrap(),
            dataplane: Dataplane::Macvlan {
                mode: MacvlanMode::Bridge,
            },
            subnet: Some(subnet.parse().unwrap()),
            gateway: Some(gateway.parse().unwrap()),
            subnet6: None,
            gateway6: None,
            announce: Announce::Endpoint,
            internal: false,
            host_link: false,
            attrs: Default::default(),
            cluster_ipam: false,
        }
    }

    /// Two instances (two state directories) on one host: A's cleanup
    /// takes none of B's links, and leaves the 802.1Q parent A made while
    /// B's shim sits on it. While A's driver holds its lock, a cleanup
    /// refuses (a dry run says so) and removes nothing.
    #[test]
    fn another_instance_and_a_running_driver_are_left_alone() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let fk = FakeKernel::new();
        fk.add_device("eth1", None, None, None);
        let mut table = FakeTable::default();
        let (mut a, _) = Driver::start(Store::new(dir_a.path()), fk.clone(), None).unwrap();
        a.create_network(spec("a", "eth1.10", "10.2.0.0/24", "10.2.0.1/24"))
            .unwrap();
        let (mut b, _) = Driver::start(Store::new(dir_b.path()), fk.clone(), None).unwrap();
        b.create_network(spec("b", "eth1.10", "10.3.0.0/24", "10.3.0.1/24"))
            .unwrap();
        let b_shim = names::shim(&"b".repeat(64));
        let a_shim = names::shim(&"a".repeat(64));
        drop((a, b));
        let args = |dry_run| CleanupArgs {
            state_dir: dir_a.path().to_path_buf(),
            dry_run,
            route_protocol: Some(73),
        };

        // A's driver still runs: refused, nothing removed.
        let held = StateLock::acquire(dir_a.path()).unwrap();
        let e = cleanup(&args(false), &mut fk.clone(), &mut table).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("cleanup refused")
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(fk.link_named(&a_shim).is_some() && dir_a.path().join(STATE_FILE).exists());
        let dry = cleanup(&args(true), &mut fk.clone(), &mut table).unwrap();
        assert!(
            dry.text().contains("a cleanup would refuse now"),
            "{}",
            dry.text()
        );
        drop(held);

        let done = cleanup(&args(false), &mut fk.clone(), &mut table).unwrap();
        let text = done.text();
        assert_eq!(done.failures, 0, "{text}");
        assert!(fk.link_named(&a_shim).is_none(), "{text}");
        assert!(fk.link_named(&b_shim).is_some(), "B's shim stays: {text}");
        let vlan = fk.link_named("eth1.10").expect("the VLAN B's shim sits on");
        assert!(vlan.alias.is_some_and(|m| m.contains(":vlan:")));
        assert!(text.contains("left link eth1.10"), "{text}");
        assert!(text.contains("left 1 links marked by another"), "{text}");
        assert!(!dir_a.path().exists(), "{text}");
        assert!(dir_b.path().join(STATE_FILE).exists());
    }

    #[test]
    fn removes_what_the_driver_made_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let fk = FakeKernel::new();
        fk.add_device("eth0", None, None, None);
        fk.add_device("eth1", None, None, None);
        // Named like ours, same kind and parent, unmarked: not ours.
        fk.add_device("ibs0123456789ab", Some("macvlan"), Some("eth0"), None);
        let mut table = FakeTable::default();
        let (mut d, _) = Driver::start(Store::new(dir.path()), fk.clone(), None).unwrap();
        d.create_network(spec("a", "eth0", "10.1.1.0/24", "10.1.1.1/24"))
            .unwrap();
        d.create_network(spec("b", "eth1.10", "10.2.0.0/24", "10.2.0.1/24"))
            .unwrap();
        d.flush_earlier_routes(&mut table, Some(73));
        drop(d);
        let route = |dst: &str, protocol| Route {
            dst: dst.parse().unwrap(),
            via: Some("192.0.2.9".parse().unwrap()),
            oif: None,
            protocol,
        };
        table.create_exclusive(&[
            route("10.9.0.2/32", 73).into(),
            route("10.9.0.0/16", 4).into(),
        ]);
        let names = |fk: &FakeKernel| -> Vec<String> {
            let mut v: Vec<String> = fk.all_links().into_iter().map(|l| l.name).collect();
            v.sort();
            v
        };
        let before = names(&fk);
        assert_eq!(before.len(), 7, "{before:?}");
        assert_eq!(fk.sysctl_value("net/ipv4/ip_forward").as_deref(), Some("1"));

        // The announcer's ledger and the owed policies' mark go with the state.
        std::fs::write(dir.path().join(LEDGER_FILE), "{}").unwrap();
        std::fs::write(dir.path().join(OWED_FILE), "{}").unwrap();
        let mut args = CleanupArgs {
            state_dir: dir.path().to_path_buf(),
            dry_run: true,
            route_protocol: None,
        };
        let dry = cleanup(&args, &mut fk.clone(), &mut table).unwrap();
        let text = dry.text();
        assert_eq!(names(&fk), before, "{text}");
        assert_eq!(table.dump().unwrap().len(), 2);
        let files = [STATE_FILE, JOURNAL_FILE, LEDGER_FILE, OWED_FILE]
            .iter()
            .filter(|f| dir.path().join(f).exists())
            .count();
        assert!(files > 0);
        // Two shims and the 802.1Q parent, one route, one sysctl, the state.
        assert_eq!(dry.done, 3 + 1 + 1 + files, "{text}");
        assert!(
            text.contains("would remove route 10.9.0.2/32 via 192.0.2.9 proto 73"),
            "{text}"
        );

        args.dry_run = false;
        let done = cleanup(&args, &mut fk.clone(), &mut table).unwrap();
        let text = done.text();
        assert_eq!(done.failures, 0, "{text}");
        assert_eq!(
            names(&fk),
            ["eth0", "eth1", "ibs0123456789ab", "lo"],
            "{text}"
        );
        let left: Vec<u8> = table
            .dump()
            .unwrap()
            .iter()
            .map(|r| r.route.protocol)
            .collect();
        assert_eq!(left, [4]);
        assert_eq!(fk.sysctl_value("net/ipv4/ip_forward").as_deref(), Some("0"));
        assert!(!dir.path().exists(), "{text}");
        assert!(text.contains("removed link ibs"), "{text}");
        assert!(
            text.contains("sysctl net.ipv4.ip_forward = 1 (put back to 0)"),
            "{text}"
        );
    }
}
