//! The SQL fragments `pgq.sqltriga` queues, read back into column/value pairs so the
//! applier can run them with bind parameters instead of pasting them into a statement:
//!
//! - insert: `(col, col) values ('lit', null)`;
//! - update: `col='lit',col=NULL where key='lit' and key='lit'`;
//! - delete: `key='lit' and key='lit'`.
//!
//! Names are `quote_ident` output (bare lowercase words, or `"…"` with `""` inside);
//! values are `quote_literal` output (`'…'` with `''` inside, or `E'…'` with `\\` too)
//! or the keyword NULL. Anything else is refused, never passed through.

/// Why a fragment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sqltriga fragment, byte {at}: {what}")]
pub struct Error {
    /// Byte offset of the problem.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

/// A column with its value (`None` is NULL).
pub type Pair = (String, Option<String>);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Word(String),
    Lit(String),
    LParen,
    RParen,
    Comma,
    Eq,
}

fn err<T>(at: usize, what: &'static str) -> Result<T, Error> {
    Err(Error { at, what })
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, Error> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => toks.push((start, Tok::LParen)),
            b')' => toks.push((start, Tok::RParen)),
            b',' => toks.push((start, Tok::Comma)),
            b'=' => toks.push((start, Tok::Eq)),
            b'"' => {
                let mut out = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return err(start, "unterminated quoted name"),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                            out.push(b'"');
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(&x) => {
                            out.push(x);
                            i += 1;
                        }
                    }
                }
                let name = String::from_utf8(out).map_err(|_| Error {
                    at: start,
                    what: "name is not UTF-8",
                })?;
                toks.push((start, Tok::Ident(name)));
            }
            b'\'' => {
                let (lit, end) = literal(b, i + 1, false)?;
                toks.push((start, Tok::Lit(lit)));
                i = end;
            }
            b'E' | b'e' if b.get(i + 1) == Some(&b'\'') => {
                let (lit, end) = literal(b, i + 2, true)?;
                toks.push((start, Tok::Lit(lit)));
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let w = &s[start..i];
                let lower = w.to_ascii_lowercase();
                if matches!(lower.as_str(), "values" | "where" | "and" | "null") {
                    toks.push((start, Tok::Word(lower)));
                } else {
                    toks.push((start, Tok::Ident(lower)));
                }
                continue;
            }
            _ => return err(start, "unexpected character"),
        }
        i += 1;
    }
    Ok(toks)
}

/// Reads a literal body from `i` (just after the opening quote); returns the value and
/// the index of the closing quote.
fn literal(b: &[u8], mut i: usize, escapes: bool) -> Result<(String, usize), Error> {
    let start = i;
    let mut out = Vec::new();
    loop {
        match b.get(i) {
            None => return err(start, "unterminated literal"),
            Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            Some(b'\'') => break,
            Some(b'\\') if escapes => match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'\'') => {
                    out.push(b'\'');
                    i += 2;
                }
                _ => return err(i, "unsupported escape in E'' literal"),
            },
            Some(&x) => {
                out.push(x);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|_| Error {
        at: start,
        what: "literal is not UTF-8",
    })?;
    Ok((s, i))
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn new(s: &str) -> Result<Parser, Error> {
        Ok(Parser {
            toks: tokenize(s)?,
            pos: 0,
            len: s.len(),
        })
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |t| t.0)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok, what: &'static str) -> Result<(), Error> {
        let at = self.at();
        if self.next() == Some(t) {
            Ok(())
        } else {
            err(at, what)
        }
    }

    fn word(&mut self, w: &str, what: &'static str) -> Result<(), Error> {
        self.expect(Tok::Word(w.to_string()), what)
    }

    fn ident(&mut self) -> Result<String, Error> {
        let at = self.at();
        match self.next() {
            Some(Tok::Ident(n)) => Ok(n),
            _ => err(at, "expected a column name"),
        }
    }

    fn value(&mut self) -> Result<Option<String>, Error> {
        let at = self.at();
        match self.next() {
            Some(Tok::Lit(v)) => Ok(Some(v)),
            Some(Tok::Word(w)) if w == "null" => Ok(None),
            _ => err(at, "expected a literal or NULL"),
        }
    }

    fn pair(&mut self) -> Result<Pair, Error> {
        let n = self.ident()?;
        self.expect(Tok::Eq, "expected '='")?;
        Ok((n, self.value()?))
    }

    fn end(&self) -> Result<(), Error> {
        if self.pos < self.toks.len() {
            err(self.at(), "unexpected text after the fragment")
        } else {
            Ok(())
        }
    }

    /// `pair and pair and …`
    fn conjunction(&mut self) -> Result<Vec<Pair>, Error> {
        let mut out = vec![self.pair()?];
        while self.peek() == Some(&Tok::Word("and".into())) {
            self.pos += 1;
            out.push(self.pair()?);
        }
        Ok(out)
    }
}

/// Reads an insert fragment into (column, value) pairs.
pub fn parse_insert(s: &str) -> Result<Vec<Pair>, Error> {
    let mut p = Parser::new(s)?;
    p.expect(Tok::LParen, "expected '(' before the column list")?;
    let mut names = vec![p.ident()?];
    while p.peek() == Some(&Tok::Comma) {
        p.pos += 1;
        names.push(p.ident()?);
    }
    p.expect(Tok::RParen, "expected ')' after the column list")?;
    p.word("values", "expected 'values'")?;
    p.expect(Tok::LParen, "expected '(' before the values")?;
    let mut values = vec![p.value()?];
    while p.peek() == Some(&Tok::Comma) {
        p.pos += 1;
        values.push(p.value()?);
    }
    p.expect(Tok::RParen, "expected ')' after the values")?;
    p.end()?;
    if names.len() != values.len() {
        return err(0, "column and value counts differ");
    }
    Ok(names.into_iter().zip(values).collect())
}

/// Reads an update fragment into (set pairs, key pairs).
pub fn parse_update(s: &str) -> Result<(Vec<Pair>, Vec<Pair>), Error> {
    let mut p = Parser::new(s)?;
    let mut set = vec![p.pair()?];
    while p.peek() == Some(&Tok::Comma) {
        p.pos += 1;
        set.push(p.pair()?);
    }
    p.word("where", "expected 'where'")?;
    let key = p.conjunction()?;
    p.end()?;
    Ok((set, key))
}

/// Reads a delete fragment (a where clause without `where`) into key pairs.
pub fn parse_delete(s: &str) -> Result<Vec<Pair>, Error> {
    let mut p = Parser::new(s)?;
    let key = p.conjunction()?;
    p.end()?;
    Ok(key)
}

/// `quote_ident`: bare when it is a plain lowercase word that is no keyword we read.
pub fn quote_ident(s: &str) -> String {
    let plain = s
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if plain && !matches!(s, "values" | "where" | "and" | "null" | "e") {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `quote_literal`, or `NULL`: what repair hints and the tests write.
pub fn quote_literal(v: Option<&str>) -> String {
    match v {
        None => "NULL".to_string(),
        Some(v) if v.contains('\\') => {
            format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
        }
        Some(v) => format!("'{}'", v.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(n: &str, v: Option<&str>) -> Pair {
        (n.to_string(), v.map(str::to_string))
    }

    #[test]
    fn reads_trigger_output() {
        assert_eq!(
            parse_insert("(id,\"Name\",note) values ('1','it''s',null)").unwrap(),
            vec![p("id", Some("1")), p("Name", Some("it's")), p("note", None)]
        );
        assert_eq!(
            parse_update("note=E'a\\\\b',x=NULL where id='1' and \"k 2\"='x'").unwrap(),
            (
                vec![p("note", Some("a\\b")), p("x", None)],
                vec![p("id", Some("1")), p("k 2", Some("x"))]
            )
        );
        assert_eq!(
            parse_delete("id='1' and k='2'").unwrap(),
            vec![p("id", Some("1")), p("k", Some("2"))]
        );
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "(id) values ('1'); drop table x",
            "(id) values (1)",
            "(id,x) values ('1')",
            "id='1' or 1=1",
            "id='1",
            "id=E'\\n'",
            "",
            "id=(select 1)",
        ] {
            assert!(
                parse_insert(bad).is_err() && parse_delete(bad).is_err(),
                "{bad}"
            );
        }
        assert!(parse_update("x='1'").is_err());
    }

    proptest! {
        #[test]
        fn quoted_pairs_round_trip(pairs in proptest::collection::vec(
            ("[^\\x00]{1,10}", proptest::option::of("[^\\x00]{0,16}")), 1..6)) {
            let frag = pairs.iter()
                .map(|(n, v)| format!("{}={}", quote_ident(n), quote_literal(v.as_deref())))
                .collect::<Vec<_>>()
                .join(" and ");
            prop_assert_eq!(parse_delete(&frag).unwrap(), pairs.clone());
            let ins = format!(
                "({}) values ({})",
                pairs.iter().map(|(n, _)| quote_ident(n)).collect::<Vec<_>>().join(","),
                pairs.iter().map(|(_, v)| quote_literal(v.as_deref())).collect::<Vec<_>>().join(","),
            );
            prop_assert_eq!(parse_insert(&ins).unwrap(), pairs);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = parse_insert(&s);
            let _ = parse_update(&s);
            let _ = parse_delete(&s);
        }
    }
}
