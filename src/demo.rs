//! The demo problem set shipped in `demo/`: every `datasets/*.sql` file, then `problems.json`.
//! Loading is idempotent: an unchanged dataset is skipped, problems are upserted by slug.
use std::path::Path;

use crate::catalog::{self, ProblemInput};
use crate::db;
use crate::db::models::{Dataset, Problem};
use crate::startup::StartupError;
use crate::state::AppState;

pub async fn load(state: &AppState, dir: &Path) -> Result<(), StartupError> {
    let mut scripts: Vec<_> = std::fs::read_dir(dir.join("datasets"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    scripts.sort();
    for path in scripts {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("bad dataset file name")?
            .to_string();
        let script = std::fs::read_to_string(&path)?;
        let sha = crate::auth::sha256_hex(&script);
        let lookup = name.clone();
        let current = db::run(&state.pool, move |c| Dataset::find(c, &lookup)).await?;
        if current.is_some_and(|d| d.script_sha256 == sha) {
            continue;
        }
        let loaded = catalog::load_dataset(state, &name, &script)
            .await
            .map_err(|e| format!("dataset {name}: {e}"))?;
        log::info!("demo dataset {name}: {} tables", loaded.tables.len());
    }
    let problems: Vec<ProblemInput> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("problems.json"))?)?;
    let count = problems.len();
    for input in problems {
        let slug = input.fields.slug.clone();
        let existing = db::run(&state.pool, move |c| Problem::find_by_slug(c, &slug)).await?;
        let slug = input.fields.slug.clone();
        catalog::save_problem(state, existing.map(|p| p.id), input)
            .await
            .map_err(|e| format!("demo problem {slug}: {e}"))?;
    }
    log::info!("demo problem set loaded: {count} problems");
    Ok(())
}
