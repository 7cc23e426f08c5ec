//! Standard mutants of a reference statement (API.md v1.1 adequacy): the wrong queries a
//! learner most often writes, derived with PostgreSQL's own parser (`pg_query`) and printed
//! back as SQL by its deparser. A mutant the tests accept is a survivor: equivalent to the
//! reference, or a sign that the tests need more rows.
use std::collections::HashSet;

use pg_query::protobuf::{
    a_const, AConst, AExprKind, BoolExpr, BoolExprType, Boolean, ColumnRef, Integer, JoinType,
    Node, ParseResult, SetOperation, SortByDir,
};
use pg_query::{DeparseOptions, NodeEnum, NodeMut, NodeRef, ParserOptions};

/// Mutants derived from one statement, at most.
pub const MAX_MUTANTS: usize = 200;

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Mutant {
    pub sql: String,
    /// What was changed, in words.
    pub change: String,
}

/// What one mutation operator does at one node.
enum Step {
    Changed(String),
    /// Not applicable here; the node's next operator may be.
    Skip,
    /// The node has no more operators.
    Done,
}

fn node(inner: NodeEnum) -> Node {
    Node { node: Some(inner) }
}

fn boolean(value: bool) -> Node {
    node(NodeEnum::AConst(AConst {
        isnull: false,
        location: -1,
        val: Some(a_const::Val::Boolval(Boolean { boolval: value })),
    }))
}

fn negated(condition: Node) -> Node {
    node(NodeEnum::BoolExpr(Box::new(BoolExpr {
        xpr: None,
        boolop: BoolExprType::NotExpr as i32,
        args: vec![condition],
        location: -1,
    })))
}

/// Drops (`negate` false) or negates a WHERE or HAVING condition.
fn condition(clause: &mut Option<Box<Node>>, negate: bool, what: &str) -> Step {
    match clause.take() {
        None => Step::Skip,
        Some(c) if negate => {
            *clause = Some(Box::new(negated(*c)));
            Step::Changed(format!("{what} condition negated"))
        }
        Some(_) => Step::Changed(format!("{what} condition dropped")),
    }
}

/// The integer of a constant LIMIT, if that is what it is.
fn limit_value(limit: &mut Option<Box<Node>>) -> Option<&mut i32> {
    match limit.as_deref_mut()?.node.as_mut()? {
        NodeEnum::AConst(AConst {
            val: Some(a_const::Val::Ival(Integer { ival })),
            ..
        }) => Some(ival),
        _ => None,
    }
}

/// The comparison a shifted operator becomes.
fn shifted(op: &str) -> Option<&'static str> {
    Some(match op {
        "<" => "<=",
        "<=" => "<",
        ">" => ">=",
        ">=" => ">",
        "=" => "<>",
        "<>" => "=",
        _ => return None,
    })
}

/// Applies operator `variant` of `target` (a node of a statement being mutated; `top`: the
/// statement itself).
///
/// # Safety
/// `target` points into a tree that is alive and not otherwise borrowed.
unsafe fn mutate(target: NodeMut, variant: usize, top: bool, column: Option<&ColumnRef>) -> Step {
    match target {
        NodeMut::SelectStmt(s) => {
            let s = &mut *s;
            let plain = s.op == SetOperation::SetopNone as i32;
            match variant {
                0 => condition(&mut s.where_clause, false, "WHERE"),
                1 => condition(&mut s.where_clause, true, "WHERE"),
                2 => condition(&mut s.having_clause, false, "HAVING"),
                3 => condition(&mut s.having_clause, true, "HAVING"),
                // Inside EXISTS, IN or an aggregate's subquery, DISTINCT added changes nothing.
                4 if plain
                    && !s.target_list.is_empty()
                    && (top || !s.distinct_clause.is_empty()) =>
                {
                    if s.distinct_clause.is_empty() {
                        s.distinct_clause.push(Node { node: None });
                        Step::Changed("DISTINCT added".into())
                    } else {
                        s.distinct_clause.clear();
                        Step::Changed("DISTINCT removed".into())
                    }
                }
                5 | 6 => match limit_value(&mut s.limit_count) {
                    Some(n) if variant == 5 || *n > 1 => {
                        let before = *n;
                        *n += if variant == 5 { 1 } else { -1 };
                        Step::Changed(format!("LIMIT {before} changed to {n}"))
                    }
                    _ => Step::Skip,
                },
                4 => Step::Skip,
                _ => Step::Done,
            }
        }
        NodeMut::UpdateStmt(s) => match variant {
            0 => condition(&mut (*s).where_clause, false, "WHERE"),
            1 => condition(&mut (*s).where_clause, true, "WHERE"),
            _ => Step::Done,
        },
        NodeMut::DeleteStmt(s) => match variant {
            0 => condition(&mut (*s).where_clause, false, "WHERE"),
            1 => condition(&mut (*s).where_clause, true, "WHERE"),
            _ => Step::Done,
        },
        NodeMut::BoolExpr(b) => {
            let b = &mut *b;
            let (neutral, what) = match BoolExprType::try_from(b.boolop) {
                Ok(BoolExprType::AndExpr) => (true, "AND"),
                Ok(BoolExprType::OrExpr) => (false, "OR"),
                _ => return Step::Done,
            };
            if variant >= b.args.len() {
                return Step::Done;
            }
            // `x AND true` is x: the operand is gone, the tree keeps its shape.
            b.args[variant] = boolean(neutral);
            Step::Changed(format!("operand {} of an {what} dropped", variant + 1))
        }
        NodeMut::AExpr(e) => {
            let e = &mut *e;
            if variant > 0 || e.kind != AExprKind::AexprOp as i32 || e.name.len() != 1 {
                return Step::Done;
            }
            let Some(NodeEnum::String(op)) = e.name[0].node.as_mut() else {
                return Step::Done;
            };
            match shifted(&op.sval) {
                Some(new) => {
                    let change = format!("comparison {} changed to {new}", op.sval);
                    op.sval = new.to_string();
                    Step::Changed(change)
                }
                None => Step::Done,
            }
        }
        NodeMut::JoinExpr(j) => {
            let j = &mut *j;
            if variant > 0 || j.quals.is_none() {
                return Step::Done;
            }
            let (to, change) = match JoinType::try_from(j.jointype) {
                Ok(JoinType::JoinInner) => (JoinType::JoinLeft, "INNER JOIN changed to LEFT JOIN"),
                Ok(JoinType::JoinLeft) => (JoinType::JoinInner, "LEFT JOIN changed to INNER JOIN"),
                _ => return Step::Done,
            };
            j.jointype = to as i32;
            Step::Changed(change.into())
        }
        NodeMut::FuncCall(f) => {
            let f = &mut *f;
            let is_count = matches!(
                f.funcname.last().and_then(|n| n.node.as_ref()),
                Some(NodeEnum::String(s)) if s.sval == "count"
            );
            if variant > 0 || !is_count || f.agg_distinct || f.over.is_some() {
                return Step::Done;
            }
            if f.agg_star {
                let Some(column) = column else {
                    return Step::Done;
                };
                f.agg_star = false;
                f.args = vec![node(NodeEnum::ColumnRef(column.clone()))];
                Step::Changed("COUNT(*) changed to COUNT(column)".into())
            } else if f.args.len() == 1 {
                f.agg_star = true;
                f.args.clear();
                Step::Changed("COUNT(column) changed to COUNT(*)".into())
            } else {
                Step::Done
            }
        }
        NodeMut::SortBy(s) => {
            let s = &mut *s;
            if variant > 0 {
                return Step::Done;
            }
            let (to, change) = match SortByDir::try_from(s.sortby_dir) {
                Ok(SortByDir::SortbyDesc) => (SortByDir::SortbyAsc, "ORDER BY DESC changed to ASC"),
                Ok(SortByDir::SortbyDefault | SortByDir::SortbyAsc) => {
                    (SortByDir::SortbyDesc, "ORDER BY ASC changed to DESC")
                }
                _ => return Step::Done,
            };
            s.sortby_dir = to as i32;
            Step::Changed(change.into())
        }
        _ => Step::Done,
    }
}

fn deparse(tree: &ParseResult) -> Option<String> {
    tree.deparse(DeparseOptions::default()).ok()
}

/// The standard mutants of `sql`, each different from it and from one another as printed.
/// `Err` when PostgreSQL's parser does not take the statement.
pub fn mutants(sql: &str) -> Result<Vec<Mutant>, String> {
    let base = pg_query::parse(sql, ParserOptions::DEFAULT)
        .map_err(|e| e.to_string())?
        .protobuf;
    let mut seen: HashSet<String> = deparse(&base).into_iter().collect();
    // COUNT(*) becomes COUNT of the statement's first column.
    let column = base.nodes().into_iter().find_map(|(n, ..)| match n {
        NodeRef::ColumnRef(c)
            if !matches!(
                c.fields.last().and_then(|f| f.node.as_ref()),
                Some(NodeEnum::AStar(_))
            ) =>
        {
            Some(c.clone())
        }
        _ => None,
    });
    // SAFETY: each pointer is used on the copy it was taken from, before anything else
    // touches that copy.
    let sites = unsafe { base.clone().nodes_mut().len() };
    let mut found = Vec::new();
    for site in 0..sites {
        for variant in 0.. {
            let mut copy = base.clone();
            let target = unsafe { copy.nodes_mut() }[site].0;
            let change = match unsafe { mutate(target, variant, site == 0, column.as_ref()) } {
                Step::Done => break,
                Step::Skip => continue,
                Step::Changed(change) => change,
            };
            if let Some(sql) = deparse(&copy).filter(|s| seen.insert(s.clone())) {
                found.push(Mutant { sql, change });
                if found.len() == MAX_MUTANTS {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(sql: &str) -> Vec<(String, String)> {
        mutants(sql)
            .unwrap()
            .into_iter()
            .map(|m| (m.change, m.sql))
            .collect()
    }

    #[test]
    fn each_operator_applies_where_it_fits() {
        let all = changes(
            "SELECT m.city, count(*) FROM club.members m JOIN club.bookings b ON b.member = m.id \
             WHERE m.id < 10 AND b.hours >= 2 GROUP BY m.city HAVING count(*) > 1 \
             ORDER BY 2 DESC LIMIT 3",
        );
        let has = |change: &str, fragment: &str| {
            all.iter().any(|(c, s)| c == change && s.contains(fragment))
        };
        assert!(
            has("WHERE condition dropped", "ON b.member = m.id GROUP"),
            "{all:#?}"
        );
        assert!(has("WHERE condition negated", "NOT"));
        assert!(has("HAVING condition dropped", "GROUP BY m.city ORDER"));
        assert!(has("comparison < changed to <=", "m.id <= 10"));
        assert!(has("comparison >= changed to >", "b.hours > 2"));
        assert!(has("comparison > changed to >=", "count(*) >= 1"));
        assert!(has("comparison = changed to <>", "b.member <> m.id"));
        assert!(has("operand 1 of an AND dropped", "true AND b.hours >= 2"));
        assert!(has("DISTINCT added", "SELECT DISTINCT"));
        assert!(has("INNER JOIN changed to LEFT JOIN", "LEFT JOIN"));
        assert!(has("COUNT(*) changed to COUNT(column)", "count(m.city)"));
        assert!(has("ORDER BY DESC changed to ASC", "ORDER BY 2 ASC"));
        assert!(has("LIMIT 3 changed to 4", "LIMIT 4"));
        assert!(has("LIMIT 3 changed to 2", "LIMIT 2"));
        // Every mutant parses and differs from the reference and from the others.
        let texts: HashSet<&String> = all.iter().map(|(_, s)| s).collect();
        assert_eq!(texts.len(), all.len());
        for (_, sql) in &all {
            assert!(
                pg_query::parse(sql, ParserOptions::DEFAULT).is_ok(),
                "{sql}"
            );
        }
    }

    #[test]
    fn writes_and_unparsable_text() {
        let all = changes("UPDATE t SET a = 1 WHERE b = 2");
        assert!(all
            .iter()
            .any(|(c, s)| c == "WHERE condition dropped" && !s.contains("WHERE")));
        assert!(all.iter().any(|(c, _)| c == "comparison = changed to <>"));
        assert!(mutants("SELEC 1").is_err());
        assert_eq!(mutants("SELECT 1").unwrap().len(), 1, "DISTINCT added only");
    }
}
