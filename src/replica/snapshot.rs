//! The provider's txid snapshot an initial copy was read in (`xmin:xmax:xip,…`, the
//! text form of `txid_snapshot`), and the one question the applier asks of it: does the
//! copy already hold the effects of transaction `txid`?

use std::collections::BTreeSet;

/// A parsed `txid_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every transaction below this had finished when the snapshot was taken.
    pub xmin: i64,
    /// No transaction from this on had started.
    pub xmax: i64,
    /// Transactions in `[xmin, xmax)` still running at the time.
    pub xip: BTreeSet<i64>,
}

impl Snapshot {
    /// Parses `xmin:xmax:xip1,xip2` (the list may be empty).
    pub fn parse(s: &str) -> Option<Snapshot> {
        let mut parts = s.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        let xip = if list.is_empty() {
            BTreeSet::new()
        } else {
            list.split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<BTreeSet<i64>>>()?
        };
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return None;
        }
        Some(Snapshot { xmin, xmax, xip })
    }

    /// Whether transaction `txid` had committed (or rolled back) when the snapshot was
    /// taken, i.e. whether what it wrote is in the copy.
    pub fn sees(&self, txid: i64) -> bool {
        txid < self.xmin || (txid < self.xmax && !self.xip.contains(&txid))
    }

    /// Whether `txid` started after the snapshot: a batch holding such an event proves
    /// that every later batch is past the copy (see `apply.rs`).
    pub fn is_after(&self, txid: i64) -> bool {
        txid >= self.xmax
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let s = Snapshot::parse("10:20:12,15").unwrap();
        assert!(s.sees(9));
        assert!(s.sees(11));
        assert!(!s.sees(12));
        assert!(s.sees(13));
        assert!(!s.sees(15));
        assert!(!s.sees(20));
        assert!(s.is_after(20));
        assert!(!s.is_after(19));
        let e = Snapshot::parse("5:5:").unwrap();
        assert!(e.sees(4) && !e.sees(5));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "1", "1:2", "3:2:", "1:5:7", "a:b:", "1:5:2,x"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad}");
        }
    }
}
