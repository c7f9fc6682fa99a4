//! The row format of `pgq.logutriga`: `name=value&name=value`, names and values
//! urlencoded (`%XX` bytes, `+` for a space), a name without `=` meaning NULL.
//!
//! [`decode_row`] is what the applier reads; [`encode_row`] writes the same format (the
//! property tests round-trip through it, and repair hints never need it).

/// Why an urlencoded row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `%` not followed by two hex digits.
    #[error("bad percent escape at byte {0}")]
    BadEscape(usize),
    /// The decoded bytes are not UTF-8.
    #[error("decoded text is not UTF-8")]
    NotUtf8,
    /// An empty column name.
    #[error("empty column name at byte {0}")]
    EmptyName(usize),
}

/// Decodes one urlencoded component.
pub fn decode(s: &str, offset: usize) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(Error::BadEscape(offset + i))?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(Error::BadEscape(offset + i))?;
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Error::NotUtf8)
}

/// Decodes a whole row into (column, value) pairs in payload order; `None` is NULL.
pub fn decode_row(s: &str) -> Result<Vec<(String, Option<String>)>, Error> {
    let mut row = Vec::new();
    if s.is_empty() {
        return Ok(row);
    }
    let mut offset = 0;
    for part in s.split('&') {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        if name.is_empty() {
            return Err(Error::EmptyName(offset));
        }
        let name = decode(name, offset)?;
        let value = match value {
            Some(v) => Some(decode(v, offset + name.len() + 1)?),
            None => None,
        };
        row.push((name, value));
        offset += part.len() + 1;
    }
    Ok(row)
}

/// Encodes one component as logutriga does: unreserved bytes as they are, a space as
/// `+`, everything else as `%xx`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(c as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02x}")),
        }
    }
    out
}

/// Encodes a row (the inverse of [`decode_row`]).
pub fn encode_row(row: &[(String, Option<String>)]) -> String {
    row.iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{}={}", encode(n), encode(v)),
            None => encode(n),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_trigger_format() {
        let row = decode_row("id=1&txt=a+b%26c%3d%25&n&e=&u=%c3%a9").unwrap();
        assert_eq!(
            row,
            vec![
                ("id".into(), Some("1".into())),
                ("txt".into(), Some("a b&c=%".into())),
                ("n".into(), None),
                ("e".into(), Some(String::new())),
                ("u".into(), Some("é".into())),
            ]
        );
        assert!(decode_row("").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(decode_row("a=%4"), Err(Error::BadEscape(2)));
        assert_eq!(decode_row("a=%zz"), Err(Error::BadEscape(2)));
        assert_eq!(decode_row("a=%ff"), Err(Error::NotUtf8));
        assert_eq!(decode_row("a=1&=2"), Err(Error::EmptyName(4)));
    }

    proptest! {
        #[test]
        fn row_round_trips(row in proptest::collection::vec(
            ("[^\\x00]{1,12}", proptest::option::of("[^\\x00]{0,20}")), 0..8)) {
            let enc = encode_row(&row);
            prop_assert_eq!(decode_row(&enc).unwrap(), row);
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,40}") {
            let _ = decode_row(&s);
        }
    }
}
