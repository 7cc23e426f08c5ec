//! Brings the sandbox up to date with the platform database, which keeps every dataset's and
//! uploaded test's script: whatever the sandbox lacks or holds from another script (by
//! hash) is loaded again, and generated tests that problems use are rebuilt. A sandbox
//! cluster that comes back empty (a lost volume, a new server) heals itself, at start and then
//! every `sandbox.restore_check_secs`. Meanwhile a grading that finds its dataset missing
//! waits, uncounted (`grading::missing_dataset`).
//!
//! Admin loads record a dataset or test in the sandbox and in the platform under the
//! catalogue lock (`Sandbox::catalog_lock`); a restore runs only while it holds that lock, so
//! it never sees one record without the other.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::models::{Dataset, DatasetTest, HiddenTest, Problem};
use crate::db::{self, DbError, PgPool};
use crate::grading::dataset;
use crate::grading::generated;
use crate::grading::sandbox::{Sandbox, SandboxError};
use crate::job::TestData;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a restore loaded again, and what it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub datasets: usize,
    pub tests: usize,
    pub generated: usize,
    pub failed: usize,
}

impl Restored {
    pub fn any(&self) -> bool {
        *self != Restored::default()
    }
}

/// One pass; None when another process holds the catalogue lock (a restore, an admin load).
pub async fn restore(pool: &PgPool, sandbox: &Sandbox) -> Result<Option<Restored>, RestoreError> {
    let Some(_lock) = (match sandbox.restore_lock().await {
        Ok(lock) => lock,
        Err(_) if sandbox.loaded().await?.is_none() => {
            log::warn!("the sandbox database is gone: creating it again");
            sandbox.bootstrap().await?;
            sandbox.restore_lock().await?
        }
        Err(e) => return Err(e.into()),
    }) else {
        return Ok(None);
    };
    // What the platform holds: names and hashes only; scripts are read for what is stale.
    let (datasets, tests, hidden) = db::run(pool, |c| {
        Ok((
            Dataset::list(c)?,
            DatasetTest::list(c)?,
            Problem::hidden_tests_by_dataset(c)?,
        ))
    })
    .await?;
    let records: Vec<(String, String, String)> = datasets
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                TestData::Sample.tag(),
                d.script_sha256.clone(),
            )
        })
        .chain(tests.iter().map(|t| {
            let tag = TestData::Uploaded(t.test).tag();
            (t.dataset.clone(), tag, t.script_sha256.clone())
        }))
        .collect();
    let have = sandbox.held(&records).await?.unwrap_or_default();
    let has = |name: &str, data: TestData, sha: &str| {
        have.iter()
            .any(|(d, t, s)| d == name && *t == data.tag() && s == sha)
    };
    let mut failed = 0;
    // 1 for what was loaded again; a failure is warned of and the others go on (it is tried
    // again at the next pass).
    let mut done = |what: String, outcome: Result<(), String>| match outcome {
        Ok(()) => 1,
        Err(e) => {
            log::warn!("sandbox restore of {what}: {e}");
            failed += 1;
            0
        }
    };
    let mut restored = Restored::default();
    for d in &datasets {
        if has(&d.name, TestData::Sample, &d.script_sha256) {
            continue;
        }
        let outcome = match script_of(pool, &d.name).await? {
            Some(script) => dataset::load(sandbox, &d.name, &script)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err("loaded before scripts were kept: load it again".into()),
        };
        restored.datasets += done(format!("dataset {}", d.name), outcome);
    }
    for t in &tests {
        let data = TestData::Uploaded(t.test);
        if has(&t.dataset, data, &t.script_sha256) {
            continue;
        }
        let (name, n) = (t.dataset.clone(), t.test);
        let script = db::run(pool, move |c| DatasetTest::script(c, &name, n)).await?;
        let outcome = match script {
            Some(script) => dataset::load_test(sandbox, &t.dataset, data, &script, false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => continue,
        };
        restored.tests += done(format!("test {}/{}", t.dataset, t.test), outcome);
    }
    let wanted: BTreeSet<(String, i16)> = hidden
        .into_iter()
        .flat_map(|(name, tests)| {
            let tests: Vec<HiddenTest> = serde_json::from_value(tests).unwrap_or_default();
            tests.into_iter().filter_map(move |t| match t.data {
                TestData::Generated(j) => Some((name.clone(), j)),
                _ => None,
            })
        })
        .collect();
    for (name, j) in wanted {
        let Some(d) = datasets.iter().find(|d| d.name == name) else {
            continue;
        };
        if has(&name, TestData::Generated(j), &d.script_sha256) {
            continue;
        }
        let Some(script) = script_of(pool, &name).await? else {
            continue;
        };
        // Its record may outlive its database: built again, not trusted.
        let outcome = async {
            sandbox.forget_variant(&name, j).await?;
            generated::ensure(sandbox, &name, j, &script, &d.script_sha256).await
        }
        .await
        .map_err(|e| e.to_string());
        restored.generated += done(format!("generated test {name}/g{j}"), outcome);
    }
    restored.failed = failed;
    Ok(Some(restored))
}

async fn script_of(pool: &PgPool, name: &str) -> Result<Option<String>, DbError> {
    let name = name.to_string();
    Ok(db::run(pool, move |c| Dataset::script(c, &name))
        .await?
        .map(|(script, _)| script))
}

/// Keeps a server's readiness for as long as the process runs. It is checked every second and
/// taken out of grading while it does not answer. The first server grades again as soon as it
/// answers (a restore pass is tried then, and every `every` if not zero). Any other is
/// bootstrapped here and graded on only after a pass that left nothing behind, and only for
/// the problem versions that pass saw (`Sandbox::holds`); a pass runs when it answers again,
/// when the catalogue changed (whichever process changed it), when a grading found it
/// behind, and every `every`.
pub fn keep(pool: PgPool, server: Arc<Sandbox>, every: Duration) {
    actix_web::rt::spawn(async move {
        let mut bootstrapped = !server.secondary();
        let mut last_pass = Instant::now();
        // The catalogue as of the last complete pass, and when a failed pass may be retried.
        let mut synced: Option<String> = None;
        let mut retry_at = Instant::now();
        loop {
            let woken = tokio::select! {
                () = actix_web::rt::time::sleep(Duration::from_secs(1)) => false,
                () = server.woken() => true,
            };
            if !server.reachable().await {
                if server.ready() {
                    log::warn!(
                        "sandbox {} is unreachable: its executors pause",
                        server.label()
                    );
                    server.set_ready(false);
                }
                continue;
            }
            let periodic = !every.is_zero() && last_pass.elapsed() >= every;
            if !server.secondary() {
                let back = !server.ready();
                server.set_ready(true);
                if back || periodic {
                    last_pass = Instant::now();
                    pass(&pool, &server).await;
                }
                continue;
            }
            if !bootstrapped {
                match server.bootstrap().await {
                    Ok(()) => bootstrapped = true,
                    Err(e) => {
                        log::debug!("sandbox {} not bootstrapped yet: {e}", server.label());
                        continue;
                    }
                }
            }
            // None while Postgres is away: the server keeps grading what it was synced for.
            let catalog = db::run(&pool, Dataset::catalog_fingerprint).await.ok();
            let changed = catalog.is_some() && catalog != synced;
            let due = !server.ready() || changed || periodic || woken;
            if !due || Instant::now() < retry_at {
                continue;
            }
            // Taken before the pass: a change committed meanwhile makes the next tick's
            // fingerprint differ, and gradings of its new versions are refused until then.
            let Ok(versions) = db::run(&pool, Problem::versions).await else {
                continue;
            };
            last_pass = Instant::now();
            match pass(&pool, &server).await {
                Some(r) if r.failed == 0 => {
                    server.set_synced(
                        versions
                            .into_iter()
                            .map(|(id, at)| (id, at.timestamp_micros()))
                            .collect(),
                    );
                    synced = catalog;
                    server.set_ready(true);
                }
                // Something could not be loaded there: what changed is not graded there
                // until a pass loads it.
                Some(_) => retry_at = Instant::now() + Duration::from_secs(10),
                None => {}
            }
        }
    });
}

/// One restore pass, logged. None: not done (another process holds the catalogue lock, or the
/// sandbox or Postgres is away); the next tick tries again.
async fn pass(pool: &PgPool, server: &Sandbox) -> Option<Restored> {
    match restore(pool, server).await {
        Ok(Some(r)) => {
            if r.any() {
                log::warn!("sandbox {} restored: {r:?}", server.label());
            }
            Some(r)
        }
        Ok(None) => None,
        Err(e) => {
            log::debug!("sandbox {} restore check: {e}", server.label());
            None
        }
    }
}
