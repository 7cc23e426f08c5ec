//! Problems held in memory, so that grading and submitting go on while Postgres is away, and
//! so that a submission needs no query for its problem.
use std::sync::Arc;

use crate::db::models::Problem;
use crate::db::{self, DbError};

/// The problems this instance has seen. A copy may be older than Postgres's: whoever records
/// something that depends on its version checks that version there (see `known`); while
/// Postgres is unreachable, the copies are what grading and submitting go on with.
#[derive(Default)]
pub struct ProblemCache {
    problems: std::sync::RwLock<std::collections::HashMap<i64, Arc<Problem>>>,
}

impl ProblemCache {
    pub fn get(&self, id: i64) -> Option<Arc<Problem>> {
        self.problems.read().expect("cache lock").get(&id).cloned()
    }

    pub fn put(&self, problem: &Problem) {
        self.keep(Arc::new(problem.clone()));
    }

    fn keep(&self, problem: Arc<Problem>) -> Arc<Problem> {
        self.problems
            .write()
            .expect("cache lock")
            .insert(problem.id, problem.clone());
        problem
    }

    pub fn forget(&self, id: i64) {
        self.problems.write().expect("cache lock").remove(&id);
    }

    /// The remembered copy, else the problem from Postgres. It may be older than Postgres's:
    /// for callers that check the version where it matters (a submission's verdict-cache hit
    /// is recorded only if the problem is still in that version).
    pub async fn known(
        &self,
        pool: &crate::db::PgPool,
        id: i64,
    ) -> Result<Option<Arc<Problem>>, DbError> {
        match self.get(id) {
            Some(p) => Ok(Some(p)),
            None => self.load(pool, id, true).await,
        }
    }

    /// The problem from Postgres (remembered), or the remembered copy if Postgres is down.
    /// (`postgres_up` false: the remembered copy without asking Postgres.)
    pub async fn load(
        &self,
        pool: &crate::db::PgPool,
        id: i64,
        postgres_up: bool,
    ) -> Result<Option<Arc<Problem>>, DbError> {
        if !postgres_up {
            if let Some(p) = self.get(id) {
                return Ok(Some(p));
            }
        }
        match db::run(pool, move |c| Problem::find(c, id)).await {
            Ok(found) => Ok(found.map(|p| self.keep(Arc::new(p)))),
            Err(e) if e.is_unavailable() => self.get(id).map(Some).ok_or(e),
            Err(e) => Err(e),
        }
    }
}
