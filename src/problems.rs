//! Problems held in memory, so that grading and submitting go on while Postgres is away.
use crate::db::models::Problem;
use crate::db::{self, DbError};

/// The problems this instance has seen, for grading and validating submissions while
/// Postgres is unreachable. Postgres stays the source whenever it answers.
#[derive(Default)]
pub struct ProblemCache {
    problems: std::sync::RwLock<std::collections::HashMap<i64, Problem>>,
}

impl ProblemCache {
    pub fn get(&self, id: i64) -> Option<Problem> {
        self.problems.read().expect("cache lock").get(&id).cloned()
    }

    pub fn put(&self, problem: &Problem) {
        self.problems
            .write()
            .expect("cache lock")
            .insert(problem.id, problem.clone());
    }

    /// The problem from Postgres (remembered), or the remembered copy if Postgres is down.
    /// (`postgres_up` false: the remembered copy without asking Postgres.)
    pub async fn load(
        &self,
        pool: &crate::db::PgPool,
        id: i64,
        postgres_up: bool,
    ) -> Result<Option<Problem>, DbError> {
        if !postgres_up {
            if let Some(p) = self.get(id) {
                return Ok(Some(p));
            }
        }
        match db::run(pool, move |c| Problem::find(c, id)).await {
            Ok(found) => {
                if let Some(p) = &found {
                    self.put(p);
                }
                Ok(found)
            }
            Err(e) if e.is_unavailable() => self.get(id).map(Some).ok_or(e),
            Err(e) => Err(e),
        }
    }
}
