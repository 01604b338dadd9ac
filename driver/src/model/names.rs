//! Names and marks of the links this driver creates in the host namespace.
//!
//! Names fit Linux's 15 characters: `ibe` + 12 hex of the endpoint ID for a
//! container's link, `ibs` + 12 hex of the network ID for a network's shim,
//! `ibp` + hex for the short-lived ipvlan probe. A name proves nothing: real
//! hosts have InfiniBand ports called `ibs1` or `ibp94s0f0`. What proves a
//! link is ours is the mark every link we create carries in `IFLA_IFALIAS`
//! (`ip link` shows it as `alias ...`): `ipvlan-bgp:<instance>:<role>:<id>`,
//! with the identity of the driver instance that made it (a random ID kept in
//! its state, see [`Marks`]), the role, and the ID of the record that owns
//! it. Nothing else sets it, so a driver changes, deletes or sweeps a link
//! only when the mark names it; two instances on one host (two state
//! directories) never take each other's links. Marks of earlier versions
//! carry no instance (`ipvlan-bgp:<role>:<id>`, [`Mark::instance`] `None`):
//! such a link is adopted only by the instance whose state names its record.
//! Docker's IDs are shown (in logs, errors, status) by their first 12
//! characters: [`short_id`].

const ID_CHARS: usize = 12;
/// Every mark starts with this.
pub const MARK_PREFIX: &str = "ipvlan-bgp:";

pub fn endpoint(endpoint_id: &str) -> String {
    format!("ibe{}", short(endpoint_id))
}

pub fn shim(network_id: &str) -> String {
    format!("ibs{}", short(network_id))
}

/// The container port of dual-uplink mode: a veth pair per data plane
/// (its key: `Dataplane::port_key`), `ipbgp-<key>-a` (the containers' parent, "pa") and
/// `ipbgp-<key>-b` (the host's end, "pb"). Never an `ib…` name.
pub fn port(key: &str) -> (String, String) {
    (format!("ipbgp-{key}-a"), format!("ipbgp-{key}-b"))
}

/// What a marked link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A container's link; the ID is the endpoint's.
    Endpoint,
    /// A network's host-side link (L2 shim or L3 host link); the network's ID.
    Shim,
    /// An 802.1Q parent we made; the ID is the VLAN link's name, since
    /// several networks share it.
    Vlan,
    /// The ipvlan probe and its scratch veth; the ID is the driver's pid.
    Probe,
    /// Both ends of a container port (dual-uplink mode); the ID is its key
    /// (`Dataplane::port_key`), since every network of that data plane shares it.
    Port,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Endpoint,
        Role::Shim,
        Role::Vlan,
        Role::Probe,
        Role::Port,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Endpoint => "endpoint",
            Role::Shim => "shim",
            Role::Vlan => "vlan",
            Role::Probe => "probe",
            Role::Port => "port",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The length of an instance identity: hex digits of 64 random bits.
pub const INSTANCE_CHARS: usize = 16;

/// Whether `id` can be an instance identity (what [`Marks::new`] accepts).
pub fn valid_instance(id: &str) -> bool {
    id.len() == INSTANCE_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The marks of one driver instance: every link it makes carries its
/// identity, and it touches only links that do (or, for records of its own
/// state, the identity-less marks of earlier versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    instance: String,
}

impl Marks {
    /// The marks of instance `id` (see [`valid_instance`]).
    pub fn new(id: &str) -> Option<Marks> {
        valid_instance(id).then(|| Marks {
            instance: id.to_string(),
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The mark a link with `role` owned by record `id` carries.
    pub fn mark(&self, role: Role, id: &str) -> String {
        format!("{MARK_PREFIX}{}:{}:{id}", self.instance, role.as_str())
    }

    /// Whether `alias` is a mark this instance made.
    pub fn is_own(&self, alias: Option<&str>) -> bool {
        parse(alias).is_some_and(|m| m.instance == Some(self.instance.as_str()))
    }
}

/// A mark, read back from a link's alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark<'a> {
    /// The instance that made the link; `None` for marks of earlier
    /// versions, which carried none.
    pub instance: Option<&'a str>,
    pub role: Role,
    /// The owning record's ID.
    pub id: &'a str,
}

/// Reads a mark: `ipvlan-bgp:<instance>:<role>:<id>`, or an earlier
/// version's `ipvlan-bgp:<role>:<id>`. Anything else is no mark.
pub fn parse(alias: Option<&str>) -> Option<Mark<'_>> {
    let rest = alias?.strip_prefix(MARK_PREFIX)?;
    let (first, tail) = rest.split_once(':')?;
    let mark = match Role::parse(first) {
        Some(role) => Mark {
            instance: None,
            role,
            id: tail,
        },
        None => {
            let (role, id) = tail.split_once(':')?;
            Mark {
                instance: Some(first).filter(|i| valid_instance(i))?.into(),
                role: Role::parse(role)?,
                id,
            }
        }
    };
    (!mark.id.is_empty()).then_some(mark)
}

/// Whether a link's alias `have` marks the same record as our mark `want`:
/// the same mark, or the identity-less mark of an earlier version for the
/// same role and record (a link this instance made before marks carried
/// identities, or one it adopts because its state names the record).
pub fn same_record(have: Option<&str>, want: &str) -> bool {
    if have == Some(want) {
        return true;
    }
    match (parse(have), parse(Some(want))) {
        (Some(h), Some(w)) => h.instance.is_none() && h.role == w.role && h.id == w.id,
        _ => false,
    }
}

/// The mark of an earlier version (no instance) for `role` and record `id`.
#[cfg(any(test, feature = "test-support"))]
pub fn legacy_mark(role: Role, id: &str) -> String {
    format!("{MARK_PREFIX}{}:{id}", role.as_str())
}

/// Whether a link's alias is one of our marks, of any instance.
pub fn is_marked(alias: Option<&str>) -> bool {
    alias.is_some_and(|a| a.starts_with(MARK_PREFIX))
}

/// Whether a host-namespace link (its name and its alias) is one this driver
/// made. Decided by the mark alone; the name is accepted so callers that list
/// links (the tests' teardown checks) read naturally, but it never counts.
#[cfg(any(test, feature = "test-support"))]
pub fn is_ours(_name: &str, alias: Option<&str>) -> bool {
    is_marked(alias)
}

/// A Docker ID as people see it: its first 12 characters (the whole ID if
/// it is shorter).
pub fn short_id(id: &str) -> &str {
    id.get(..ID_CHARS).unwrap_or(id)
}

/// The ID part of a link name: short and lowercase.
fn short(id: &str) -> String {
    short_id(id).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit() {
        let id = "835c7162a10a5b9a8f6fd356ca22db0cfe70755ab53f9eb5ff33c3b3f75f16ee";
        assert_eq!(endpoint(id), "ibe835c7162a10a");
        assert_eq!(shim(id), "ibs835c7162a10a");
        assert!(endpoint(id).len() <= 15 && shim(id).len() <= 15);
        assert_eq!(port("l3sp"), ("ipbgp-l3sp-a".into(), "ipbgp-l3sp-b".into()));
        assert!(port("l3sp").1.len() <= 15);
    }

    #[test]
    fn only_the_mark_makes_a_link_ours() {
        let m = Marks::new("0123456789abcdef").unwrap();
        assert_eq!(
            m.mark(Role::Shim, "abc"),
            "ipvlan-bgp:0123456789abcdef:shim:abc"
        );
        assert!(is_marked(Some(&m.mark(Role::Vlan, "eth1.10"))));
        // systemd's InfiniBand names look like ours and must never count.
        for name in ["ibs1", "ibp94s0f0", "ibe0123456789ab", "ibp94s0f0.8001"] {
            assert!(!is_ours(name, None), "{name}");
            assert!(!is_ours(name, Some("uplink to rack 3")), "{name}");
        }
        assert!(is_ours("anything", Some("ipvlan-bgp:endpoint:x")));
        assert!(!is_marked(Some("ipvlan-bgp")) && !is_marked(Some("")));
    }

    #[test]
    fn marks_carry_the_instance_and_read_back() {
        let a = Marks::new("0123456789abcdef").unwrap();
        let b = Marks::new("fedcba9876543210").unwrap();
        let mark = a.mark(Role::Vlan, "eth1.10");
        assert_eq!(
            parse(Some(&mark)),
            Some(Mark {
                instance: Some("0123456789abcdef"),
                role: Role::Vlan,
                id: "eth1.10"
            })
        );
        assert!(a.is_own(Some(&mark)) && !b.is_own(Some(&mark)));
        // An earlier version's mark: no instance, nobody's own.
        let old = legacy_mark(Role::Endpoint, "e1");
        assert_eq!(old, "ipvlan-bgp:endpoint:e1");
        let p = parse(Some(&old)).unwrap();
        assert_eq!((p.instance, p.role, p.id), (None, Role::Endpoint, "e1"));
        assert!(!a.is_own(Some(&old)));
        // It marks the same record as our new mark, never another's.
        assert!(same_record(Some(&old), &a.mark(Role::Endpoint, "e1")));
        assert!(!same_record(Some(&old), &a.mark(Role::Shim, "e1")));
        assert!(!same_record(Some(&old), &a.mark(Role::Endpoint, "e2")));
        assert!(!same_record(
            Some(&b.mark(Role::Endpoint, "e1")),
            &a.mark(Role::Endpoint, "e1")
        ));
        for bad in [
            "ipvlan-bgp:",
            "ipvlan-bgp:endpoint:",
            "ipvlan-bgp:nothex!!nothex!!:shim:x",
            "ipvlan-bgp:0123456789abcdef:bridge:x",
            "ipvlan-bgp:0123456789ABCDEF:shim:x",
            "other:shim:x",
        ] {
            assert_eq!(parse(Some(bad)), None, "{bad}");
        }
        assert!(Marks::new("short").is_none() && Marks::new("0123456789ABCDEF").is_none());
    }
}
