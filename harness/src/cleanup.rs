//! The cleanup stack: every namespace, process or file a run creates
//! registers its undo step at creation; they run in reverse order at the end,
//! on failure, on panic (drop) and on Ctrl-C ([`run_all_registered`]).
//!
//! In: undo steps, each with a description. Out: the errors of those that
//! failed (the others still run). Owns the process-wide registry of stacks.

use std::sync::{Arc, Mutex, Weak};

type Step = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

#[derive(Default)]
pub struct Cleanup {
    steps: Mutex<Vec<(String, Step)>>,
}

static REGISTRY: Mutex<Vec<Weak<Cleanup>>> = Mutex::new(Vec::new());

impl Cleanup {
    /// A new stack, registered so that Ctrl-C can unwind it.
    pub fn new() -> Arc<Cleanup> {
        let c = Arc::new(Cleanup::default());
        if let Ok(mut r) = REGISTRY.lock() {
            r.retain(|w| w.strong_count() > 0);
            r.push(Arc::downgrade(&c));
        }
        c
    }

    pub fn push(
        &self,
        what: impl Into<String>,
        f: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) {
        self.lock().push((what.into(), Box::new(f)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Step)>> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs every step, last first; keeps going past failures and returns them.
    pub fn run(&self) -> Vec<String> {
        let steps: Vec<(String, Step)> = std::mem::take(&mut *self.lock());
        let mut errors = Vec::new();
        for (what, f) in steps.into_iter().rev() {
            if let Err(e) = f() {
                errors.push(format!("{what}: {e:#}"));
            }
        }
        errors
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for e in self.run() {
            eprintln!("harness: cleanup: {e}");
        }
    }
}

/// Unwinds every live run (used by the Ctrl-C handler).
pub fn run_all_registered() {
    let live: Vec<Arc<Cleanup>> = REGISTRY
        .lock()
        .map(|r| r.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for c in live {
        for e in c.run() {
            eprintln!("harness: cleanup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_in_reverse_and_keeps_going() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let c = Cleanup::new();
        for i in 0..3 {
            let o = order.clone();
            c.push(format!("step {i}"), move || {
                o.lock().unwrap().push(i);
                if i == 1 {
                    anyhow::bail!("boom")
                }
                Ok(())
            });
        }
        let errors = c.run();
        assert_eq!(*order.lock().unwrap(), vec![2, 1, 0]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("step 1") && errors[0].contains("boom"));
        assert!(c.is_empty());
    }

    #[test]
    fn drop_runs_what_is_left() {
        let n = Arc::new(AtomicUsize::new(0));
        {
            let c = Cleanup::new();
            let n2 = n.clone();
            c.push("count", move || {
                n2.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
