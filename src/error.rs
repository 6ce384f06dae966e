//! The one error type of the library. Every user-facing message about bad input is written here, so the
//! wording stays consistent: each names the file (and the band, line or key) and says what is wrong.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in carbonmap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file is missing, unreadable or malformed.
    #[error("{}: {problem}", path.display())]
    Input { path: PathBuf, problem: String },

    /// A band of an input file is missing or unusable.
    #[error("{}: band {band}: {problem}", path.display())]
    Band {
        path: PathBuf,
        band: String,
        problem: String,
    },

    /// A configuration file (stack manifest, sensor profile, index table ...) is invalid.
    #[error("{}: {problem}", path.display())]
    Config { path: PathBuf, problem: String },

    /// A command-line argument or parameter is invalid.
    #[error("{0}")]
    Usage(String),

    /// Several problems found while checking inputs before computing; all are reported at once.
    #[error("{} problem(s) found before computing:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),

    /// GDAL failed while reading or writing a file.
    #[error("{}: {context}: {source}", path.display())]
    Gdal {
        path: PathBuf,
        context: String,
        #[source]
        source: gdal::errors::GdalError,
    },

    /// A computation failed (a library such as linfa reported an error).
    #[error("{0}")]
    Processing(String),

    /// `carbonmap run`: some stages failed or were not run, others finished (partial success).
    #[error("partial success: {0}")]
    Partial(String),

    /// The output folder is locked by another run.
    #[error("{0}")]
    Busy(String),

    /// A filesystem operation failed.
    #[error("{}: {context}: {source}", path.display())]
    Io {
        path: PathBuf,
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn input(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn band(
        path: impl Into<PathBuf>,
        band: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Band {
            path: path.into(),
            band: band.into(),
            problem: problem.into(),
        }
    }

    pub fn config(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn gdal(
        path: impl Into<PathBuf>,
        context: impl Into<String>,
        source: gdal::errors::GdalError,
    ) -> Self {
        Error::Gdal {
            path: path.into(),
            context: context.into(),
            source,
        }
    }

    pub fn io(
        path: impl Into<PathBuf>,
        context: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            context: context.into(),
            source,
        }
    }

    /// Process exit code for this error (documented in the README):
    /// 2 = bad input or usage (nothing computed), 3 = processing failure (I/O or GDAL error while running),
    /// 4 = partial success (`run`: some stages failed, others finished), 5 = output folder locked by another run.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. }
            | Error::Band { .. }
            | Error::Config { .. }
            | Error::Usage(_)
            | Error::Invalid(_) => 2,
            Error::Gdal { .. } | Error::Io { .. } | Error::Processing(_) => 3,
            Error::Partial(_) => 4,
            Error::Busy(_) => 5,
        }
    }

    /// Flatten into the list of problem lines (used when collecting all problems before computing).
    pub fn into_problems(self) -> Vec<String> {
        match self {
            Error::Invalid(v) => v,
            other => vec![other.to_string()],
        }
    }
}

/// Collects problems found while validating inputs, so that all of them are reported in one go.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an error and carry on.
    pub fn push(&mut self, e: Error) {
        self.0.extend(e.into_problems());
    }

    /// Keep the value of `r`, or record its error and return `None`.
    pub fn take<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else one `Error::Invalid` with every problem.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}
