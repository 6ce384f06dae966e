//! Access to the parameter files under `models/`: embedded in the binary at build time (see build.rs), so the
//! tool works wherever it is installed. A user's own file is always accepted in place of an embedded one.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/embedded_models.rs"));

/// Contents of an embedded model file by its path under `models/` (for example "indices.toml").
pub fn embedded(rel: &str) -> Option<&'static str> {
    EMBEDDED.iter().find(|(p, _)| *p == rel).map(|(_, c)| *c)
}

/// Embedded files under a folder of `models/` (for example "sensors/"), as (path, contents).
pub fn embedded_under(prefix: &str) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    EMBEDDED
        .iter()
        .filter(move |(p, _)| p.starts_with(prefix))
        .copied()
}

/// Parse TOML text into `T`, with an error that names the file and the line of the problem.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    "line {}: ",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        Error::config(origin, format!("{line}{}", e.message()))
    })
}

/// Read and parse a user's TOML file.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input(path, "file does not exist")
        } else {
            Error::io(path, "cannot read", e)
        }
    })?;
    parse_toml(&text, path)
}

/// Display path for an embedded file.
pub fn embedded_path(rel: &str) -> PathBuf {
    PathBuf::from(format!("models/{rel}"))
}
