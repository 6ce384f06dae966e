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
        // The line number and the line itself, so the value at fault is named.
        let line = e
            .span()
            .map(|s| {
                let start = s.start.min(text.len());
                let n = text[..start].matches('\n').count();
                let content = text.lines().nth(n).unwrap_or("").trim();
                format!("line {} ({content}): ", n + 1)
            })
            .unwrap_or_default();
        Error::config(origin, format!("{line}{}", e.message()))
    })
}

/// Read and parse a user's TOML file.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::io::read_text(path, "a TOML file")?;
    // `${NAME}` names an environment variable (configs portable across machines).
    let text = crate::envvars::expand(&text, crate::envvars::from_env)
        .map_err(|e| Error::config(path, e))?;
    parse_toml(&text, path)
}

/// Display path for an embedded file.
pub fn embedded_path(rel: &str) -> PathBuf {
    PathBuf::from(format!("models/{rel}"))
}

/// A table of named parameter files under one folder of `models/` (sensor profiles, legends ...): the
/// built-in entries, a user's file in place of one, and lookup by name, written once for every kind.
pub trait NamedEntry: DeserializeOwned {
    /// What the entry is called in messages ("sensor", "legend").
    const KIND: &'static str;
    /// Folder under models/ ("sensors/").
    const FOLDER: &'static str;
    fn name(&self) -> &str;
    fn set_source(&mut self, path: PathBuf);
    fn validate(&self) -> Result<()>;
    /// Files of the folder that are not entries of this kind.
    fn skip(_rel: &str) -> bool {
        false
    }
}

/// Every built-in entry of a kind, validated, sorted by name.
pub fn builtin_entries<T: NamedEntry>() -> Result<Vec<T>> {
    let mut v = Vec::new();
    for (rel, text) in embedded_under(T::FOLDER).filter(|(rel, _)| !T::skip(rel)) {
        let path = embedded_path(rel);
        let mut e: T = parse_toml(text, &path)?;
        e.set_source(path);
        e.validate()?;
        v.push(e);
    }
    v.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(v)
}

/// Whether `name_or_path` names the user's file (it ends in .toml) rather than a built-in entry or table.
pub fn is_user_file(name_or_path: &str) -> bool {
    name_or_path.ends_with(".toml")
}

/// A built-in entry by name (case-insensitive), or the user's file when `name_or_path` ends in .toml
/// (relative to `base`). An unknown name is an error listing the known ones.
pub fn resolve_entry<T: NamedEntry>(name_or_path: &str, base: &Path) -> Result<T> {
    if is_user_file(name_or_path) {
        let path = base.join(name_or_path);
        let mut e: T = read_toml(&path)?;
        e.set_source(path);
        e.validate()?;
        return Ok(e);
    }
    let all = builtin_entries::<T>()?;
    let names: Vec<&str> = all.iter().map(|e| e.name()).collect();
    let known = names.join(", ");
    all.iter()
        .position(|e| e.name().eq_ignore_ascii_case(name_or_path))
        .map(|i| all.into_iter().nth(i).unwrap())
        .ok_or_else(|| Error::Usage(format!("unknown {kind} '{name_or_path}'; known {kind}s: {known} (or give a {kind} file ending in .toml)", kind = T::KIND)))
}

/// A parameter table named by file: the user's file when `name_or_path` ends in .toml, else the built-in
/// `models/{prefix}{name}.toml` (e.g. prefix "casa/" or "mod17/bplut-"). Parsed with line numbers in errors;
/// returns the value and the file it came from. An unknown name lists the built-in ones.
pub fn resolve_table<T: DeserializeOwned>(
    kind: &str,
    prefix: &str,
    name_or_path: &str,
) -> Result<(T, PathBuf)> {
    if is_user_file(name_or_path) {
        let p = PathBuf::from(name_or_path);
        return Ok((read_toml(&p)?, p));
    }
    let rel = format!("{prefix}{name_or_path}.toml");
    let Some(text) = embedded(&rel) else {
        let known: Vec<&str> = embedded_under(prefix)
            .filter(|(r, _)| r.ends_with(".toml"))
            .map(|(r, _)| r.trim_start_matches(prefix).trim_end_matches(".toml"))
            .collect();
        return Err(Error::Usage(format!(
            "unknown {kind} '{name_or_path}' (built in: {}; or give a .toml file)",
            known.join(", ")
        )));
    };
    let p = embedded_path(&rel);
    Ok((parse_toml(text, &p)?, p))
}
