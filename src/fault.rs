//! Fault injection for the tests that attack carbonmap's promises: `CARBONMAP_FAULT=NAME:N` kills this
//! process with SIGKILL the N-th time (1-based) it reaches the point NAME (for example `commit-rename:2`, the
//! second rename of a commit). Without the variable every point is a no-op.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
static HITS: AtomicUsize = AtomicUsize::new(0);

fn target() -> &'static Option<(String, usize)> {
    TARGET.get_or_init(|| {
        let v = std::env::var("CARBONMAP_FAULT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        Some((name.to_string(), n.parse().ok()?))
    })
}

/// A named point of the program where a test may kill it.
pub fn point(name: &str) {
    let Some((want, n)) = target() else { return };
    if want != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // SIGKILL is delivered before this returns; never continue past an injected fault.
        std::process::abort();
    }
}
