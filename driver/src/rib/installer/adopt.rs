//! Start-up adoption: the main table read once, before the first write.
//!
//! In: the route table and our protocol tag. Out: an [`Installer`] whose
//! wanted and written routes are the tagged routes a previous run left
//! (returned too, so the learner adopts them instead of flapping them),
//! with the other owners' destinations and default gateways already known.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;

use super::ownership::{default_gateway, in_scope};
use super::{Installer, FAST_RETRY, FULL_RECONCILE, RETRY};
use crate::kernel::{KernelError, MultiRoute};
use crate::metrics::{DumpReason, Metrics};
use crate::rib::table::RouteTable;

impl<T: RouteTable> Installer<T> {
    /// An installer over `table` (no thread), for routes inside `scope`
    /// (see [`Installer::set_scope`]). The tagged routes found are taken as
    /// wanted until the learner says otherwise.
    pub fn new(
        mut table: T,
        protocol: u8,
        scope: Vec<IpNet>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<(Installer<T>, Vec<MultiRoute>), KernelError> {
        let mut existing = Vec::new();
        let mut foreign = HashSet::new();
        let mut gateways = BTreeSet::new();
        metrics.route_watch(|w| w.dump(DumpReason::Start));
        for r in table.dump()? {
            if r.tagged_by(protocol) {
                // A previous run's route, multipath ones included (what it
                // wrote is not recorded: a next hop another owner appended
                // while the driver was stopped is taken for ours).
                existing.push(r.to_multi());
            } else {
                if in_scope(&scope, &r.route.dst) {
                    foreign.insert(r.route.dst);
                }
                gateways.extend(default_gateway(&r.route));
            }
        }
        let wanted: HashMap<IpNet, MultiRoute> =
            existing.iter().map(|r| (r.dst, r.clone())).collect();
        let ours: super::installed::Installed = existing.iter().cloned().collect();
        let mut oifs: HashMap<Option<u32>, usize> = HashMap::new();
        for r in wanted.values() {
            for h in &r.hops {
                *oifs.entry(h.oif).or_default() += 1;
            }
        }
        let inst = Installer {
            table,
            protocol,
            oifs,
            wanted,
            ours,
            foreign,
            scope,
            gateways,
            conflicts: HashSet::new(),
            failed: HashSet::new(),
            reconcile_at: None,
            reconcile_why: DumpReason::Periodic,
            retry_at: None,
            fast_until: None,
            fast_step: FAST_RETRY,
            slow_step: RETRY,
            owners_grace_until: None,
            last_reconcile: now,
            full_every: FULL_RECONCILE,
            metrics,
        };
        inst.publish();
        Ok((inst, existing))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    /// A previous run's multipath route is read at start as ours (what the
    /// learner adopts), not as another owner's.
    #[test]
    fn a_previous_runs_multipath_route_is_adopted_at_start() {
        let p = "10.1.2.3/32";
        let mut fake = FakeTable::default();
        let r = multi(p, &["192.0.2.2", "192.0.2.3"]);
        let _ = fake.create_exclusive(std::slice::from_ref(&r));
        let (_, existing) = Installer::new(
            fake,
            PROTO,
            everywhere(),
            Arc::new(Metrics::default()),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(existing, vec![r]);
    }
}
