//! One join's way through both drivers, from their debug lines: each line
//! that ends a hop or a step carries a `mono_us` stamp (the monotonic clock
//! every process here shares, beside the bench's own stamps).
//!
//! In: b1's and b2's driver log text since the join began ([`DriverLog`]),
//! the join's IPv4 prefix, and the bench's stamps of its routes arriving at
//! and leaving b2. Out: a [`Traced`] join (address live → the announcer
//! decides → intent recorded → AddPath acked → route on b2, the first hop's
//! steps, the withdrawal's steps on both hosts) and the series
//! [`hop_series`], [`step_series`] and [`leave_series`] add to a
//! [`BenchResult`]. Used by `bench convergence` and `bench convergence --load`.

use anyhow::{anyhow, Result};

use super::stats::{BenchResult, Series};

/// The joins' tail is measured over this: a join slower than this from
/// address live to the route on b2 is broken down by hop.
pub(super) const SLOW: f64 = 20.0;

/// One join's way out, in microseconds on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Traced {
    live: u64,
    /// The first hop's steps ([`STEPS`]): `None` where the driver logged
    /// no such line (an older build; no neighbours told on ipvlan L3).
    steps: [Option<u64>; STEPS.len()],
    decided: u64,
    recorded: u64,
    acked: u64,
    route: u64,
    route6: u64,
    /// The last hop's steps on b2 ([`ARRIVE`]), where logged; the last
    /// entry is the route in b2's kernel.
    arrive: [Option<u64>; ARRIVE.len()],
    /// The way back after the stop ([`LEAVE`]), where logged; its last
    /// entry is the route gone from b2 ([`Traced::gone`]).
    leave: [Option<u64>; LEAVE.len()],
    /// The stop held its teardown until the withdrawal was seen on b2.
    held: bool,
}

/// The withdrawal's way: the debug line that ends each step, on which
/// host's driver, whether the line names the prefix, and the step's name in
/// the report. Each step's line is the first after the previous step's
/// (b1's after this join's AddPath was acked); the last step ends at the
/// route gone from b2's kernel (the route subscription, [`Traced::gone`]).
pub(super) const LEAVE: [(&str, Host, bool, &str); 10] = [
    (
        " leave: to commit ",
        Host::B1,
        false,
        "withdrawal: Leave holds the driver's lock → route gone from b2 (IPv4)",
    ),
    (
        " leave: view published ",
        Host::B1,
        false,
        "withdrawal: → the state committed and the view published",
    ),
    (
        " to withdraw ",
        Host::B1,
        true,
        "withdrawal: → the announcer decides to withdraw",
    ),
    (
        " withdrawn ",
        Host::B1,
        true,
        "withdrawal: → gobgpd acked the DeletePath",
    ),
    (
        " withdrawal: asking the peer's state ",
        Host::B2,
        true,
        "withdrawal: → b2's driver hears it and asks gobgpd for the peer's state",
    ),
    (
        " withdrawal: peer state answered ",
        Host::B2,
        false,
        "withdrawal: → b2's gobgpd answered the peer's state (4.x: a watch's INIT events; 3.x: ListPeer)",
    ),
    (
        " learner: batch decided ",
        Host::B2,
        false,
        "withdrawal: → b2's learner decided",
    ),
    (
        " installer: batch received ",
        Host::B2,
        false,
        "withdrawal: → b2's installer thread has the change",
    ),
    (
        " route deleted ",
        Host::B2,
        true,
        "withdrawal: → b2's installer deleted the route (netlink)",
    ),
    (
        "",
        Host::B2,
        false,
        "withdrawal: → route gone from b2's kernel (the route subscription)",
    ),
];

/// Whose driver log a line is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Host {
    B1,
    B2,
}

/// The steps inside the first hop (address live → the announcer decides),
/// each as b1's driver's debug line names it, and as the bench reports it.
pub(super) const STEPS: [(&str, &str); 5] = [
    (
        " live: driver locked ",
        "step: address live → the driver's lock taken (the watch's callback)",
    ),
    (
        " neighbour entries set ",
        "step: → this host's neighbour entries set on the shim",
    ),
    (
        " live: view published ",
        "step: → the view with the endpoint published",
    ),
    (
        " view change seen ",
        "step: → the BGP session sees the view change",
    ),
    (" learner inputs set ", "step: → the learner's inputs set"),
];

/// The last hop's steps (AddPath acked → route on b2), each as b2's driver's
/// debug line names it (whether it names the prefix), and as the bench
/// reports it; the last ends at the route in b2's kernel (the bench's route
/// subscription).
pub(super) const ARRIVE: [(&str, bool, &str); 5] = [
    (
        " paths arrived ",
        true,
        "b2 step: AddPath acked → b2's driver has the path (BGP UPDATE, both gobgpd)",
    ),
    (
        " learner: batch decided ",
        false,
        "b2 step: → b2's learner decided",
    ),
    (
        " installer: batch received ",
        false,
        "b2 step: → b2's installer thread has the change",
    ),
    (
        " route written ",
        true,
        "b2 step: → b2's installer wrote the route (netlink acked)",
    ),
    (
        "",
        false,
        "b2 step: → the route seen in b2's kernel (the route subscription)",
    ),
];

impl Traced {
    /// From b1's driver's new log lines: the first stamp of each hop for
    /// this join's IPv4 prefix (and the address watch's line naming its
    /// address); `None` when a line is missing.
    pub(super) fn from_log(
        text: &str,
        dst: ipnet::IpNet,
        route: u64,
        route6: u64,
    ) -> Option<Traced> {
        let prefix = format!("prefix={dst} ");
        let (a, b) = (format!("{}, ", dst.addr()), format!("{}]", dst.addr()));
        let (mut live, mut decided, mut recorded, mut acked) = (None, None, None, None);
        let mut steps = [None; STEPS.len()];
        let mut leave = [None; LEAVE.len()];
        for line in text.lines() {
            let Some(stamp) = stamp_of(line) else {
                continue;
            };
            if acked.is_some() {
                leave_step(&mut leave, Host::B1, line, &prefix, stamp);
                continue;
            }
            if line.contains(" address live ") && (line.contains(&a) || line.contains(&b)) {
                live = live.or(Some(stamp));
            } else if let Some(k) = STEPS.iter().position(|(l, _)| line.contains(l)) {
                // The first of each after this join's address was live
                // and before its announcer decided.
                if live.is_some() && decided.is_none() {
                    steps[k] = steps[k].or(Some(stamp));
                }
            } else if line.contains(" to announce ") && line.contains(&prefix) {
                decided = decided.or(Some(stamp));
            } else if line.contains(" intent recorded ") && decided.is_some() {
                recorded = recorded.or(Some(stamp));
            } else if line.contains(" announced ") && line.contains(&prefix) {
                acked = acked.or(Some(stamp));
            }
        }
        let mut arrive = [None; ARRIVE.len()];
        arrive[ARRIVE.len() - 1] = Some(route);
        Some(Traced {
            live: live?,
            steps,
            decided: decided?,
            recorded: recorded?,
            acked: acked?,
            route,
            route6,
            arrive,
            leave,
            held: false,
        })
    }

    /// b2's steps of the announcement (each the first line of its kind
    /// after the step before, from the AddPath's ack to the route in b2's
    /// kernel) and of the withdrawal, from b2's driver's new log lines.
    pub(super) fn b2(mut self, text: &str, dst: ipnet::IpNet) -> Traced {
        let prefix = format!("prefix={dst} ");
        for line in text.lines() {
            if let Some(stamp) = stamp_of(line) {
                self.arrive_step(line, &prefix, stamp);
                leave_step(&mut self.leave, Host::B2, line, &prefix, stamp);
            }
        }
        self
    }

    /// Files b2's `line` as the announcement's step it ends, if it is the
    /// first such line after the step before and before the route was seen.
    /// The first step may come before the AddPath's ack (gobgpd can send
    /// the UPDATE before it answers): lines count from the intent on.
    fn arrive_step(&mut self, line: &str, prefix: &str, stamp: u64) {
        let last = ARRIVE.len() - 1;
        let Some(k) = ARRIVE[..last]
            .iter()
            .position(|(l, named, _)| line.contains(l) && (!named || line.contains(prefix)))
        else {
            return;
        };
        let after = self.arrive[..k]
            .iter()
            .flatten()
            .copied()
            .fold(self.recorded, u64::max);
        if self.arrive[k].is_none() && stamp >= after && stamp <= self.route {
            self.arrive[k] = Some(stamp);
        }
    }

    /// b2's steps of the announcement in ms ([`ARRIVE`]), each from the
    /// last stamp logged before it (the first from the AddPath's ack: 0 when
    /// the path reached b2 before the ack reached b1); `None` where the line
    /// is missing.
    pub(super) fn arrive_steps(&self) -> [Option<f64>; ARRIVE.len()] {
        let mut last = self.acked;
        self.arrive.map(|s| {
            s.map(|s| {
                let d = s.saturating_sub(last) as f64 / 1e3;
                last = last.max(s);
                d
            })
        })
    }

    /// The withdrawal's steps in ms ([`LEAVE`]), the last one ending at
    /// `gone` (the route gone from b2); `None` where a line is missing.
    pub(super) fn leave_steps(&self) -> [Option<f64>; LEAVE.len()] {
        let at = self.leave;
        let mut last = at[0];
        let mut out = [None; LEAVE.len()];
        for k in 1..LEAVE.len() {
            out[k] = last
                .zip(at[k])
                .map(|(a, b)| b.saturating_sub(a) as f64 / 1e3);
            last = at[k].or(last);
        }
        out
    }

    /// From Leave holding the driver's lock to the route gone from b2, ms.
    pub(super) fn leave_to_gone(&self) -> Option<f64> {
        let (l, g) = (self.leave[0]?, self.leave[LEAVE.len() - 1]?);
        Some(g.saturating_sub(l) as f64 / 1e3)
    }

    /// Whether the stop held its teardown until the withdrawal was seen.
    pub(super) fn held(mut self, held: bool) -> Traced {
        self.held = held;
        self
    }

    /// The IPv4 route left b2's kernel at `gone` (monotonic µs).
    pub(super) fn gone(mut self, gone: u64) -> Traced {
        self.leave[LEAVE.len() - 1] = Some(gone);
        self
    }

    /// The hops in order, in ms (a negative gap, which cannot happen on one
    /// clock, would show as 0).
    pub(super) fn hops(&self) -> [f64; 4] {
        let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e3;
        [
            d(self.live, self.decided),
            d(self.decided, self.recorded),
            d(self.recorded, self.acked),
            d(self.acked, self.route),
        ]
    }

    /// The first hop's steps in ms, each from the last stamp before it
    /// (`None` where the line is missing).
    pub(super) fn steps(&self) -> [Option<f64>; STEPS.len()] {
        let mut last = self.live;
        self.steps.map(|s| {
            s.map(|s| {
                let d = s.saturating_sub(last) as f64 / 1e3;
                last = last.max(s);
                d
            })
        })
    }

    /// The rest of the first hop after its last logged step: → the
    /// announcer decides.
    pub(super) fn last_step_to_decided(&self) -> f64 {
        let last = self
            .steps
            .iter()
            .flatten()
            .copied()
            .fold(self.live, u64::max);
        self.decided.saturating_sub(last) as f64 / 1e3
    }

    pub(super) fn live_to_route(&self) -> f64 {
        self.route.saturating_sub(self.live) as f64 / 1e3
    }

    pub(super) fn live_to_route6(&self) -> f64 {
        self.route6.saturating_sub(self.live) as f64 / 1e3
    }
}

pub(super) const HOPS: [&str; 4] = [
    "hop: address live in the container → the announcer decides (IPv4)",
    "hop: decides → ledger intent recorded",
    "hop: intent recorded → gobgpd acked the AddPath",
    "hop: AddPath acked → route in b2's kernel (BGP UPDATE, b2's gobgpd and driver)",
];

/// The per-hop series, the "address live → route on b2" per
/// family, and where the joins over [`SLOW`] spent their time.
pub(super) fn hop_series(r: &mut BenchResult, traced: &[Traced]) {
    if traced.is_empty() {
        r.setup.insert(
            "hops".into(),
            "not traced: b1's driver logs no mono_us stamps (an older build)".into(),
        );
        return;
    }
    let col = |f: &dyn Fn(&Traced) -> f64| traced.iter().map(f).collect::<Vec<f64>>();
    r.series.push(Series::new(
        "address live in the container → route on b2 (IPv4)",
        "ms",
        col(&|t| t.live_to_route()),
    ));
    r.series.push(Series::new(
        "address live in the container → route on b2 (IPv6)",
        "ms",
        col(&|t| t.live_to_route6()),
    ));
    for (k, name) in HOPS.iter().enumerate() {
        r.series
            .push(Series::new(*name, "ms", col(&|t| t.hops()[k])));
        if k == 0 {
            step_series(r, traced);
        }
    }
    arrive_series(r, traced);
    let (held, real): (Vec<Traced>, Vec<Traced>) = traced.iter().partition(|t| t.held);
    leave_series(r, &real, "");
    leave_series(r, &held, HELD);
    let slow: Vec<&Traced> = traced.iter().filter(|t| t.live_to_route() > SLOW).collect();
    r.figures
        .insert("joins traced hop by hop".to_string(), traced.len() as f64);
    r.figures.insert(
        format!("joins over {SLOW} ms from address live to the IPv4 route on b2"),
        slow.len() as f64,
    );
    for (k, name) in HOPS.iter().enumerate() {
        let mut v: Vec<f64> = slow.iter().map(|t| t.hops()[k]).collect();
        v.sort_by(f64::total_cmp);
        if let Some(m) = v.get(v.len() / 2) {
            r.figures
                .insert(format!("joins over {SLOW} ms, median of {name}"), *m);
        }
    }
}

/// A driver log line's `mono_us` stamp.
fn stamp_of(line: &str) -> Option<u64> {
    line.split_once("mono_us=")
        .and_then(|(_, v)| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Files `line` (from `host`'s driver, stamped `stamp`) as the withdrawal
/// step it ends, if it is the first such line after the step before.
fn leave_step(
    leave: &mut [Option<u64>; LEAVE.len()],
    host: Host,
    line: &str,
    prefix: &str,
    stamp: u64,
) {
    let Some(k) = LEAVE.iter().position(|(l, h, named, _)| {
        *h == host && !l.is_empty() && line.contains(l) && (!named || line.contains(prefix))
    }) else {
        return;
    };
    let after = leave[..k].iter().flatten().copied().max();
    let first_step = k == 0;
    if leave[k].is_none() && (first_step || after.is_some_and(|a| stamp >= a)) {
        leave[k] = Some(stamp);
    }
}

/// The withdrawal from Leave, and its steps, where b1's driver logged
/// them (an older build does not); each name ends in `suffix`.
fn leave_series(r: &mut BenchResult, traced: &[Traced], suffix: &str) {
    let total: Vec<f64> = traced.iter().filter_map(Traced::leave_to_gone).collect();
    if total.is_empty() {
        return;
    }
    r.series
        .push(Series::new(format!("{}{suffix}", LEAVE[0].3), "ms", total));
    for (k, (_, _, _, name)) in LEAVE.iter().enumerate().skip(1) {
        let v: Vec<f64> = traced.iter().filter_map(|t| t.leave_steps()[k]).collect();
        if !v.is_empty() {
            r.series
                .push(Series::new(format!("{name}{suffix}"), "ms", v));
        }
    }
}

/// The end of the withdrawal series' names for joins whose teardown was
/// held until the withdrawal was seen on b2 (`--hold-teardown`).
pub(super) const HELD: &str = " (teardown held)";

/// The first hop's steps, those b1's driver logged (an older build logs
/// none; ipvlan L3 sets no neighbour entries), and the rest of it.
fn step_series(r: &mut BenchResult, traced: &[Traced]) {
    let mut any = false;
    for (k, (_, name)) in STEPS.iter().enumerate() {
        let v: Vec<f64> = traced.iter().filter_map(|t| t.steps()[k]).collect();
        if !v.is_empty() {
            any = true;
            r.series.push(Series::new(*name, "ms", v));
        }
    }
    if any {
        r.series.push(Series::new(
            "step: → the announcer decides (wanted, announcer sync)",
            "ms",
            traced.iter().map(Traced::last_step_to_decided).collect(),
        ));
    }
}

/// The last hop's steps on b2, those b2's driver logged (an older build
/// logs no `paths arrived` or `route written`).
fn arrive_series(r: &mut BenchResult, traced: &[Traced]) {
    for (k, (_, _, name)) in ARRIVE.iter().enumerate() {
        let v: Vec<f64> = traced.iter().filter_map(|t| t.arrive_steps()[k]).collect();
        if !v.is_empty() {
            r.series.push(Series::new(*name, "ms", v));
        }
    }
}

/// Microseconds on `CLOCK_MONOTONIC`, the clock of `Instant` and of the
/// driver's `mono_us` stamps.
pub(super) fn mono_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// A driver's log, read on from where the last read ended.
pub(super) struct DriverLog {
    path: std::path::PathBuf,
    offset: u64,
}

impl DriverLog {
    pub(super) fn open(path: std::path::PathBuf) -> DriverLog {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        DriverLog { path, offset }
    }

    pub(super) fn read_new(&mut self) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)
            .map_err(|e| anyhow!("open {}: {e}", self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        self.offset += s.len() as u64;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver's debug lines as tracing writes them: the first stamp of
    /// each hop for this join's prefix counts; another prefix's lines, the
    /// intent of an earlier sync, and a longer address that starts like
    /// this one do not.
    #[test]
    fn a_join_is_traced_from_the_drivers_lines() {
        let log = "\
T DEBUG ipvlan_bgp::bgp::announcer: intent recorded mono_us=50
T DEBUG ipvlan_bgp::kernel::address_watch: address live addrs=[10.30.1.50, fd00::50] mono_us=90
T DEBUG ipvlan_bgp::kernel::address_watch: address live addrs=[10.30.1.5, fd00::5] mono_us=100
T DEBUG ipvlan_bgp: address live in the container: announced endpoint=abc after_ms=1.0
T DEBUG ipvlan_bgp::bgp::announcer: to announce prefix=10.30.1.50/32 mono_us=110
T DEBUG ipvlan_bgp::bgp::announcer: to announce prefix=10.30.1.5/32 mono_us=1100
T DEBUG ipvlan_bgp::bgp::announcer: intent recorded mono_us=3100
T DEBUG ipvlan_bgp::bgp::announcer: announced prefix=10.30.1.5/32 next_hop=192.0.2.1 attrs=x mono_us=4100
T DEBUG ipvlan_bgp::bgp::announcer: announced prefix=10.30.1.5/32 next_hop=192.0.2.1 attrs=x mono_us=9999
";
        let dst: ipnet::IpNet = "10.30.1.5/32".parse().unwrap();
        let t = Traced::from_log(log, dst, 8100, 9100).unwrap();
        assert_eq!(t.hops(), [1.0, 2.0, 1.0, 4.0]);
        assert_eq!((t.live_to_route(), t.live_to_route6()), (8.0, 9.0));
        assert!(Traced::from_log(&log[..200], dst, 8100, 9100).is_none());
        // No step lines (an older build): no steps, the whole hop is the rest.
        assert_eq!(t.steps(), [None; STEPS.len()]);
        assert_eq!(t.last_step_to_decided(), 1.0);
        assert_eq!(t.leave_to_gone(), None);
    }

    /// b2's side of the announcement: the first line of each step after the
    /// intent and the step before, up to the route seen in b2's kernel;
    /// another prefix's lines and lines from before the intent (an earlier
    /// join) or after the route (the withdrawal) do not count.
    #[test]
    fn the_last_hop_is_broken_into_b2s_steps() {
        let b1 = "\
T DEBUG ipvlan_bgp::kernel::address_watch: address live addrs=[10.30.1.5, fd00::5] mono_us=100
T DEBUG ipvlan_bgp::bgp::announcer: to announce prefix=10.30.1.5/32 mono_us=200
T DEBUG ipvlan_bgp::bgp::announcer: intent recorded mono_us=300
T DEBUG ipvlan_bgp::bgp::announcer: announced prefix=10.30.1.5/32 next_hop=192.0.2.1 attrs=x mono_us=1000
";
        let b2 = "\
T DEBUG ipvlan_bgp::bgp::session: paths arrived prefix=10.30.1.5/32 withdraw=false mono_us=250
T DEBUG ipvlan_bgp::bgp::learning: learner: batch decided changes=1 mono_us=260
T DEBUG ipvlan_bgp::bgp::session: paths arrived prefix=10.30.1.6/32 withdraw=false mono_us=1100
T DEBUG ipvlan_bgp::bgp::session: paths arrived prefix=10.30.1.5/32 withdraw=false mono_us=1500
T DEBUG ipvlan_bgp::bgp::learning: learner: batch decided changes=1 mono_us=1600
T DEBUG ipvlan_bgp::bgp::learning: learner: batch decided changes=1 mono_us=1700
T DEBUG ipvlan_bgp::rib::worker: installer: batch received changes=1 mono_us=2000
T DEBUG ipvlan_bgp::rib::installer: route written prefix=10.30.1.6/32 mono_us=2100
T DEBUG ipvlan_bgp::rib::installer: route written prefix=10.30.1.5/32 mono_us=2500
T DEBUG ipvlan_bgp::bgp::session: paths arrived prefix=10.30.1.5/32 withdraw=true mono_us=9000
";
        let dst: ipnet::IpNet = "10.30.1.5/32".parse().unwrap();
        let t = Traced::from_log(b1, dst, 3000, 3000).unwrap().b2(b2, dst);
        assert_eq!(
            t.arrive_steps(),
            [Some(0.5), Some(0.1), Some(0.4), Some(0.5), Some(0.5)]
        );
        // An older build logs neither line: the decided and received steps
        // count from the ack.
        let old: String = b2
            .lines()
            .filter(|l| !l.contains("paths arrived") && !l.contains("route written"))
            .map(|l| format!("{l}\n"))
            .collect();
        let t = Traced::from_log(b1, dst, 3000, 3000).unwrap().b2(&old, dst);
        assert_eq!(
            t.arrive_steps(),
            [None, Some(0.6), Some(0.4), None, Some(1.0)]
        );
    }

    /// The first hop's steps: the first of each after this join's address
    /// was live and before its announcer decided; a missing one is skipped
    /// (the next counts from the last one logged).
    #[test]
    fn the_first_hop_is_broken_into_its_steps() {
        let log = "\
T DEBUG ipvlan_bgp: live: driver locked mono_us=10
T DEBUG ipvlan_bgp::kernel::address_watch: address live addrs=[10.30.1.5, fd00::5] mono_us=100
T DEBUG ipvlan_bgp: live: driver locked mono_us=200
T DEBUG ipvlan_bgp::docker: neighbour entries set endpoint=e shim=s mac=m count=2 mono_us=500
T DEBUG ipvlan_bgp::bgp::session: view change seen mono_us=1000
T DEBUG ipvlan_bgp::bgp::session: learner inputs set mono_us=1200
T DEBUG ipvlan_bgp::bgp::announcer: to announce prefix=10.30.1.5/32 mono_us=1500
T DEBUG ipvlan_bgp::bgp::session: view change seen mono_us=1600
T DEBUG ipvlan_bgp::bgp::announcer: intent recorded mono_us=1700
T DEBUG ipvlan_bgp::bgp::announcer: announced prefix=10.30.1.5/32 next_hop=192.0.2.1 attrs=x mono_us=2000
";
        let dst: ipnet::IpNet = "10.30.1.5/32".parse().unwrap();
        let t = Traced::from_log(log, dst, 3000, 3000).unwrap();
        assert_eq!(
            t.steps(),
            [Some(0.1), Some(0.3), None, Some(0.5), Some(0.2)]
        );
        assert_eq!(t.last_step_to_decided(), 0.3);
    }

    /// The withdrawal: b1's lines after the join's AddPath was acked, then
    /// b2's, each step the first after the step before (b2's learner line
    /// from the join does not count), ending at the route gone from b2.
    #[test]
    fn the_withdrawal_is_traced_on_both_hosts() {
        let b1 = "\
T DEBUG ipvlan_bgp::kernel::address_watch: address live addrs=[10.30.1.5, fd00::5] mono_us=100
T DEBUG ipvlan_bgp::bgp::announcer: to announce prefix=10.30.1.5/32 mono_us=200
T DEBUG ipvlan_bgp::bgp::announcer: intent recorded mono_us=300
T DEBUG ipvlan_bgp::bgp::announcer: announced prefix=10.30.1.5/32 next_hop=192.0.2.1 attrs=x mono_us=400
T DEBUG ipvlan_bgp::docker::ops: leave: to commit mono_us=1000
T DEBUG ipvlan_bgp::docker::ops: leave: view published mono_us=2000
T DEBUG ipvlan_bgp::bgp::announcer: to withdraw prefix=fd00::5/128 mono_us=2500
T DEBUG ipvlan_bgp::bgp::announcer: to withdraw prefix=10.30.1.5/32 mono_us=3000
T DEBUG ipvlan_bgp::bgp::announcer: withdrawn prefix=10.30.1.5/32 mono_us=4000
T DEBUG ipvlan_bgp::bgp::withdrawals: withdrawal: asking the peer's state prefix=10.30.1.5/32 mono_us=4100
";
        let b2 = "\
T DEBUG ipvlan_bgp::bgp::learning: learner: batch decided changes=2 mono_us=350
T DEBUG ipvlan_bgp::bgp::withdrawals: withdrawal: asking the peer's state prefix=10.30.1.5/32 mono_us=5000
T DEBUG ipvlan_bgp::bgp::withdrawals: withdrawal: peer state answered mono_us=6000
T DEBUG ipvlan_bgp::bgp::learning: learner: batch decided changes=2 mono_us=7000
T DEBUG ipvlan_bgp::rib::worker: installer: batch received changes=2 mono_us=8000
T DEBUG ipvlan_bgp::rib::installer::write: route deleted prefix=fd00::5/128 mono_us=8500
T DEBUG ipvlan_bgp::rib::installer::write: route deleted prefix=10.30.1.5/32 mono_us=9000
";
        let dst: ipnet::IpNet = "10.30.1.5/32".parse().unwrap();
        let t = Traced::from_log(b1, dst, 500, 500)
            .unwrap()
            .b2(b2, dst)
            .gone(10_000);
        assert_eq!(t.leave_to_gone(), Some(9.0));
        // With --hold-teardown the held joins' withdrawal gets its own series.
        let mut r = BenchResult::new("convergence", String::new());
        hop_series(&mut r, &[t, t.gone(12_000).held(true)]);
        let n = |name: &str| {
            r.series
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.samples.clone())
        };
        assert_eq!(n(LEAVE[0].3), Some(vec![9.0]));
        assert_eq!(n(&format!("{}{HELD}", LEAVE[0].3)), Some(vec![11.0]));
        assert_eq!(n(&format!("{}{HELD}", LEAVE[9].3)), Some(vec![3.0]));
        assert_eq!(
            t.leave_steps(),
            [
                None,
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0),
                Some(1.0)
            ]
        );
    }
}
