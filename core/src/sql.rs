//! Statement text as exported: literals replaced by `?`, comments dropped, runs of white
//! space (and comments) made one space (`db.query.text`), and the statement's first keyword
//! (`db.operation.name`).
//!
//! Strings (`'…'`, `E'…'`, PostgreSQL's `$tag$…$tag$`, and MySQL's `"…"`), numbers
//! (`42`, `-1.5e3`, `0x1F`) and MySQL's `X'…'`/`0x…` all become `?`; identifiers, quoted
//! identifiers (`"t"` in PostgreSQL, `` `t` `` in MySQL), keywords and placeholders (`$1`,
//! `?`) stay. Text cut off by the capture in the middle of a literal still loses it.

use crate::http::Path;
use crate::l7::Word;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// Writes `text` obfuscated into `out` (as much as fits).
pub fn obfuscate(text: &[u8], dialect: Dialect, out: &mut Path) {
    let mut i = 0;
    let n = text.len();
    // A space is owed before the next token.
    let mut space = false;
    let put = |out: &mut Path, s: &[u8], space: &mut bool| {
        if *space && !out.is_empty() {
            let _ = out.push(' ');
        }
        *space = false;
        for &c in s {
            let c = if c.is_ascii() && !c.is_ascii_control() {
                c as char
            } else if c.is_ascii_whitespace() {
                ' '
            } else if c.is_ascii() {
                continue;
            } else {
                // Not ASCII: kept as a placeholder so the text stays valid UTF-8.
                '_'
            };
            if out.push(c).is_err() {
                return;
            }
        }
    };
    while i < n {
        let c = text[i];
        if c.is_ascii_whitespace() || c == 0 {
            space = true;
            i += 1;
            continue;
        }
        // Comments.
        if c == b'-' && text.get(i + 1) == Some(&b'-') || (c == b'#' && dialect == Dialect::Mysql) {
            while i < n && text[i] != b'\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if c == b'/' && text.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < n && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(n);
            space = true;
            continue;
        }
        // String literals, with their prefixes.
        let prefixed = matches!(c, b'E' | b'e' | b'B' | b'b' | b'X' | b'x' | b'N' | b'n')
            && text.get(i + 1) == Some(&b'\'')
            && !word_before(text, i);
        if c == b'\'' || prefixed || (c == b'"' && dialect == Dialect::Mysql) {
            let quote = if prefixed { b'\'' } else { c };
            let backslash = dialect == Dialect::Mysql || matches!(c, b'E' | b'e');
            i = skip_quoted(text, i + usize::from(prefixed) + 1, quote, backslash);
            put(out, b"?", &mut space);
            continue;
        }
        if c == b'$' && dialect == Dialect::Postgres {
            // `$1` stays; `$$…$$` and `$tag$…$tag$` are strings.
            let tag_end = text[i + 1..]
                .iter()
                .position(|&d| !(d.is_ascii_alphanumeric() || d == b'_'))
                .map(|p| i + 1 + p);
            let digits = text[i + 1..tag_end.unwrap_or(n)]
                .iter()
                .all(u8::is_ascii_digit);
            if let Some(e) = tag_end
                && text[e] == b'$'
                && !(digits && e > i + 1)
            {
                let tag = &text[i..=e];
                let body = e + 1;
                i = text[body..]
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map_or(n, |p| body + p + tag.len());
                put(out, b"?", &mut space);
                continue;
            }
        }
        // Quoted identifiers stay.
        if (c == b'"' && dialect == Dialect::Postgres) || (c == b'`' && dialect == Dialect::Mysql) {
            let end = skip_quoted(text, i + 1, c, false);
            put(out, &text[i..end], &mut space);
            i = end;
            continue;
        }
        // Numbers not inside a word; a sign is part of the number after an operator.
        let signed = (c == b'-' || c == b'+')
            && text.get(i + 1).is_some_and(u8::is_ascii_digit)
            && operator_before(text, i);
        if (c.is_ascii_digit()
            || signed
            || (c == b'.' && text.get(i + 1).is_some_and(u8::is_ascii_digit)))
            && !word_before(text, i)
        {
            i += 1;
            while i < n {
                let d = text[i];
                let exp_sign = matches!(d, b'-' | b'+') && matches!(text[i - 1], b'e' | b'E');
                if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            put(out, b"?", &mut space);
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < n
                && (text[i].is_ascii_alphanumeric()
                    || matches!(text[i], b'_' | b'$')
                    || text[i] >= 0x80)
            {
                i += 1;
            }
            put(out, &text[start..i], &mut space);
            continue;
        }
        // Punctuation and operators: kept, spaced as they were.
        put(out, &[c], &mut space);
        i += 1;
    }
}

/// Whether the byte before `i` continues a word (so `x1` and `t.e'…` are not literals).
fn word_before(text: &[u8], i: usize) -> bool {
    i > 0 && (text[i - 1].is_ascii_alphanumeric() || matches!(text[i - 1], b'_' | b'$'))
}

/// Whether the last non-space byte before `i` is an operator or opening (so `-` there is a
/// sign, not a subtraction).
fn operator_before(text: &[u8], i: usize) -> bool {
    match text[..i].iter().rev().find(|c| !c.is_ascii_whitespace()) {
        None => true,
        Some(c) => matches!(
            c,
            b'=' | b'<' | b'>' | b'(' | b',' | b'+' | b'-' | b'*' | b'/'
        ),
    }
}

/// The index after a literal or identifier opened by `quote` (doubled quotes, and with
/// `backslash` backslash escapes, stay inside); the end of the text when it is cut off.
fn skip_quoted(text: &[u8], mut i: usize, quote: u8, backslash: bool) -> usize {
    while i < text.len() {
        let c = text[i];
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if text.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    text.len()
}

/// The statement's first keyword, upper-cased (`SELECT`); empty when it starts otherwise.
pub fn operation(obfuscated: &str) -> Word {
    let mut w = Word::new();
    let start = obfuscated.trim_start_matches(['(', ' ']);
    for c in start.chars() {
        if !c.is_ascii_alphabetic() || w.push(c.to_ascii_uppercase()).is_err() {
            break;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> Path {
        let mut out = Path::new();
        obfuscate(s.as_bytes(), Dialect::Postgres, &mut out);
        out
    }

    fn my(s: &str) -> Path {
        let mut out = Path::new();
        obfuscate(s.as_bytes(), Dialect::Mysql, &mut out);
        out
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            pg("SELECT name, 'it''s'  FROM t1 WHERE id = 42 AND x > -1.5e3\n"),
            "SELECT name, ? FROM t1 WHERE id = ? AND x > ?"
        );
        assert_eq!(
            pg("select $1::int, $$a 'b'$$, $q$x$q$"),
            "select $1::int, ?, ?"
        );
        assert_eq!(
            pg("INSERT INTO \"Users\" (a, b) VALUES (E'x\\'y', 0x1F) -- c\n;"),
            "INSERT INTO \"Users\" (a, b) VALUES (?, ?) ;"
        );
        assert_eq!(
            pg("SELECT a-1, t.c2 /* n 5 */ FROM s.t"),
            "SELECT a-?, t.c2 FROM s.t"
        );
        assert_eq!(
            my("SELECT * FROM `t` WHERE s = \"a\\\"b\" AND n IN (1, 2) # x"),
            "SELECT * FROM `t` WHERE s = ? AND n IN (?, ?)"
        );
        assert_eq!(
            my("UPDATE t SET b = X'0F', c = ?"),
            "UPDATE t SET b = ?, c = ?"
        );
        // Cut in the middle of a literal: the literal's start is not kept.
        assert_eq!(pg("SELECT 'secret pass"), "SELECT ?");
        assert_eq!(pg("SELECT é"), "SELECT __");
    }

    #[test]
    fn the_operation_is_the_first_keyword() {
        assert_eq!(operation("SELECT ?"), "SELECT");
        assert_eq!(operation("insert into t"), "INSERT");
        assert_eq!(operation("(SELECT 1) UNION (SELECT 2)"), "SELECT");
        assert_eq!(operation("?"), "");
    }
}
