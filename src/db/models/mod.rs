//! Models and the queries that belong to them.
mod dataset;
mod fallback;
mod problem;
mod standing;
mod submission;
mod token;
mod user;

pub use dataset::{Dataset, DatasetTest, TableInfo};
pub use fallback::FallbackSubmission;
pub use problem::{HiddenTest, NewProblem, Problem, ProblemFields, TestCounts};
pub use standing::{RankedRow, Standing};
pub use submission::{Graded, NewSubmission, Submission};
pub use token::{AuthToken, ACCESS, REFRESH};
pub use user::{NewUser, User};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// True when `err` is a unique-constraint violation (a 409 for the caller).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
