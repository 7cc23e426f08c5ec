//! A scanner that sees SQL text the way PostgreSQL's does, for the two things we need before
//! the server is involved: where each statement of a dataset script ends (and which `COPY`
//! data follows it), and which keyword a solution starts with. It knows standard and `E''`
//! strings, quoted identifiers, dollar quotes, `--` comments and nested `/* */` comments.
//! It is not the boundary between statements: the server itself refuses more than one
//! (extended-protocol Parse) and the sandbox roles can do nothing harmful. Around system
//! columns, which no privilege covers, `system_column` asks PostgreSQL's own scanner first
//! and falls back on this one only for a text that scanner refuses.

/// One piece of a dataset script.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptPart {
    Sql(String),
    /// A `COPY ... FROM stdin` statement and the data lines that follow it (without `\.`).
    Copy {
        statement: String,
        data: String,
    },
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// PostgreSQL 15's whitespace: space, tab, newline, carriage return, form feed. (A vertical tab
/// is an error for it, so it must not vanish into a space: it stays a byte of its own.)
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// Skips whitespace and comments from `i`; returns where something else starts.
/// An unterminated `/*` comment runs to the end, as for the server.
fn skip_trivia(s: &[u8], mut i: usize) -> usize {
    loop {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        if s[i..].starts_with(b"--") {
            while i < s.len() && s[i] != b'\n' && s[i] != b'\r' {
                i += 1;
            }
        } else if s[i..].starts_with(b"/*") {
            i = skip_block_comment(s, i);
        } else {
            return i;
        }
    }
}

fn skip_block_comment(s: &[u8], i: usize) -> usize {
    block_comment(s, i).0
}

/// Where the (nested) block comment at `i` ends, and whether it is closed there rather than
/// cut off by the end of the text.
fn block_comment(s: &[u8], mut i: usize) -> (usize, bool) {
    let mut depth = 0usize;
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (i, true);
            }
        } else {
            i += 1;
        }
    }
    (i, false)
}

/// Whether a run of whitespace and comments ends in a block comment the end of the text cut
/// off (the server refuses that text).
fn cut_off_comment(run: &[u8]) -> bool {
    let mut i = 0;
    while i < run.len() {
        if run[i..].starts_with(b"/*") {
            let (end, closed) = block_comment(run, i);
            if !closed {
                return true;
            }
            i = end;
        } else if run[i..].starts_with(b"--") {
            while i < run.len() && run[i] != b'\n' && run[i] != b'\r' {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// The tag of a dollar quote starting at `i` (`$$` or `$tag$`), if one starts there.
fn dollar_tag(s: &[u8], i: usize) -> Option<&[u8]> {
    if i > 0 && is_ident_char(s[i - 1]) {
        return None; // `a$b$` continues an identifier; `$1` is a parameter.
    }
    let mut j = i + 1;
    if j < s.len() && s[j] == b'$' {
        return Some(&s[i..=j]);
    }
    if j >= s.len() || !is_ident_start(s[j]) {
        return None;
    }
    while j < s.len() && is_ident_char(s[j]) && s[j] != b'$' {
        j += 1;
    }
    (j < s.len() && s[j] == b'$').then(|| &s[i..=j])
}

/// Skips the token at `i` (a string, quoted identifier, dollar quote, comment or one byte).
fn skip_token(s: &[u8], i: usize) -> usize {
    match s[i] {
        b'\'' => {
            let escapes = i > 0
                && (s[i - 1] == b'E' || s[i - 1] == b'e')
                && (i < 2 || !is_ident_char(s[i - 2]));
            // A string continued on a later line keeps its kind: an `E''` one's continuation
            // reads backslashes as escapes too.
            let mut end = skip_quoted(s, i, b'\'', escapes);
            while let Some(next) = continuation(s, end) {
                end = skip_quoted(s, next, b'\'', escapes);
            }
            end
        }
        b'"' => skip_quoted(s, i, b'"', false),
        b'$' => match dollar_tag(s, i) {
            Some(tag) => {
                let body = i + tag.len();
                match find(&s[body..], tag) {
                    Some(end) => body + end + tag.len(),
                    None => s.len(),
                }
            }
            None => i + 1,
        },
        b'-' if s[i..].starts_with(b"--") => skip_trivia(s, i),
        b'/' if s[i..].starts_with(b"/*") => skip_block_comment(s, i),
        _ => i + 1,
    }
}

/// Where a string that ended at `i` continues, if it does: PostgreSQL 15's `quotecontinue`,
/// whitespace holding a newline (a `--` comment may stand before it, and after it only one
/// that a newline ends), then a quote.
fn continuation(s: &[u8], mut i: usize) -> Option<usize> {
    let comment = |mut i: usize| {
        while i < s.len() && s[i] != b'\n' && s[i] != b'\r' {
            i += 1;
        }
        i
    };
    loop {
        match s.get(i) {
            Some(b' ' | b'\t' | 0x0c) => i += 1,
            Some(b'-') if s[i..].starts_with(b"--") => i = comment(i),
            _ => break,
        }
    }
    if !matches!(s.get(i), Some(b'\n' | b'\r')) {
        return None;
    }
    loop {
        match s.get(i) {
            Some(&c) if is_space(c) => i += 1,
            Some(b'-') if s[i..].starts_with(b"--") => {
                let end = comment(i);
                if end == s.len() {
                    return None;
                }
                i = end + 1;
            }
            Some(b'\'') => return Some(i),
            _ => return None,
        }
    }
}

fn skip_quoted(s: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < s.len() {
        if backslash_escapes && s[i] == b'\\' {
            i += 2;
        } else if s[i] == quote {
            if i + 1 < s.len() && s[i + 1] == quote {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The keywords a statement starts with, upper-cased, skipping comments and opening
/// parentheses: `/* x */ (SELECT 1)` gives `["SELECT", "1"...]` up to `n` words.
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let s = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while words.len() < n {
        i = skip_trivia(s, i);
        while words.is_empty() && i < s.len() && s[i] == b'(' {
            i = skip_trivia(s, i + 1);
        }
        if i >= s.len() {
            break;
        }
        if s[i] == b'"' {
            let end = skip_quoted(s, i, b'"', false);
            words.push(String::from_utf8_lossy(&s[i..end]).into_owned());
            i = end;
            continue;
        }
        if !is_ident_start(s[i]) {
            break;
        }
        let start = i;
        while i < s.len() && is_ident_char(s[i]) {
            i += 1;
        }
        words.push(sql[start..i].to_ascii_uppercase());
    }
    words
}

/// Splits a script into statements and `COPY FROM stdin` data blocks. Lines that start with
/// a backslash between statements are psql meta-commands (`\connect`, `\restrict`...) and are
/// skipped; empty statements are dropped.
pub fn split_script(script: &str) -> Result<Vec<ScriptPart>, String> {
    let s = script.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    loop {
        i = skip_trivia(s, i);
        if i >= s.len() {
            return Ok(parts);
        }
        if s[i] == b'\\' {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < s.len() && s[i] != b';' {
            i = skip_token(s, i);
        }
        let statement = script[start..i.min(s.len())].trim().to_string();
        i = (i + 1).min(s.len()); // past ';'
        if is_copy_from_stdin(&statement) {
            // Data starts on the next line and ends at a line holding only `\.`.
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            i += 1;
            let data_start = i.min(s.len());
            let mut end = None;
            let mut line = data_start;
            while line < s.len() {
                let line_end = script[line..].find('\n').map_or(s.len(), |p| line + p);
                if script[line..line_end].trim_end_matches('\r') == "\\." {
                    end = Some((line, line_end + 1));
                    break;
                }
                line = line_end + 1;
            }
            let (data_end, next) = end
                .ok_or_else(|| format!("COPY data without a terminating \\. line: {statement}"))?;
            parts.push(ScriptPart::Copy {
                statement,
                data: script[data_start..data_end].to_string(),
            });
            i = next.min(s.len());
        } else if !statement.is_empty() {
            parts.push(ScriptPart::Sql(statement));
        }
    }
}

/// A token of a statement, for finding its clauses.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted word (keyword or identifier), lower-cased as the server folds it.
    Word(String),
    /// A quoted identifier, unquoted.
    Quoted(String),
    /// Anything else: a number, a string, an operator or punctuation, as written.
    Other(String),
}

/// The tokens of `sql` outside any parentheses (a subquery's or a function call's clauses are
/// not the statement's own), with comments dropped.
fn top_level_tokens(sql: &str) -> Vec<Token> {
    tokens(sql, true)
}

/// The tokens of `sql`, comments dropped: outside any parentheses only (each parenthesized
/// part then stands as one `(`), or all.
fn tokens(sql: &str, top_level: bool) -> Vec<Token> {
    let s = sql.as_bytes();
    let (mut tokens, mut depth, mut i) = (Vec::new(), 0usize, 0);
    loop {
        i = skip_trivia(s, i);
        if i >= s.len() {
            return tokens;
        }
        let start = i;
        let token = match s[i] {
            b'(' => {
                depth += 1;
                i += 1;
                // A call or a subquery stands as one opaque token where it starts.
                (depth == 1).then(|| Token::Other("(".into()))
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
                None
            }
            b'"' => {
                i = skip_quoted(s, i, b'"', false);
                let inner = sql.get(start + 1..i - 1).unwrap_or_default();
                Some(Token::Quoted(inner.replace("\"\"", "\"")))
            }
            c if is_ident_start(c) => {
                while i < s.len() && is_ident_char(s[i]) {
                    i += 1;
                }
                if i < s.len() && s[i] == b'\'' {
                    // A prefixed string (E'...', B'...', U&'...'): one token.
                    i = skip_token(s, i);
                    Some(Token::Other(sql[start..i].to_string()))
                } else {
                    Some(Token::Word(sql[start..i].to_ascii_lowercase()))
                }
            }
            c if c.is_ascii_digit() => {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                    i += 1;
                }
                Some(Token::Other(sql[start..i].to_string()))
            }
            _ => {
                i = skip_token(s, i);
                Some(Token::Other(sql[start..i].to_string()))
            }
        };
        if top_level && (depth > 1 || (depth == 1 && token != Some(Token::Other("(".into())))) {
            continue;
        }
        if let Some(token) = token {
            tokens.push(token);
        }
    }
}

/// PostgreSQL's system columns that hold transaction and command ids: an earlier grading's
/// rolled-back writes and row locks stay readable there. (`ctid` is left to solutions: the
/// classic way to delete duplicates needs it, and a read sees the same live rows where they
/// were.)
const SYSTEM_COLUMNS: [&str; 4] = ["xmin", "xmax", "cmin", "cmax"];

/// The first name in `sql` that is (or may be) a system column of `SYSTEM_COLUMNS`: an
/// identifier of that name, quoted or not, or a Unicode-escaped one (`U&"..."`, which can spell
/// any name). By PostgreSQL's own scanner (libpg_query's); a text it refuses (an unterminated
/// comment or string: the server's error then stands) by ours.
pub fn system_column(sql: &str) -> Option<String> {
    use pg_query::protobuf::Token as T;
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return lexed_system_column(sql);
    };
    tokens.iter().find_map(|t| {
        let text = sql.get(t.start as usize..t.end as usize)?;
        match T::try_from(t.token) {
            Ok(T::Uident) => Some(text.to_string()),
            Ok(T::Ident) => {
                let name = match text.strip_prefix('"') {
                    Some(quoted) => quoted.strip_suffix('"')?.replace("\"\"", "\""),
                    None => text.to_ascii_lowercase(),
                };
                SYSTEM_COLUMNS.contains(&name.as_str()).then_some(name)
            }
            _ => None,
        }
    })
}

/// `system_column` by this module's scanner, which takes `u & "a"` for a Unicode-escaped name.
fn lexed_system_column(sql: &str) -> Option<String> {
    let tokens = tokens(sql, false);
    tokens
        .iter()
        .enumerate()
        .find_map(|(i, token)| match token {
            Token::Word(w) | Token::Quoted(w) if SYSTEM_COLUMNS.contains(&w.as_str()) => {
                Some(w.clone())
            }
            Token::Quoted(q)
                if i >= 2
                    && is_word(&tokens[i - 2], "u")
                    && tokens[i - 1] == Token::Other("&".into()) =>
            {
                Some(format!("U&\"{q}\""))
            }
            _ => None,
        })
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w == word)
}

/// Whether a query sorts its result: it has a top-level `ORDER BY`.
pub fn sorts(sql: &str) -> bool {
    top_level_tokens(sql)
        .windows(2)
        .any(|w| is_word(&w[0], "order") && is_word(&w[1], "by"))
}

/// The sort key of a query: the output columns (1-based) its last top-level `ORDER BY` sorts
/// by, when every item names one: by position, by output name or alias, or as
/// `table.column` whose column is an output name. `None` when there is no such clause or an
/// item is an expression of something else (then the whole order is the key).
pub fn order_key(sql: &str, columns: &[String]) -> Option<Vec<usize>> {
    let tokens = top_level_tokens(sql);
    let by = tokens
        .windows(2)
        .rposition(|w| is_word(&w[0], "order") && is_word(&w[1], "by"))?;
    let clause = tokens[by + 2..]
        .iter()
        .take_while(|t| {
            !["limit", "offset", "fetch", "for"]
                .iter()
                .any(|w| is_word(t, w))
                && **t != Token::Other(";".into())
        })
        .cloned()
        .collect::<Vec<_>>();
    let mut key = Vec::new();
    for item in clause.split(|t| *t == Token::Other(",".into())) {
        key.push(output_column(sort_expression(item), columns)?);
    }
    (!key.is_empty()).then_some(key)
}

/// An `ORDER BY` item without its direction, `NULLS FIRST|LAST` or `USING op`.
fn sort_expression(item: &[Token]) -> &[Token] {
    let mut end = item.len();
    if let Some(using) = item.iter().position(|t| is_word(t, "using")) {
        end = using;
    }
    while end > 0 {
        let last = &item[end - 1];
        if ["asc", "desc", "first", "last"]
            .iter()
            .any(|w| is_word(last, w))
        {
            end -= 1;
            if end > 0 && is_word(&item[end - 1], "nulls") {
                end -= 1;
            }
        } else {
            break;
        }
    }
    &item[..end]
}

/// The output column (1-based) a sort expression names, if it names exactly one: a position,
/// or a bare name (which the server, too, takes for an output column first). A qualified name
/// (`t.col`) is an input column, which an output column of the same name need not be (a
/// self-join's `b.name` and `e.name`, an alias over another expression): not mapped.
fn output_column(expression: &[Token], columns: &[String]) -> Option<usize> {
    let name = match expression {
        [Token::Other(n)] => {
            return n
                .parse::<usize>()
                .ok()
                .filter(|&n| (1..=columns.len()).contains(&n))
        }
        [Token::Word(name) | Token::Quoted(name)] => name,
        _ => return None,
    };
    let mut matching = columns.iter().enumerate().filter(|(_, c)| *c == name);
    match (matching.next(), matching.next()) {
        (Some((i, _)), None) => Some(i + 1),
        _ => None,
    }
}

/// The statement with insignificant differences removed, for recognising the same solution:
/// whitespace and comments outside quoted text become one space, trailing `;` go. Quoted
/// strings, identifiers and dollar quotes are kept byte for byte, and nothing is case-folded.
/// Two texts with the same normal form must mean the same to the server: so what separates two
/// string literals is kept as it is (with a newline in it, `'U'` `'K'` is one literal, `'UK'`;
/// without, a syntax error), so is an unterminated comment (an error), and only the server's
/// own whitespace is trimmed.
pub fn normalize(sql: &str) -> String {
    let s = sql.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let next = skip_trivia(s, i);
        if next > i {
            let between_strings = out.last() == Some(&b'\'') && s.get(next) == Some(&b'\'');
            if between_strings || cut_off_comment(&s[i..next]) {
                out.extend_from_slice(&s[i..next]);
            } else {
                out.push(b' ');
            }
            i = next;
            continue;
        }
        let end = skip_token(s, i).max(i + 1).min(s.len());
        out.extend_from_slice(&s[i..end]);
        i = end;
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    text.trim_start_matches(' ')
        .trim_end_matches([';', ' '])
        .to_string()
}

fn is_copy_from_stdin(statement: &str) -> bool {
    let words = leading_words(statement, 1);
    if words.first().map(String::as_str) != Some("COPY") {
        return false;
    }
    let upper = statement.to_ascii_uppercase();
    upper.contains("FROM STDIN") || upper.contains("FROM PSTDIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_word_skips_nested_comments_and_parentheses() {
        assert_eq!(
            leading_words("/* a /* b */ SELECT */ LOCK t", 1),
            vec!["LOCK"]
        );
        assert_eq!(leading_words("-- x\n ((select 1))", 1), vec!["SELECT"]);
        assert_eq!(leading_words("  \t", 1), Vec::<String>::new());
        assert_eq!(
            leading_words("/* unterminated SELECT", 1),
            Vec::<String>::new()
        );
        assert_eq!(
            leading_words("create schema \"Shop\";", 3),
            vec!["CREATE", "SCHEMA", "\"Shop\""]
        );
    }

    #[test]
    fn system_columns_are_found_wherever_they_are_named() {
        for (sql, found) in [
            ("SELECT xmax FROM t", Some("xmax")),
            ("SELECT t.XMIN::text FROM t", Some("xmin")),
            ("SELECT \"xmax\" FROM t", Some("xmax")),
            ("SELECT (SELECT max(c.cmax::text) FROM t c)", Some("cmax")),
            ("SELECT a FROM t WHERE Cmin = 0", Some("cmin")),
            ("SELECT xmax(t)::text FROM t", Some("xmax")),
            ("SELECT U&\"\\0078max\" FROM t", Some("U&\"\\0078max\"")),
            ("SELECT u&\"a\" FROM t", Some("u&\"a\"")),
            // A continued E'' string, which a scanner of its own may end elsewhere.
            (
                "SELECT id, E''\n'\\' ', xmax::text FROM t --'",
                Some("xmax"),
            ),
            // Texts PostgreSQL's scanner refuses are looked at by ours.
            ("SELECT xmax /* unterminated", Some("xmax")),
            ("SELECT U&\"a\" /* unterminated", Some("U&\"a\"")),
            ("SELECT 'unterminated", None),
            ("SELECT 'xmax', $$xmin$$ FROM t -- xmin\n/* cmax */", None),
            ("SELECT \"XMAX\", xmax1, max_x, ctid FROM t", None),
            ("SELECT u & \"Mask\" FROM t u", None),
        ] {
            assert_eq!(system_column(sql).as_deref(), found, "{sql}");
        }
    }

    #[test]
    fn a_continued_string_keeps_its_kind() {
        let parts = |sql: &str| split_script(sql).unwrap().len();
        // PostgreSQL reads one E'' string continued on the next line (`\'` escaped there too),
        // then `AS y`, then a second statement.
        assert_eq!(parts("SELECT E'a'\n'\\'' AS y; SELECT 2"), 2);
        // A comment before the newline and blank lines after it: still one string.
        assert_eq!(
            parts("SELECT E''  -- note\n  \n'\\' ; DELETE FROM t; --'"),
            1
        );
        // No newline, or a block comment before it: no continuation.
        assert_eq!(parts("SELECT E'a' '\\'; SELECT 2"), 2);
        assert_eq!(parts("SELECT E'a' /* c */\n'\\'; SELECT 2"), 2);
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let parts = split_script(
            "SELECT 'a;b', \"c;\" FROM t; -- ; \nSELECT $f$ ; $f$, E'\\';', $$;$$; /* ; /* ; */ */ SELECT 3",
        )
        .unwrap();
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(
            parts[1],
            ScriptPart::Sql("SELECT $f$ ; $f$, E'\\';', $$;$$".into())
        );
    }

    #[test]
    fn standard_strings_do_not_treat_backslash_as_escape() {
        let parts = split_script("SELECT 'a\\'; SELECT 2").unwrap();
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn normalizing_keeps_meaning() {
        assert_eq!(normalize("  SELECT  a\n\tFROM t ;; "), "SELECT a FROM t");
        assert_eq!(
            normalize("SELECT a -- note\nFROM /* x */ t;"),
            "SELECT a FROM t"
        );
        assert_eq!(
            normalize("SELECT 'a  b', \"x  y\", $$ c  d $$"),
            "SELECT 'a  b', \"x  y\", $$ c  d $$"
        );
        assert_ne!(normalize("SELECT 'a b'"), normalize("SELECT 'a  b'"));
        assert_ne!(normalize("select a"), normalize("SELECT a"));
    }

    #[test]
    fn normalising_never_merges_texts_the_server_reads_differently() {
        // A newline between two literals continues the first (PostgreSQL's lexer); a space
        // or a block comment does not (a syntax error); a -- comment before the newline does.
        let distinct = [
            "SELECT 'U'\n'K'",
            "SELECT 'U' 'K'",
            "SELECT 'U' /* c */ 'K'",
            "SELECT 'U' -- c\n'K'",
            "SELECT E'U'\r'K'",
            "SELECT E'U' 'K'",
            "\u{2003}SELECT 1",
            "SELECT 1\u{a0}",
            "SELECT 1 /* cut off",
            "SELECT 1 /* /* nested */ cut off",
            "SELECT 1 -- fine\n/* cut off",
            "SELECT\u{b}1",
            "SELECT 1\u{b}",
            "SELECT 1",
            // An E'' string's continuation reads `\'` as a quote: the spaces are inside it.
            "SELECT E''\n'\\' a  b'",
            "SELECT E''\n'\\' a b'",
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(normalize(a), normalize(b), "{a:?} vs {b:?}");
            }
        }
        assert_eq!(normalize("SELECT 'U'\n'K' ;"), normalize("SELECT 'U'\n'K'"));
        assert_eq!(
            normalize("SELECT 1 /* closed */"),
            normalize("SELECT 1 -- line")
        );
        assert_eq!(
            normalize("SELECT\n'U' ,\n 'K'"),
            normalize("SELECT 'U' , 'K'")
        );
    }

    #[test]
    fn copy_blocks_and_meta_commands() {
        let script = "\\restrict abc\nSET x = 1;\nCOPY s.t (a, b) FROM stdin;\n1\tx;y\n2\t\\N\n\\.\nSELECT 1;\n\\unrestrict abc\n";
        let parts = split_script(script).unwrap();
        assert_eq!(
            parts,
            vec![
                ScriptPart::Sql("SET x = 1".into()),
                ScriptPart::Copy {
                    statement: "COPY s.t (a, b) FROM stdin".into(),
                    data: "1\tx;y\n2\t\\N\n".into()
                },
                ScriptPart::Sql("SELECT 1".into()),
            ]
        );
        assert!(split_script("COPY t FROM stdin;\n1\n").is_err());
    }

    #[test]
    fn order_key_maps_the_final_order_by_to_output_columns() {
        let cols = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let c = cols(&["surname", "firstname", "Total", "joindate"]);
        assert_eq!(
            order_key("SELECT surname, firstname FROM cd.members m ORDER BY surname, firstname DESC NULLS LAST", &c),
            Some(vec![1, 2])
        );
        // Qualified names are input columns: the output column of that name may be another
        // (a self-join, an alias over an expression, `x.price * x.qty`).
        for clause in [
            "m.surname",
            "b.surname, e.surname",
            "t.price * t.joindate",
            "surname COLLATE pg_catalog.\"C\"",
        ] {
            assert_eq!(
                order_key(&format!("SELECT * FROM t ORDER BY {clause}"), &c),
                None,
                "{clause}"
            );
        }
        assert_eq!(
            order_key("select 1 order by 2 using <, \"Total\" asc", &c),
            Some(vec![2, 3])
        );
        assert_eq!(
            order_key("SELECT * FROM t ORDER BY joindate LIMIT 3", &c),
            Some(vec![4])
        );
        // Not the statement's own clause, or not an output column: no key (strict order).
        assert_eq!(
            order_key("SELECT * FROM (SELECT * FROM t ORDER BY surname) s", &c),
            None
        );
        assert_eq!(
            order_key("SELECT rank() OVER (ORDER BY surname) FROM t", &c),
            None
        );
        assert_eq!(
            order_key("SELECT * FROM t ORDER BY lower(surname)", &c),
            None
        );
        assert_eq!(order_key("SELECT * FROM t ORDER BY total", &c), None);
        assert_eq!(order_key("SELECT * FROM t ORDER BY 5", &c), None);
        assert_eq!(
            order_key("SELECT * FROM t ORDER BY surname || 'x'", &c),
            None
        );
        assert_eq!(
            order_key("SELECT 'order by surname' FROM t -- order by surname", &c),
            None
        );
        assert_eq!(
            order_key("SELECT * FROM t ORDER BY surname COLLATE \"C\"", &c),
            None
        );
        // Two output columns of that name: ambiguous.
        assert_eq!(
            order_key("SELECT * FROM t ORDER BY a", &cols(&["a", "a"])),
            None
        );
        // The last top-level ORDER BY of a union is the statement's.
        assert_eq!(
            order_key(
                "SELECT surname FROM a UNION (SELECT surname FROM b ORDER BY 1) ORDER BY firstname",
                &c
            ),
            Some(vec![2])
        );
    }
}
