//! One `[stages.NAME]` table of a season config resolved into a stage: its command checked against the
//! commands' own option tables, every key turned into flags (templates filled, `@stage` references turned into
//! that stage's folder and a dependency, paths made absolute and recorded as inputs), `after` and `output`.
//! Every problem is collected, naming the stage and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    clean, template, value_strings, Commands, OptionSpec, Stage, FILE_OUTPUTS, OUTPUT_OPTIONS,
    RESERVED, STAGE_COMMANDS, STAGE_KEYS,
};
use crate::error::{Error, Problems};

/// What every stage of a config resolves against.
pub(super) struct Context<'a> {
    pub config: &'a Path,
    /// The config's folder (absolute): relative paths are relative to it.
    pub base: &'a Path,
    /// The season's output folder: stage NAME writes into OUT/NAME.
    pub out: &'a Path,
    pub vars: &'a BTreeMap<String, String>,
    /// Every stage's name, in the config's order.
    pub names: &'a [String],
    pub cmds: &'a dyn Commands,
}

/// A stage's argument vector as run, and as recorded (references kept as `@stage/...`).
#[derive(Default)]
struct Args {
    argv: Vec<String>,
    recipe: Vec<String>,
    deps: BTreeSet<String>,
    inputs: Vec<(String, PathBuf)>,
}

impl Args {
    fn push(&mut self, a: String, r: String) {
        self.argv.push(a);
        self.recipe.push(r);
    }
}

impl Context<'_> {
    fn err(&self, name: &str, key: &str, what: String) -> Error {
        Error::config(self.config, format!("[stages.{name}] {key}: {what}"))
    }

    /// The stage, or None (its problems pushed) when it does not resolve.
    pub fn resolve(
        &self,
        name: &str,
        value: &toml::Value,
        problems: &mut Problems,
    ) -> Option<Stage> {
        if name.is_empty()
            || name.starts_with('.')
            || name.contains(['/', '\\'])
            || RESERVED.contains(&name)
        {
            problems.push(Error::config(self.config, format!("[stages.{name}]: a stage name is a folder name (no '/', not starting with '.', not one of {})", RESERVED.join(", "))));
            return None;
        }
        let Some(table) = value.as_table() else {
            problems.push(self.err(name, "", "expected a table of options".into()));
            return None;
        };
        let (command, options) = self.command(name, table, problems)?;
        let joined = command.join(" ");
        let mut args = Args {
            argv: command.clone(),
            recipe: command.clone(),
            ..Default::default()
        };
        for (key, v) in table {
            if !STAGE_KEYS.contains(&key.as_str()) {
                self.option(name, &joined, &options, (key, v), &mut args, problems);
            }
        }
        self.after(name, table, &mut args.deps, problems);
        let out_file = self.output(name, &joined, table, problems);
        args.recipe.push("--out".into());
        args.recipe.push(match &out_file {
            Some(f) => format!("@out/{f}"),
            None => "@out".to_string(),
        });
        Some(Stage {
            name: name.to_string(),
            command,
            argv: args.argv,
            recipe: args.recipe,
            out_file,
            deps: args.deps.into_iter().collect(),
            inputs: args.inputs,
        })
    }

    /// The stage's command words and that command's options.
    fn command(
        &self,
        name: &str,
        table: &toml::Table,
        problems: &mut Problems,
    ) -> Option<(Vec<String>, Vec<OptionSpec>)> {
        let Some(command_text) = table.get("command").and_then(|c| c.as_str()) else {
            let what = format!("missing; one of: {}", STAGE_COMMANDS.join(", "));
            problems.push(self.err(name, "command", what));
            return None;
        };
        let command: Vec<String> = command_text
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let options = STAGE_COMMANDS
            .contains(&command.join(" ").as_str())
            .then(|| self.cmds.options(&command))
            .flatten();
        if options.is_none() {
            let what = format!(
                "'{command_text}' is not a stage command; one of: {}",
                STAGE_COMMANDS.join(", ")
            );
            problems.push(self.err(name, "command", what));
        }
        Some((command, options?))
    }

    /// One option key: its flag and values appended to the argument vectors.
    fn option(
        &self,
        name: &str,
        joined: &str,
        options: &[OptionSpec],
        (key, v): (&str, &toml::Value),
        args: &mut Args,
        problems: &mut Problems,
    ) {
        let long = key.replace('_', "-");
        if long == "out" || OUTPUT_OPTIONS.contains(&(joined, long.as_str())) {
            problems.push(self.err(name, key, "the runner writes stage NAME into OUT/NAME; remove this key (use `output` to name a file output)".into()));
            return;
        }
        let Some(spec) = options.iter().find(|o| o.long == long) else {
            let what = format!("`carbonmap {joined}` has no option --{long}");
            problems.push(self.err(name, key, what));
            return;
        };
        let values = match value_strings(v) {
            Ok(vs) => vs,
            Err(e) => return problems.push(self.err(name, key, e)),
        };
        let flag = format!("--{long}");
        if spec.switch {
            match v.as_bool() {
                Some(true) => args.push(flag.clone(), flag),
                Some(false) => {}
                None => problems.push(self.err(name, key, "a switch: write true or false".into())),
            }
            return;
        }
        let (mut vals, mut recs) = (Vec::new(), Vec::new());
        for raw in values {
            match template(&raw, self.vars) {
                Ok(s) => {
                    let (a, r) = self.value(name, key, spec, s, args, problems);
                    vals.push(a);
                    recs.push(r);
                }
                Err(e) => problems.push(self.err(name, key, e)),
            }
        }
        match spec.delimiter {
            _ if spec.positional => {
                args.argv.extend(vals);
                args.recipe.extend(recs);
            }
            Some(d) if vals.len() > 1 => {
                let sep = d.to_string();
                args.push(flag.clone(), flag);
                args.push(vals.join(&sep), recs.join(&sep));
            }
            _ => {
                for (a, r) in vals.into_iter().zip(recs) {
                    args.push(flag.clone(), flag.clone());
                    args.push(a, r);
                }
            }
        }
    }

    /// One templated value as run and as recorded: `@stage[/file]` is that stage's folder (a dependency);
    /// paths are relative to the config file (a name-or-file option is a file when it ends in .toml or .csv,
    /// as the commands themselves decide) and recorded as inputs.
    fn value(
        &self,
        name: &str,
        key: &str,
        spec: &OptionSpec,
        s: String,
        args: &mut Args,
        problems: &mut Problems,
    ) -> (String, String) {
        if let Some(r) = s.strip_prefix('@') {
            let (stage, rel) = r.split_once('/').unwrap_or((r, ""));
            if stage == name {
                problems.push(self.err(name, key, format!("'{s}' names the stage itself")));
            } else if !self.names.iter().any(|n| n == stage) {
                let what = format!(
                    "'{s}': there is no stage '{stage}' (stages: {})",
                    self.names.join(", ")
                );
                problems.push(self.err(name, key, what));
            } else {
                args.deps.insert(stage.to_string());
            }
            let p = clean(&self.out.join(stage).join(rel));
            (p.to_string_lossy().into_owned(), s)
        } else if spec.path || s.ends_with(".toml") || s.ends_with(".csv") {
            let p = clean(&self.base.join(&s));
            args.inputs.push((spec.long.clone(), p.clone()));
            let p = p.to_string_lossy().into_owned();
            (p.clone(), p)
        } else {
            (s.clone(), s)
        }
    }

    /// `after = [...]`: stages this one waits for without reading their outputs.
    fn after(
        &self,
        name: &str,
        table: &toml::Table,
        deps: &mut BTreeSet<String>,
        problems: &mut Problems,
    ) {
        let Some(after) = table.get("after") else {
            return;
        };
        match value_strings(after) {
            Ok(list) => {
                for a in list {
                    if self.names.contains(&a) && a != name {
                        deps.insert(a);
                    } else {
                        problems.push(self.err(
                            name,
                            "after",
                            format!("'{a}' is not another stage"),
                        ));
                    }
                }
            }
            Err(e) => problems.push(self.err(name, "after", e)),
        }
    }

    /// The file a file-writing command writes into OUT (`output`, else its default name); None for commands
    /// that write a folder.
    fn output(
        &self,
        name: &str,
        joined: &str,
        table: &toml::Table,
        problems: &mut Problems,
    ) -> Option<String> {
        let file_out = FILE_OUTPUTS
            .iter()
            .find(|(c, _)| *c == joined)
            .map(|(_, f)| *f);
        let output = table.get("output").map(|o| o.as_str().map(str::to_string));
        match (file_out, output) {
            (Some(_), Some(Some(o))) if !o.contains(['/', '\\']) && !o.starts_with('.') => Some(o),
            (Some(f), None) => Some(f.to_string()),
            (None, None) => None,
            (None, Some(_)) => {
                problems.push(self.err(name, "output", format!("`carbonmap {joined}` writes a folder; `output` names the file of a command that writes one ({})", FILE_OUTPUTS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "))));
                None
            }
            (Some(_), Some(_)) => {
                problems.push(self.err(name, "output", "expected a file name (no folders)".into()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two commands: `indices` (a path option, a switch, a comma list) and `balance` (a path option).
    struct Fake;
    impl Commands for Fake {
        fn options(&self, command: &[String]) -> Option<Vec<OptionSpec>> {
            let opt = |long: &str, path, switch, delimiter| OptionSpec {
                long: long.into(),
                path,
                positional: false,
                switch,
                delimiter,
            };
            match command.join(" ").as_str() {
                "indices" => Some(vec![
                    opt("stack", true, false, None),
                    opt("cog", false, true, None),
                    opt("index", false, false, Some(',')),
                ]),
                "balance" => Some(vec![
                    opt("sink", true, false, None),
                    opt("draws", false, false, None),
                ]),
                _ => None,
            }
        }
        fn parse(&self, _: &[String]) -> crate::error::Result<()> {
            Ok(())
        }
        fn execute(
            &self,
            _: &[String],
            _: &dyn crate::progress::Progress,
        ) -> crate::error::Result<()> {
            Ok(())
        }
        fn grid(&self, _: &[String]) -> crate::error::Result<Option<crate::io::Grid>> {
            Ok(None)
        }
    }

    fn resolve(toml_text: &str) -> (Vec<Stage>, Vec<String>) {
        let table: toml::Table = toml_text.parse().unwrap();
        let names: Vec<String> = table.keys().cloned().collect();
        let vars = BTreeMap::from([("year".to_string(), "2024".to_string())]);
        let ctx = Context {
            config: Path::new("/cfg/season.toml"),
            base: Path::new("/cfg"),
            out: Path::new("/out"),
            vars: &vars,
            names: &names,
            cmds: &Fake,
        };
        let mut problems = Problems::new();
        let stages = table
            .iter()
            .filter_map(|(n, v)| ctx.resolve(n, v, &mut problems))
            .collect();
        let msgs = match problems.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        };
        (stages, msgs)
    }

    #[test]
    fn a_stage_becomes_flags_references_and_inputs() {
        let (stages, msgs) = resolve(
            r#"
            [ndvi]
            command = "indices"
            stack = "stack_{year}.toml"
            index = ["NDVI", "EVI"]
            cog = true
            [fuse]
            command = "balance"
            sink = "@ndvi/NDVI_{year}.tif"
            "#,
        );
        assert!(msgs.is_empty(), "{msgs:?}");
        let s = &stages[0];
        assert_eq!(s.name, "ndvi");
        // Flags in the table's order; a comma list given once; a true switch as a flag.
        assert_eq!(
            s.argv,
            [
                "indices",
                "--stack",
                "/cfg/stack_2024.toml",
                "--index",
                "NDVI,EVI",
                "--cog"
            ]
        );
        assert_eq!(s.recipe.last().unwrap(), "@out");
        assert_eq!(
            s.inputs,
            [("stack".to_string(), PathBuf::from("/cfg/stack_2024.toml"))]
        );
        let f = &stages[1];
        assert_eq!(f.argv, ["balance", "--sink", "/out/ndvi/NDVI_2024.tif"]);
        assert_eq!(
            f.recipe[2],
            "@ndvi/NDVI_2024.tif" // the reference kept (template filled), not the run's folder
        );
        assert_eq!(f.deps, ["ndvi"]);
    }

    #[test]
    fn every_problem_of_every_stage_at_once() {
        let (stages, msgs) = resolve(
            r#"
            [a]
            command = "indices"
            colour = "red"
            cog = "yes"
            stack = "@a"
            after = ["nowhere"]
            output = "x.tif"
            [b]
            command = "frobnicate"
            [c]
            command = "balance"
            out = "elsewhere"
            sink = "@ghost/x.tif"
            [".hidden"]
            command = "balance"
            "#,
        );
        let all = msgs.join("\n");
        for want in [
            "[stages.a] colour: `carbonmap indices` has no option --colour",
            "[stages.a] cog: a switch: write true or false",
            "[stages.a] stack: '@a' names the stage itself",
            "[stages.a] after: 'nowhere' is not another stage",
            "[stages.a] output: `carbonmap indices` writes a folder",
            "[stages.b] command: 'frobnicate' is not a stage command",
            "[stages.c] out: the runner writes stage NAME into OUT/NAME",
            "[stages.c] sink: '@ghost/x.tif': there is no stage 'ghost'",
            "[stages..hidden]: a stage name is a folder name",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        // A stage with problems still resolves when its command does (its problems stop the run).
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    /// `[uncertainty]`: a file is relative to the config and an input of the stages that draw; a built-in
    /// name is passed as it is and is no file input.
    #[test]
    fn season_draws_take_a_file_or_a_built_in_name() {
        let (mut stages, msgs) = resolve(
            "[ndvi]\ncommand = \"indices\"\nstack = \"s.toml\"\n[fuse]\ncommand = \"balance\"\nsink = \"@ndvi\"\n",
        );
        assert!(msgs.is_empty(), "{msgs:?}");
        let u: super::super::SeasonUncertainty =
            toml::from_str("file = \"carbonmap-validation\"\ndraws = 9\nseed = 2\n").unwrap();
        super::super::add_season_draws(&mut stages, &u, Path::new("/cfg"), &Fake);
        let fuse = &stages[1];
        assert!(fuse.argv.ends_with(&[
            "--draws".into(),
            "9".into(),
            "--uncertainty".into(),
            "carbonmap-validation".into(),
            "--seed".into(),
            "2".into()
        ]));
        assert!(fuse.inputs.is_empty(), "{:?}", fuse.inputs);
        // The indices stage takes no --draws.
        assert!(!stages[0].argv.iter().any(|a| a == "--draws"));
        let (mut stages, _) = resolve("[fuse]\ncommand = \"balance\"\n");
        let u: super::super::SeasonUncertainty =
            toml::from_str("file = \"u.toml\"\ndraws = 9\n").unwrap();
        super::super::add_season_draws(&mut stages, &u, Path::new("/cfg"), &Fake);
        assert_eq!(
            stages[0].inputs,
            [("uncertainty".to_string(), PathBuf::from("/cfg/u.toml"))]
        );
    }
}
