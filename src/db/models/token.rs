use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::User;
use crate::db::schema::{auth_tokens, users};

pub const ACCESS: &str = "access";
pub const REFRESH: &str = "refresh";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_tokens)]
pub struct AuthToken {
    pub token_hash: String,
    pub user_id: i64,
    pub kind: String,
    pub family: Uuid,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl AuthToken {
    pub fn new(hash: String, user_id: i64, kind: &str, family: Uuid, ttl_secs: i64) -> AuthToken {
        let now = Utc::now();
        AuthToken {
            token_hash: hash,
            user_id,
            kind: kind.to_string(),
            family,
            expires_at: now + chrono::Duration::seconds(ttl_secs),
            revoked_at: None,
            created_at: now,
        }
    }

    pub fn insert_all(conn: &mut PgConnection, tokens: &[AuthToken]) -> QueryResult<usize> {
        diesel::insert_into(auth_tokens::table)
            .values(tokens)
            .execute(conn)
    }

    /// The unrevoked, unexpired token of `kind` with this hash, and its user.
    pub fn find_active(
        conn: &mut PgConnection,
        hash: &str,
        kind: &str,
    ) -> QueryResult<Option<(AuthToken, User)>> {
        auth_tokens::table
            .inner_join(users::table)
            .filter(auth_tokens::token_hash.eq(hash))
            .filter(auth_tokens::kind.eq(kind))
            .filter(auth_tokens::revoked_at.is_null())
            .filter(auth_tokens::expires_at.gt(Utc::now()))
            .select((AuthToken::as_select(), User::as_select()))
            .first(conn)
            .optional()
    }

    /// Revokes one token if it is still active; false when it was already used or revoked, so
    /// two racing refreshes cannot both succeed.
    pub fn revoke(conn: &mut PgConnection, hash: &str) -> QueryResult<bool> {
        diesel::update(
            auth_tokens::table
                .filter(auth_tokens::token_hash.eq(hash))
                .filter(auth_tokens::revoked_at.is_null()),
        )
        .set(auth_tokens::revoked_at.eq(Utc::now()))
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Access tokens revoked before they expired: what a Redis that missed the revocation
    /// may still hold.
    pub fn revoked_unexpired(conn: &mut PgConnection) -> QueryResult<Vec<String>> {
        auth_tokens::table
            .filter(auth_tokens::revoked_at.is_not_null())
            .filter(auth_tokens::kind.eq(ACCESS))
            .filter(auth_tokens::expires_at.gt(Utc::now()))
            .select(auth_tokens::token_hash)
            .load(conn)
    }

    /// A user's active access tokens.
    pub fn active_of_user(conn: &mut PgConnection, user_id: i64) -> QueryResult<Vec<String>> {
        auth_tokens::table
            .filter(auth_tokens::user_id.eq(user_id))
            .filter(auth_tokens::kind.eq(ACCESS))
            .filter(auth_tokens::revoked_at.is_null())
            .filter(auth_tokens::expires_at.gt(Utc::now()))
            .select(auth_tokens::token_hash)
            .load(conn)
    }

    /// Revokes every token of a login; returns their hashes.
    pub fn revoke_family(conn: &mut PgConnection, family: Uuid) -> QueryResult<Vec<String>> {
        diesel::update(
            auth_tokens::table
                .filter(auth_tokens::family.eq(family))
                .filter(auth_tokens::revoked_at.is_null()),
        )
        .set(auth_tokens::revoked_at.eq(Utc::now()))
        .returning(auth_tokens::token_hash)
        .get_results(conn)
    }
}
