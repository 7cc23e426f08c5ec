use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::lower;
use crate::db::schema::{first_solves, users};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
}

impl User {
    pub fn create(conn: &mut PgConnection, new: &NewUser) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(new)
            .returning(User::as_returning())
            .get_result(conn)
    }

    pub fn find(conn: &mut PgConnection, id: i64) -> QueryResult<Option<User>> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_username(conn: &mut PgConnection, name: &str) -> QueryResult<Option<User>> {
        users::table
            .filter(lower(users::username).eq(name.to_lowercase()))
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    /// Usernames of the given users.
    pub fn names(conn: &mut PgConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
        users::table
            .filter(users::id.eq_any(ids))
            .select((users::id, users::username))
            .load(conn)
    }

    pub fn set_admin(conn: &mut PgConnection, name: &str, admin: bool) -> QueryResult<usize> {
        diesel::update(users::table.filter(lower(users::username).eq(name.to_lowercase())))
            .set(users::is_admin.eq(admin))
            .execute(conn)
    }

    /// Moves users' last-seen times forward (never back: instances flush independently).
    pub fn record_last_seen(
        conn: &mut PgConnection,
        seen: &[(i64, DateTime<Utc>)],
    ) -> QueryResult<()> {
        conn.transaction(|c| {
            for &(id, at) in seen {
                diesel::update(
                    users::table
                        .find(id)
                        .filter(users::last_seen_at.is_null().or(users::last_seen_at.lt(at))),
                )
                .set(users::last_seen_at.eq(at))
                .execute(c)?;
            }
            Ok(())
        })
    }

    pub fn last_seen(conn: &mut PgConnection, id: i64) -> QueryResult<Option<DateTime<Utc>>> {
        users::table
            .find(id)
            .select(users::last_seen_at)
            .first(conn)
            .optional()
            .map(Option::flatten)
    }

    /// Users seen since `since`.
    pub fn active_since(conn: &mut PgConnection, since: DateTime<Utc>) -> QueryResult<i64> {
        users::table
            .filter(users::last_seen_at.ge(since))
            .count()
            .get_result(conn)
    }

    /// Distinct problems solved: the first-solve record decides.
    pub fn solved_count(conn: &mut PgConnection, id: i64) -> QueryResult<i64> {
        first_solves::table
            .filter(first_solves::user_id.eq(id))
            .count()
            .get_result(conn)
    }
}
