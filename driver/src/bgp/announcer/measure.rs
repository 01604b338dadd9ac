//! What one endpoint's change costs the BGP side before gobgpd is called,
//! on a host of 1,000 dual-stack endpoints (2,000 prefixes): everything
//! decided and compared again (as before) against the touched prefixes
//! only. Ignored: `cargo test -p ipvlan-bgp --lib measure_ -- --ignored
//! --nocapture`, best with the crate optimised
//! (`CARGO_PROFILE_DEV_OPT_LEVEL=3`).
//!
//! In: a synthetic host (two parents, both families) and the announcer's
//! private plan (`withdrawals`, `additions`). Out: the timings printed, and
//! the assertion that both ways end with the same wanted paths.

use std::time::{Duration, Instant};

use super::*;
use crate::bgp::host::tests::cfg;
use crate::bgp::host::{update_wanted, wanted_announcements, HostInfo, NextHopChoice};
use crate::metrics::Metrics;
use crate::view::diff::announced_changes;
use crate::view::View;

/// What a successful AddPath of `add` leaves the announcer holding.
fn hold(a: &mut Announcer, add: Vec<(IpNet, Announcement)>) {
    for (p, w) in add {
        let h = Held {
            announced: w,
            replace: false,
            adopted: false,
        };
        a.announced.insert(p, h);
    }
}

fn prefixes(i: u32) -> [IpNet; 2] {
    let a = u32::from(std::net::Ipv4Addr::new(10, 1, 0, 10)) + i;
    [
        IpNet::new(std::net::Ipv4Addr::from(a).into(), 32).unwrap(),
        format!("fd00:1::{:x}/128", i + 10).parse().unwrap(),
    ]
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let q = |f: f64| us(v[((v.len() - 1) as f64 * f) as usize]);
    println!(
        "{name:<44} n={} min {:.1} p10 {:.1} median {:.1} p90 {:.1} max {:.1} us",
        v.len(),
        q(0.0),
        q(0.1),
        q(0.5),
        q(0.9),
        q(1.0)
    );
}

/// The held map as a successful sync of `wanted` leaves it.
fn in_step(a: &mut Announcer, wanted: &BTreeMap<IpNet, Announcement>) {
    a.announced = wanted
        .iter()
        .map(|(p, w)| {
            let h = Held {
                announced: w.clone(),
                replace: false,
                adopted: false,
            };
            (*p, h)
        })
        .collect();
}

#[test]
#[ignore]
fn measure_one_endpoint_change_full_against_touched() {
    const ENDPOINTS: u32 = 1000;
    const REPS: usize = 400;
    let host = HostInfo {
        links: vec![(
            7,
            "eth1".into(),
            vec![
                "192.0.2.1/24".parse().unwrap(),
                "2001:db8::1/64".parse().unwrap(),
            ],
        )],
        ..HostInfo::default()
    };
    let c = cfg(&[]);
    let metrics = Metrics::default();
    let mut view = View::default();
    for i in 0..ENDPOINTS {
        for p in prefixes(i) {
            view.announcements.insert(p, "eth1".into());
        }
    }
    let (mut choice, mut warned) = (NextHopChoice::default(), BTreeSet::new());
    let base = wanted_announcements(&view, &host, &c, &mut choice, &mut warned);
    let (mut choice_p, mut warned_p) = (choice.clone(), warned.clone());
    let (mut full_t, mut part_t, mut clone_old, mut clone_new) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut a_full, mut a_part) = (Announcer::default(), Announcer::default());
    in_step(&mut a_full, &base);
    in_step(&mut a_part, &base);
    metrics.announced(base.keys());
    let mut part_wanted = base.clone();
    // The View as it was before imbl: the same entries in std B-trees.
    type OldView = (
        BTreeMap<IpNet, String>,
        BTreeSet<std::net::IpAddr>,
        BTreeSet<std::net::IpAddr>,
        BTreeMap<IpNet, crate::model::attrs::RouteAttrs>,
    );
    for rep in 0..REPS {
        // One endpoint joins (the new one) or leaves (a present one).
        let before = std::sync::Arc::new(view.clone());
        let i = ENDPOINTS + (rep as u32 / 2);
        for p in prefixes(if rep % 2 == 0 { i } else { rep as u32 }) {
            if rep % 2 == 0 {
                view.announcements.insert(p, "eth1".into());
                view.local_endpoints.insert(p.addr());
            } else {
                view.announcements.remove(&p);
                view.local_endpoints.remove(&p.addr());
            }
        }
        // Driver side: publishing the view (a clone), before and now.
        let old: OldView = (
            view.announcements
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            view.local_endpoints.iter().copied().collect(),
            view.endpoints_via_host.iter().copied().collect(),
            view.attrs.iter().map(|(k, v)| (*k, v.clone())).collect(),
        );
        let t = Instant::now();
        let o = std::hint::black_box(old.clone());
        clone_old.push(t.elapsed());
        let t = Instant::now();
        let nv = std::hint::black_box(std::sync::Arc::new(view.clone()));
        let _ = std::hint::black_box(*nv == *before);
        clone_new.push(t.elapsed());
        drop(o);
        let mut full = || {
            let t = Instant::now();
            let w = wanted_announcements(&view, &host, &c, &mut choice, &mut warned);
            let remove = a_full.withdrawals(&w, None);
            for (p, _) in &remove {
                a_full.announced.remove(p);
            }
            let add = a_full.additions(&w, None);
            metrics.announced(w.keys());
            let took = t.elapsed();
            hold(&mut a_full, add);
            (took, w)
        };
        let mut part = || {
            let t = Instant::now();
            let touched = announced_changes(&before, &view);
            update_wanted(
                &mut part_wanted,
                &touched,
                &view,
                &host,
                &c,
                &mut choice_p,
                &mut warned_p,
            );
            let remove = a_part.withdrawals(&part_wanted, Some(&touched));
            for (p, _) in &remove {
                a_part.announced.remove(p);
            }
            let add = a_part.additions(&part_wanted, Some(&touched));
            metrics.announced_touched(&touched, &part_wanted);
            let took = t.elapsed();
            hold(&mut a_part, add);
            took
        };
        // Alternate which goes first, so drift hits both alike.
        let (f, p, w) = if rep % 2 == 0 {
            let (f, w) = full();
            (f, part(), w)
        } else {
            let p = part();
            let (f, w) = full();
            (f, p, w)
        };
        full_t.push(f);
        part_t.push(p);
        assert_eq!(part_wanted, w);
    }
    assert_eq!(a_full.announced, a_part.announced);
    stats("driver: publish clone, std B-trees (before)", clone_old);
    stats("driver: publish clone + compare, imbl (now)", clone_new);
    stats("bgp: wanted+plan+announced, all (before)", full_t);
    stats("bgp: diff+wanted+plan+announced, touched", part_t);
}
