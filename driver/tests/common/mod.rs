//! Helpers shared by the property tests (each file in tests/ is its own
//! crate; they include this with `mod common;`).

/// Whether the IPv4 range `[a, b]` (as numbers) meets one of the ranges that
/// are never container networks. Written out as numbers on purpose,
/// independently of the driver's own tables, so a mistake there is caught.
pub fn touches_reserved_v4(a: u32, b: u32) -> bool {
    [
        (0x0000_0000u32, 0x00ff_ffffu32), // 0.0.0.0/8
        (0x7f00_0000, 0x7fff_ffff),       // 127.0.0.0/8
        (0xa9fe_0000, 0xa9fe_ffff),       // 169.254.0.0/16
        (0xe000_0000, 0xffff_ffff),       // 224.0.0.0/4 and 240.0.0.0/4
    ]
    .iter()
    .any(|(lo, hi)| a <= *hi && *lo <= b)
}

/// Whether `[a, b]` meets one of the IPv6 ranges no container network may
/// touch: unspecified, loopback, IPv4-mapped, link-local, multicast.
#[allow(dead_code)]
pub fn touches_reserved_v6(a: u128, b: u128) -> bool {
    [
        (0u128, 1u128),                               // ::, ::1
        (0xffff_0000_0000, 0xffff_ffff_ffff),         // ::ffff:0:0/96
        (0xfe80u128 << 112, (0xfec0u128 << 112) - 1), // fe80::/10
        (0xff00u128 << 112, u128::MAX),               // ff00::/8
    ]
    .iter()
    .any(|(lo, hi)| a <= *hi && *lo <= b)
}
