//! The demo problem set shipped in `demo/`: every `datasets/*.sql` file, their uploaded hidden
//! tests `tests/<dataset>/<n>.sql`, then `problems.json`. Loading is idempotent: an unchanged
//! dataset or test is skipped, problems are upserted by slug.
use std::path::Path;

use crate::catalog::{self, ProblemInput};
use crate::db;
use crate::db::models::{Dataset, DatasetTest, Problem};
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
    load_tests(state, &dir.join("tests")).await?;
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

/// `dir/<dataset>/<n>.sql`: uploaded hidden tests.
async fn load_tests(state: &AppState, dir: &Path) -> Result<(), StartupError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let loaded = db::run(&state.pool, DatasetTest::list).await?;
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    for path in paths {
        let name = |p: &Path| p.file_stem().and_then(|s| s.to_str()).map(str::to_string);
        let dataset = path
            .parent()
            .and_then(name)
            .ok_or("bad test directory name")?;
        let n: i16 = name(&path)
            .and_then(|n| n.parse().ok())
            .ok_or("demo tests are named <n>.sql")?;
        let script = std::fs::read_to_string(&path)?;
        let sha = crate::auth::sha256_hex(&script);
        if loaded
            .iter()
            .any(|t| t.dataset == dataset && t.test == n && t.script_sha256 == sha)
        {
            continue;
        }
        catalog::put_test(state, &dataset, n, &script)
            .await
            .map_err(|e| format!("demo test {dataset}/{n}: {e}"))?;
        log::info!("demo dataset {dataset}: hidden test {n}");
    }
    Ok(())
}
