//! `sqljudge pack import --from pgexercises REPO`: a checkout of the public pgexercises
//! repository (https://github.com/AlisdairO/pgexercises) read as a pack: its club dataset
//! (`database/clubdata.sql`, schema `cd`) and its questions (`questions/<category>/*.ex`).
//!
//! A question file is sections under marker lines (`|QUESTIONNAME|`, `|QUESTION|`, `|QUERY|`,
//! `|ANSWER|`, `|HINT|`, `|SORTED|`, `|PAGEID|`, `|WRITEABLE|`, `|RETURNTABLE|`). The expected
//! results are not in the files: as on pgexercises.com, they are what `|QUERY|` returns, which
//! saving the problem computes.
use std::collections::BTreeMap;
use std::path::Path;

use super::{invalid, Manifest, Pack, PackError, FORMAT};
use crate::catalog::ProblemInput;
use crate::db::models::ProblemFields;
use crate::grading::lexer;
use crate::job::{Difficulty, Feedback};

/// The categories in the site's order, with how hard their questions are on the whole.
const CATEGORIES: [(&str, Difficulty); 7] = [
    ("basic", Difficulty::Easy),
    ("joins", Difficulty::Medium),
    ("updates", Difficulty::Easy),
    ("aggregates", Difficulty::Medium),
    ("date", Difficulty::Medium),
    ("string", Difficulty::Medium),
    ("recursive", Difficulty::Hard),
];

const NOTICE: &str = "Questions from pgexercises (https://pgexercises.com) by Alisdair Owens, \
licensed CC BY-SA 3.0; the club dataset is under the repository's BSD 2-clause licence.";

pub fn read(repo: &Path) -> Result<Pack, PackError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError::Io { path, source }
    };
    let dump = repo.join("database/clubdata.sql");
    let script = std::fs::read_to_string(&dump).map_err(io(&dump))?;
    let mut problems = Vec::new();
    for (category, difficulty) in CATEGORIES {
        let dir = repo.join("questions").join(category);
        if !dir.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ex"))
            .collect();
        // The number in front of a name orders a category's questions.
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let name = stem.split_once('-').map_or(stem, |(_, n)| n);
            problems.push(
                question(category, name, difficulty, &text)
                    .or_else(|e| invalid(format!("{}: {e}", path.display())))?,
            );
        }
    }
    if problems.is_empty() {
        return invalid(format!("{}: no questions found", repo.display()));
    }
    Ok(Pack {
        manifest: Manifest {
            format: FORMAT,
            name: "pgexercises".into(),
            notice: Some(NOTICE.into()),
        },
        datasets: BTreeMap::from([("cd".to_string(), dataset_script(&script))]),
        tests: BTreeMap::new(),
        problems,
    })
}

/// The dump without what sets up the site's own database and user (`CREATE DATABASE`, the
/// `pgexercises` user and its grants, `\c`, making the database read-only, `ANALYZE`): what
/// is left creates and fills schema `cd`, as a dataset script does. COPY data is kept as is.
fn dataset_script(dump: &str) -> String {
    const SITE_ONLY: [&str; 8] = [
        "create database",
        "create user",
        "alter user",
        "alter database",
        "grant ",
        "revoke ",
        "analyze",
        "\\c ",
    ];
    let mut copying = false;
    let mut kept = String::with_capacity(dump.len());
    for line in dump.lines() {
        let lower = line.trim_start().to_ascii_lowercase();
        if copying {
            copying = line != "\\.";
        } else if lower.starts_with("copy ") && lower.trim_end().ends_with("from stdin;") {
            copying = true;
        } else if SITE_ONLY.iter().any(|w| lower.starts_with(w)) {
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn question(
    category: &str,
    name: &str,
    difficulty: Difficulty,
    text: &str,
) -> Result<ProblemInput, String> {
    let sections = sections(text);
    let get = |marker: &str| {
        sections
            .get(marker)
            .map(String::as_str)
            .ok_or(format!("no |{marker}| section"))
    };
    let flag = |marker: &str| sections.get(marker).is_some_and(|v| v.trim() == "1");
    let query = get("QUERY")?
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_string();
    let writeable = flag("WRITEABLE");
    let check_table = if writeable {
        Some(get("RETURNTABLE")?.trim().to_string())
    } else {
        None
    };
    let mut statement = plain(get("QUESTION")?);
    if let Some(hint) = sections
        .get("HINT")
        .map(|h| plain(h))
        .filter(|h| !h.is_empty())
    {
        statement.push_str("\n\nHint: ");
        statement.push_str(&hint);
    }
    let slug: String = format!("pgex-{category}-{name}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    Ok(ProblemInput {
        fields: ProblemFields {
            slug,
            title: plain(get("QUESTIONNAME")?),
            statement,
            topic: category.to_string(),
            dataset: "cd".into(),
            // Three questions are marked sorted but do not sort: their order is the table's,
            // which no solution can be held to.
            ordered: !writeable && flag("SORTED") && lexer::sorts(&query),
            reference_sql: query,
            writeable,
            check_table,
            order_key: None,
            feedback: Feedback::Full,
            generated_tests: 3,
            difficulty,
        },
        time_limit_ms: None,
    })
}

/// Each `|MARKER|` line's section: the lines up to the next marker, trailing spaces removed.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        let marker = trimmed
            .strip_prefix('|')
            .and_then(|m| m.strip_suffix('|'))
            .map(str::trim)
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase()));
        if let Some(marker) = marker {
            if let Some((name, lines)) = current.take() {
                sections.insert(name, lines.join("\n").trim_end().to_string());
            }
            current = Some((marker.to_string(), Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line.trim_end());
        }
    }
    if let Some((name, lines)) = current {
        sections.insert(name, lines.join("\n").trim_end().to_string());
    }
    sections
}

/// The site's HTML fragments as plain text: `<c>code</c>` in backticks, `<sql>` blocks and
/// paragraphs on lines of their own, other tags dropped, entities decoded.
fn plain(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        match tag
            .trim_start_matches('/')
            .split_whitespace()
            .next()
            .unwrap_or("")
        {
            "c" => out.push('`'),
            "sql" | "p" | "br" | "div" | "ul" | "ol" | "li" => out.push('\n'),
            _ => {}
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    // At most one blank line in a row.
    let mut text = String::new();
    let mut blank = 0;
    for line in decoded.lines().map(str::trim_end) {
        blank = if line.trim().is_empty() { blank + 1 } else { 0 };
        if blank < 2 {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPDATE: &str = "|QUESTIONNAME|\nUpdate some existing data\n|QUESTION|\nThe initial outlay was 10000 rather than 8000: fix <c>cd.facilities</c>.\n|QUERY|\nupdate cd.facilities\n    set initialoutlay = 10000\n    where facid = 1;\n|ANSWER|\n<p>Use <c>UPDATE</c>.</p>\n|HINT|\nYou can alter data using the <c>UPDATE</c> statement.\n|SORTED|\n1\n|PAGEID|\nbadeb19f\n|WRITEABLE|\n1\n|RETURNTABLE|\ncd.facilities\n\n";

    #[test]
    fn a_question_file_becomes_a_problem() {
        let p = question("updates", "update", Difficulty::Easy, UPDATE).unwrap();
        assert_eq!(p.fields.slug, "pgex-updates-update");
        assert_eq!(p.fields.title, "Update some existing data");
        assert_eq!(
            p.fields.statement,
            "The initial outlay was 10000 rather than 8000: fix `cd.facilities`.\n\nHint: You can alter data using the `UPDATE` statement."
        );
        assert_eq!(
            p.fields.reference_sql,
            "update cd.facilities\n    set initialoutlay = 10000\n    where facid = 1"
        );
        assert!(p.fields.writeable && !p.fields.ordered);
        assert_eq!(p.fields.check_table.as_deref(), Some("cd.facilities"));

        // |QUESTION| is a prefix of |QUESTIONNAME|: whole marker lines only.
        let sorted = "|QUESTIONNAME|\nTop\n|QUESTION|\nQ &amp; A\n|QUERY|\nselect 1 order by 1\n|SORTED|\n1\n|WRITEABLE|\n0\n";
        let p = question("basic", "top", Difficulty::Easy, sorted).unwrap();
        assert_eq!(
            (p.fields.title.as_str(), p.fields.statement.as_str()),
            ("Top", "Q & A")
        );
        assert!(p.fields.ordered && p.fields.check_table.is_none());
        let unsorted = sorted.replace(" order by 1", "");
        assert!(
            !question("basic", "top", Difficulty::Easy, &unsorted)
                .unwrap()
                .fields
                .ordered
        );
        assert!(question("basic", "x", Difficulty::Easy, "|QUESTIONNAME|\nx\n").is_err());
    }

    #[test]
    fn the_dump_keeps_only_the_schema_and_its_rows() {
        let dump = "CREATE DATABASE exercises;\nCREATE USER pgexercises with password '';\n\\c exercises\nCREATE SCHEMA cd;\nGRANT USAGE ON SCHEMA cd TO pgexercises;\nSET search_path = cd, pg_catalog;\nCOPY members (memid, note) FROM stdin;\n1\tgrant me\n2\t\\N\n\\.\nalter database exercises set default_transaction_read_only = on;\nANALYZE;\n";
        assert_eq!(
            dataset_script(dump),
            "CREATE SCHEMA cd;\nSET search_path = cd, pg_catalog;\nCOPY members (memid, note) FROM stdin;\n1\tgrant me\n2\t\\N\n\\.\n"
        );
    }
}
