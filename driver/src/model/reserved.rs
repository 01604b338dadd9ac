//! Address ranges that are never container networks nor learned routes.
//!
//! In: a subnet or prefix. Out: the reserved range it overlaps, with what that
//! range is ([`reserved_overlap`]), or just whether it overlaps one
//! ([`is_reserved`]). One table serves both sides: a network's subnet is
//! refused against it at CreateNetwork, and the import policy refuses a
//! learned prefix against it, even inside an `--accept-pool` that covers it.

use ipnet::IpNet;

/// Ranges that are never container networks, with what they are.
pub const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved for future use, and broadcast"),
];

/// IPv6 ranges that are never container networks, with what they are.
/// A subnet wider than one of them (`::/0`, `::/1`...) overlaps it too.
pub const RESERVED6: &[(&str, &str)] = &[
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped addresses"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// The reserved range `subnet` overlaps, if any (in its own family).
pub fn reserved_overlap(subnet: IpNet) -> Option<(IpNet, &'static str)> {
    let table = match subnet {
        IpNet::V4(_) => RESERVED,
        IpNet::V6(_) => RESERVED6,
    };
    table.iter().find_map(|(r, what)| {
        let r: IpNet = r.parse().ok()?;
        (r.contains(&subnet.network()) || subnet.contains(&r.network())).then_some((r, *what))
    })
}

/// Whether `prefix` overlaps a reserved range ([`RESERVED`], [`RESERVED6`]).
pub fn is_reserved(prefix: &IpNet) -> bool {
    reserved_overlap(*prefix).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ranges_are_named() {
        for (net, what) in [
            ("0.0.0.0/8", "this network"),
            ("0.1.0.0/16", "this network"),
            ("127.0.0.0/24", "loopback"),
            ("169.254.1.0/24", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("239.255.0.0/16", "multicast"),
            ("240.0.0.0/8", "future"),
            ("255.255.255.0/24", "future"),
            // Wider than a reserved range: overlaps it too.
            ("0.0.0.0/1", "this network"),
            ("192.0.0.0/2", "multicast"),
        ] {
            let got = reserved_overlap(net.parse().unwrap());
            assert!(got.is_some_and(|(_, w)| w.contains(what)), "{net}: {got:?}");
        }
        for (net, what) in [
            ("::/0", "unspecified"),
            ("::/96", "unspecified"),
            ("::1/128", "loopback"),
            ("::ffff:10.0.0.0/120", "IPv4-mapped"),
            ("fe80::/64", "link-local"),
            ("febf:1::/32", "link-local"),
            ("ff02::/16", "multicast"),
            ("f000::/4", "link-local"),
        ] {
            let got = reserved_overlap(net.parse().unwrap());
            assert!(got.is_some_and(|(_, w)| w.contains(what)), "{net}: {got:?}");
        }
        for net in [
            "10.0.0.0/8",
            "192.0.2.0/24",
            "169.255.0.0/16",
            "223.255.255.0/24",
            "1.0.0.0/8",
            "fd00:1::/64",
            "2001:db8::/32",
            "fec0::/10",
            "::2/127",
        ] {
            assert_eq!(reserved_overlap(net.parse().unwrap()), None, "{net}");
        }
    }
}
