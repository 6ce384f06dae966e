//! One commit per command. Every output of a command (rasters, tables, maps, models) is written under a
//! temporary name beside its target and verified; nothing reaches its final name until the command has
//! finished without error. Then a journal listing every (temporary, final) pair is written and synced, the
//! files are renamed into place, and the journal is removed. A kill between the journal and the last rename is
//! completed (rolled forward) by the next carbonmap command that writes into that folder: the temporary files
//! it names were complete and verified before the journal existed. A failed run commits nothing.
//!
//! Folders: every folder carbonmap writes into holds a hidden file `.carbonmap` that is both the folder's lock
//! (an OS file lock held for the whole command; a second command gets exit code 5) and the list of the names
//! carbonmap wrote there. A file that exists under a target's name and is not in that list was not written by
//! carbonmap, and is never replaced (exit code 2). Inputs are never outputs: every target is compared with
//! the command's input files (canonical paths, symlinks resolved).
//!
//! Outside a scope (`run`), writers rename at once: library callers and tests keep the old behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The marker and lock file of a folder carbonmap writes into.
pub const MARKER: &str = ".carbonmap";
/// The journal of a commit in progress.
pub const JOURNAL: &str = ".carbonmap-journal";
/// First line of a marker file.
const MARKER_HEADER: &str = "# carbonmap output folder: the names below were written by carbonmap";

/// One output waiting under its temporary name.
#[derive(Debug, Clone, PartialEq)]
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
}

/// A folder this process writes into: its locked marker file, and whether this process created it.
struct Folder {
    marker: File,
    created: Vec<PathBuf>,
}

#[derive(Default)]
struct Scope {
    inputs: BTreeSet<PathBuf>,
    staged: Vec<Staged>,
}

#[derive(Default)]
struct State {
    scopes: Vec<Scope>,
    folders: BTreeMap<PathBuf, Folder>,
}

static STATE: Mutex<State> = Mutex::new(State {
    scopes: Vec::new(),
    folders: BTreeMap::new(),
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Canonical form of a path that may not exist yet: its deepest existing ancestor resolved, the rest appended.
pub fn canonical(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_os_string());
                cur = p;
            }
            _ => return abs,
        }
    }
}

/// Run `f` as one command: outputs staged inside it are committed together when it returns `Ok`, and removed
/// when it fails or panics. `inputs` are the command's input files (never replaced by an output).
pub fn run<T>(inputs: &[PathBuf], f: impl FnOnce() -> Result<T>) -> Result<T> {
    {
        let mut st = state();
        st.scopes.push(Scope {
            inputs: inputs.iter().map(|p| canonical(p)).collect(),
            staged: Vec::new(),
        });
    }
    let guard = ScopeGuard { armed: true };
    let result = f();
    let scope = guard.pop();
    let outcome = match result {
        Ok(v) => commit(&scope.staged).map(|()| v),
        Err(e) => Err(Failure::Before(e)),
    };
    let outcome = match outcome {
        Ok(v) => Ok(v),
        Err(Failure::Before(e)) => {
            discard(&scope.staged);
            remove_created_folders();
            Err(e)
        }
        // The journal is durable: its temporary files stay for the next command to complete the commit.
        Err(Failure::AfterJournal(e)) => Err(e),
    };
    release_if_outermost();
    outcome
}

/// How a commit failed: before its journal was durable (nothing happened; the temporary files go), or
/// after (the next command that writes into the folder completes it from the journal).
enum Failure {
    Before(Error),
    AfterJournal(Error),
}

/// Pops the scope when dropped during a panic, removing its temporary files.
struct ScopeGuard {
    armed: bool,
}

impl ScopeGuard {
    fn pop(mut self) -> Scope {
        self.armed = false;
        state().scopes.pop().unwrap_or_default()
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if self.armed {
            let scope = state().scopes.pop().unwrap_or_default();
            discard(&scope.staged);
            release_if_outermost();
        }
    }
}

fn discard(staged: &[Staged]) {
    for s in staged {
        let _ = std::fs::remove_file(&s.tmp);
    }
}

/// Folders created by this process that hold nothing but their marker are removed after a failure, so a
/// failed run leaves no trace.
fn remove_created_folders() {
    let st = state();
    if !st.scopes.is_empty() {
        return;
    }
    let mut created: Vec<PathBuf> = st
        .folders
        .values()
        .flat_map(|f| f.created.clone())
        .collect();
    drop(st);
    created.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in created {
        let only_marker = std::fs::read_dir(&dir)
            .is_ok_and(|mut it| it.all(|e| e.is_ok_and(|e| e.file_name() == MARKER)));
        if only_marker {
            let _ = std::fs::remove_file(dir.join(MARKER));
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// The locks are held until the outermost command ends.
fn release_if_outermost() {
    let mut st = state();
    if st.scopes.is_empty() {
        st.folders.clear();
    }
}

/// The (temporary, final) pairs staged so far in the innermost scope (`--maps` draws from them).
pub fn staged() -> Vec<(PathBuf, PathBuf)> {
    state()
        .scopes
        .last()
        .map(|s| {
            s.staged
                .iter()
                .map(|x| (x.tmp.clone(), x.target.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Where a file this command has written but not yet committed can be read (its temporary name), else the
/// path itself.
pub fn readable(target: &Path) -> PathBuf {
    staged()
        .into_iter()
        .find(|(_, t)| t == target)
        .map_or_else(|| target.to_path_buf(), |(tmp, _)| tmp)
}

/// Whether a command scope is active (writers then stage instead of renaming).
pub fn active() -> bool {
    !state().scopes.is_empty()
}

/// Prepare a folder for writing: create it (remembering what was created), lock its marker (exit 5 when
/// another command holds it) and complete a commit a killed run left there. Outside a scope: create only.
pub fn prepare_folder(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if !active() {
        return std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "cannot create output folder", e));
    }
    register_folder(dir)
}

/// Create, lock and tidy a folder (once per process and folder), whether or not a scope is active.
fn register_folder(dir: &Path) -> Result<()> {
    let key = canonical(dir);
    if state().folders.contains_key(&key) {
        return Ok(());
    }
    let mut created = Vec::new();
    let mut cur = key.as_path();
    while !cur.exists() {
        created.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    if key.exists() && !key.is_dir() {
        return Err(Error::input(dir, "is a file, expected an output folder"));
    }
    std::fs::create_dir_all(&key).map_err(|e| Error::io(dir, "cannot create output folder", e))?;
    let mut marker = lock_marker(&key)?;
    roll_forward(&key, &mut marker)?;
    sweep(&key);
    state().folders.insert(key, Folder { marker, created });
    Ok(())
}

/// A folder's marker file, created when missing, opened for reading and appending in place.
fn open_marker(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

fn lock_marker(dir: &Path) -> Result<File> {
    let path = dir.join(MARKER);
    let mut f = open_marker(&path)
        .map_err(|e| Error::io(&path, "cannot open the folder's marker and lock file", e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Busy(format!(
                "{}: another carbonmap run or command is writing into this folder; try again when it has finished",
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, "cannot lock", e)),
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        f.write_all(format!("{MARKER_HEADER}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&path, "cannot write the folder's marker", e))?;
    }
    Ok(f)
}

/// Names listed in a folder's marker (empty when the folder has none).
pub fn marked_names(dir: &Path) -> BTreeSet<String> {
    let mut text = String::new();
    if let Ok(mut f) = File::open(dir.join(MARKER)) {
        let _ = f.read_to_string(&mut text);
    }
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `dir` is a folder carbonmap writes into (it holds a marker).
pub fn is_carbonmap_folder(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Whether carbonmap wrote `path` (its name is in its folder's marker).
pub fn written_by_carbonmap(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    marked_names(dir).contains(&name.to_string_lossy().into_owned())
}

/// Hidden bookkeeping files of carbonmap (markers, journals, temporary files): not outputs.
pub fn is_bookkeeping(name: &str) -> bool {
    name == MARKER || name.starts_with(JOURNAL) || name.contains(".partial-")
}

/// Take a finished, verified temporary file for `target`. Inside a scope it waits for the commit; outside one
/// it is renamed at once. An output that would replace an input, or a file carbonmap did not write, is refused.
pub fn stage(tmp: &Path, target: &Path) -> Result<()> {
    if !active() {
        return std::fs::rename(tmp, target)
            .map_err(|e| Error::io(target, "cannot rename the finished output into place", e));
    }
    check_target(target)?;
    let mut st = state();
    let scope = st.scopes.last_mut().expect("active scope");
    let canon = canonical(target);
    if let Some(prev) = scope
        .staged
        .iter()
        .position(|s| canonical(&s.target) == canon)
    {
        let old = scope.staged.remove(prev);
        if old.tmp != tmp {
            let _ = std::fs::remove_file(&old.tmp);
        }
    }
    scope.staged.push(Staged {
        tmp: tmp.to_path_buf(),
        target: target.to_path_buf(),
    });
    Ok(())
}

/// An output target must not be an input of any active command, and must not replace a file carbonmap did not
/// write.
fn check_target(target: &Path) -> Result<()> {
    let canon = canonical(target);
    let is_input = state().scopes.iter().any(|s| s.inputs.contains(&canon));
    if is_input {
        return Err(Error::input(
            target,
            "this output would overwrite an input of the same command; choose another output path",
        ));
    }
    if let Ok(meta) = std::fs::symlink_metadata(target) {
        if meta.is_dir() {
            return Err(Error::input(
                target,
                "an output file's name is taken by a folder",
            ));
        }
        if !written_by_carbonmap(target) {
            return Err(Error::input(
                target,
                "exists and was not written by carbonmap (it is not listed in the folder's .carbonmap); \
                 refusing to replace it: move it away or choose another output path",
            ));
        }
    }
    Ok(())
}

/// Journal format: one line per output, `TMP\tTARGET` (absolute paths), after a header line.
fn journal_text(staged: &[Staged]) -> String {
    let mut s = String::from("# carbonmap commit journal: TMP\\tTARGET\n");
    for x in staged {
        s.push_str(&format!(
            "{}\t{}\n",
            canonical(&x.tmp).display(),
            canonical(&x.target).display()
        ));
    }
    s
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn journal_folder(staged: &[Staged]) -> PathBuf {
    let first = &staged[0].target;
    canonical(first.parent().unwrap_or(Path::new(".")))
}

/// Commit the staged outputs: record their names in each folder's marker, write and sync the journal, rename
/// every file into place, sync the folders, remove the journal.
fn commit(staged: &[Staged]) -> std::result::Result<(), Failure> {
    if staged.is_empty() {
        return Ok(());
    }
    for s in staged {
        check_target(&s.target).map_err(Failure::Before)?;
    }
    let home = journal_folder(staged);
    let journal = home.join(JOURNAL);
    let tmp_journal = home.join(format!("{JOURNAL}.partial-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp_journal)?;
        f.write_all(journal_text(staged).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp_journal, &journal)?;
        sync_dir(&home);
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_journal);
        return Err(Failure::Before(Error::io(
            &journal,
            "cannot write the commit journal (disk full?)",
            e,
        )));
    }
    crate::fault::point("commit-unmarked");
    // The names are recorded in the folders' markers before any rename; if that fails (a full disk), the
    // journal goes too and nothing is committed. (A kill here leaves the journal: the next command records the
    // names when it completes the commit.)
    if let Err(e) = mark(staged) {
        let _ = std::fs::remove_file(&journal);
        sync_dir(&home);
        return Err(Failure::Before(e));
    }
    crate::fault::point("commit-journal");
    let after = |e: Error| {
        Failure::AfterJournal(Error::Processing(format!(
            "{e}; the commit is recorded in {} and the next carbonmap command writing into {} completes it",
            journal.display(),
            home.display()
        )))
    };
    apply(staged).map_err(after)?;
    std::fs::remove_file(&journal)
        .map_err(|e| after(Error::io(&journal, "cannot remove the journal", e)))?;
    sync_dir(&home);
    Ok(())
}

/// Rename each staged file into place (the journal is durable; a kill here is completed by the next run).
fn apply(staged: &[Staged]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for (i, s) in staged.iter().enumerate() {
        if i > 0 {
            crate::fault::point("commit-rename");
        }
        if s.tmp.exists() {
            std::fs::rename(&s.tmp, &s.target).map_err(|e| {
                Error::io(&s.target, "cannot rename the finished output into place", e)
            })?;
        }
        if let Some(d) = s.target.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    for d in dirs {
        sync_dir(if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &d
        });
    }
    Ok(())
}

/// The last component of `path` (empty when it has none), as recorded in markers.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Append the staged names to their folders' markers (before any rename, so a name under a final path is
/// always listed).
fn mark(staged: &[Staged]) -> Result<()> {
    let mut by_dir: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for s in staged {
        let dir = canonical(s.target.parent().unwrap_or(Path::new(".")));
        let name = file_name(&s.target);
        by_dir.entry(dir).or_default().push(name);
    }
    for (dir, names) in by_dir {
        register_folder(&dir)?;
        let known = marked_names(&dir);
        let new: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
        if new.is_empty() {
            continue;
        }
        let mut st = state();
        let folder = st.folders.get_mut(&dir).expect("prepared folder");
        let mut text = String::new();
        for n in new {
            text.push_str(n);
            text.push('\n');
        }
        append_lines(&mut folder.marker, &text).map_err(|e| {
            Error::io(
                dir.join(MARKER),
                "cannot record the outputs (disk full?)",
                e,
            )
        })?;
    }
    Ok(())
}

/// Append lines to a marker, starting on a new line even if a killed command left a line cut short (so a
/// name is never glued to a fragment), and sync.
fn append_lines(f: &mut File, text: &str) -> std::io::Result<()> {
    let len = f.seek(SeekFrom::End(0))?;
    let mut last = [b'\n'];
    if len > 0 {
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        f.seek(SeekFrom::End(0))?;
    }
    if last[0] != b'\n' {
        f.write_all(b"\n")?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Complete a commit that a killed run left in `dir`: record the names it commits (the kill may have come
/// before its names reached the markers), rename every temporary file the journal names that still exists,
/// then remove the journal. Called with the folder locked (`marker` is its locked marker file).
fn roll_forward(dir: &Path, marker: &mut File) -> Result<()> {
    let journal = dir.join(JOURNAL);
    let Ok(text) = std::fs::read_to_string(&journal) else {
        return Ok(());
    };
    let staged: Vec<Staged> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(t, g)| Staged {
            tmp: PathBuf::from(t),
            target: PathBuf::from(g),
        })
        .collect();
    let known = marked_names(dir);
    let mut here = String::new();
    for s in staged.iter().filter(|s| s.tmp.exists()) {
        let name = file_name(&s.target);
        let parent = s.target.parent().unwrap_or(Path::new("."));
        if canonical(parent) == canonical(dir) {
            if !known.contains(&name) && !here.lines().any(|l| l == name) {
                here.push_str(&format!("{name}\n"));
            }
        } else if !marked_names(parent).contains(&name) {
            // A target in another folder (a model beside its report): its marker, appended.
            let path = parent.join(MARKER);
            let mut f =
                open_marker(&path).map_err(|e| Error::io(&path, "cannot record the output", e))?;
            append_lines(&mut f, &format!("{name}\n"))
                .map_err(|e| Error::io(&path, "cannot record the output (disk full?)", e))?;
        }
    }
    if !here.is_empty() {
        append_lines(marker, &here).map_err(|e| {
            Error::io(
                dir.join(MARKER),
                "cannot record the outputs (disk full?)",
                e,
            )
        })?;
    }
    apply(&staged)?;
    std::fs::remove_file(&journal)
        .map_err(|e| Error::io(&journal, "cannot remove the journal", e))?;
    sync_dir(dir);
    Ok(())
}

/// Remove the temporary files that killed commands left in `dir` (outputs never committed, a journal cut
/// short). Called with the folder locked, after `roll_forward`: no other command is writing here, and every
/// temporary file a complete journal named has been renamed into place.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let temporary =
            name.starts_with('.') && (name.contains(".partial-") || name.ends_with(".cog-partial"));
        if temporary && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Register a folder that a command creates and swaps as a whole (a stage of `carbonmap run`): it is checked
/// like a file target and listed in the parent's marker.
pub fn claim_entry(parent: &Path, name: &str) -> Result<()> {
    register_folder(parent)?;
    let dir = canonical(parent);
    let target = dir.join(name);
    if target.exists() && !marked_names(&dir).contains(name) {
        return Err(Error::input(
            &target,
            "exists and was not written by carbonmap (it is not listed in the folder's .carbonmap); \
             refusing to replace it: move it away or choose another output folder",
        ));
    }
    if marked_names(&dir).contains(name) {
        return Ok(());
    }
    let mut st = state();
    let folder = st.folders.get_mut(&dir).expect("prepared folder");
    append_lines(&mut folder.marker, &format!("{name}\n"))
        .map_err(|e| Error::io(dir.join(MARKER), "cannot record the output (disk full?)", e))
}

/// Problems with a command's declared outputs, found before anything is computed: a folder output that
/// holds files carbonmap did not write, a file output that exists and was not written by carbonmap, an output
/// that names an input (or lies in the way of one).
pub fn check_outputs(outputs: &[(PathBuf, bool)], inputs: &[PathBuf]) -> Vec<Error> {
    let inputs: BTreeMap<PathBuf, &PathBuf> = inputs.iter().map(|p| (canonical(p), p)).collect();
    let mut problems = Vec::new();
    for (out, is_folder) in outputs {
        let canon = canonical(out);
        if let Some(input) = inputs.get(&canon) {
            problems.push(Error::input(
                out,
                format!(
                    "the output path names the input {}; choose another output path",
                    input.display()
                ),
            ));
            continue;
        }
        if *is_folder {
            problems.extend(check_folder(out));
        } else if let Ok(meta) = std::fs::symlink_metadata(out) {
            if meta.is_dir() {
                problems.push(Error::input(
                    out,
                    "is a folder; expected an output file name",
                ));
            } else if !written_by_carbonmap(out) {
                problems.push(Error::input(
                    out,
                    "exists and was not written by carbonmap; refusing to replace it: move it away or \
                     choose another output path",
                ));
            }
        }
    }
    problems
}

/// A folder output must be new, empty, or one carbonmap writes into (it has a marker).
fn check_folder(dir: &Path) -> Option<Error> {
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return Some(Error::input(
            dir,
            "exists and is a file; expected an output folder",
        ));
    }
    if is_carbonmap_folder(dir) {
        return None;
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".carbonmap") && !n.contains(".partial"))
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    let n = names.len();
    let shown: Vec<String> = names.into_iter().take(5).collect();
    Some(Error::input(
        dir,
        format!(
            "the output folder holds {n} entr{} that carbonmap did not write ({}{}); use a new or empty \
             folder, or one carbonmap wrote",
            if n == 1 { "y" } else { "ies" },
            shown.join(", "),
            if n > 5 { ", ..." } else { "" }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_of_missing_paths_resolves_the_existing_part() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        assert_eq!(canonical(&dir.path().join("a/b.tif")), real.join("a/b.tif"));
    }

    #[test]
    fn a_name_is_never_glued_to_a_line_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MARKER);
        std::fs::write(&path, "# header\nEVI_20").unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        append_lines(&mut f, "EVI_2024-04.tif\n").unwrap();
        assert!(marked_names(dir.path()).contains("EVI_2024-04.tif"));
    }

    #[test]
    fn journal_lines_name_both_paths() {
        let s = [Staged {
            tmp: "/x/.a.tif.partial-1".into(),
            target: "/x/a.tif".into(),
        }];
        assert!(journal_text(&s).ends_with("/x/.a.tif.partial-1\t/x/a.tif\n"));
    }
}
