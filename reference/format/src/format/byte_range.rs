//! `START:END`, the byte range of a plaintext that `coffer decrypt --range` reads: END is
//! exclusive and either side may be empty (`:100`, `100:`). Resolved against the plaintext's
//! length like an HTTP range: an END past the end is cut to it, a START at or past a
//! non-empty plaintext's end selects nothing and is refused (HTTP's 416).

use std::fmt;
use std::str::FromStr;

/// A range as the user wrote it, before the plaintext's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte (0 when left empty).
    pub start: u64,
    /// One past the last byte; `None` for "to the end".
    pub end: Option<u64>,
}

/// Why a range is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `START:END` with decimal offsets.
    #[error("expected START:END byte offsets")]
    Syntax,
    /// END is before START.
    #[error("END is before START")]
    Backwards,
    /// START is at or past the end of a non-empty plaintext.
    #[error("the plaintext has {total} bytes, so the range starts past its end")]
    PastEnd {
        /// The plaintext's length.
        total: u64,
    },
}

impl FromStr for ByteRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, RangeError> {
        let offset = |side: &str| -> Result<Option<u64>, RangeError> {
            let side = side.trim();
            if side.is_empty() {
                return Ok(None);
            }
            // Digits only: `u64::from_str` would also take a leading `+`.
            if !side.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Syntax);
            }
            side.parse().map(Some).map_err(|_| RangeError::Syntax)
        };
        let (start, end) = text.split_once(':').ok_or(RangeError::Syntax)?;
        let range = ByteRange {
            start: offset(start)?.unwrap_or(0),
            end: offset(end)?,
        };
        if range.end.is_some_and(|end| end < range.start) {
            return Err(RangeError::Backwards);
        }
        Ok(range)
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}:{end}", self.start),
            None => write!(f, "{}:", self.start),
        }
    }
}

impl ByteRange {
    /// The offsets `start..end` this range selects of a plaintext of `total` bytes, with
    /// `start <= end <= total`.
    pub fn resolve(self, total: u64) -> Result<(u64, u64), RangeError> {
        if self.start >= total && total > 0 {
            return Err(RangeError::PastEnd { total });
        }
        let end = self.end.unwrap_or(total).min(total);
        Ok((self.start.min(end), end))
    }
}

#[cfg(test)]
mod tests {
    use super::{ByteRange, RangeError};

    fn parse(text: &str) -> Result<ByteRange, RangeError> {
        text.parse()
    }

    #[test]
    fn either_side_may_be_empty() {
        assert_eq!(
            parse("10:20"),
            Ok(ByteRange {
                start: 10,
                end: Some(20)
            })
        );
        assert_eq!(
            parse(":100"),
            Ok(ByteRange {
                start: 0,
                end: Some(100)
            })
        );
        assert_eq!(
            parse("100:"),
            Ok(ByteRange {
                start: 100,
                end: None
            })
        );
        assert_eq!(
            parse(" 5 : 6 "),
            Ok(ByteRange {
                start: 5,
                end: Some(6)
            })
        );
        assert_eq!(
            parse(":"),
            Ok(ByteRange {
                start: 0,
                end: None
            })
        );
    }

    #[test]
    fn bad_ranges_are_refused_by_kind() {
        for text in [
            "",
            "10",
            "a:b",
            "+1:2",
            "-1:",
            "1:2:3",
            "18446744073709551616:",
        ] {
            assert_eq!(parse(text), Err(RangeError::Syntax), "{text:?}");
        }
        assert_eq!(parse("20:10"), Err(RangeError::Backwards));
    }

    #[test]
    fn resolving_cuts_the_end_and_refuses_a_start_past_it() {
        let range = ByteRange {
            start: 10,
            end: Some(1000),
        };
        assert_eq!(range.resolve(100), Ok((10, 100)));
        assert_eq!(range.resolve(10), Err(RangeError::PastEnd { total: 10 }));
        assert_eq!(range.resolve(0), Ok((0, 0)));
        assert_eq!("7:".parse::<ByteRange>().unwrap().to_string(), "7:");
    }
}
