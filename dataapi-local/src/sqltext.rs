//! SQL text handling: `:name` parameters to PostgreSQL's `$n`, skipping what is not code
//! (string literals, quoted identifiers, dollar-quoted bodies, comments, `::` casts), and the
//! Data API's refusal of multi-statement SQL.

/// The SQL rewritten for PostgreSQL.
#[derive(Debug, PartialEq)]
pub struct Translated {
    /// SQL with `$n` placeholders.
    pub sql: String,
    /// Parameter names in `$n` order (`$1` is `names[0]`).
    pub names: Vec<String>,
    /// Byte ranges in `sql` of each placeholder occurrence, with its index, for casts.
    pub placeholders: Vec<(usize, usize)>,
}

/// Why SQL text was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SqlTextError {
    /// More than one statement.
    #[error("Multistatements aren't supported.")]
    MultipleStatements,
    /// An unterminated literal or comment.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Translates named parameters; `cast(i)` may give a type to append to occurrence `i`'s
/// placeholder (`$1::uuid`).
pub fn translate(sql: &str, cast: impl Fn(&str) -> Option<&'static str>) -> Result<Translated, SqlTextError> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut names: Vec<String> = Vec::new();
    let mut placeholders = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    let mut ended = false; // a `;` was seen: only whitespace and comments may follow
    while i < b.len() {
        let c = b[i];
        let comment_start = (c == b'-' && b.get(i + 1) == Some(&b'-')) || (c == b'/' && b.get(i + 1) == Some(&b'*'));
        if ended && !c.is_ascii_whitespace() && !comment_start {
            return Err(SqlTextError::MultipleStatements);
        }
        match c {
            b'\'' => {
                // E'...' strings take backslash escapes.
                let escapes = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') && (i < 2 || !is_ident(b[i - 2]));
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(SqlTextError::Unterminated("string literal")),
                        Some(b'\\') if escapes => i += 2,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(SqlTextError::Unterminated("quoted identifier")),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // PostgreSQL block comments nest.
                let mut depth = 0;
                loop {
                    if i + 1 >= b.len() {
                        return Err(SqlTextError::Unterminated("comment"));
                    }
                    if b[i] == b'/' && b[i + 1] == b'*' {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b[i + 1] == b'/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' => {
                // Dollar quoting: $tag$ ... $tag$ (a `$1`-style placeholder is not a tag).
                let mut j = i + 1;
                while j < b.len() && is_ident(b[j]) && !(j == i + 1 && b[j].is_ascii_digit()) {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => return Err(SqlTextError::Unterminated("dollar-quoted string")),
                    }
                } else {
                    i += 1;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b.get(i + 1).is_some_and(|&n| is_ident_start(n)) && (i == 0 || b[i - 1] != b':') => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                let name = &sql[start..j];
                let index = match names.iter().position(|n| n == name) {
                    Some(p) => p,
                    None => {
                        names.push(name.to_string());
                        names.len() - 1
                    }
                };
                out.push_str(&sql[copied..i]);
                let at = out.len();
                out.push_str(&format!("${}", index + 1));
                if let Some(ty) = cast(name) {
                    out.push_str("::");
                    out.push_str(ty);
                }
                placeholders.push((at, index));
                copied = j;
                i = j;
            }
            b';' => {
                ended = true;
                out.push_str(&sql[copied..i]);
                copied = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(Translated {
        sql: out,
        names,
        placeholders,
    })
}

/// Whether the statement only reads (its row count is not "records updated").
pub fn is_query(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(first.as_str(), "SELECT" | "VALUES" | "SHOW" | "TABLE" | "EXPLAIN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> Translated {
        translate(sql, |n| (n == "u").then_some("uuid")).unwrap()
    }

    #[test]
    fn names_become_numbered_placeholders_once_each() {
        let x = t("SELECT * FROM t WHERE a = :a AND b = :b OR a2 = :a");
        assert_eq!(x.sql, "SELECT * FROM t WHERE a = $1 AND b = $2 OR a2 = $1");
        assert_eq!(x.names, vec!["a", "b"]);
        assert_eq!(t("SELECT :u").sql, "SELECT $1::uuid");
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        let x =
            t("SELECT ':no', \"col:no\", E'\\':no', $$ :no $$, $q$:no$q$, x::text, :yes -- :no\n /* :no /* :no */ */");
        assert_eq!(x.names, vec!["yes"]);
        assert!(x.sql.contains("x::text"));
        assert!(x.sql.contains("$1"));
    }

    #[test]
    fn multiple_statements_are_refused_but_a_trailing_semicolon_is_fine() {
        assert_eq!(
            translate("SELECT 1; SELECT 2", |_| None),
            Err(SqlTextError::MultipleStatements)
        );
        assert_eq!(t("SELECT 1;  -- done\n").sql.trim_end(), "SELECT 1  -- done");
        assert!(t("SELECT ';'").names.is_empty());
        assert!(translate("SELECT 'open", |_| None).is_err());
        // A `;` inside what is not code ends nothing.
        for one in [
            "SELECT 'a;b', \"c;d\", E'\\';' -- ; SELECT 2\n",
            "SELECT 1 /* ; SELECT 2 /* ; */ */;",
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2 $$ LANGUAGE sql;",
            "DO $body$ BEGIN PERFORM 1; END $body$",
        ] {
            assert!(translate(one, |_| None).is_ok(), "{one}");
        }
        for two in [
            "SELECT 1;SELECT 2",
            "INSERT INTO t VALUES (';'); DELETE FROM t",
            "SELECT 1; /* then */ SELECT 2;",
            "SELECT $$;$$; SELECT 2",
        ] {
            assert_eq!(translate(two, |_| None), Err(SqlTextError::MultipleStatements), "{two}");
        }
    }

    #[test]
    fn reads_are_told_from_writes() {
        assert!(is_query(" select 1"));
        assert!(is_query("(SELECT 1)"));
        assert!(!is_query("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!is_query("update t set a = 1"));
    }
}
