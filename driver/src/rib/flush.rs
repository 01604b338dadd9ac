//! Removing every route of one protocol tag: at start when the driver's
//! routes must go (BGP turned off, or the protocol number changed since the
//! state recorded it), and for `ipvlan-bgp cleanup`.
//!
//! In: a [`RouteTable`] and the protocol number the state recorded. Out: the
//! routes that carried it, deleted (or only listed, for a dry run), with
//! the failures. An IPv6 multipath route with the tag is left alone:
//! someone else's next hop may hide under it (see [`super::table`]), and
//! without the installer's record of what it wrote there is no telling
//! which. (IPv4 merges no appends: a tagged IPv4 route is ours whole.)

use super::table::RouteTable;
use crate::kernel::{KernelError, MultiRoute};

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Routes deleted (or, on a dry run, that would be).
    pub routes: Vec<MultiRoute>,
    /// Routes that could not be deleted, with why.
    pub failed: Vec<(MultiRoute, KernelError)>,
}

/// Deletes (unless `dry_run`) every route of the main table tagged
/// `protocol`, but IPv6 multipath ones.
pub fn flush<T: RouteTable>(
    table: &mut T,
    protocol: u8,
    dry_run: bool,
) -> Result<Flushed, KernelError> {
    let tagged: Vec<MultiRoute> = table
        .dump()?
        .into_iter()
        .filter(|r| {
            r.route.protocol == protocol && !(r.is_multipath() && r.route.dst.addr().is_ipv6())
        })
        .map(|r| r.to_multi())
        .collect();
    let mut out = Flushed::default();
    if dry_run {
        out.routes = tagged;
        return Ok(out);
    }
    for (route, result) in tagged.iter().zip(table.delete(&tagged)) {
        match result {
            Ok(()) => out.routes.push(route.clone()),
            Err(e) => out.failed.push((route.clone(), e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rib::fake::FakeTable;

    #[test]
    fn only_the_tag_goes_and_a_dry_run_changes_nothing() {
        let mut t = FakeTable::default();
        let r = |dst: &str, proto: u8| crate::kernel::Route {
            dst: dst.parse().unwrap(),
            via: Some("192.0.2.9".parse().unwrap()),
            oif: None,
            protocol: proto,
        };
        t.create_exclusive(&[
            r("10.1.0.1/32", 73).into(),
            r("10.1.0.2/32", 73).into(),
            r("10.9.0.0/16", 4).into(),
        ]);
        let dry = flush(&mut t, 73, true).unwrap();
        assert_eq!(dry.routes.len(), 2);
        assert_eq!(t.dump().unwrap().len(), 3);
        let done = flush(&mut t, 73, false).unwrap();
        assert_eq!(done.routes.len(), 2);
        assert!(done.failed.is_empty());
        let left: Vec<u8> = t.dump().unwrap().iter().map(|r| r.route.protocol).collect();
        assert_eq!(left, [4]);
    }
}
