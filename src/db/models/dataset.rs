use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::datasets;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TableInfo {
    pub name: String,
    pub rows: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = datasets)]
pub struct Dataset {
    pub name: String,
    pub script_sha256: String,
    pub tables: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Dataset {
    /// Records a loaded dataset; true when it replaced an existing one.
    pub fn upsert(
        conn: &mut PgConnection,
        name: &str,
        sha256: &str,
        tables: &[TableInfo],
    ) -> QueryResult<bool> {
        let tables = serde_json::to_value(tables).expect("table list serialises");
        conn.transaction(|conn| {
            let existed = diesel::select(diesel::dsl::exists(
                datasets::table.filter(datasets::name.eq(name)),
            ))
            .get_result::<bool>(conn)?;
            diesel::insert_into(datasets::table)
                .values((
                    datasets::name.eq(name),
                    datasets::script_sha256.eq(sha256),
                    datasets::tables.eq(&tables),
                ))
                .on_conflict(datasets::name)
                .do_update()
                .set((
                    datasets::script_sha256.eq(sha256),
                    datasets::tables.eq(&tables),
                    datasets::updated_at.eq(Utc::now()),
                ))
                .execute(conn)?;
            Ok(existed)
        })
    }

    pub fn exists(conn: &mut PgConnection, name: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            datasets::table.filter(datasets::name.eq(name)),
        ))
        .get_result(conn)
    }

    pub fn find(conn: &mut PgConnection, name: &str) -> QueryResult<Option<Dataset>> {
        datasets::table
            .find(name)
            .select(Dataset::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<Dataset>> {
        datasets::table
            .order(datasets::name)
            .select(Dataset::as_select())
            .load(conn)
    }

    pub fn table_infos(&self) -> Vec<TableInfo> {
        serde_json::from_value(self.tables.clone()).unwrap_or_default()
    }
}
