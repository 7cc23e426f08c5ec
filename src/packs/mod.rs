//! Problem packs: datasets, their hidden tests and problems as files, imported through the
//! same catalogue code as the admin API and exported back. The format (version 1), a
//! directory or a `.tar.gz` of one:
//!
//! ```text
//! pack.json                 {"format": 1, "name": "...", "notice": "..."}
//! datasets/<name>.sql       a dataset script, as `PUT /admin/datasets/{name}` takes it
//! tests/<dataset>/<n>.sql   its uploaded hidden test n, as `PUT .../tests/{n}` takes it
//! problems.json             [problem objects as `POST /admin/problems` takes them]
//! ```
//!
//! Importing creates or updates what the pack holds and leaves everything else alone; what is
//! already as the pack has it is not touched, so importing an export changes nothing.
pub mod pgexercises;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::{self, ProblemInput};
use crate::db;
use crate::db::models::{Dataset, DatasetTest, Problem};
use crate::error::ApiError;
use crate::state::AppState;

/// The pack format this build reads and writes.
pub const FORMAT: u32 = 1;
/// What a `.tar.gz` pack may unpack to, at most.
const MAX_ARCHIVE_BYTES: u64 = 1 << 30;
const MAX_ARCHIVE_FILES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, PackError> {
    Err(PackError::Invalid(message.into()))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    /// Where the content comes from and under which licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// A pack in memory.
#[derive(Debug, Clone)]
pub struct Pack {
    pub manifest: Manifest,
    /// Dataset name → script.
    pub datasets: BTreeMap<String, String>,
    /// (dataset, test number) → script.
    pub tests: BTreeMap<(String, i16), String>,
    pub problems: Vec<ProblemInput>,
}

impl Pack {
    /// Reads a pack directory or a `.tar.gz` of one (its files at the top or in one folder).
    pub fn read(path: &Path) -> Result<Pack, PackError> {
        let files = if path.is_dir() {
            read_dir_files(path)?
        } else {
            read_tar_gz(path)?
        };
        Pack::from_files(files)
    }

    /// A pack from its files, by path relative to the pack's root.
    pub fn from_files(mut files: BTreeMap<String, Vec<u8>>) -> Result<Pack, PackError> {
        let text = |path: &str, bytes: Vec<u8>| {
            String::from_utf8(bytes).or_else(|_| invalid(format!("{path} is not UTF-8")))
        };
        let manifest: Manifest = match files.remove("pack.json") {
            Some(bytes) => {
                serde_json::from_slice(&bytes).or_else(|e| invalid(format!("pack.json: {e}")))?
            }
            None => return invalid("not a pack: pack.json is missing"),
        };
        if manifest.format != FORMAT {
            return invalid(format!(
                "pack format {} (this sqljudge reads format {FORMAT})",
                manifest.format
            ));
        }
        let problems = match files.remove("problems.json") {
            Some(bytes) => serde_json::from_slice(&bytes)
                .or_else(|e| invalid(format!("problems.json: {e}")))?,
            None => Vec::new(),
        };
        let mut pack = Pack {
            manifest,
            datasets: BTreeMap::new(),
            tests: BTreeMap::new(),
            problems,
        };
        for (path, bytes) in files {
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["datasets", file] if file.ends_with(".sql") => {
                    let name = file.trim_end_matches(".sql").to_string();
                    pack.datasets.insert(name, text(&path, bytes)?);
                }
                ["tests", dataset, file] if file.ends_with(".sql") => {
                    let Ok(n) = file.trim_end_matches(".sql").parse::<i16>() else {
                        return invalid(format!("{path}: tests are named <n>.sql"));
                    };
                    if pack
                        .tests
                        .insert((dataset.to_string(), n), text(&path, bytes)?)
                        .is_some()
                    {
                        return invalid(format!("{path}: test {n} of {dataset} twice"));
                    }
                }
                // Licences, read-me files and the like travel with a pack.
                _ => {}
            }
        }
        Ok(pack)
    }

    /// Writes the pack as a directory, or as a `.tar.gz` when `path` ends so.
    pub fn write(&self, path: &Path) -> Result<(), PackError> {
        let files = self.files();
        let io = |source| PackError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.to_string_lossy().ends_with(".tar.gz") {
            let file = std::fs::File::create(path).map_err(io)?;
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            for (name, bytes) in &files {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, name, bytes.as_slice())
                    .map_err(io)?;
            }
            tar.into_inner().and_then(|gz| gz.finish()).map_err(io)?;
            return Ok(());
        }
        for (name, bytes) in &files {
            let target = path.join(name);
            let io = |source| PackError::Io {
                path: target.clone(),
                source,
            };
            std::fs::create_dir_all(target.parent().expect("a file in the pack")).map_err(io)?;
            std::fs::write(&target, bytes).map_err(io)?;
        }
        Ok(())
    }

    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        files.insert("pack.json".into(), pretty(&self.manifest));
        files.insert("problems.json".into(), pretty(&self.problems));
        for (name, script) in &self.datasets {
            files.insert(format!("datasets/{name}.sql"), script.clone().into_bytes());
        }
        for ((dataset, n), script) in &self.tests {
            files.insert(
                format!("tests/{dataset}/{n}.sql"),
                script.clone().into_bytes(),
            );
        }
        files
    }
}

/// Pretty JSON with a final newline, for files people read and diff.
fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("a pack serialises");
    bytes.push(b'\n');
    bytes
}

fn read_dir_files(root: &Path) -> Result<BTreeMap<String, Vec<u8>>, PackError> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let io = |source| PackError::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let (path, kind) = (entry.path(), entry.file_type().map_err(io)?);
            // Links are not followed: a pack is what its directory holds.
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).map_err(|source| PackError::Io {
                    path: path.clone(),
                    source,
                })?;
                let relative = path.strip_prefix(root).expect("under the root");
                files.insert(relative.to_string_lossy().replace('\\', "/"), bytes);
            }
        }
    }
    Ok(files)
}

/// The files of a `.tar.gz`, read in memory (nothing is written, so no entry can land outside
/// a directory). A single top folder (`tar czf demo.tar.gz demo/`) is taken as the root.
fn read_tar_gz(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, PackError> {
    let io = |source| PackError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    let mut total = 0;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        // Bounded reads: a small archive may claim to unpack to anything.
        (&mut entry)
            .take(MAX_ARCHIVE_BYTES + 1 - total)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        total += bytes.len() as u64;
        if total > MAX_ARCHIVE_BYTES || files.len() >= MAX_ARCHIVE_FILES {
            return invalid(format!(
                "{}: more than {} MiB or {MAX_ARCHIVE_FILES} files unpacked",
                path.display(),
                MAX_ARCHIVE_BYTES >> 20
            ));
        }
        files.insert(name.trim_start_matches("./").to_string(), bytes);
    }
    if !files.contains_key("pack.json") {
        let tops: std::collections::BTreeSet<&str> = files
            .keys()
            .filter_map(|k| k.split_once('/'))
            .map(|(top, _)| top)
            .collect();
        if let [top] = tops.into_iter().collect::<Vec<_>>()[..] {
            let prefix = format!("{top}/");
            files = files
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v)))
                .collect();
        }
    }
    Ok(files)
}

/// What importing did to one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    /// `dataset shop`, `test shop/1`, `problem uk-customers`.
    pub item: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub entries: Vec<Entry>,
}

impl Report {
    fn add(&mut self, item: String, outcome: Result<Change, ApiError>) {
        let (change, error) = match outcome {
            Ok(change) => (change, None),
            Err(e) => (Change::Failed, Some(e.to_string())),
        };
        self.entries.push(Entry {
            item,
            change,
            error,
        });
    }

    pub fn failed(&self) -> usize {
        self.count(Change::Failed)
    }

    pub fn count(&self, change: Change) -> usize {
        self.entries.iter().filter(|e| e.change == change).count()
    }

    /// One line per dataset, test or problem that changed or failed, then the counts.
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.change != Change::Unchanged)
            .map(|e| match &e.error {
                Some(error) => format!("{}: failed: {error}", e.item),
                None => format!("{}: {}", e.item, e.change.as_str()),
            })
            .collect();
        lines.push(format!(
            "{} created, {} updated, {} unchanged, {} failed",
            self.count(Change::Created),
            self.count(Change::Updated),
            self.count(Change::Unchanged),
            self.failed()
        ));
        lines.join("\n")
    }
}

/// Imports a pack: datasets, then their tests, then problems, each through the admin API's
/// code (a dataset or test loads atomically and is put back if a reference fails on it; a
/// problem's reference must run). A failure is reported and the rest goes on.
pub async fn import(state: &AppState, pack: &Pack) -> Result<Report, PackError> {
    let mut report = Report::default();
    for (name, script) in &pack.datasets {
        let sha = crate::auth::sha256_hex(script);
        let lookup = name.clone();
        let current = db::run(&state.pool, move |c| Dataset::find(c, &lookup))
            .await
            .map_err(ApiError::from)?;
        let outcome = match current {
            Some(d) if d.script_sha256 == sha => Ok(Change::Unchanged),
            current => catalog::load_dataset(state, name, script)
                .await
                .map(|_| change_of(current.is_some())),
        };
        report.add(format!("dataset {name}"), outcome);
    }
    let loaded = db::run(&state.pool, DatasetTest::list)
        .await
        .map_err(ApiError::from)?;
    for ((dataset, n), script) in &pack.tests {
        let sha = crate::auth::sha256_hex(script);
        let current = loaded
            .iter()
            .find(|t| &t.dataset == dataset && t.test == *n);
        let outcome = match current {
            Some(t) if t.script_sha256 == sha => Ok(Change::Unchanged),
            current => catalog::put_test(state, dataset, *n, script)
                .await
                .map(|_| change_of(current.is_some())),
        };
        report.add(format!("test {dataset}/{n}"), outcome);
    }
    for input in &pack.problems {
        let slug = input.fields.slug.clone();
        let lookup = slug.clone();
        let current = db::run(&state.pool, move |c| Problem::find_by_slug(c, &lookup))
            .await
            .map_err(ApiError::from)?;
        let outcome = match current {
            Some(p)
                if p.fields == input.fields
                    && p.time_limit_ms as u32 == input.time_limit(state) =>
            {
                Ok(Change::Unchanged)
            }
            current => {
                let existed = current.is_some();
                catalog::save_problem(state, current.map(|p| p.id), input.clone())
                    .await
                    .map(|_| change_of(existed))
            }
        };
        report.add(format!("problem {slug}"), outcome);
    }
    Ok(report)
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
            Change::Failed => "failed",
        }
    }
}

fn change_of(existed: bool) -> Change {
    if existed {
        Change::Updated
    } else {
        Change::Created
    }
}

/// The current datasets (those whose script is kept), their tests and every problem, as a
/// pack named `name`. (Content imported under a licence asking for attribution, such as
/// pgexercises' questions, keeps it only if `notice` says so.)
pub async fn export(
    state: &AppState,
    name: &str,
    notice: Option<String>,
) -> Result<Pack, PackError> {
    let (datasets, tests, problems) = db::run(&state.pool, |c| {
        let mut datasets = BTreeMap::new();
        for d in Dataset::list(c)? {
            match Dataset::script(c, &d.name)? {
                Some((script, _)) => {
                    datasets.insert(d.name, script);
                }
                None => log::warn!(
                    "dataset {} was loaded before scripts were kept: load it again to export it",
                    d.name
                ),
            }
        }
        let mut tests = BTreeMap::new();
        for t in DatasetTest::list(c)? {
            if let Some(script) = DatasetTest::script(c, &t.dataset, t.test)? {
                tests.insert((t.dataset, t.test), script);
            }
        }
        Ok((datasets, tests, Problem::list(c, None)?))
    })
    .await
    .map_err(ApiError::from)?;
    Ok(Pack {
        manifest: Manifest {
            format: FORMAT,
            name: name.to_string(),
            notice,
        },
        datasets,
        tests,
        problems: problems
            .into_iter()
            .map(|p| ProblemInput {
                fields: p.fields,
                time_limit_ms: Some(p.time_limit_ms as u32),
            })
            .collect(),
    })
}

/// Imports the pack at `path` and fails unless all of it imported (the demo set at start-up).
pub async fn load(state: &AppState, path: &Path) -> Result<Report, PackError> {
    let report = import(state, &Pack::read(path)?).await?;
    if report.failed() > 0 {
        return invalid(format!("{}:\n{}", path.display(), report.summary()));
    }
    Ok(report)
}
