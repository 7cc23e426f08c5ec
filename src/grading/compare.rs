//! Result comparison as API.md defines it: column count and values (as PostgreSQL's text
//! output, NULL distinct from ''), as a multiset unless the problem is ordered.
use serde::Serialize;
use std::collections::HashMap;

pub type Row = Vec<Option<String>>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnCount {
    pub expected: usize,
    pub got: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_count: Option<ColumnCount>,
    pub missing_rows: Vec<Row>,
    pub extra_rows: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_mismatch_at: Option<usize>,
}

/// How many rows of each kind a diff shows, and how much of each value.
const DIFF_ROWS: usize = 5;
const DIFF_VALUE_CHARS: usize = 200;

fn clip(row: &Row) -> Row {
    row.iter()
        .map(|v| {
            v.as_ref()
                .map(|s| match s.char_indices().nth(DIFF_VALUE_CHARS) {
                    Some((cut, _)) => format!("{}…", &s[..cut]),
                    None => s.clone(),
                })
        })
        .collect()
}

/// `None` when `got` matches `expected`; otherwise what differs.
pub fn compare(expected: &ResultSet, got: &ResultSet, ordered: bool) -> Option<Diff> {
    let (want, have) = (expected.columns.len(), got.columns.len());
    if want != have {
        return Some(Diff {
            column_count: Some(ColumnCount {
                expected: want,
                got: have,
            }),
            missing_rows: expected.rows.iter().take(DIFF_ROWS).map(clip).collect(),
            extra_rows: got.rows.iter().take(DIFF_ROWS).map(clip).collect(),
            first_mismatch_at: None,
        });
    }
    let mut balance: HashMap<&Row, i64> = HashMap::new();
    for row in &expected.rows {
        *balance.entry(row).or_default() += 1;
    }
    for row in &got.rows {
        *balance.entry(row).or_default() -= 1;
    }
    let missing = take_unbalanced(&expected.rows, &mut balance.clone(), 1);
    let extra = take_unbalanced(&got.rows, &mut balance, -1);
    let first_mismatch_at = if ordered {
        expected
            .rows
            .iter()
            .zip(&got.rows)
            .position(|(a, b)| a != b)
            .or_else(|| {
                (expected.rows.len() != got.rows.len())
                    .then(|| expected.rows.len().min(got.rows.len()))
            })
    } else {
        None
    };
    if missing.is_empty() && extra.is_empty() && first_mismatch_at.is_none() {
        return None;
    }
    Some(Diff {
        column_count: None,
        missing_rows: missing,
        extra_rows: extra,
        first_mismatch_at,
    })
}

/// Rows of `rows` whose balance has the sign `sign`, in order, counting duplicates.
fn take_unbalanced(rows: &[Row], balance: &mut HashMap<&Row, i64>, sign: i64) -> Vec<Row> {
    let mut out = Vec::new();
    for row in rows {
        if out.len() == DIFF_ROWS {
            break;
        }
        if let Some(n) = balance.get_mut(row) {
            if *n * sign > 0 {
                *n -= sign;
                out.push(clip(row));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(cols: usize, rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            columns: (0..cols).map(|i| format!("c{i}")).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    #[test]
    fn multiset_ignores_order_but_counts_duplicates() {
        let a = rs(1, &[&[Some("1")], &[Some("2")], &[Some("2")]]);
        let b = rs(1, &[&[Some("2")], &[Some("1")], &[Some("2")]]);
        assert_eq!(compare(&a, &b, false), None);
        let c = rs(1, &[&[Some("2")], &[Some("1")], &[Some("1")]]);
        let d = compare(&a, &c, false).unwrap();
        assert_eq!(d.missing_rows, vec![vec![Some("2".to_string())]]);
        assert_eq!(d.extra_rows, vec![vec![Some("1".to_string())]]);
    }

    #[test]
    fn ordered_reports_first_mismatch() {
        let a = rs(1, &[&[Some("1")], &[Some("2")]]);
        let b = rs(1, &[&[Some("2")], &[Some("1")]]);
        let d = compare(&a, &b, true).unwrap();
        assert_eq!(d.first_mismatch_at, Some(0));
        assert!(d.missing_rows.is_empty() && d.extra_rows.is_empty());
        assert_eq!(compare(&a, &a, true), None);
    }

    #[test]
    fn null_is_not_empty_string_and_column_count_matters() {
        let a = rs(1, &[&[None]]);
        let b = rs(1, &[&[Some("")]]);
        assert!(compare(&a, &b, false).is_some());
        let d = compare(&a, &rs(2, &[&[None, None]]), false).unwrap();
        assert_eq!(
            d.column_count,
            Some(ColumnCount {
                expected: 1,
                got: 2
            })
        );
    }
}
