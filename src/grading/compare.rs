//! Result comparison as API.md defines it: column count and values (as PostgreSQL's text
//! output, NULL distinct from ''), as a multiset unless the problem is ordered.
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::job::Reason;

pub use crate::job::Row;

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

/// How the order of rows counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Order {
    /// Not at all: the rows are a multiset (duplicates counted).
    Any,
    /// Row by row.
    Exact,
    /// The expected order, except that rows equal on these columns (0-based), the sort key,
    /// may come in any order among themselves.
    Key(Vec<usize>),
}

/// How a result differs from the expected one.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub diff: Diff,
    pub reason: Reason,
}

/// `None` when `got` matches `expected`; otherwise what differs and why.
pub fn compare(expected: &ResultSet, got: &ResultSet, order: &Order) -> Option<Mismatch> {
    let (want, have) = (expected.columns.len(), got.columns.len());
    if want != have {
        return Some(Mismatch {
            diff: Diff {
                column_count: Some(ColumnCount {
                    expected: want,
                    got: have,
                }),
                missing_rows: expected.rows.iter().take(DIFF_ROWS).map(clip).collect(),
                extra_rows: got.rows.iter().take(DIFF_ROWS).map(clip).collect(),
                first_mismatch_at: None,
            },
            reason: Reason::ColumnCount,
        });
    }
    let balance = balance(&expected.rows, &got.rows);
    let missing = take_unbalanced(&expected.rows, &mut balance.clone(), 1);
    let extra = take_unbalanced(&got.rows, &mut balance.clone(), -1);
    let first_mismatch_at = first_out_of_order(&expected.rows, &got.rows, order);
    if missing.is_empty() && extra.is_empty() && first_mismatch_at.is_none() {
        return None;
    }
    Some(Mismatch {
        reason: reason(expected, got, missing.is_empty() && extra.is_empty()),
        diff: Diff {
            column_count: None,
            missing_rows: missing,
            extra_rows: extra,
            first_mismatch_at,
        },
    })
}

/// How many more times each row stands in `plus` than in `minus`.
fn balance<'a>(plus: &'a [Row], minus: &'a [Row]) -> HashMap<&'a Row, i64> {
    let mut balance: HashMap<&Row, i64> = HashMap::new();
    for row in plus {
        *balance.entry(row).or_default() += 1;
    }
    for row in minus {
        *balance.entry(row).or_default() -= 1;
    }
    balance
}

fn same_multiset(a: &[Row], b: &[Row]) -> bool {
    a.len() == b.len() && balance(a, b).values().all(|&n| n == 0)
}

/// Where `got` first breaks the order (`None` when order does not count or it holds).
fn first_out_of_order(expected: &[Row], got: &[Row], order: &Order) -> Option<usize> {
    let key = match order {
        Order::Any => return None,
        Order::Exact => &[][..],
        Order::Key(key) => key.as_slice(),
    };
    // Runs of expected rows equal on the key (with no key, each row is its own run): at those
    // places `got` must hold the same rows, in any order. Equal as the server sorts them:
    // numerics of other scales (`35` and `35.0`) tie too.
    let same = |a: Option<&Option<String>>, b: Option<&Option<String>>| {
        a == b
            || matches!((a, b), (Some(Some(x)), Some(Some(y)))
                if canonical_number(x).is_some_and(|n| canonical_number(y) == Some(n)))
    };
    let ties = |a: &Row, b: &Row| !key.is_empty() && key.iter().all(|&c| same(a.get(c), b.get(c)));
    let mut start = 0;
    while start < expected.len() {
        let end = (start + 1..expected.len())
            .find(|&i| !ties(&expected[start], &expected[i]))
            .unwrap_or(expected.len());
        let mut wanted = balance(&expected[start..end], &[]);
        for (i, row) in got.iter().enumerate().take(end).skip(start) {
            match wanted.get_mut(row) {
                Some(n) if *n > 0 => *n -= 1,
                _ => return Some(i),
            }
        }
        if got.len() < end {
            return Some(got.len());
        }
        start = end;
    }
    (got.len() > expected.len()).then_some(expected.len())
}

/// The first reason of API.md's list that applies; `same_rows` when only the order differs.
fn reason(expected: &ResultSet, got: &ResultSet, same_rows: bool) -> Reason {
    let distinct = |rows: &[Row]| rows.iter().cloned().collect::<HashSet<Row>>();
    let mapped = |rows: &[Row], f: &dyn Fn(&Option<String>) -> Option<String>| -> Vec<Row> {
        rows.iter().map(|r| r.iter().map(f).collect()).collect()
    };
    let null_is_empty = |v: &Option<String>| Some(v.clone().unwrap_or_default());
    let as_number = |v: &Option<String>| {
        v.as_ref()
            .map(|s| canonical_number(s).unwrap_or_else(|| s.clone()))
    };
    let (e, g) = (&expected.rows, &got.rows);
    if same_rows {
        Reason::Order
    } else if distinct(e) == distinct(g) {
        Reason::Duplicates
    } else if same_multiset(&mapped(e, &null_is_empty), &mapped(g, &null_is_empty)) {
        Reason::NullVsEmpty
    } else if same_multiset(&mapped(e, &as_number), &mapped(g, &as_number)) {
        Reason::NumericFormat
    } else if e.len() != g.len() {
        Reason::RowCount
    } else {
        Reason::Values
    }
}

/// A decimal number's value in one spelling (`1.50`, `+1.5`, `15e-1` → `15e1`-style digits and
/// exponent), exactly, however many digits; `None` for text that is not a decimal number.
fn canonical_number(text: &str) -> Option<String> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0');
    // The value is 0.<significant> × 10^point.
    let point = (int.len() as i64)
        .checked_add(exponent)?
        .checked_sub((digits.len() - significant.len()) as i64)?;
    let significant = significant.trim_end_matches('0');
    if significant.is_empty() {
        return Some("0".into());
    }
    let sign = if negative { "-" } else { "" };
    Some(format!("{sign}0.{significant}e{point}"))
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

    fn one(values: &[&str]) -> ResultSet {
        ResultSet {
            columns: vec!["c0".into()],
            rows: values.iter().map(|v| vec![Some(v.to_string())]).collect(),
        }
    }

    #[test]
    fn multiset_ignores_order_but_counts_duplicates() {
        let a = rs(1, &[&[Some("1")], &[Some("2")], &[Some("2")]]);
        let b = rs(1, &[&[Some("2")], &[Some("1")], &[Some("2")]]);
        assert_eq!(compare(&a, &b, &Order::Any), None);
        let c = rs(1, &[&[Some("2")], &[Some("1")], &[Some("1")]]);
        let m = compare(&a, &c, &Order::Any).unwrap();
        assert_eq!(m.diff.missing_rows, vec![vec![Some("2".to_string())]]);
        assert_eq!(m.diff.extra_rows, vec![vec![Some("1".to_string())]]);
        assert_eq!(m.reason, Reason::Duplicates);
    }

    #[test]
    fn ordered_reports_first_mismatch() {
        let a = rs(1, &[&[Some("1")], &[Some("2")]]);
        let b = rs(1, &[&[Some("2")], &[Some("1")]]);
        let m = compare(&a, &b, &Order::Exact).unwrap();
        assert_eq!(m.diff.first_mismatch_at, Some(0));
        assert_eq!(m.reason, Reason::Order);
        assert!(m.diff.missing_rows.is_empty() && m.diff.extra_rows.is_empty());
        assert_eq!(compare(&a, &a, &Order::Exact), None);
        let short = rs(1, &[&[Some("1")]]);
        assert_eq!(
            compare(&a, &short, &Order::Exact)
                .unwrap()
                .diff
                .first_mismatch_at,
            Some(1)
        );
        assert_eq!(
            compare(&short, &a, &Order::Exact)
                .unwrap()
                .diff
                .first_mismatch_at,
            Some(1)
        );
    }

    #[test]
    fn rows_tying_on_the_sort_key_may_come_in_any_order() {
        // Sorted by the first column; ("1","b") and ("1","c") tie.
        let row = |k: &str, v: &str| vec![Some(k.to_string()), Some(v.to_string())];
        let rs2 = |rows: Vec<Row>| ResultSet {
            columns: vec!["k".into(), "v".into()],
            rows,
        };
        let expected = rs2(vec![
            row("0", "a"),
            row("1", "b"),
            row("1", "c"),
            row("2", "d"),
        ]);
        let swapped = rs2(vec![
            row("0", "a"),
            row("1", "c"),
            row("1", "b"),
            row("2", "d"),
        ]);
        assert_eq!(compare(&expected, &swapped, &Order::Key(vec![0])), None);
        assert!(compare(&expected, &swapped, &Order::Exact).is_some());
        // Rows of different keys may not trade places.
        let wrong = rs2(vec![
            row("1", "b"),
            row("0", "a"),
            row("1", "c"),
            row("2", "d"),
        ]);
        let m = compare(&expected, &wrong, &Order::Key(vec![0])).unwrap();
        assert_eq!(
            (m.reason, m.diff.first_mismatch_at),
            (Reason::Order, Some(0))
        );
        // A key of every column is the exact order.
        assert!(compare(&expected, &swapped, &Order::Key(vec![0, 1])).is_some());
        // Numerics tie as the server sorts them, whatever their scale.
        let scaled = rs2(vec![row("35", "a"), row("35.0", "b")]);
        let other = rs2(vec![row("35.0", "b"), row("35", "a")]);
        assert_eq!(compare(&scaled, &other, &Order::Key(vec![0])), None);
        let missing = rs2(vec![row("0", "a"), row("1", "c"), row("2", "d")]);
        let m = compare(&expected, &missing, &Order::Key(vec![0])).unwrap();
        assert_eq!(
            (m.reason, m.diff.first_mismatch_at),
            (Reason::RowCount, Some(2))
        );
    }

    #[test]
    fn reasons_come_in_the_contract_order() {
        let reason = |a: &ResultSet, b: &ResultSet| compare(a, b, &Order::Any).unwrap().reason;
        assert_eq!(
            reason(&one(&["1"]), &rs(2, &[&[Some("1"), None]])),
            Reason::ColumnCount
        );
        assert_eq!(
            reason(&one(&["1", "2"]), &one(&["1", "2", "2"])),
            Reason::Duplicates
        );
        assert_eq!(reason(&rs(1, &[&[None]]), &one(&[""])), Reason::NullVsEmpty);
        assert_eq!(
            reason(&one(&["1.50", "2"]), &one(&["1.5", "2.0"])),
            Reason::NumericFormat
        );
        assert_eq!(
            reason(&one(&["-0.0", "1e3"]), &one(&["0", "1000"])),
            Reason::NumericFormat
        );
        // Exact: digits beyond a float's precision still count.
        assert_eq!(
            reason(
                &one(&["12345678901234567890"]),
                &one(&["12345678901234567891"])
            ),
            Reason::Values
        );
        assert_eq!(reason(&one(&["1", "2"]), &one(&["1"])), Reason::RowCount);
        assert_eq!(reason(&one(&["1", "2"]), &one(&["1", "3"])), Reason::Values);
        assert_eq!(reason(&one(&["a"]), &one(&["A"])), Reason::Values);
        // Exponents at the edge of i64: compared as text, not an overflow.
        assert_eq!(
            reason(
                &one(&["1e9223372036854775807"]),
                &one(&["1e-9223372036854775808"])
            ),
            Reason::Values
        );
    }

    #[test]
    fn null_is_not_empty_string_and_column_count_matters() {
        let a = rs(1, &[&[None]]);
        let b = rs(1, &[&[Some("")]]);
        assert!(compare(&a, &b, &Order::Any).is_some());
        let m = compare(&a, &rs(2, &[&[None, None]]), &Order::Any).unwrap();
        assert_eq!(
            m.diff.column_count,
            Some(ColumnCount {
                expected: 1,
                got: 2
            })
        );
    }
}
