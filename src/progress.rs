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
    /// A stage of `carbonmap run` changed state (`seconds` once it has run; `detail` an error or a reason).
    fn stage(&self, _name: &str, _state: StageState, _seconds: Option<f64>, _detail: &str) {}
}

/// States of a stage of `carbonmap run`, as reported to `Progress::stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    Started,
    /// Ran and finished.
    Done,
    /// Inputs, parameters and recipe unchanged since the recorded run and its outputs intact: not run.
    UpToDate,
    Failed,
    /// Not run because a stage it depends on failed.
    Blocked,
}

impl StageState {
    pub fn name(self) -> &'static str {
        match self {
            StageState::Started => "started",
            StageState::Done => "done",
            StageState::UpToDate => "up to date",
            StageState::Failed => "failed",
            StageState::Blocked => "blocked",
        }
    }
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
