//! Helpers shared by the test files (each file in tests/ is its own
//! crate; they include this with `mod common;`).

pub mod driver;
pub mod lab;

/// Whether the IPv4 range `[a, b]` (as numbers) meets one of the ranges that
/// are never container networks. Written out as numbers on purpose,
/// independently of the driver's own tables, so a mistake there is caught.
#[allow(dead_code)]
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

/// Why a test did not run: [`run_async_trials`] reports it as `ignored`
/// with the reason, never as passed.
#[allow(dead_code)]
pub struct Skip(pub String);

/// What an async test answers: `Err(Skip)` when this host cannot run it.
#[allow(dead_code)]
pub type Outcome = Result<(), Skip>;

/// One async test, boxed so a plain `fn` can name it.
#[allow(dead_code)]
pub type AsyncTest = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome>>>;

/// A visible skip; under CI (`CI=true`) a missing tool or root fails instead.
#[allow(dead_code)]
pub fn skip(reason: &str) -> Outcome {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}: under CI=true this is a failure, not a skip"
    );
    Err(Skip(reason.to_string()))
}

/// Runs `tests` with libtest-mimic (a custom test harness: `harness =
/// false` in Cargo.toml), each on its own two-thread tokio runtime; a skip
/// shows as `ignored (reason)`.
#[allow(dead_code)]
pub fn run_async_trials(tests: Vec<(&'static str, AsyncTest)>) -> ! {
    use libtest_mimic::{Arguments, Completion, Trial};
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::ignorable_test(name, move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?;
                match rt.block_on(test()) {
                    Ok(()) => Ok(Completion::Completed),
                    Err(Skip(reason)) => {
                        eprintln!("SKIPPED {name}: {reason}");
                        Ok(Completion::ignored_with(reason))
                    }
                }
            })
        })
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}

/// Appends one test's outcome to the suite's trial log, the file
/// `HARNESS_TRIAL_LOG` names (set by `ci/test.sh`; nothing when unset), in
/// the harness's format (`harness/src/skips.rs`: one JSON object per line,
/// `test`, `where` = this test binary, `skipped` = the reason or null).
/// `harness skips check` then holds every skip against `ci/expected-skips`.
/// One `write` in append mode: parallel tests never interleave.
#[allow(dead_code)]
pub fn record_trial(binary: &str, test: &str, skipped: Option<&str>) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("HARNESS_TRIAL_LOG").filter(|p| !p.is_empty()) else {
        return;
    };
    let line = serde_json::json!({"test": test, "where": binary, "skipped": skipped});
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        panic!(
            "HARNESS_TRIAL_LOG={}: {e} (start it with `harness skips start`)",
            std::path::Path::new(&path).display()
        );
    }
}
