//! Scenario texts the parse and check tests share (test builds only): two
//! hosts with containers and steps, host templates with reflectors, a dual
//! stack underlay, a dual-homed host (also drawn by the HTML page's tests).
//!
//! In: nothing. Out: texts and a parse helper. Owns no state.

use std::path::Path;

use anyhow::Result;

use super::model::Scenario;

/// One host with two uplinks, to two routers on a spine segment.
pub(crate) const DUAL_HOMED: &str = r#"
description = "d"
[bgp]
config = "driver"
[[segments]]
name = "spine"
subnet = "198.51.100.0/24"
[[hosts]]
name = "h1"
asn = 65001
uplinks = ["tor1a", "tor1b"]
[[routers]]
name = "tor1a"
kind = "frr"
asn = 65101
links = { spine = "198.51.100.1/24" }
neighbors = ["h1"]
[[routers]]
name = "tor1b"
kind = "frr"
asn = 65102
links = { spine = "198.51.100.2/24" }
neighbors = ["h1"]
"#;

pub(super) const GOOD: &str = r#"
description = "two hosts"
requires = ["macvlan"]

[[hosts]]
name = "h1"

[[hosts]]
name = "h2"
asn = 65001

[[networks]]
name = "blue"
options = { dataplane = "macvlan" }
subnets = { h1 = "10.1.1.0/24", h2 = "10.1.2.0/24" }

[[containers]]
name = "c"
host = "h1"
network = "blue"
count = 3

[[containers]]
name = "d"
host = "h2"
network = "blue"

[[steps]]
do = "start"
containers = ["c", "d"]

[[steps]]
name = "all see all"
do = "expect-reachable"
from = ["c1"]
to = ["d", "h2"]
within = "5s"
"#;

pub(super) const SCALE: &str = r#"
description = "templates"
requires = ["macvlan"]

[bgp]
mode = "route-reflector"
reflectors = ["rr"]

[[hosts]]
name = "h"
count = 3

[[hosts]]
name = "rr"
count = 2
role = "reflector"
address = "192.0.2.250/24"

[[networks]]
name = "n"
subnet = "10.2.{n}.0/24"

[[containers]]
name = "c"
hosts = ["h"]
network = "n"
count = 2

[[steps]]
do = "start"
containers = ["c"]

[[steps]]
do = "expect-converged"
within = "5s"
"#;

pub(super) const DUAL: &str = r#"
description = "dual stack"
underlay6 = "fd00:2::/64"
[bgp]
transport = "ipv6"
[[hosts]]
name = "h"
count = 3
[[networks]]
name = "dual"
subnet = "10.2.{n}.0/24"
subnet6 = "fd00:10:{n}::/64"
[[networks]]
name = "v6only"
subnets6 = { h1 = "fd00:20:1::/64" }
[[containers]]
name = "c6"
host = "h1"
network = "v6only"
[[steps]]
do = "expect-route"
host = "h2"
prefix = "c6"
family = "ipv6"
via = "h1"
[[steps]]
do = "inject"
host = "h1"
prefix = "::/0"
next_hop = "fd00:2::1"
"#;

pub(super) fn parse(src: &str) -> Result<Scenario> {
    Scenario::parse(src, Path::new("scenarios/x.toml"))
}
