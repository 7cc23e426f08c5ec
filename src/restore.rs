//! Brings the sandbox up to date with the platform database, which keeps every dataset's and
//! uploaded test's script: whatever the sandbox lacks or holds from another script (by
//! hash) is loaded again, and generated tests that problems use are rebuilt. A sandbox
//! cluster that comes back empty (a lost volume, a new server) heals itself, at start and then
//! every `sandbox.restore_check_secs`; until then its gradings are interrupted and retried.
use std::time::Duration;

use crate::db::models::{Dataset, DatasetTest, HiddenTest, Problem};
use crate::db::{self, DbError, PgPool};
use crate::grading::dataset::{self, DatasetError};
use crate::grading::generated;
use crate::grading::sandbox::{Sandbox, SandboxError};
use crate::job::TestData;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a restore loaded again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub datasets: usize,
    pub tests: usize,
    pub generated: usize,
}

impl Restored {
    pub fn any(&self) -> bool {
        *self != Restored::default()
    }
}

/// One pass; None when another process is restoring the same sandbox.
pub async fn restore(pool: &PgPool, sandbox: &Sandbox) -> Result<Option<Restored>, RestoreError> {
    let have = match sandbox.loaded().await? {
        Some(have) => have,
        None => {
            log::warn!("the sandbox database is gone: creating it again");
            sandbox.bootstrap().await?;
            Vec::new()
        }
    };
    let has = |name: &str, data: TestData, sha: &str| {
        have.iter()
            .any(|(d, t, s)| d == name && *t == data.tag() && s == sha)
    };
    let (datasets, tests, problems) = db::run(pool, |c| {
        let mut datasets = Vec::new();
        for d in Dataset::list(c)? {
            if let Some((script, sha)) = Dataset::script(c, &d.name)? {
                datasets.push((d.name, script, sha));
            }
        }
        let mut tests = Vec::new();
        for t in DatasetTest::list(c)? {
            if let Some(script) = DatasetTest::script(c, &t.dataset, t.test)? {
                tests.push((t.dataset, t.test, script, t.script_sha256));
            }
        }
        Ok((datasets, tests, Problem::list(c, None)?))
    })
    .await?;
    let stale_datasets = datasets
        .iter()
        .any(|(name, _, sha)| !has(name, TestData::Sample, sha));
    let stale_tests = tests
        .iter()
        .any(|(d, n, _, sha)| !has(d, TestData::Uploaded(*n), sha));
    let mut generated_wanted = Vec::new();
    for problem in &problems {
        let hidden: Vec<HiddenTest> =
            serde_json::from_value(problem.hidden_tests.clone()).unwrap_or_default();
        for test in hidden {
            let (TestData::Generated(j), Some((_, script, sha))) = (
                test.data,
                datasets
                    .iter()
                    .find(|(d, _, _)| *d == problem.fields.dataset),
            ) else {
                continue;
            };
            let item = (
                problem.fields.dataset.clone(),
                j,
                script.clone(),
                sha.clone(),
            );
            if !has(&item.0, test.data, sha) && !generated_wanted.contains(&item) {
                generated_wanted.push(item);
            }
        }
    }
    if !stale_datasets && !stale_tests && generated_wanted.is_empty() {
        return Ok(Some(Restored::default()));
    }
    // One process at a time; the others find it done on their next pass.
    let Some(_lock) = sandbox.restore_lock().await? else {
        return Ok(None);
    };
    let mut restored = Restored::default();
    for (name, script, sha) in &datasets {
        if !has(name, TestData::Sample, sha) {
            dataset::load(sandbox, name, script).await?;
            restored.datasets += 1;
        }
    }
    for (name, n, script, sha) in &tests {
        let data = TestData::Uploaded(*n);
        if !has(name, data, sha) {
            dataset::load_test(sandbox, name, data, script, false).await?;
            restored.tests += 1;
        }
    }
    for (name, j, script, sha) in &generated_wanted {
        // Its record may outlive its database: built again, not trusted.
        sandbox.forget_variant(name, *j).await?;
        generated::ensure(sandbox, name, *j, script, sha).await?;
        restored.generated += 1;
    }
    Ok(Some(restored))
}

/// Restores now, then every `every` (if not zero), for as long as the process runs.
pub fn start(pool: PgPool, sandbox: std::sync::Arc<Sandbox>, every: Duration) {
    if every.is_zero() {
        return;
    }
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(every).await;
            match restore(&pool, &sandbox).await {
                Ok(Some(r)) if r.any() => log::warn!("sandbox restored: {r:?}"),
                Ok(_) => {}
                // The sandbox or Postgres is away: the next pass tries again.
                Err(e) => log::debug!("sandbox restore check: {e}"),
            }
        }
    });
}
