//! Hidden tests generated from a dataset's sample rows (API.md v1.1): each is the dataset's
//! script loaded into a database of its own, then cut down to a subset of its rows closed under
//! foreign keys, written back in another physical order, with rows duplicated where no key
//! forbids it. Variant `j` depends on the dataset's script and `j` alone, so a problem version
//! is always graded on the same data; problems pick the variants on which their reference
//! neither fails nor gives the sample's result.
use super::dataset::{self, DatasetError};
use super::sandbox::{quote_ident, Sandbox, SandboxError, LOCK_SPACE, META};
use crate::job::TestData;

/// The variants a problem may draw on beyond the ones it asks for, to replace those that
/// tell nothing apart.
pub const SPARE: i16 = 2;

/// Of each table, variant `j` keeps about this share of the rows.
const KEEP: [f64; 12] = [
    1.0, 0.6, 0.8, 0.35, 0.9, 0.5, 0.7, 0.25, 0.85, 0.45, 0.95, 0.3,
];

/// What turns a loaded copy of the sample into variant `j`, in one transaction on the
/// superuser's connection to the variant's database: foreign-key triggers go off (a setting
/// only a superuser may change), then everything runs as the dataset's `owner`, so no trigger,
/// rule or function of the dataset ever runs with more rights than its owner's. Rows whose
/// parent is gone are deleted until none is left, so the subset is closed under foreign keys
/// however they cascade. `ROW(x.*)` is the row even where a column is named `x`.
fn transform_sql(schema: &str, owner: &str, j: i16, seed: &str) -> String {
    let keep = KEEP[(j as usize - 1) % KEEP.len()];
    // Rows are kept when the first 8 hex digits of md5(row || seed) fall below this.
    let threshold = format!("{:08x}", ((keep * 4294967296.0) as u64).min(0xffff_ffff));
    let duplicate = j % 2 == 1;
    let schema = quote_ident(schema).replace('\'', "''");
    let seed = seed.replace('\'', "''");
    format!(
        "SET LOCAL session_replication_role = replica;
SET LOCAL ROLE {owner};
DO $$
DECLARE r record; n bigint; total bigint; cols text; scope text;
BEGIN
  IF {keep_all} THEN NULL; ELSE
    FOR r IN SELECT c.oid::regclass AS t, c.relkind FROM pg_class c
      WHERE c.relnamespace = '{schema}'::regnamespace
        AND (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relispartition))
    LOOP
      scope := CASE WHEN r.relkind = 'r' THEN 'ONLY ' ELSE '' END;
      EXECUTE format('DELETE FROM %s%s x WHERE substr(md5(ROW(x.*)::text || %L), 1, 8) >= %L',
        scope, r.t, '{seed}', '{threshold}');
    END LOOP;
  END IF;
  LOOP
    total := 0;
    FOR r IN SELECT con.conrelid::regclass AS child, con.confrelid::regclass AS parent,
        (SELECT string_agg(format('c.%I', a.attname), ', ' ORDER BY k.i)
           FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
           JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS ccols,
        (SELECT string_agg(format('p.%I', a.attname), ', ' ORDER BY k.i)
           FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
           JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS pcols
      FROM pg_constraint con
      WHERE con.contype = 'f' AND con.connamespace = '{schema}'::regnamespace
    LOOP
      EXECUTE format('DELETE FROM %s c WHERE ROW(%s) IS NOT NULL AND NOT EXISTS '
        '(SELECT 1 FROM %s p WHERE ROW(%s) = ROW(%s))', r.child, r.ccols, r.parent, r.pcols, r.ccols);
      GET DIAGNOSTICS n = ROW_COUNT;
      total := total + n;
    END LOOP;
    EXIT WHEN total = 0;
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS t, c.oid, c.relkind FROM pg_class c
    WHERE c.relnamespace = '{schema}'::regnamespace
      AND (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relispartition))
  LOOP
    SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) INTO cols
      FROM pg_attribute WHERE attrelid = r.oid AND attnum > 0 AND NOT attisdropped
        AND attgenerated = '';
    CONTINUE WHEN cols IS NULL;
    scope := CASE WHEN r.relkind = 'r' THEN 'ONLY ' ELSE '' END;
    EXECUTE format('WITH moved AS (DELETE FROM %s%s RETURNING %s) '
      'INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved x '
      'ORDER BY md5(ROW(x.*)::text || %L)', scope, r.t, cols, r.t, cols, cols, '{seed}');
    IF {duplicate}
      AND NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = r.oid AND indisunique)
      AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = r.oid AND contype = 'x')
    THEN
      EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s%s x '
        'WHERE substr(md5(ROW(x.*)::text || %L), 1, 1) < ''5''', r.t, cols, cols, scope, r.t,
        '{seed}:dup');
    END IF;
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS v FROM pg_class c
    WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'm'
  LOOP
    EXECUTE format('REFRESH MATERIALIZED VIEW %s', r.v);
  END LOOP;
END $$;",
        keep_all = keep >= 1.0,
        owner = quote_ident(owner),
    )
}

/// Makes sure generated variant `j` of `dataset` is built from the script whose hash is
/// `sha` (building it when missing or stale). Instances building at once take turns.
pub async fn ensure(
    sandbox: &Sandbox,
    dataset: &str,
    j: i16,
    script: &str,
    sha: &str,
) -> Result<(), DatasetError> {
    let admin = sandbox.admin_client().await?;
    if built(&admin, dataset, j, sha).await? {
        return Ok(());
    }
    admin
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&(LOCK_SPACE + 1), &dataset],
        )
        .await
        .map_err(SandboxError::from)?;
    // The lock is a session's: it ends with `admin` whatever happens below. Another instance
    // may have built it while this one waited.
    if built(&admin, dataset, j, sha).await? {
        return Ok(());
    }
    let data = TestData::Generated(j);
    dataset::load_test(sandbox, dataset, data, script, false).await?;
    let test = sandbox.admin_client_for(data).await?;
    let seed = format!("{sha}:{j}");
    test.batch_execute(&format!(
        "BEGIN; SET LOCAL lock_timeout = '30s'; {}; COMMIT",
        transform_sql(dataset, &sandbox.owner_role(dataset), j, &seed)
    ))
    .await
    .map_err(|e| {
        DatasetError::Failed(format!(
            "generating hidden test {}: {}",
            data.tag(),
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        ))
    })?;
    sandbox.record_sequences(dataset, data).await?;
    admin
        .execute(
            &format!(
                "INSERT INTO {META}.variants (dataset, variant, source) VALUES ($1, $2, $3) \
                 ON CONFLICT (dataset, variant) DO UPDATE SET source = excluded.source"
            ),
            &[&dataset, &j, &sha],
        )
        .await
        .map_err(SandboxError::from)?;
    Ok(())
}

/// Whether variant `j` of `dataset` stands built from the script whose hash is `sha`.
async fn built(
    admin: &tokio_postgres::Client,
    dataset: &str,
    j: i16,
    sha: &str,
) -> Result<bool, DatasetError> {
    let query = format!(
        "SELECT 1 FROM {META}.variants WHERE dataset = $1 AND variant = $2 AND source = $3"
    );
    Ok(admin
        .query_opt(&query, &[&dataset, &j, &sha])
        .await
        .map_err(SandboxError::from)?
        .is_some())
}
