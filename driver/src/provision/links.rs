//! The driver's links in the host namespace, and the rules that keep it off
//! everyone else's.
//!
//! In: intents from [`crate::docker`] and [`super::network`] ("this container link exists on that
//! parent", "delete the shim of that network", "sweep what no record owns")
//! and a [`LinkKernel`]. Out: kernel changes, or an error that names the link
//! and says why it was left alone. It owns one rule: a link is ours only if
//! it carries our mark (`IFLA_IFALIAS` = `ipvlan-bgp:<instance>:<role>:<id>`,
//! see [`crate::model::names`]: this instance's identity, or an earlier
//! version's identity-less mark for a record of our own state, which is
//! then re-marked) and, where the caller knows them, the kind and parent we
//! gave it. Another instance's links (another state directory) are never
//! ours, whatever their record. Every link made here is marked before anyone can see it unmarked
//! for long: Linux ignores `IFLA_IFALIAS` in RTM_NEWLINK, so the mark is set
//! with RTM_SETLINK right after creation, and a link that cannot be marked is
//! deleted again. Links are found by name but deleted by index after the
//! mark was checked, never by name alone.

use std::collections::BTreeSet;

use tracing::warn;

use crate::kernel::{KernelError, Link, LinkKernel, LinkKind, NewLink, Result};
use crate::model::names::{self, Marks, Role};

/// Links an operation created, deleted in reverse if it fails before it
/// commits. Each is deleted only if it still carries the mark it got.
#[derive(Default)]
pub struct Undo {
    links: Vec<(String, LinkKind, Option<u32>, String)>,
    /// Addresses added to a link of ours that stays (a container port's
    /// host end): removed before the links go.
    addresses: Vec<(u32, ipnet::IpNet)>,
}

impl Undo {
    pub fn push(&mut self, e: &Expect<'_>) {
        self.links
            .push((e.name.to_string(), e.kind, e.parent, e.mark.to_string()));
    }

    pub fn push_address(&mut self, index: u32, net: ipnet::IpNet) {
        self.addresses.push((index, net));
    }

    pub fn run<K: LinkKernel>(self, kernel: &mut K) {
        for (index, net) in self.addresses.into_iter().rev() {
            if let Err(e) = kernel.del_address(index, net) {
                warn!(address = %net, error = %e, "rollback: could not remove an address");
            }
        }
        for (name, kind, parent, mark) in self.links.into_iter().rev() {
            let want = Expect {
                name: &name,
                kind,
                parent,
                mark: &mark,
            };
            if let Err(e) = delete(kernel, &want) {
                warn!(link = %name, error = %e, "rollback: could not delete link");
            }
        }
    }
}

/// What [`ensure`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub link: Link,
    /// The link did not exist before the call (a failing caller rolls it back).
    pub created: bool,
}

/// What a link of ours looks like: the checks before changing or deleting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect<'a> {
    pub name: &'a str,
    pub kind: LinkKind,
    /// The lower device's index, when the caller knows it.
    pub parent: Option<u32>,
    pub mark: &'a str,
}

fn describe(l: &Link) -> String {
    format!(
        "{} on #{}, alias {}",
        l.kind.as_deref().unwrap_or("device"),
        l.parent.map(|p| p.to_string()).unwrap_or("-".into()),
        l.alias.as_deref().unwrap_or("none")
    )
}

impl Expect<'_> {
    fn matches(&self, l: &Link) -> bool {
        names::same_record(l.alias.as_deref(), self.mark)
            && l.kind.as_deref() == Some(self.kind.name())
            && self.parent.is_none_or(|p| l.parent == Some(p))
    }

    fn not_ours(&self, l: &Link) -> KernelError {
        KernelError::Conflict(format!(
            "a link named {} exists ({}) and is not ours: ipvlan-bgp only touches links that carry its mark {} with kind {}; it leaves this one alone (rename or remove it if it should not be there)",
            self.name,
            describe(l),
            self.mark,
            self.kind.name()
        ))
    }
}

/// Our link `want`, as it is now: `None` when there is none by that name,
/// a conflict when the link of that name is not ours.
pub fn ours<K: LinkKernel>(k: &mut K, want: &Expect<'_>) -> Result<Option<Link>> {
    match k.link(want.name)? {
        Some(l) if want.matches(&l) => Ok(Some(l)),
        Some(l) => Err(want.not_ours(&l)),
        None => Ok(None),
    }
}

/// Makes sure our link exists: an existing link is accepted only when its
/// kind, parent and mark match; anything else under that name is a conflict.
pub fn ensure<K: LinkKernel>(
    k: &mut K,
    want: &Expect<'_>,
    mac: Option<[u8; 6]>,
) -> Result<Ensured> {
    if let Some(mut existing) = k.link(want.name)? {
        return if want.matches(&existing) {
            remark(k, &mut existing, want.mark)?;
            Ok(Ensured {
                link: existing,
                created: false,
            })
        } else {
            Err(want.not_ours(&existing))
        };
    }
    let link = create(
        k,
        &NewLink {
            name: want.name.to_string(),
            kind: want.kind,
            parent: want.parent,
            mac,
            alias: want.mark.to_string(),
            peer: None,
            mtu: None,
        },
    )?;
    Ok(Ensured {
        link,
        created: true,
    })
}

/// Makes sure our veth pair exists: `want` (its `parent` unset) and its
/// peer `peer`, both carrying `want.mark`, each the other's peer. A pair
/// that is partly someone else's, or whose ends are not each other's, is a
/// conflict. A new pair gets `mtu` and `mac` on both ends.
pub fn ensure_pair<K: LinkKernel>(
    k: &mut K,
    want: &Expect<'_>,
    peer: &str,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
) -> Result<(Ensured, Link)> {
    let peer_want = Expect {
        name: peer,
        ..want.clone()
    };
    match (k.link(want.name)?, k.link(peer)?) {
        (Some(a), Some(b)) => {
            for (w, l) in [(want, &a), (&peer_want, &b)] {
                if !w.matches(l) {
                    return Err(w.not_ours(l));
                }
            }
            if a.parent != Some(b.index) || b.parent != Some(a.index) {
                return Err(KernelError::Conflict(format!(
                    "{} and {} carry our mark but are not each other's veth peer; delete them and the driver makes the pair again",
                    want.name, peer
                )));
            }
            Ok((
                Ensured {
                    link: a,
                    created: false,
                },
                b,
            ))
        }
        (Some(l), None) => Err(want.not_ours(&l)),
        (None, Some(l)) => Err(peer_want.not_ours(&l)),
        (None, None) => {
            let a = create(
                k,
                &NewLink {
                    name: want.name.to_string(),
                    kind: LinkKind::Veth,
                    parent: None,
                    mac,
                    alias: want.mark.to_string(),
                    peer: Some(peer.to_string()),
                    mtu,
                },
            )?;
            let b = k.link(peer)?.ok_or_else(|| {
                KernelError::NotFound(format!("veth peer {peer} vanished after creation"))
            })?;
            Ok((
                Ensured {
                    link: a,
                    created: true,
                },
                b,
            ))
        }
    }
}

/// Gives a link of ours that carries an earlier version's mark (no
/// instance) the mark it has now.
fn remark<K: LinkKernel>(k: &mut K, l: &mut Link, mark: &str) -> Result<()> {
    if l.alias.as_deref() != Some(mark) {
        k.set_alias(l.index, mark)?;
        tracing::info!(link = %l.name, mark, "re-marked a link of an earlier version with this instance's identity");
        l.alias = Some(mark.to_string());
    }
    Ok(())
}

/// Creates a link and makes sure it carries its mark; a link that cannot be
/// marked is deleted again (it would be nobody's, forever).
pub fn create<K: LinkKernel>(k: &mut K, new: &NewLink) -> Result<Link> {
    let mut link = k.create_link(new)?;
    let mut made = vec![link.clone()];
    if let Some(peer) = &new.peer {
        match k.link(peer)? {
            Some(p) => made.push(p),
            None => {
                undo_create(k, &made);
                return Err(KernelError::NotFound(format!(
                    "veth peer {peer} vanished after creation"
                )));
            }
        }
    }
    for l in &made {
        if l.alias.as_deref() != Some(new.alias.as_str()) {
            if let Err(e) = k.set_alias(l.index, &new.alias) {
                undo_create(k, &made);
                return Err(KernelError::Conflict(format!(
                    "created {} but could not mark it as ours ({e}); deleted it again",
                    l.name
                )));
            }
        }
    }
    link.alias = Some(new.alias.clone());
    Ok(link)
}

fn undo_create<K: LinkKernel>(k: &mut K, made: &[Link]) {
    for l in made.iter().rev() {
        if let Err(e) = k.delete_link(l.index) {
            tracing::warn!(link = %l.name, error = %e, "could not delete a link we just created");
        }
    }
}

/// Deletes our link `want.name` after checking kind, parent and mark.
/// `Ok(false)`: it was already gone. A link under that name that is not ours
/// is a [`KernelError::Conflict`] and stays.
pub fn delete<K: LinkKernel>(k: &mut K, want: &Expect<'_>) -> Result<bool> {
    match k.link(want.name)? {
        None => Ok(false),
        Some(l) if want.matches(&l) => k.delete_link(l.index),
        Some(l) => Err(want.not_ours(&l)),
    }
}

/// Marks a link made before links were marked, when a state record names it
/// and its kind and parent match; a link with any alias is left as it is.
/// Only for records of a state file older than marks. Says whether it did.
pub fn adopt_unmarked<K: LinkKernel>(k: &mut K, want: &Expect<'_>) -> Result<bool> {
    let Some(l) = k.link(want.name)? else {
        return Ok(false);
    };
    let shape = l.kind.as_deref() == Some(want.kind.name())
        && want.parent.is_some()
        && l.parent == want.parent;
    if !shape || l.alias.is_some() {
        return Ok(false);
    }
    k.set_alias(l.index, want.mark)?;
    Ok(true)
}

/// What a [`sweep`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Orphans of this instance, deleted.
    pub deleted: Vec<String>,
    /// Links of records of ours that carried an earlier version's mark,
    /// re-marked with this instance's identity.
    pub adopted: Vec<String>,
    /// Orphan VLAN parents of ours left in place: other links sit on them.
    pub in_use: Vec<String>,
}

/// Deletes every link of this instance (`marks`) whose mark no record owns
/// (`owned` holds the marks of everything in the state), and re-marks links
/// with an earlier version's mark whose record is owned. Links of another
/// instance, unmarked links and identity-less marks no record of ours names
/// are never touched, whatever their name. An orphan VLAN parent goes only
/// when no link sits on it any more (another network's, another instance's,
/// the operator's). Failures are logged, the sweep goes on.
pub fn sweep<K: LinkKernel>(k: &mut K, marks: &Marks, owned: &BTreeSet<String>) -> Result<Swept> {
    let mut out = Swept::default();
    let mut vlans = Vec::new();
    for l in k.links()? {
        let Some(m) = names::parse(l.alias.as_deref()) else {
            continue;
        };
        let own = marks.mark(m.role, m.id);
        match m.instance {
            // An earlier version's mark: ours only if our state names the record.
            None if owned.contains(&own) => match k.set_alias(l.index, &own) {
                Ok(()) => out.adopted.push(l.name),
                Err(e) => {
                    tracing::warn!(link = %l.name, error = %e, "could not re-mark a link of an earlier version")
                }
            },
            Some(i) if i == marks.instance() && !owned.contains(&own) => {
                if m.role == Role::Vlan {
                    vlans.push(l);
                    continue;
                }
                match k.delete_link(l.index) {
                    Ok(true) => out.deleted.push(l.name),
                    // Went with its parent or its veth peer, deleted just before.
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(link = %l.name, error = %e, "could not delete an orphan link")
                    }
                }
            }
            _ => {}
        }
    }
    if vlans.is_empty() {
        return Ok(out);
    }
    for v in vlans {
        let users = k.users(v.index)?;
        if !users.is_empty() {
            tracing::info!(link = %v.name, users = %users.join(","), "an orphan VLAN parent of ours stays: other links sit on it");
            out.in_use.push(v.name);
            continue;
        }
        match k.delete_link(v.index) {
            Ok(true) => out.deleted.push(v.name),
            Ok(false) => {}
            Err(e) => tracing::warn!(link = %v.name, error = %e, "could not delete an orphan link"),
        }
    }
    Ok(out)
}

/// Whether this kernel can create ipvlan links. The probe link sits on a
/// scratch veth pair made for it, never on a real parent: creating an ipvlan
/// link sets the mode of every ipvlan link on its parent, so a probe there
/// would silently change the networks already on it. All three links carry
/// the probe mark, so a probe cut short by a crash is swept at the next
/// start. `Ok(false)` only when the kernel answers that it lacks the type.
pub fn probe_ipvlan<K: LinkKernel>(k: &mut K, marks: &Marks) -> Result<bool> {
    let pid = std::process::id();
    let mark = marks.mark(Role::Probe, &pid.to_string());
    let base = format!("ibp{:x}", pid & 0xfff_ffff);
    let (scratch, peer, probe) = (format!("{base}a"), format!("{base}b"), format!("{base}c"));
    let veth = Expect {
        name: &scratch,
        kind: LinkKind::Veth,
        parent: None,
        mark: &mark,
    };
    // A leftover of an earlier probe by a process with our pid.
    delete(k, &veth)?;
    let parent = create(
        k,
        &NewLink {
            name: scratch.clone(),
            kind: LinkKind::Veth,
            parent: None,
            mac: None,
            alias: mark.clone(),
            peer: Some(peer),
            mtu: None,
        },
    )?
    .index;
    let want = Expect {
        name: &probe,
        kind: LinkKind::Ipvlan {
            mode: crate::model::network::IpvlanMode::L3,
            flag: crate::model::network::IpvlanFlag::Bridge,
        },
        parent: Some(parent),
        mark: &mark,
    };
    let result = match ensure(k, &want, None) {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    };
    // Deleting the veth takes its peer and the probe link with it.
    k.delete_link(parent)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{FakeKernel, Op};
    use crate::model::network::MacvlanMode;

    const MACVLAN: LinkKind = LinkKind::Macvlan {
        mode: MacvlanMode::Bridge,
    };

    fn expect<'a>(name: &'a str, parent: u32, mark: &'a str) -> Expect<'a> {
        Expect {
            name,
            kind: MACVLAN,
            parent: Some(parent),
            mark,
        }
    }

    #[test]
    fn created_links_carry_the_mark_either_way() {
        for keep in [false, true] {
            let fk = FakeKernel::new();
            fk.keep_alias_on_create(keep);
            let eth = fk.add_device("eth0", None, None, None);
            let mut k = fk.clone();
            let e = ensure(&mut k, &expect("ibe1", eth, "ipvlan-bgp:endpoint:1"), None).unwrap();
            assert!(e.created);
            assert_eq!(
                fk.link_named("ibe1").unwrap().alias.as_deref(),
                Some("ipvlan-bgp:endpoint:1")
            );
            // Again: accepted as is.
            let e = ensure(&mut k, &expect("ibe1", eth, "ipvlan-bgp:endpoint:1"), None).unwrap();
            assert!(!e.created);
        }
    }

    #[test]
    fn a_link_that_cannot_be_marked_is_deleted_again() {
        let fk = FakeKernel::new();
        let eth = fk.add_device("eth0", None, None, None);
        fk.fail_next(Op::SetAlias, libc::EPERM);
        let mut k = fk.clone();
        let e = ensure(&mut k, &expect("ibe1", eth, "ipvlan-bgp:endpoint:1"), None).unwrap_err();
        assert!(e.to_string().contains("could not mark"), "{e}");
        assert!(fk.link_named("ibe1").is_none());
    }

    #[test]
    fn our_name_without_our_mark_is_refused_and_kept() {
        let fk = FakeKernel::new();
        let eth = fk.add_device("eth0", None, None, None);
        let mut k = fk.clone();
        // Same name, same kind, same parent: still not ours without the mark.
        fk.add_device("ibs1", Some("macvlan"), Some("eth0"), None);
        let want = expect("ibs1", eth, "ipvlan-bgp:shim:1");
        let e = ensure(&mut k, &want, None).unwrap_err().to_string();
        assert!(e.contains("ibs1") && e.contains("not ours"), "{e}");
        assert!(delete(&mut k, &want).is_err());
        // Marked but another kind or parent: not ours either.
        fk.add_device(
            "ibs2",
            Some("vlan"),
            Some("eth0"),
            Some("ipvlan-bgp:shim:2"),
        );
        let e = ensure(&mut k, &expect("ibs2", eth, "ipvlan-bgp:shim:2"), None);
        assert!(e.is_err());
        let other = fk.add_device("eth1", None, None, None);
        fk.add_device(
            "ibs3",
            Some("macvlan"),
            Some("eth0"),
            Some("ipvlan-bgp:shim:3"),
        );
        assert!(delete(&mut k, &expect("ibs3", other, "ipvlan-bgp:shim:3")).is_err());
        for n in ["ibs1", "ibs2", "ibs3"] {
            assert!(fk.link_named(n).is_some(), "{n}");
        }
        assert!(delete(&mut k, &expect("ibs3", eth, "ipvlan-bgp:shim:3")).unwrap());
        assert!(!delete(&mut k, &expect("ibs3", eth, "ipvlan-bgp:shim:3")).unwrap());
    }

    const ME: &str = "0123456789abcdef";
    const OTHER: &str = "fedcba9876543210";

    fn me() -> Marks {
        Marks::new(ME).unwrap()
    }

    #[test]
    fn sweep_takes_only_our_own_marked_orphans() {
        let fk = FakeKernel::new();
        fk.add_device("eth0", None, None, None);
        for n in ["ibs1", "ibp94s0f0", "ibe0123456789ab"] {
            fk.add_device(n, Some("macvlan"), Some("eth0"), None);
        }
        let m = me();
        let other = Marks::new(OTHER).unwrap();
        fk.add_device(
            "ibefff",
            Some("macvlan"),
            Some("eth0"),
            Some(&m.mark(Role::Endpoint, "f")),
        );
        fk.add_device(
            "ibeeee",
            Some("macvlan"),
            Some("eth0"),
            Some(&m.mark(Role::Endpoint, "e")),
        );
        // Another instance's orphan (by our state) and an earlier
        // version's mark for a record we do not hold: not ours.
        fk.add_device(
            "ibeddd",
            Some("macvlan"),
            Some("eth0"),
            Some(&other.mark(Role::Endpoint, "d")),
        );
        fk.add_device(
            "ibeccc",
            Some("macvlan"),
            Some("eth0"),
            Some(&names::legacy_mark(Role::Endpoint, "c")),
        );
        // An earlier version's mark for a record we hold: adopted, re-marked.
        fk.add_device(
            "ibebbb",
            Some("macvlan"),
            Some("eth0"),
            Some(&names::legacy_mark(Role::Endpoint, "b")),
        );
        fk.add_device("mine", Some("veth"), None, Some("someone else's alias"));
        let owned = [m.mark(Role::Endpoint, "e"), m.mark(Role::Endpoint, "b")].into();
        let swept = sweep(&mut fk.clone(), &m, &owned).unwrap();
        assert_eq!(swept.deleted, vec!["ibefff".to_string()]);
        assert_eq!(swept.adopted, vec!["ibebbb".to_string()]);
        assert_eq!(
            fk.link_named("ibebbb").unwrap().alias,
            Some(m.mark(Role::Endpoint, "b"))
        );
        for n in [
            "ibs1",
            "ibp94s0f0",
            "ibe0123456789ab",
            "ibeeee",
            "ibeddd",
            "ibeccc",
            "mine",
            "eth0",
        ] {
            assert!(fk.link_named(n).is_some(), "{n}");
        }
        assert_eq!(
            fk.link_named("ibeccc").unwrap().alias,
            Some(names::legacy_mark(Role::Endpoint, "c"))
        );
    }

    #[test]
    fn an_orphan_vlan_stays_while_links_sit_on_it() {
        let fk = FakeKernel::new();
        fk.add_device("eth1", None, None, None);
        let m = me();
        let other = Marks::new(OTHER).unwrap();
        fk.add_device(
            "eth1.10",
            Some("vlan"),
            Some("eth1"),
            Some(&m.mark(Role::Vlan, "eth1.10")),
        );
        fk.add_device(
            "ibs9",
            Some("macvlan"),
            Some("eth1.10"),
            Some(&other.mark(Role::Shim, "n9")),
        );
        fk.add_device(
            "eth1.20",
            Some("vlan"),
            Some("eth1"),
            Some(&m.mark(Role::Vlan, "eth1.20")),
        );
        // Our own orphan on eth1.20 goes first, then the VLAN with it.
        fk.add_device(
            "ibs8",
            Some("macvlan"),
            Some("eth1.20"),
            Some(&m.mark(Role::Shim, "n8")),
        );
        let swept = sweep(&mut fk.clone(), &m, &BTreeSet::new()).unwrap();
        assert_eq!(swept.in_use, vec!["eth1.10".to_string()]);
        assert_eq!(
            swept.deleted,
            vec!["ibs8".to_string(), "eth1.20".to_string()]
        );
        assert!(fk.link_named("eth1.10").is_some() && fk.link_named("ibs9").is_some());
    }

    #[test]
    fn the_probe_leaves_nothing_and_marks_what_it_makes() {
        let m = me();
        let fk = FakeKernel::new();
        assert!(probe_ipvlan(&mut fk.clone(), &m).unwrap());
        assert_eq!(fk.created().len(), 3);
        assert_eq!(fk.all_links().len(), 1);
        fk.without("ipvlan");
        assert!(!probe_ipvlan(&mut fk.clone(), &m).unwrap());
        assert_eq!(fk.all_links().len(), 1);
        // A probe cut short leaves only marked links, which a sweep takes.
        let fk = FakeKernel::new();
        fk.fail_next(Op::Delete, libc::EBUSY);
        assert!(probe_ipvlan(&mut fk.clone(), &m).is_err());
        let left: Vec<Link> = fk
            .all_links()
            .into_iter()
            .filter(|l| l.name != "lo")
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(
            left.iter().all(|l| m.is_own(l.alias.as_deref())),
            "{left:?}"
        );
        sweep(&mut fk.clone(), &m, &BTreeSet::new()).unwrap();
        assert_eq!(fk.all_links().len(), 1);
    }

    #[test]
    fn an_earlier_marked_link_of_ours_is_accepted_and_re_marked() {
        let fk = FakeKernel::new();
        let eth = fk.add_device("eth0", None, None, None);
        fk.add_device(
            "ibe1",
            Some("macvlan"),
            Some("eth0"),
            Some(&names::legacy_mark(Role::Endpoint, "1")),
        );
        let mark = me().mark(Role::Endpoint, "1");
        let e = ensure(&mut fk.clone(), &expect("ibe1", eth, &mark), None).unwrap();
        assert!(!e.created);
        assert_eq!(fk.link_named("ibe1").unwrap().alias, Some(mark.clone()));
        // Another instance's link for the same record is not ours.
        let theirs = Marks::new(OTHER).unwrap().mark(Role::Endpoint, "2");
        fk.add_device("ibe2", Some("macvlan"), Some("eth0"), Some(&theirs));
        let want = me().mark(Role::Endpoint, "2");
        assert!(ensure(&mut fk.clone(), &expect("ibe2", eth, &want), None).is_err());
        assert!(delete(&mut fk.clone(), &expect("ibe2", eth, &want)).is_err());
        assert_eq!(fk.link_named("ibe2").unwrap().alias, Some(theirs));
    }
}
