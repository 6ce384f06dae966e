//! A Zarr store as one input of a season's manifest. A store is a folder of chunk files that GDAL reads as one
//! dataset; `gdalmdimtranslate` writes one chunk a time step, 26,280 files for a year of three hourly variables.
//! Recorded file by file, that is 6.4 MB of manifest; here a store is one record: its number of files, their
//! total size and latest modification time (the stamp that lets a recorded hash be trusted), and one SHA-256
//! over its files' relative paths and contents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io;

/// The inputs of a stage with the files inside Zarr stores taken out: (files outside any store, the stores).
/// A file belongs to the outermost store folder among its ancestors (a store's arrays are stores themselves).
pub fn group(files: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut memo: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut is_store = |d: &Path| {
        *memo
            .entry(d.to_path_buf())
            .or_insert_with(|| io::is_zarr_store(d))
    };
    let (mut plain, mut stores) = (Vec::new(), BTreeSet::new());
    for f in files {
        let outermost = f.ancestors().skip(1).filter(|d| is_store(d)).last();
        match outermost {
            Some(s) => {
                stores.insert(s.to_path_buf());
            }
            None => plain.push(f.clone()),
        }
    }
    (plain, stores.into_iter().collect())
}

/// A store's stamp: its number of files, their total size (bytes) and their latest modification time (ns since
/// 1970; 0 when the file system does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub files: u64,
    pub size: u64,
    pub modified_ns: u64,
}

pub fn stamp(dir: &Path) -> Result<Stamp> {
    let mut s = Stamp {
        files: 0,
        size: 0,
        modified_ns: 0,
    };
    for f in io::files_under(dir)? {
        let meta = std::fs::metadata(&f).map_err(|e| Error::io(&f, "cannot read", e))?;
        s.files += 1;
        s.size += meta.len();
        s.modified_ns = s.modified_ns.max(io::modified_ns(&meta));
    }
    Ok(s)
}

/// SHA-256 (hex) over a store's files in path order: each file's path relative to the store, a NUL byte, its
/// own SHA-256 (hex) and a newline. Renaming, adding, removing or changing any file changes it.
pub fn sha256(dir: &Path) -> Result<String> {
    let mut listing = String::new();
    for f in io::files_under(dir)? {
        let rel = f.strip_prefix(dir).unwrap_or(&f).to_string_lossy();
        listing.push_str(&format!("{rel}\0{}\n", io::sha256_file(&f)?));
    }
    Ok(io::sha256_hex(listing.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(d: &Path) -> PathBuf {
        let s = d.join("era5.zarr");
        std::fs::create_dir_all(s.join("t2m/0")).unwrap();
        std::fs::write(s.join(".zgroup"), b"{}").unwrap();
        std::fs::write(s.join("t2m/.zarray"), b"{}").unwrap();
        std::fs::write(s.join("t2m/0/0"), b"\x01\x02").unwrap();
        std::fs::write(s.join("t2m/0/1"), b"\x03").unwrap();
        s
    }

    #[test]
    fn files_go_under_their_outermost_store() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let lone = d.path().join("drivers.toml");
        std::fs::write(&lone, "").unwrap();
        let mut files = io::files_under(&s).unwrap();
        files.push(lone.clone());
        // The array folder t2m/ has its own .zarray: the files still belong to the store, once.
        assert_eq!(group(&files), (vec![lone], vec![s]));
    }

    #[test]
    fn any_change_to_a_store_changes_its_hash_and_stamp() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        let (h0, st0) = (sha256(&s).unwrap(), stamp(&s).unwrap());
        // 4 files: .zgroup (2 bytes), t2m/.zarray (2), t2m/0/0 (2), t2m/0/1 (1).
        assert_eq!((st0.files, st0.size), (4, 7));
        // Same bytes under another name: the hash says so (the stamp's counts do not).
        std::fs::rename(s.join("t2m/0/1"), s.join("t2m/0/2")).unwrap();
        let h1 = sha256(&s).unwrap();
        assert_ne!(h0, h1);
        // Same name and size, other bytes.
        std::fs::write(s.join("t2m/0/2"), b"\x04").unwrap();
        assert_ne!(sha256(&s).unwrap(), h1);
        // A file more.
        std::fs::write(s.join("t2m/0/3"), b"\x05").unwrap();
        assert_eq!(stamp(&s).unwrap().files, 5);
    }
}
