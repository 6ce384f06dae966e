//! The small interface through which the library reports progress and warnings. The CLI implements it with
//! indicatif on stderr; tests and library users can pass `Silent` or collect warnings.

use std::sync::Mutex;

pub trait Progress: Sync {
    /// A stage starts with `total` units of work.
    fn start(&self, stage: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The current stage is finished.
    fn finish(&self);
    /// Something the user should know that does not stop the run.
    fn warn(&self, message: &str);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn warn(&self, _: &str) {}
}

/// Keeps warnings (for tests and for run reports).
#[derive(Default)]
pub struct CollectWarnings(pub Mutex<Vec<String>>);

impl Progress for CollectWarnings {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn warn(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}
