//! The gate's decisions, fed by hand (no Docker, no driver).

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A view announcing two endpoints' /32s and one subnet.
fn world() -> (View, BTreeMap<IpNet, String>) {
    let mut v = View::default();
    for p in ["10.0.1.2/32", "10.0.1.3/32", "10.9.0.0/24"] {
        // The value (where the prefix lives, how it is announced) does not matter here.
        v.announcements.insert(net(p), Default::default());
    }
    let eps = [("10.0.1.2/32", "ep-a"), ("10.0.1.3/32", "ep-b")]
        .into_iter()
        .map(|(p, e)| (net(p), e.to_string()))
        .collect();
    (v, eps)
}

fn container(id: &str, ep: &str, running: bool, health: Option<&str>) -> Container {
    Container {
        id: id.into(),
        running,
        health: health.map(str::to_string),
        endpoints: vec![ep.into()],
        ..Default::default()
    }
}

fn announced(f: &Filtered) -> Vec<String> {
    f.view.announcements.keys().map(|p| p.to_string()).collect()
}

#[test]
fn endpoints_are_held_until_classified_subnets_pass() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    let f = g.filter(&v, &eps, t0);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
    assert_eq!(
        f.held.get("ep-a").map(String::as_str),
        Some("waiting for Docker")
    );
    assert!(f.waiting);
    assert_eq!(g.longest_wait(t0 + WAITING_RESYNC), Some(WAITING_RESYNC));
    // Long after, with Docker up: still held (fail open is only for an unreachable Docker).
    let f = g.filter(&v, &eps, t0 + FAIL_OPEN_AFTER * 10);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
    assert_eq!(g.fail_open, 0);
}

#[test]
fn no_health_check_is_released_with_its_delay() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    g.filter(&v, &eps, t0);
    let t1 = t0 + Duration::from_millis(150);
    g.apply(Update::Container(container("c-a", "ep-a", true, None)), t1);
    let f = g.filter(&v, &eps, t1);
    assert_eq!(announced(&f), ["10.0.1.2/32", "10.9.0.0/24"]);
    assert_eq!(
        f.released,
        vec![("ep-a".to_string(), Duration::from_millis(150))]
    );
    // Released once: the next decision reports nothing new.
    assert!(g.filter(&v, &eps, t1).released.is_empty());
}

#[test]
fn health_flips_withdraw_and_announce_again() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    let step = |g: &mut Gate, health: Option<&str>, running: bool| {
        g.apply(
            Update::Container(container("c-b", "ep-b", running, health)),
            t0,
        );
        g.filter(&v, &eps, t0)
    };
    let f = step(&mut g, Some("starting"), true);
    assert!(!announced(&f).contains(&"10.0.1.3/32".to_string()));
    assert_eq!(f.held["ep-b"], "starting");
    let f = step(&mut g, Some("healthy"), true);
    assert!(announced(&f).contains(&"10.0.1.3/32".to_string()));
    assert!(!f.held.contains_key("ep-b"));
    let f = step(&mut g, Some("unhealthy"), true);
    assert!(!announced(&f).contains(&"10.0.1.3/32".to_string()));
    assert_eq!(f.held["ep-b"], "unhealthy");
    let f = step(&mut g, Some("healthy"), true);
    assert!(announced(&f).contains(&"10.0.1.3/32".to_string()));
    assert_eq!(g.transitions, 4);
    // Learning the same verdict again (an event, a resync) is no transition.
    step(&mut g, Some("healthy"), true);
    g.apply(
        Update::Sync(vec![container("c-b", "ep-b", true, Some("healthy"))]),
        t0,
    );
    assert_eq!(g.transitions, 4);
    // A health status nobody knows yet holds.
    let f = step(&mut g, Some("sideways"), true);
    assert!(!announced(&f).contains(&"10.0.1.3/32".to_string()));
    // Stopped: no verdict any more, held until it runs again.
    let f = step(&mut g, Some("healthy"), false);
    assert_eq!(f.held["ep-b"], "waiting for Docker");
    // Gone.
    step(&mut g, Some("healthy"), true);
    g.apply(Update::Gone("c-b".into()), t0);
    assert!(!announced(&g.filter(&v, &eps, t0)).contains(&"10.0.1.3/32".to_string()));
}

#[test]
fn a_sync_replaces_what_the_gate_knew() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    g.apply(Update::Container(container("c-a", "ep-a", true, None)), t0);
    g.apply(
        Update::Container(container("c-b", "ep-b", true, Some("healthy"))),
        t0,
    );
    assert_eq!(g.filter(&v, &eps, t0).view, v);
    // Restarted driver or missed events: only c-b runs, and it is unhealthy now.
    g.apply(
        Update::Sync(vec![container("c-b", "ep-b", true, Some("unhealthy"))]),
        t0,
    );
    let f = g.filter(&v, &eps, t0);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
    assert_eq!(f.held["ep-b"], "unhealthy");
    assert_eq!(f.held["ep-a"], "waiting for Docker");
}

#[test]
fn docker_unreachable_keeps_decisions_and_fails_open_for_the_unclassified() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    g.apply(
        Update::Container(container("c-b", "ep-b", true, Some("unhealthy"))),
        t0,
    );
    g.filter(&v, &eps, t0);
    g.apply(Update::ApiDown("connection refused".into()), t0);
    // Before the grace period: nothing changes.
    let f = g.filter(&v, &eps, t0 + FAIL_OPEN_AFTER / 2);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
    // After it: the never-classified ep-a is announced (once counted), the
    // known-unhealthy ep-b stays withdrawn.
    let late = t0 + FAIL_OPEN_AFTER * 2;
    let f = g.filter(&v, &eps, late);
    assert_eq!(announced(&f), ["10.0.1.2/32", "10.9.0.0/24"]);
    assert_eq!(g.fail_open, 1);
    g.filter(&v, &eps, late);
    assert_eq!(g.fail_open, 1);
    // Docker answers again: the sync decides for real.
    g.apply(Update::ApiUp, late);
    g.apply(
        Update::Sync(vec![
            container("c-a", "ep-a", true, Some("starting")),
            container("c-b", "ep-b", true, Some("unhealthy")),
        ]),
        late,
    );
    let f = g.filter(&v, &eps, late);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
}

#[test]
fn an_endpoint_joined_while_docker_is_down_waits_its_own_grace() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.apply(Update::ApiUp, t0);
    g.apply(Update::ApiDown("gone".into()), t0);
    // Docker down for long, but ep-a appears only now: held for the grace period.
    let t1 = t0 + FAIL_OPEN_AFTER * 3;
    let f = g.filter(&v, &eps, t1);
    assert_eq!(announced(&f), ["10.9.0.0/24"]);
    let f = g.filter(&v, &eps, t1 + FAIL_OPEN_AFTER);
    assert_eq!(announced(&f), ["10.0.1.2/32", "10.0.1.3/32", "10.9.0.0/24"]);
}

fn remembered(container: &str, verdict: Verdict) -> HealthRecord {
    HealthRecord {
        container: container.into(),
        verdict,
    }
}

/// Issue 19, point 4: a restarted gate starts from the verdicts persisted
/// before, so Docker being slow (or not up yet) withdraws nothing healthy
/// and announces nothing unhealthy; Docker's first answer replaces them.
#[test]
fn remembered_verdicts_decide_until_docker_answers() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    g.remember([
        ("ep-a".to_string(), remembered("c-a", Verdict::Healthy)),
        ("ep-b".to_string(), remembered("c-b", Verdict::Unhealthy)),
    ]);
    for t in [t0, t0 + FAIL_OPEN_AFTER * 3] {
        let f = g.filter(&v, &eps, t);
        assert_eq!(announced(&f), ["10.0.1.2/32", "10.9.0.0/24"]);
        assert_eq!(f.held.get("ep-b").map(String::as_str), Some("unhealthy"));
    }
    assert_eq!(g.fail_open, 0);
    assert!(g.take_changes().is_empty(), "nothing new to persist");
    // Docker answers: c-a still healthy (nothing changes), c-b gone.
    g.apply(Update::ApiUp, t0);
    g.apply(
        Update::Sync(vec![container("c-a", "ep-a", true, Some("healthy"))]),
        t0,
    );
    let f = g.filter(&v, &eps, t0);
    assert_eq!(announced(&f), ["10.0.1.2/32", "10.9.0.0/24"]);
    assert_eq!(g.take_changes(), vec![("ep-b".to_string(), None)]);
}

/// Every verdict Docker gives is reported for persistence; a fail-open
/// announcement (a guess) never is.
#[test]
fn verdicts_are_reported_for_persistence_guesses_are_not() {
    let t0 = Instant::now();
    let (v, eps) = world();
    let mut g = Gate::new(t0);
    // Docker unreachable long enough: both fail open, nothing persisted.
    g.filter(&v, &eps, t0);
    let f = g.filter(&v, &eps, t0 + FAIL_OPEN_AFTER * 2);
    assert_eq!(announced(&f).len(), 3);
    assert_eq!(g.fail_open, 2);
    assert!(g.take_changes().is_empty());
    g.apply(Update::ApiUp, t0);
    g.apply(
        Update::Container(container("c-a", "ep-a", true, Some("starting"))),
        t0,
    );
    assert_eq!(
        g.take_changes(),
        vec![(
            "ep-a".to_string(),
            Some(remembered("c-a", Verdict::Starting))
        )]
    );
    g.apply(
        Update::Container(container("c-a", "ep-a", true, Some("healthy"))),
        t0,
    );
    g.apply(
        Update::Container(container("c-a", "ep-a", true, Some("healthy"))),
        t0,
    );
    assert_eq!(
        g.take_changes(),
        vec![(
            "ep-a".to_string(),
            Some(remembered("c-a", Verdict::Healthy))
        )]
    );
    g.apply(Update::Gone("c-a".into()), t0);
    assert_eq!(g.take_changes(), vec![("ep-a".to_string(), None)]);
}
