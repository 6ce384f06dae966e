//! Scratch folders in the system's temporary folder (TMPDIR) that do not outlive a killed run. Each holds a
//! `lock` file that its process keeps locked while it lives; the operating system drops the lock when the
//! process ends however it ends (SIGKILL, a scheduler's time limit). Making a scratch folder first removes the
//! folders of the same prefix whose lock nobody holds: what killed runs left behind. A folder of a live run,
//! of another user, or on a file system that cannot lock is kept. A run killed while it was setting its folder
//! up (the microseconds before its lock is in place) leaves one without a lock: removed once older than
//! `SETUP_GRACE`.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// The lock file's name inside a scratch folder, and the name it is locked under before it is renamed.
const LOCK: &str = "lock";
const LOCK_NEW: &str = ".lock-new";

/// A folder without `lock` younger than this may be a live run's being set up (which takes microseconds);
/// older, with its `.lock-new` free to lock or absent, its run was killed during the set-up.
const SETUP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A scratch folder, removed (then unlocked) when dropped.
pub struct Scratch {
    // Field order is drop order: the folder is removed while its lock is still held.
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// A new folder `PREFIX` + random letters in TMPDIR, locked, after removing stale folders of `prefix`.
    /// `what` names the work in an error ("aggregates of NETCDF:...").
    pub fn new(prefix: &str, what: &str) -> Result<Scratch> {
        Scratch::new_in(&std::env::temp_dir(), prefix, what)
    }

    pub fn new_in(parent: &Path, prefix: &str, what: &str) -> Result<Scratch> {
        remove_stale(parent, prefix);
        let fail = |e: std::io::Error| {
            Error::Processing(format!(
                "cannot create a scratch folder in {} for {what}: {e}",
                parent.display()
            ))
        };
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(fail)?;
        // Locked under another name, then renamed: a sweeper never sees an unlocked `lock` of a live folder.
        // Where the file system cannot lock, the folder has no `lock`: it is never swept (as before locks).
        let fresh = dir.path().join(LOCK_NEW);
        let lock = File::create_new(&fresh).map_err(fail)?;
        if lock.try_lock().is_ok() {
            std::fs::rename(&fresh, dir.path().join(LOCK)).map_err(fail)?;
        }
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Remove the folders in `parent` named `prefix`... whose `lock` file can be locked: their process is gone.
fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let free = |name: &str| File::open(e.path().join(name)).map(|f| f.try_lock().is_ok());
        let stale = match free(LOCK) {
            Ok(free) => free,
            // No `lock`: killed during the set-up, or a file system that cannot lock (its `.lock-new` cannot
            // be locked either, and stays).
            Err(_) => set_up_long_ago(&e.path()) && free(LOCK_NEW).unwrap_or(true),
        };
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether a folder was made (last changed) more than `SETUP_GRACE` ago.
fn set_up_long_ago(dir: &Path) -> bool {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > SETUP_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder whose lock is free (its process was killed) is removed by the next `new`; one whose lock is
    /// held (a live run: here a second open file of this process, which conflicts as another process would),
    /// one without a lock file made just now and one of another prefix are kept; one without a lock an hour
    /// old is removed. A dropped scratch folder is gone.
    #[test]
    fn stale_folders_are_removed_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let dead = Scratch::new_in(p, "carbonmap-test-", "a test").unwrap();
        let dead_path = dead.path().to_path_buf();
        std::mem::forget(dead.dir); // as a killed run: the folder stays...
        drop(dead._lock); // ...and the operating system frees the lock.
        let live = Scratch::new_in(p, "carbonmap-test-", "a test").unwrap();
        let held = File::open(live.path().join(LOCK)).unwrap();
        assert!(held.try_lock().is_err(), "the live folder's lock is held");
        for keep in ["carbonmap-test-nolock", "other-prefix"] {
            std::fs::create_dir(p.join(keep)).unwrap();
        }
        std::fs::write(p.join("other-prefix").join(LOCK), "").unwrap();
        // Killed during the set-up (no `lock`; `.lock-new` free, or not made yet), an hour ago: removed. The
        // same a second ago may be a live run's being set up: kept.
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (name, new_lock, when) in [
            ("carbonmap-test-setup-old", true, Some(hour_ago)),
            ("carbonmap-test-empty-old", false, Some(hour_ago)),
            ("carbonmap-test-setup-young", true, None),
        ] {
            let dir = p.join(name);
            std::fs::create_dir(&dir).unwrap();
            if new_lock {
                std::fs::write(dir.join(LOCK_NEW), "").unwrap();
            }
            if let Some(t) = when {
                File::open(&dir).unwrap().set_modified(t).unwrap();
            }
        }
        let next = Scratch::new_in(p, "carbonmap-test-", "a test").unwrap();
        assert!(!dead_path.exists(), "the killed run's folder is removed");
        assert!(live.path().join(LOCK).exists(), "the live run's is kept");
        assert!(p.join("carbonmap-test-nolock").exists() && p.join("other-prefix").exists());
        assert!(!p.join("carbonmap-test-setup-old").exists());
        assert!(!p.join("carbonmap-test-empty-old").exists());
        assert!(p.join("carbonmap-test-setup-young").exists());
        let next_path = next.path().to_path_buf();
        drop(next);
        assert!(!next_path.exists(), "a dropped scratch folder is removed");
    }
}
