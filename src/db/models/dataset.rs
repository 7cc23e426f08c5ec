use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::{dataset_tests, datasets};

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
    /// Records a loaded dataset and its script; true when it replaced an existing one.
    pub fn upsert(
        conn: &mut PgConnection,
        name: &str,
        script: &str,
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
                    datasets::script.eq(script),
                    datasets::script_sha256.eq(sha256),
                    datasets::tables.eq(&tables),
                ))
                .on_conflict(datasets::name)
                .do_update()
                .set((
                    datasets::script.eq(script),
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

    /// Changes whenever a dataset, an uploaded test or a problem (its hidden tests included)
    /// does: what a sandbox server must follow.
    pub fn catalog_fingerprint(conn: &mut PgConnection) -> QueryResult<String> {
        #[derive(QueryableByName)]
        struct Fingerprint {
            #[diesel(sql_type = diesel::sql_types::Text)]
            fingerprint: String,
        }
        diesel::sql_query(
            "SELECT md5(concat_ws('|', \
               (SELECT string_agg(name || ':' || script_sha256, ',' ORDER BY name) FROM datasets), \
               (SELECT string_agg(dataset || ':' || test || ':' || script_sha256, ',' \
                                  ORDER BY dataset, test) FROM dataset_tests), \
               (SELECT string_agg(id || ':' || updated_at, ',' ORDER BY id) FROM problems) \
             )) AS fingerprint",
        )
        .get_result::<Fingerprint>(conn)
        .map(|f| f.fingerprint)
    }

    pub fn table_infos(&self) -> Vec<TableInfo> {
        serde_json::from_value(self.tables.clone()).unwrap_or_default()
    }

    /// The script the dataset was loaded from, and its hash (None for datasets loaded before
    /// scripts were kept).
    pub fn script(conn: &mut PgConnection, name: &str) -> QueryResult<Option<(String, String)>> {
        let found: Option<(Option<String>, String)> = datasets::table
            .find(name)
            .select((datasets::script, datasets::script_sha256))
            .first(conn)
            .optional()?;
        Ok(found.and_then(|(script, sha)| script.map(|s| (s, sha))))
    }
}

/// A hidden test uploaded for a dataset: other rows in the same tables.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dataset_tests)]
pub struct DatasetTest {
    pub dataset: String,
    pub test: i16,
    pub script_sha256: String,
    pub tables: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl DatasetTest {
    /// Records a loaded test; true when it replaced an existing one.
    pub fn upsert(
        conn: &mut PgConnection,
        dataset: &str,
        test: i16,
        script: &str,
        tables: &[TableInfo],
    ) -> QueryResult<bool> {
        let tables = serde_json::to_value(tables).expect("table list serialises");
        let sha = crate::auth::sha256_hex(script);
        conn.transaction(|conn| {
            let existed = diesel::select(diesel::dsl::exists(
                dataset_tests::table.find((dataset, test)),
            ))
            .get_result::<bool>(conn)?;
            diesel::insert_into(dataset_tests::table)
                .values((
                    dataset_tests::dataset.eq(dataset),
                    dataset_tests::test.eq(test),
                    dataset_tests::script.eq(script),
                    dataset_tests::script_sha256.eq(&sha),
                    dataset_tests::tables.eq(&tables),
                ))
                .on_conflict((dataset_tests::dataset, dataset_tests::test))
                .do_update()
                .set((
                    dataset_tests::script.eq(script),
                    dataset_tests::script_sha256.eq(&sha),
                    dataset_tests::tables.eq(&tables),
                    dataset_tests::updated_at.eq(Utc::now()),
                ))
                .execute(conn)?;
            Ok(existed)
        })
    }

    /// The script of a test, if it exists.
    pub fn script(
        conn: &mut PgConnection,
        dataset: &str,
        test: i16,
    ) -> QueryResult<Option<String>> {
        dataset_tests::table
            .find((dataset, test))
            .select(dataset_tests::script)
            .first(conn)
            .optional()
    }

    /// True when it existed.
    pub fn delete(conn: &mut PgConnection, dataset: &str, test: i16) -> QueryResult<bool> {
        diesel::delete(dataset_tests::table.find((dataset, test)))
            .execute(conn)
            .map(|n| n > 0)
    }

    /// Every uploaded test, by dataset and number.
    pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<DatasetTest>> {
        dataset_tests::table
            .order((dataset_tests::dataset, dataset_tests::test))
            .select(DatasetTest::as_select())
            .load(conn)
    }

    /// The numbers of a dataset's uploaded tests, in order.
    pub fn numbers(conn: &mut PgConnection, dataset: &str) -> QueryResult<Vec<i16>> {
        dataset_tests::table
            .filter(dataset_tests::dataset.eq(dataset))
            .order(dataset_tests::test)
            .select(dataset_tests::test)
            .load(conn)
    }

    pub fn table_infos(&self) -> Vec<TableInfo> {
        serde_json::from_value(self.tables.clone()).unwrap_or_default()
    }
}
