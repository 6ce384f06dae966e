//! `carbonmap run`: stages in dependency order, each skipped when up to date, run into a hidden folder and
//! swapped into place only when it succeeded; a manifest rewritten after every stage; a lock on the output
//! folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{plan, Commands, Plan, Stage};
use crate::error::{Error, Result};
use crate::io;
use crate::progress::{Progress, StageState};

/// Name of the manifest in the output folder.
pub const MANIFEST: &str = "manifest.json";
/// Name of the lock file in the output folder.

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Season (else the config's default).
    pub season: Option<String>,
    /// Output folder instead of the config's `[season] out`.
    pub out: Option<PathBuf>,
    /// `--var NAME=VALUE`: values for variables the config declares in [vars].
    pub vars: Vec<(String, String)>,
    /// Hash every input again instead of trusting recorded hashes of files whose size and modification time
    /// are unchanged.
    pub rehash: bool,
    /// Run only these stages (the others keep their records); a sharded season's plan and shards use it.
    pub only: Option<std::collections::BTreeSet<String>>,
    /// Records of stages run elsewhere that this run's stages read (a shard reads the season's own stages).
    pub seed: Vec<StageRecord>,
    /// No run report (a shard's run: the merge writes the season's).
    pub no_report: bool,
}

/// What happened to a stage in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum StageStatus {
    Done,
    UpToDate,
    Failed(String),
    Blocked(String),
}

pub struct RunSummary {
    pub plan: Plan,
    pub statuses: Vec<(String, StageStatus)>,
    pub manifest: PathBuf,
    pub report: PathBuf,
    /// The first failure, when a stage failed.
    pub first_error: Option<Error>,
}

impl RunSummary {
    /// Ok when every stage is done or up to date; `Error::Partial` when some failed and others succeeded;
    /// the first failure's error when none succeeded.
    pub fn outcome(self) -> Result<()> {
        let ok = self
            .statuses
            .iter()
            .filter(|(_, s)| matches!(s, StageStatus::Done | StageStatus::UpToDate))
            .count();
        match self.first_error {
            None => Ok(()),
            Some(e) if ok == 0 => Err(e),
            Some(e) => {
                let failed: Vec<String> = self
                    .statuses
                    .iter()
                    .filter(|(_, s)| !matches!(s, StageStatus::Done | StageStatus::UpToDate))
                    .map(|(n, _)| n.clone())
                    .collect();
                Err(Error::Partial(format!(
                    "{ok} stage(s) done or up to date, {} not ({}); first failure: {e}",
                    failed.len(),
                    failed.join(", ")
                )))
            }
        }
    }
}

/// A file with its size, modification time (nanoseconds since 1970, to trust a recorded hash) and hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    pub modified_ns: u64,
    /// Empty for a remote input (its `version` stands instead).
    pub sha256: String,
    /// A remote input's version (ETag, else Last-Modified, else size) from its HTTP headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// For a Zarr store (a folder read as one dataset, `store.rs`): its number of files. `size` is then their
    /// total, `modified_ns` the latest, and `sha256` is over their relative paths and contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// For a remote STAC asset: its item's id and the asset's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    /// The stage's command with `@stage` for other stages' folders and `@out` for its own.
    pub recipe: Vec<String>,
    pub depends_on: Vec<String>,
    /// SHA-256 over carbonmap's version and parameter files, the recipe, the inputs' and the upstream outputs'
    /// hashes: equal fingerprints and intact outputs mean the stage is up to date.
    pub fingerprint: String,
    /// done | failed | blocked (a failed or blocked stage's folder keeps the outputs listed, from its last
    /// successful run).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall-clock seconds of the run that wrote the outputs.
    pub seconds: f64,
    pub inputs: Vec<FileRecord>,
    /// Paths relative to the output folder.
    pub outputs: Vec<FileRecord>,
    /// What the stage's command warned about when it wrote these outputs (fills, pixels without a result,
    /// units taken as declared ...), for the report and for anyone reading the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParameterRecord {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub carbonmap_version: String,
    pub config: FileRecord,
    pub season: String,
    pub start: String,
    pub end: String,
    /// Template variables as resolved for this season.
    pub variables: BTreeMap<String, String>,
    /// Every stage's command as run (absolute paths).
    pub resolved: BTreeMap<String, Vec<String>>,
    /// The parameter files built into this carbonmap (models/), with their hashes.
    pub parameters: Vec<ParameterRecord>,
    pub stages: Vec<StageRecord>,
}

use crate::io::modified_ns;

/// Hash files, reusing a recorded hash when size and modification time are unchanged (unless `rehash`).
struct Hasher<'a> {
    known: BTreeMap<&'a str, &'a FileRecord>,
    rehash: bool,
}

impl Hasher<'_> {
    fn record(&self, path: &Path, name: String) -> Result<FileRecord> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "cannot read", e))?;
        let (size, modified_ns) = (meta.len(), modified_ns(&meta));
        if let Some(k) = self.known.get(name.as_str()).filter(|_| !self.rehash) {
            if k.size == size && k.modified_ns == modified_ns && modified_ns != 0 {
                return Ok((*k).clone());
            }
        }
        Ok(FileRecord {
            path: name,
            size,
            modified_ns,
            sha256: io::sha256_file(path)?,
            version: None,
            files: None,
            item: None,
            asset: None,
        })
    }

    /// A Zarr store as one record (`store.rs`); its recorded hash is trusted while its stamp is unchanged.
    fn record_store(&self, dir: &Path, name: String) -> Result<FileRecord> {
        let st = crate::store::stamp(dir)?;
        if let Some(k) = self.known.get(name.as_str()).filter(|_| !self.rehash) {
            if store_stamp_matches(k, &st) {
                return Ok((*k).clone());
            }
        }
        Ok(FileRecord {
            path: name,
            size: st.size,
            modified_ns: st.modified_ns,
            sha256: crate::store::sha256(dir)?,
            version: None,
            files: Some(st.files),
            item: None,
            asset: None,
        })
    }
}

/// A local input whose content differs from its record, hashed again only when its size or time changed (for
/// a Zarr store: its number of files, total size or latest time). A remote input is not compared here.
pub(super) fn changed_since(f: &FileRecord) -> bool {
    if f.sha256.is_empty() {
        return false;
    }
    let hasher = Hasher {
        known: [(f.path.as_str(), f)].into_iter().collect(),
        rehash: false,
    };
    let p = Path::new(&f.path);
    let now = match f.files {
        Some(_) => hasher.record_store(p, f.path.clone()),
        None => hasher.record(p, f.path.clone()),
    };
    now.map_or(true, |r| r.sha256 != f.sha256)
}

/// A store's record still describes it: same number of files, total size and latest time (a known time).
fn store_stamp_matches(r: &FileRecord, st: &crate::store::Stamp) -> bool {
    r.files == Some(st.files)
        && r.size == st.size
        && r.modified_ns == st.modified_ns
        && st.modified_ns != 0
}

/// The remote inputs of a stage, each with its version: remote rasters it names, and the remote raster assets
/// of the STAC documents it reads (remote documents, or local ones among its input files `local`).
pub(super) fn remote_inputs(stage: &Stage, local: &[PathBuf]) -> Result<Vec<FileRecord>> {
    let is_doc = |s: &str| {
        let s = s.split(['?', '#']).next().unwrap_or(s).to_ascii_lowercase();
        s.ends_with(".json") || s.ends_with(".geojson") || s.ends_with("/search")
    };
    let mut assets = Vec::new();
    for (_, p) in &stage.inputs {
        let loc = p.to_string_lossy();
        if !crate::stac::is_remote(&loc) {
            continue;
        }
        if is_doc(&loc) {
            assets.extend(crate::stac::remote_assets(&loc)?);
        } else {
            assets.push(crate::stac::RemoteAsset {
                item: String::new(),
                asset: String::new(),
                href: loc.into_owned(),
            });
        }
    }
    for p in local.iter().filter(|p| crate::stac::is_json_file(p)) {
        assets.extend(crate::stac::remote_assets(&p.to_string_lossy())?);
    }
    assets.dedup_by(|a, b| a.href == b.href);
    assets
        .into_iter()
        .map(|a| {
            let (size, version) = io::remote_version(&a.href)?;
            let some = |s: String| (!s.is_empty()).then_some(s);
            Ok(FileRecord {
                path: a.href,
                size,
                modified_ns: 0,
                sha256: String::new(),
                version: Some(version),
                files: None,
                item: some(a.item),
                asset: some(a.asset),
            })
        })
        .collect()
}

/// Every file a stage reads (see `io::input_closure`).
pub(super) fn input_files(stage: &Stage) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = stage
        .inputs
        .iter()
        .filter(|(o, p)| p.exists() || !super::OPTIONAL_INPUTS.contains(&o.as_str()))
        .map(|(_, p)| p.clone())
        .collect();
    io::input_closure(&paths, true)
}

/// The parameter files built into this binary, with their hashes.
fn parameters() -> Vec<ParameterRecord> {
    crate::models::EMBEDDED
        .iter()
        .map(|(p, text)| ParameterRecord {
            path: format!("models/{p}"),
            sha256: io::sha256_hex(text.as_bytes()),
        })
        .collect()
}

pub(super) fn read_manifest(path: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_manifest(path: &Path, m: &Manifest) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(m).expect("manifest is plain data");
    bytes.push(b'\n');
    crate::commit::run(&[], || io::write_atomic(path, &bytes))
}

/// The folder a stage runs into, and the one its previous outputs wait in during the swap.
pub(super) fn partial_dir(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.partial"))
}
fn old_dir(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.old"))
}

fn remove_dir(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, "cannot remove", e)),
    }
}

/// After an interrupted run: put back a stage folder moved aside mid-swap, drop half-written stage folders.
fn recover<'a>(out: &Path, names: impl Iterator<Item = &'a str>) -> Result<()> {
    for name in names {
        let (old, fin) = (old_dir(out, name), out.join(name));
        if old.exists() {
            if fin.exists() {
                remove_dir(&old)?;
            } else {
                std::fs::rename(&old, &fin).map_err(|e| Error::io(&old, "cannot restore", e))?;
            }
        }
        remove_dir(&partial_dir(out, name))?;
    }
    Ok(())
}

/// Files of a finished stage folder, as records with paths relative to the output folder.
fn output_records(out: &Path, dir: &Path, name: &str, hasher: &Hasher) -> Result<Vec<FileRecord>> {
    io::files_under(dir)?
        .iter()
        .filter(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            !crate::commit::is_bookkeeping(&name)
        })
        .map(|f| {
            let rel = Path::new(name).join(f.strip_prefix(dir).expect("inside the folder"));
            hasher.record(&out.join(&rel), rel.to_string_lossy().into_owned())
        })
        .collect()
}

/// Outputs still as recorded: same sizes and (modification times or contents).
fn outputs_intact(out: &Path, rec: &StageRecord) -> bool {
    !rec.outputs.is_empty()
        && rec.outputs.iter().all(|o| {
            let p = out.join(&o.path);
            match std::fs::metadata(&p) {
                Ok(m) if m.len() == o.size => {
                    modified_ns(&m) == o.modified_ns
                        || io::sha256_file(&p).is_ok_and(|h| h == o.sha256)
                }
                _ => false,
            }
        })
}

fn fingerprint(
    stage: &Stage,
    params: &[ParameterRecord],
    inputs: &[FileRecord],
    upstream: &[&StageRecord],
) -> String {
    let (remote, local): (Vec<&FileRecord>, Vec<&FileRecord>) =
        inputs.iter().partition(|f| f.version.is_some());
    let mut doc = serde_json::json!({
        "carbonmap_version": crate::VERSION,
        "parameters": params.iter().map(|p| (&p.path, &p.sha256)).collect::<Vec<_>>(),
        "recipe": stage.recipe,
        "inputs": local.iter().map(|f| (&f.path, &f.sha256)).collect::<Vec<_>>(),
        "upstream": upstream.iter().map(|u| (&u.name, u.outputs.iter().map(|o| (&o.path, &o.sha256)).collect::<Vec<_>>())).collect::<Vec<_>>(),
    });
    if !remote.is_empty() {
        doc["remote"] = serde_json::json!(remote
            .iter()
            .map(|f| (&f.path, &f.version))
            .collect::<Vec<_>>());
    }
    io::sha256_hex(doc.to_string().as_bytes())
}

/// Run the config for a season: check everything first (`check`), then every stage that is not up to date.
pub fn run(
    config: &Path,
    opts: &RunOptions,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    run_with_plan(opts.plan(config, cmds)?, config, opts, cmds, progress)
}

impl RunOptions {
    /// The config's plan for these options' season, output folder and variables.
    pub(super) fn plan(&self, config: &Path, cmds: &dyn Commands) -> Result<Plan> {
        plan(
            config,
            self.season.as_deref(),
            self.out.as_deref(),
            &self.vars,
            cmds,
        )
    }
}

/// Run a plan already made (a shard's, derived from the season's).
pub(super) fn run_with_plan(
    plan: Plan,
    config: &Path,
    opts: &RunOptions,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    super::check::check_plan(&plan, cmds)?;
    // One scope for the whole run: it holds the output folder's lock; every write commits in its own scope.
    crate::commit::run(&[], || run_plan(plan, config, opts, cmds, progress))
}

/// A run's manifest before any stage: carbonmap, the config (hashed afresh), the season and its variables,
/// the built-in parameter files, and the records of stages run elsewhere that this run reads.
fn new_manifest(plan: &Plan, config: &Path, opts: &RunOptions) -> Result<Manifest> {
    let fresh = Hasher {
        known: BTreeMap::new(),
        rehash: true,
    };
    Ok(Manifest {
        carbonmap_version: crate::VERSION.to_string(),
        config: fresh.record(config, config.to_string_lossy().into_owned())?,
        season: plan.season.label.clone(),
        start: plan.season.start.to_string(),
        end: plan.season.end.to_string(),
        variables: plan.variables.clone(),
        resolved: BTreeMap::new(),
        parameters: parameters(),
        stages: opts.seed.clone(),
    })
}

fn run_plan(
    plan: Plan,
    config: &Path,
    opts: &RunOptions,
    cmds: &dyn Commands,
    progress: &dyn Progress,
) -> Result<RunSummary> {
    crate::commit::prepare_folder(&plan.out)?;
    recover(
        &plan.out,
        plan.stages
            .iter()
            .map(|s| s.name.as_str())
            .chain([super::report::QUICKLOOKS]),
    )?;
    let manifest_path = plan.out.join(MANIFEST);
    let previous = read_manifest(&manifest_path);
    let manifest = new_manifest(&plan, config, opts)?;
    let prev_records: BTreeMap<String, StageRecord> = previous
        .iter()
        .flat_map(|m| m.stages.iter().map(|s| (s.name.clone(), s.clone())))
        .collect();
    let mut changed = previous.is_none();
    for name in prev_records.keys() {
        if !plan.stages.iter().any(|s| &s.name == name) {
            changed = true;
            progress.warn(&format!(
                "stage '{name}' is no longer in {}; its folder {} is left as it is",
                config.display(),
                plan.out.join(name).display()
            ));
        }
    }
    // Recorded hashes of files whose size and time are unchanged are trusted (outputs over inputs).
    let known_inputs: Vec<FileRecord> = prev_records
        .values()
        .flat_map(|r| r.inputs.clone())
        .collect();
    let known_outputs: Vec<FileRecord> = prev_records
        .values()
        .flat_map(|r| r.outputs.clone())
        .collect();
    let hasher = Hasher {
        known: known_inputs
            .iter()
            .chain(&known_outputs)
            .map(|f| (f.path.as_str(), f))
            .collect(),
        rehash: opts.rehash,
    };
    let mut runner = Runner {
        plan: &plan,
        cmds,
        progress,
        hasher: &hasher,
        prev_records: &prev_records,
        manifest,
        statuses: Vec::new(),
        first_error: None,
        changed,
    };
    for stage in &plan.stages {
        if opts.only.as_ref().is_some_and(|o| !o.contains(&stage.name)) {
            let kept = prev_records.get(&stage.name).cloned();
            runner.manifest.stages.extend(kept);
            continue;
        }
        if !runner.stage(stage)? {
            continue;
        }
        if !runner.any_finished()
            && runner
                .first_error
                .as_ref()
                .is_some_and(|e| e.exit_code() == 2)
        {
            // Bad input and nothing finished: exit 2 writes nothing (no manifest, no report).
            continue;
        }
        // Written after every stage, so an interrupted run keeps what it finished.
        write_manifest(&manifest_path, &runner.manifest)?;
    }
    let any_ok = runner.any_finished();
    let Runner {
        manifest,
        statuses,
        mut first_error,
        changed,
        ..
    } = runner;
    if let Some(e) = first_error.take_if(|e| !any_ok && e.exit_code() == 2) {
        return Err(e);
    }
    let report_path = plan.out.join(super::report::REPORT);
    let stages_hash = super::report::stages_hash(&manifest);
    if opts.no_report {
        write_manifest(&manifest_path, &manifest)?;
    } else if changed || !super::report::is_current(&plan.out, &stages_hash) {
        write_manifest(&manifest_path, &manifest)?;
        super::report::write(&plan, &manifest, &statuses, progress)?;
    }
    Ok(RunSummary {
        plan,
        statuses,
        manifest: manifest_path,
        report: report_path,
        first_error,
    })
}

/// A run in progress: the manifest it builds, each stage's status, the first error.
struct Runner<'a> {
    plan: &'a Plan,
    cmds: &'a dyn Commands,
    progress: &'a dyn Progress,
    hasher: &'a Hasher<'a>,
    prev_records: &'a BTreeMap<String, StageRecord>,
    manifest: Manifest,
    statuses: Vec<(String, StageStatus)>,
    first_error: Option<Error>,
    /// Whether anything changed since the previous run (the report is rewritten).
    changed: bool,
}

impl Runner<'_> {
    fn any_finished(&self) -> bool {
        self.statuses
            .iter()
            .any(|(_, s)| matches!(s, StageStatus::Done | StageStatus::UpToDate))
    }

    /// The dependencies of `stage` that did not finish, as a reason, if any.
    fn blocked(&self, stage: &Stage) -> Option<String> {
        let blocked: Vec<&str> = stage
            .deps
            .iter()
            .filter(|d| {
                self.statuses.iter().any(|(n, s)| {
                    n == *d && !matches!(s, StageStatus::Done | StageStatus::UpToDate)
                })
            })
            .map(String::as_str)
            .collect();
        (!blocked.is_empty())
            .then(|| format!("depends on {} which did not finish", blocked.join(", ")))
    }

    /// One stage: blocked, up to date (its record kept), or run into its partial folder and swapped in.
    /// Whether it ran (finished or failed).
    fn stage(&mut self, stage: &Stage) -> Result<bool> {
        let name = stage.name.clone();
        let resolved = resolved_argv(self.plan, stage);
        self.manifest.resolved.insert(name.clone(), resolved);
        let prev = self.prev_records.get(&name);
        if let Some(why) = self.blocked(stage) {
            self.progress.stage(&name, StageState::Blocked, None, &why);
            if let Some(p) = prev {
                self.manifest.stages.push(StageRecord {
                    status: "blocked".into(),
                    error: Some(why.clone()),
                    ..p.clone()
                });
            }
            self.statuses.push((name, StageStatus::Blocked(why)));
            self.changed = true;
            return Ok(false);
        }
        let upstream: Vec<&StageRecord> = stage
            .deps
            .iter()
            .map(|d| {
                self.manifest
                    .stages
                    .iter()
                    .find(|r| &r.name == d)
                    .expect("dependencies run first")
            })
            .collect();
        let files = input_files(stage)?;
        // A Zarr store is one record, not one a chunk file.
        let (plain, stores) = crate::store::group(&files);
        let text = |p: &Path| p.to_string_lossy().into_owned();
        let mut inputs = plain
            .iter()
            .map(|p| self.hasher.record(p, text(p)))
            .chain(stores.iter().map(|d| self.hasher.record_store(d, text(d))))
            .collect::<Result<Vec<_>>>()?;
        inputs.extend(remote_inputs(stage, &files)?);
        let fp = fingerprint(stage, &self.manifest.parameters, &inputs, &upstream);
        let current = prev.filter(|p| {
            p.status == "done" && p.fingerprint == fp && outputs_intact(&self.plan.out, p)
        });
        if let Some(p) = current {
            self.progress.stage(&name, StageState::UpToDate, None, "");
            // Today's records (same hashes; a touched input's new time, kept when the manifest is rewritten).
            self.manifest.stages.push(StageRecord {
                inputs,
                ..p.clone()
            });
            self.statuses.push((name, StageStatus::UpToDate));
            return Ok(false);
        }
        self.changed = true;
        let (result, seconds, warnings) = self.execute(stage);
        let mut rec = StageRecord {
            name: name.clone(),
            recipe: stage.recipe.clone(),
            depends_on: stage.deps.clone(),
            fingerprint: fp,
            status: "done".into(),
            error: None,
            seconds,
            inputs,
            outputs: Vec::new(),
            warnings,
        };
        match result {
            Ok(outputs) => {
                self.progress
                    .stage(&name, StageState::Done, Some(seconds), "");
                rec.outputs = outputs;
                self.statuses.push((name, StageStatus::Done));
            }
            Err(e) => {
                let msg = e.to_string();
                self.progress
                    .stage(&name, StageState::Failed, Some(seconds), &msg);
                // A failed stage keeps its previous record (outputs and all), marked failed.
                rec = match prev {
                    Some(p) => p.clone(),
                    None => StageRecord {
                        fingerprint: String::new(),
                        ..rec
                    },
                };
                rec.status = "failed".into();
                rec.error = Some(msg.clone());
                self.statuses.push((name, StageStatus::Failed(msg)));
                self.first_error.get_or_insert(e);
            }
        }
        self.manifest.stages.push(rec);
        Ok(true)
    }

    /// Run a stage's command into its partial folder and swap it in: its outputs' records, the wall time in
    /// seconds (ms precision) and the warnings it gave. A failure removes the partial folder.
    fn execute(&self, stage: &Stage) -> (Result<Vec<FileRecord>>, f64, Vec<String>) {
        let out = &self.plan.out;
        self.progress
            .stage(&stage.name, StageState::Started, None, "");
        let t0 = Instant::now();
        let partial = partial_dir(out, &stage.name);
        let (argv, out_arg) = stage_argv(stage, &partial);
        let captured = Captured {
            inner: self.progress,
            warnings: Default::default(),
        };
        let result = (|| -> Result<Vec<FileRecord>> {
            remove_dir(&partial)?;
            std::fs::create_dir_all(&partial)
                .map_err(|e| Error::io(&partial, "cannot create", e))?;
            self.cmds.execute(&argv, &captured)?;
            if !out_arg.exists() {
                return Err(Error::Processing(format!(
                    "stage {}: the command wrote nothing",
                    stage.name
                )));
            }
            swap(out, &stage.name)?;
            output_records(out, &out.join(&stage.name), &stage.name, self.hasher)
        })();
        if result.is_err() {
            let _ = remove_dir(&partial);
        }
        let seconds = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        let warnings = captured.warnings.into_inner().unwrap_or_default();
        (result, seconds, warnings)
    }
}

/// Passes progress through to the run's own, keeping the stage's warnings for its record.
struct Captured<'a> {
    inner: &'a dyn Progress,
    warnings: std::sync::Mutex<Vec<String>>,
}

impl Progress for Captured<'_> {
    fn start(&self, stage: &str, total: u64) {
        self.inner.start(stage, total)
    }
    fn advance(&self, n: u64) {
        self.inner.advance(n)
    }
    fn finish(&self) {
        self.inner.finish()
    }
    fn warn(&self, message: &str) {
        self.inner.warn(message);
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message.to_string());
        }
    }
    fn stage(&self, name: &str, state: StageState, seconds: Option<f64>, detail: &str) {
        self.inner.stage(name, state, seconds, detail)
    }
}

/// The argument vector of a stage writing into `dir`, and the output it names.
fn stage_argv(stage: &Stage, dir: &Path) -> (Vec<String>, PathBuf) {
    let out = match &stage.out_file {
        Some(f) => dir.join(f),
        None => dir.to_path_buf(),
    };
    let mut argv = stage.argv.clone();
    argv.push("--out".into());
    argv.push(out.to_string_lossy().into_owned());
    (argv, out)
}

/// The argument vector as it reads with the stage's final folder.
fn resolved_argv(plan: &Plan, stage: &Stage) -> Vec<String> {
    stage_argv(stage, &plan.stage_dir(&stage.name)).0
}

/// Move a finished stage folder into place; its previous outputs are removed only once the new ones are there.
pub(super) fn swap(out: &Path, name: &str) -> Result<()> {
    crate::commit::claim_entry(out, name)?;
    let (fin, old, partial) = (out.join(name), old_dir(out, name), partial_dir(out, name));
    // One atomic exchange where the file system supports it: a reader never finds the folder missing, and a
    // kill leaves either the old or the new folder in place (the other under .NAME.partial, removed later).
    if fin.exists() && crate::io::exchange(&partial, &fin).is_ok() {
        return remove_dir(&partial);
    }
    if fin.exists() {
        std::fs::rename(&fin, &old).map_err(|e| Error::io(&fin, "cannot move aside", e))?;
    }
    std::fs::rename(&partial, &fin)
        .map_err(|e| Error::io(&partial, "cannot move into place", e))?;
    remove_dir(&old)
}
