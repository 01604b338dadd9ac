//! The stamps of trace lines: microseconds on the monotonic clock.
//!
//! In: nothing (the system's `CLOCK_MONOTONIC`, the clock of `Instant`,
//! shared by every process on the host). Out: [`mono_us`], the `mono_us`
//! field of the debug lines along the announcement's and the withdrawal's
//! way, so a benchmark can place them beside its own stamps.

/// Microseconds on `CLOCK_MONOTONIC`.
pub fn mono_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
