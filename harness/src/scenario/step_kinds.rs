//! The one table of step kinds: for each `do = "..."` of a scenario file,
//! its keys, what it does, who plays it and what its time means.
//!
//! In: nothing (a constant). Out: [`STEP_KINDS`], looked up by name when a
//! step is parsed ([`kind`]), read by the runner (who plays a step, what its
//! time means for `convergence_ms`) and written out as the step reference
//! `docs/scenario-steps.md` ([`markdown`]). The tests hold the table to the
//! schema: the same kinds as [`super::steps::Action`]'s variants, and each
//! kind's keys exactly the fields serde accepts for it.
//!
//! Adding a step: its variant in `steps.rs` (the schema), its row here (the
//! docs), its check in `check/steps.rs`, and its arm in the runner file its
//! row names; then `HARNESS_WRITE_DOCS=1 cargo test -p harness step_kinds`.

/// What a step's time means for the report's `convergence_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// It changes the world (start, stop, kill, link change, restart...):
    /// the expectations after it measure convergence from its end.
    Event,
    /// It polls until something holds: its convergence is the time from the
    /// end of the last event until it first held.
    Expectation,
    /// It measures its own convergence (a probe's longest outage, a flood's
    /// acceptance time from its start).
    Own,
    /// It neither changes the world nor waits for it (snapshots, pauses,
    /// one-shot comparisons).
    Neither,
}

/// Which part of the runner plays a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Play {
    /// `runner/actions.rs`: it does something (to containers, daemons,
    /// links, routers, routes), or waits.
    Act,
    /// `runner/expect.rs` (with `metrics.rs`, `router_bgp.rs`,
    /// `withdrawn.rs` and `route_events.rs`): it polls
    /// until something holds, or takes what a later expectation compares.
    Expect,
}

/// One kind of step.
#[derive(Debug)]
pub struct StepKind {
    /// Its `do = "..."`.
    pub name: &'static str,
    /// Its keys besides `do` and `name`, as the schema names them.
    pub keys: &'static [&'static str],
    pub play: Play,
    /// What its time means for the report's `convergence_ms`.
    pub measure: Measure,
    /// What it does, for the step reference (Markdown).
    pub about: &'static str,
}

const fn k(
    name: &'static str,
    keys: &'static [&'static str],
    play: Play,
    measure: Measure,
    about: &'static str,
) -> StepKind {
    StepKind {
        name,
        keys,
        play,
        measure,
        about,
    }
}

use Measure::{Event, Expectation, Neither, Own};
use Play::{Act, Expect};

/// Every step kind, in the order the reference lists them.
#[rustfmt::skip]
pub const STEP_KINDS: &[StepKind] = &[
    // Networks and containers.
    k("create-network", &["network", "hosts", "expect_error"], Act, Event,
      "Create the network on its hosts (or on `hosts`); with `expect_error` the creation must fail and the error the user sees must contain it."),
    k("delete-network", &["network", "hosts"], Act, Event,
      "Delete the network on its hosts (or on `hosts`)."),
    k("start", &["containers", "expect_error", "within"], Act, Event,
      "Start containers (names or `count` groups; up to 8 hosts at a time, each host's one after the other). `expect_error`: the start must fail with this in the error (with `within`: and fail within that time); `within` alone: retry failed starts until then."),
    k("start-probed-from-route", &["container", "from", "family", "within"], Act, Event,
      "Start one container while `from` (a running container on another host) waits for its route: from the route's arrival on `from`'s host (its netlink event, not a poll) `from` pings the route's address every 2 ms, and the first echo must be answered, within 100 ms (zero probes lost after the route arrives; an echo the serving host queued while the container's address was not there yet comes with its next ARP attempt, hundreds of ms to 1 s later); the route must be the new container's. `family`: `ipv4` (default) or `ipv6`; `within` (default 30 s) bounds the route's arrival and the answer."),
    k("stop", &["containers"], Act, Event,
      "Stop containers as `docker stop` does."),
    k("kill-container", &["containers"], Act, Event,
      "The containers' sandboxes die and the driver is not told (the emulator removes the namespace; dockerd gets `docker kill`); the teardown cleans up as dockerd would after a crash."),
    k("exec", &["container", "command"], Act, Event,
      "Run `command` (argv) inside a running container (`docker exec`; dockerd engine only); fails if it fails."),
    // Daemons, links, routers, routes.
    k("kill", &["host", "daemon"], Act, Event,
      "SIGKILL a host's daemon (`daemon = gobgpd | driver | driver2 | dockerd`; `driver2`: a second driver instance on the host, its own state directory and socket, `--gobgp none`, started only by a `start-daemon` step)."),
    k("stop-daemon", &["host", "daemon"], Act, Event,
      "Stop a host's daemon (SIGTERM; the managed plugin: `docker plugin disable`)."),
    k("start-daemon", &["host", "daemon"], Act, Event,
      "Start a host's daemon again and wait until it answers."),
    k("restart", &["host", "daemon"], Act, Event,
      "Stop a host's daemon, then start it and wait until it answers."),
    k("upgrade-plugin", &["host"], Act, Event,
      "`docker plugin upgrade` of the host's managed plugin, disabled first (`stop-daemon`), to a second version: the run's plugin folder with another description, `docker plugin create REG/ipvlan-bgp:v2`, `push` to the run's registry (`[driver] registry`), `upgrade --grant-all-permissions --skip-remote-check`; then the plugin must name that reference and a config other than before, and keep every `docker plugin set` setting. Does not enable it (`start-daemon` does)."),
    k("freeze", &["host", "daemon"], Act, Event,
      "SIGSTOP a host's gobgpd or driver (the pid the harness started): it hangs, its sockets stay open."),
    k("thaw", &["host", "daemon"], Act, Event,
      "SIGCONT a frozen daemon."),
    k("link-down", &["host"], Act, Event,
      "Take the host's underlay link (`eth1`) down."),
    k("link-up", &["host"], Act, Event,
      "Bring the host's underlay link (`eth1`) up again."),
    k("uplink-down", &["host", "uplink"], Act, Event,
      "Take a dual-homed host's uplink (`up1`, ...) down on the host (admin down)."),
    k("uplink-up", &["host", "uplink"], Act, Event,
      "Bring the host's uplink up again."),
    k("tor-port-down", &["router", "host"], Act, Event,
      "Take the router's end of its link to a dual-homed host down: the host sees carrier loss on that uplink; the router's daemons run on."),
    k("tor-port-up", &["router", "host"], Act, Event,
      "Bring the router's end of that link up again."),
    k("blackhole", &["router", "host"], Act, Event,
      "Drop every packet on the router's link to a dual-homed host, both ways (nftables in the router's namespace: input, output, forward); the link stays up, so only BFD (or the hold timer) notices."),
    k("blackhole-end", &["router", "host"], Act, Event,
      "Remove that blackhole."),
    k("router-down", &["router"], Act, Event,
      "A router dies as a powered-off box does: its links go down (all at once), then its daemons are killed, so no peer hears a goodbye (FIN, NOTIFICATION, BFD down)."),
    k("router-up", &["router"], Act, Event,
      "The router's links come up and its daemons start again."),
    k("drain", &["host", "wait", "timeout"], Act, Event,
      "Run `ipvlan-bgp drain` against the host's driver: its announcements get GRACEFUL_SHUTDOWN (65535:0) and are made less preferred; `wait = true`: the CLI waits (until it says the host is safe to stop, at most `timeout`, default 120 s)."),
    k("undrain", &["host"], Act, Event,
      "Run `ipvlan-bgp undrain` against the host's driver: its announcements go back to normal."),
    k("inject", &["host", "prefix", "next_hop"], Act, Event,
      "Originate a path (either family) on a host's gobgpd with the `gobgp` CLI (a rogue announcement); withdrawn at teardown."),
    k("plugin-call", &["host", "daemon", "method", "body", "expect_error"], Act, Event,
      "Send one Docker plugin request (`method` such as `CreateNetwork`, `body` a table sent as JSON) straight to a host's driver (`daemon`, default `driver2`), the engine unaware; it must succeed, or with `expect_error` fail with this in its error."),
    k("plant-route", &["host", "prefix", "via"], Act, Event,
      "Plant a route (either family) with the driver's protocol tag by hand (a stale leftover)."),
    k("run", &["host", "command"], Act, Event,
      "Run `command` (argv) inside a host's namespace (a firewall rule, a sysctl...); `{{c1}}` in an argument becomes c1's address, `{docker_exec_root}` the host's dockerd exec root (its sandboxes are in `netns/`)."),
    k("flood", &["id", "host", "count", "first", "next_hop"], Act, Event,
      "Originate `count` /32s from `first` on a host's gobgpd through its gRPC API, in the background (`next_hop` default: the host's underlay address)."),
    k("flood-wait", &["id", "within"], Act, Own,
      "Wait until a background flood has been accepted by gobgpd; its time is the flood's, from its start."),
    k("pause", &["for"], Act, Neither,
      "Do nothing for a while (a link that stays down, a freeze that lasts)."),
    // The cluster-wide IPAM and its etcd.
    k("etcd-kill", &["members"], Act, Event,
      "SIGKILL etcd members (`e1`, `e2`, ... of the `[etcd]` section)."),
    k("etcd-start", &["members"], Act, Event,
      "Start killed etcd members again, their data kept (does not wait for them)."),
    k("etcd-freeze", &["members"], Act, Event,
      "SIGSTOP etcd members: they hang with their sockets open, so calls time out instead of being refused."),
    k("etcd-thaw", &["members"], Act, Event,
      "SIGCONT frozen etcd members."),
    k("ipam-release-host", &["host", "release"], Act, Event,
      "Run `ipvlan-bgp ipam release-host` on `host` for the dead host `release` (its id: its underlay address); at least one block must be released."),
    // Expectations.
    k("wait-bgp", &["within"], Expect, Expectation,
      "Wait until every BGP session of every host and router is established, and every BFD session (where the scenario runs BFD) is up."),
    k("expect-reachable", &["from", "to", "within", "probe", "family"], Expect, Expectation,
      "Every `from` reaches every `to` (containers, groups or hosts); `probe = icmp | tcp`."),
    k("expect-unreachable", &["from", "to", "within", "hold", "family"], Expect, Expectation,
      "No `from` reaches any `to`; with `hold`, that stays true for so long."),
    k("expect-matrix", &["members", "within", "family"], Expect, Expectation,
      "Every pair among `members` (default: all running containers) reaches each other; its last round probes every pair at once."),
    k("expect-route", &["host", "prefix", "present", "via", "next_hops", "protocol", "within", "hold", "family"], Expect, Expectation,
      "A route for `prefix` (a CIDR, a container, or `block-of:CONTAINER`: the cluster IPAM's block its host holds the container's address in) on `host`, through `via` when given; with `next_hops` (hosts or addresses) it is one route whose next hops are exactly these (several: one multipath route); `protocol` = ours (default) | static | kernel | boot | a number. With `present = false` the absence must hold for `hold` (2 s by default)."),
    k("expect-routes", &["host", "routes", "within"], Expect, Expectation,
      "The host's whole set of tagged routes (both families) is exactly `routes`: CIDRs, containers (their /32 and /128), groups or `{ prefix, via }`; fails with what is missing, extra or via the wrong next hop."),
    k("expect-converged", &["hosts", "within", "hold"], Expect, Expectation,
      "Every Docker host (or those in `hosts`) holds exactly the /32s and /128s of the running containers of every other host, each via that host, and nothing else of ours (with `[etcd]`: every block each other host holds, read from its `ipam show`, and the /32s and /128s only of its containers outside them, unless its driver runs `--ipam-announce addresses`); reports the time from the first and the last container start or stop of the last `start`/`stop` step; fails naming each host that differs."),
    k("expect-withdrawn", &["prefix", "hosts", "within", "hold", "family"], Expect, Own,
      "Every host of `hosts` (default: every Docker host but the one `prefix`'s container runs on) has lost its tagged route for `prefix` (a CIDR or a container) within `within` of the end of the last event, and the absence holds for `hold` (default 2 s); the hosts are polled together every 10 ms, and its time is from the last event until the last host lost it (resolution 10 ms); fails naming the hosts that still hold it."),
    k("route-events-start", &["id", "host", "router", "prefix", "family"], Expect, Neither,
      "Record the kernel's route events for `prefix` (a CIDR or a container) in a host's namespace (the driver's tagged routes) or a router's (`router`: any protocol, e.g. FRR's zebra), from a netlink subscription, so a withdrawal is seen however briefly it lasts; the route must be there at the start."),
    k("route-events-stop", &["id", "max_withdrawals"], Expect, Neither,
      "Stop recording; fail if the route was deleted more than `max_withdrawals` times (default 0), listing every event with its time."),
    k("route-watch-start", &["id", "hosts"], Expect, Neither,
      "Read those route sets in the background, round after round, as `expect-converged` defines them from the containers running now."),
    k("route-watch-stop", &["id", "max_lost", "min_rounds"], Expect, Neither,
      "Stop a route watch; fail if more than `max_lost` (default 0) host-route pairs were missing in any round or deleted (or sent through another next hop) by any route event since the watch began, if a host held a route it should not, or if the watch read fewer than `min_rounds` (default 20) rounds; reports the rounds and their mean and longest gap."),
    k("expect-container", &["container", "address", "default_route", "gateway", "host_route", "within"], Expect, Expectation,
      "A container's own view (or each member of a group): `address` = its IPAM address is on eth0; `default_route = connected | gateway`; `gateway` = the default route is via the network's gateway, or `false`: no route has a next hop; `host_route` = its address is a /32 (/128) and every on-link route but the default one is a host route (routed, not bridged), or `false`: it is not. Every family the container has."),
    k("expect-bgp-path", &["host", "prefix", "originator", "cluster_list", "within", "family"], Expect, Expectation,
      "The best path for `prefix` in the host's gobgpd carries these route-reflection attributes (ORIGINATOR_ID, CLUSTER_LIST)."),
    k("expect-rejected", &["host", "reason", "within"], Expect, Expectation,
      "The host's driver has rejected at least one learned route for `reason`."),
    k("expect-router-route", &["router", "prefix", "present", "via", "within", "hold", "family"], Expect, Expectation,
      "A router's own view (FRR's selected, BIRD's primary routes) holds `prefix` via `via` (a router also by its IPv6 link-locals), or not."),
    k("expect-router-bgp", &["router", "prefix", "from", "best", "as_path", "communities", "absent_communities", "large_communities", "local_pref", "med", "stale", "within"], Expect, Expectation,
      "An FRR router's BGP path for `prefix` (the one from `from`, a host or an address; default the best) carries these attributes (`as_path` as FRR writes it; each of `communities` must be on the path, none of `absent_communities`; `stale`: FRR keeps it as stale during the sender's graceful restart, or not) and is (`best = true`) or is not the best; fails listing every path with its attributes."),
    k("expect-router-received", &["router", "from", "prefixes", "family", "within", "hold"], Expect, Expectation,
      "The paths an FRR router holds from neighbour `from` (a host; FRR's `show bgp FAMILY unicast neighbors ADDR routes`, after its import policy) are exactly `prefixes` (CIDRs or container names; `family` default `ipv4`): nothing more (a path the host learned elsewhere and passed on: transit) and nothing less; fails listing every path with its AS path."),
    k("expect-status", &["host", "field", "equals", "at_least", "at_most", "within", "hold"], Expect, Expectation,
      "The value at `field` (a dotted path in `ipvlan-bgp status --json`) satisfies every test given; for the numeric tests a key not yet in a map of counters (`bgp.rejected.REASON`) counts as 0, any other missing field fails. The step's note gives the value last read."),
    k("expect-metrics", &["host", "address", "metric", "equals", "at_least", "at_most", "within"], Expect, Expectation,
      "The series `metric` (as Prometheus writes it, labels included; absent counts as 0) of the host driver's `/metrics`, scraped over TCP inside the host's namespace (`address` default `127.0.0.1:9473`: give the driver `--metrics-listen`), satisfies every test given."),
    k("expect-log", &["host", "daemon", "contains", "at_least", "at_most", "within"], Expect, Expectation,
      "The number of lines of a host's daemon log (default the driver's) that contain `contains` is within the bounds."),
    k("link-snapshot", &["id", "host", "links"], Expect, Neither,
      "Remember links of a host (index, kind, parent, MAC, alias, flags) for a later `expect-link` with `unchanged_since`."),
    k("expect-link", &["host", "links", "present", "kind", "alias_prefix", "unchanged_since", "within"], Expect, Expectation,
      "Links exist (or not) in a host's namespace; of a kind, with an alias starting with `alias_prefix`, or exactly as in a snapshot (same index: never deleted and re-made)."),
    k("expect-marked-links", &["host", "at_least", "at_most", "within"], Expect, Expectation,
      "How many links in a host's namespace carry the driver's mark (alias `ipvlan-bgp:...`); fails listing every link with its alias."),
    k("bgp-snapshot", &["id", "host"], Expect, Neither,
      "Remember each BGP session of a host's gobgpd (uptime, updates received) for a later `expect-bgp-steady`."),
    k("expect-bgp-steady", &["host", "since"], Expect, Neither,
      "Every session of the snapshot is still established, never reset (same uptime), and received no UPDATE since."),
    k("expect-ipam", &["network", "hosts", "gone", "max_blocks", "within"], Expect, Expectation,
      "The cross-host audit of a cluster-IPAM network: no address twice among its running containers; each container's address in use in its host's IPAM, in a block that host holds; each host's IPAM uses exactly its containers' addresses and one gateway; each host's blocks are exactly the ones etcd gives it; etcd's audit finds nothing; hosts in `gone` hold no block; none more than `max_blocks`. `hosts`: the live hosts (default all of the network's)."),
    k("probe-start", &["id", "from", "to", "interval", "family"], Expect, Neither,
      "Start pinging pairs every `interval` (default 20 ms) in the background."),
    k("probe-stop", &["id", "max_loss", "max_outage"], Expect, Own,
      "Stop a background probe; fail if more than `max_loss` (default 0) probes were lost, or with `max_outage` if the longest run of lost probes lasted that long; its time is that longest outage."),
    k("flows-start", &["id", "from", "to", "flows", "interval", "family"], Expect, Neither,
      "Start `flows` UDP flows (default 64, each its own source port, so a multipath route hashes them apart) from one container or host to an echo (on a port the kernel picks) in another, one datagram per flow every `interval` (default 10 ms), in the background, over `family`'s addresses (`ipv4` or `ipv6`; default IPv4 where the member has it): an IPv4 and an IPv6 set can run at once between the same members. The echo records what arrives, so each loss is counted on the way there or on the way back; an echo later than 1 s counts as lost."),
    k("flows-stop", &["id", "max_loss", "max_outage"], Expect, Own,
      "Stop background flows (after 1 s for the last echoes); report per flow what was sent, lost there (and of that, refused by the sender's namespace), lost back and late, and its longest outage (from the first unanswered datagram's send to the next answered one's: its resolution is the interval). Fail if a flow is still out at the stop (its last datagrams unanswered: an outage with no end), if a flow lost more than `max_loss` (default 0 unless `max_outage` is given) or its longest outage exceeds `max_outage`; its time is the longest outage of all flows."),
    k("uplink-counters-start", &["id", "hosts"], Expect, Neither,
      "Read `rx_packets` and `tx_packets` of every uplink (`up1`, ...) of these dual-homed hosts, in their namespaces."),
    k("uplink-counters-stop", &["id", "min_share"], Expect, Neither,
      "Read them again; fail unless each uplink of each host carried at least `min_share` percent (default 25) of the host's packets since the start, received and sent each (the shares are in the step's report)."),
];

/// The kind of `do = name`, if there is one.
pub fn kind(name: &str) -> Option<&'static StepKind> {
    STEP_KINDS.iter().find(|k| k.name == name)
}

/// The step reference: `docs/scenario-steps.md`, made from the table.
pub fn markdown() -> String {
    let mut m = String::from(
        "# Scenario steps\n\n\
         _Generated from `harness/src/scenario/step_kinds.rs` (the table the harness parses and plays \
         steps by); do not edit by hand: `HARNESS_WRITE_DOCS=1 cargo test -p harness step_kinds` \
         rewrites it._\n\n\
         Each `[[steps]]` entry has an optional `name` and `do =` one of the kinds below, with its \
         keys. `within` and `hold` are durations such as `500ms` or `10s`. Containers, hosts and \
         routers are named wherever an address is expected (`via = \"h1\"`, `prefix = \"c1\"`); \
         `family = \"ipv4\" | \"ipv6\"` picks which of a named container's or host's addresses a \
         step means (default: IPv4 where it has one).\n\n\
         The time a step reports as its convergence (`convergence_ms`): an *expectation* counts from \
         the end of the last *event* before it until it held; *own* is the step's own measure; \
         *none* reports no convergence. Route expectations (`expect-route`, `expect-routes`, \
         `expect-converged`, `expect-router-route`, route watches) read the table for whether they \
         hold and date it from the namespace's route events, recorded from before the first step: \
         to the millisecond, even when the change came before the step began; with \
         `within = \"0s\"` the condition must have held throughout the last event (no route event \
         against it since the event began), and a `hold` fails on an event between two reads. \
         Reachability (`expect-reachable`, `-unreachable`, `-matrix`) is probed every 2 ms (coarser \
         only when many pairs wait at once). Every step reports its `resolution_ms`: the finest \
         interval its figure can resolve (1 for an event's stamp, the probe interval, or the \
         longest gap between two reads of a polled condition).\n",
    );
    for (play, title) in [
        (Play::Act, "Steps that do something"),
        (
            Play::Expect,
            "Expectations, and the snapshots and probes they compare",
        ),
    ] {
        m.push_str(&format!(
            "\n## {title}\n\n| `do =` | keys | what it does | time |\n|---|---|---|---|\n"
        ));
        for s in STEP_KINDS.iter().filter(|s| s.play == play) {
            let keys: Vec<String> = s.keys.iter().map(|k| format!("`{k}`")).collect();
            let time = match s.measure {
                Measure::Event => "event",
                Measure::Expectation => "expectation",
                Measure::Own => "own",
                Measure::Neither => "none",
            };
            m.push_str(&format!(
                "| `{}` | {} | {} | {time} |\n",
                s.name,
                keys.join(", "),
                s.about.replace('|', "\\|")
            ));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::scenario::steps::Action;

    /// serde's own list of what it accepts, from its error for something
    /// it does not ("expected one of `a`, `b`", "expected `a`").
    fn expected_list(err: &str) -> BTreeSet<String> {
        let Some((_, list)) = err.split_once("expected") else {
            return BTreeSet::new();
        };
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn parse(t: &str) -> Result<Action, String> {
        toml::from_str::<Action>(t).map_err(|e| e.message().to_string())
    }

    #[test]
    fn the_table_has_every_step_kind_of_the_schema_once() {
        let e = parse("do = \"no-such-step\"").unwrap_err();
        let schema = expected_list(&e);
        assert!(schema.len() > 40, "{e}");
        let table: BTreeSet<String> = STEP_KINDS.iter().map(|k| k.name.to_string()).collect();
        assert_eq!(table.len(), STEP_KINDS.len(), "a kind is listed twice");
        assert_eq!(table, schema, "the table and the schema's variants differ");
    }

    #[test]
    fn each_kind_lists_exactly_the_keys_the_schema_accepts() {
        for k in STEP_KINDS {
            let e = parse(&format!("do = \"{}\"\nno_such_key = 1", k.name)).unwrap_err();
            assert!(e.contains("no_such_key"), "{}: {e}", k.name);
            let schema = expected_list(&e);
            let table: BTreeSet<String> = k.keys.iter().map(|s| s.to_string()).collect();
            assert_eq!(table, schema, "{}: {e}", k.name);
        }
    }

    /// `docs/scenario-steps.md` is what [`markdown`] makes of the table;
    /// `HARNESS_WRITE_DOCS=1` rewrites it.
    #[test]
    fn the_step_reference_in_docs_is_made_from_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scenario-steps.md");
        let want = markdown();
        if std::env::var_os("HARNESS_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "{path} differs from the step table; rewrite it with HARNESS_WRITE_DOCS=1 cargo test -p harness step_kinds"
        );
        for k in STEP_KINDS {
            assert!(have.contains(&format!("| `{}` |", k.name)), "{}", k.name);
        }
    }
}
