//! Threads that do bulk work yield the CPU to the ones that answer Docker.
//!
//! In: the calling thread (the BGP learner, the route installer). Out: its
//! nice value raised to [`NICE`], so that while they digest a large RIB the
//! tokio workers answering Docker's calls are scheduled first (issue 19
//! point 7: CreateEndpoint+Join during a 100,000-route learn). Linux's
//! nice is per thread; raising it needs no privilege. A failure is logged
//! and changes nothing else.

use tracing::warn;

/// The nice value of the bulk-work threads (0 is the default, 19 the lowest).
pub const NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`NICE`].
pub fn lower_this_thread() {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority only reads its arguments; `tid` names this thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE) };
    if rc != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot lower a bulk-work thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calling_thread_gets_the_nice_value() {
        std::thread::spawn(|| {
            lower_this_thread();
            let tid = nix::unistd::gettid().as_raw();
            let got = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            assert_eq!(got, NICE);
        })
        .join()
        .unwrap();
    }
}
