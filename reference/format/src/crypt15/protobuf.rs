//! The protobuf wire format, as much as backup headers use: varints, length-delimited
//! fields, and (to skip them) fixed32/fixed64. Groups are rejected.
//!
//! Hand-written rather than `prost`: the header needs every field kept in order, unknown
//! fields reported rather than dropped, and strict bounds on untrusted bytes; four wire
//! types in ~100 lines are simpler to fuzz and audit than generated code.

/// A wire-format violation, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid protobuf at byte {offset}: {what}")]
pub struct WireError {
    /// Offset from the start of the message being decoded.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// A field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field number (1 ..= 2^29 - 1).
    pub number: u32,
    /// Its value.
    pub value: WireValue<'a>,
}

/// Reads a varint at `*pos`, advancing it. At most 10 bytes; the 10th may only carry 1 bit.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Err(WireError {
                offset: start,
                what: "varint runs past the end",
            });
        };
        *pos += 1;
        if i == 9 && byte > 1 {
            return Err(WireError {
                offset: start,
                what: "varint longer than 64 bits",
            });
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError {
        offset: start,
        what: "varint longer than 10 bytes",
    })
}

/// Iterates over the fields of a message, failing on the first wire-format error.
pub fn fields(buf: &[u8]) -> FieldIter<'_> {
    FieldIter {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`fields`].
pub struct FieldIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> FieldIter<'a> {
    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError {
                offset: start,
                what: "field number out of range",
            });
        }
        let number = number as u32;
        let take = |pos: &mut usize, n: usize| -> Result<&'a [u8], WireError> {
            let end = pos
                .checked_add(n)
                .filter(|end| *end <= self.buf.len())
                .ok_or(WireError {
                    offset: start,
                    what: "field runs past the end",
                })?;
            let slice = &self.buf[*pos..end];
            *pos = end;
            Ok(slice)
        };
        let value = match key & 7 {
            0 => WireValue::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => {
                let bytes = take(&mut self.pos, 8)?;
                let mut fixed = [0u8; 8];
                fixed.copy_from_slice(bytes);
                WireValue::Fixed64(u64::from_le_bytes(fixed))
            }
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| WireError {
                    offset: start,
                    what: "length out of range",
                })?;
                WireValue::Bytes(take(&mut self.pos, len)?)
            }
            5 => {
                let bytes = take(&mut self.pos, 4)?;
                let mut fixed = [0u8; 4];
                fixed.copy_from_slice(bytes);
                WireValue::Fixed32(u32::from_le_bytes(fixed))
            }
            _ => {
                return Err(WireError {
                    offset: start,
                    what: "unsupported wire type (group or reserved)",
                })
            }
        };
        Ok(Field { number, value })
    }
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let result = self.next_field();
        self.failed = result.is_err();
        Some(result)
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_varint(out, u64::from(number) << 3);
    put_varint(out, value);
}

/// Appends a length-delimited field.
pub fn put_bytes_field(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_wire_data() {
        // Each refusal names what is wrong (the caller turns it into a class).
        let refusal = |bytes: &[u8]| fields(bytes).find_map(Result::err).map(|e| e.what);
        assert_eq!(
            refusal(&[0x08]),
            Some("varint runs past the end"),
            "varint missing"
        );
        assert_eq!(
            refusal(&[0x0a, 0x05, 1, 2]),
            Some("field runs past the end"),
            "length past end"
        );
        assert_eq!(
            refusal(&[0x0b]),
            Some("unsupported wire type (group or reserved)"),
            "group"
        );
        assert_eq!(
            refusal(&[0x00, 0x00]),
            Some("field number out of range"),
            "field 0"
        );
        let too_long = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_eq!(
            refusal(&too_long),
            Some("varint longer than 64 bits"),
            "varint overflow"
        );
        assert_eq!(
            refusal(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some("field runs past the end"),
            "a length of 4 GiB"
        );
    }

    proptest! {
        #[test]
        fn varint_round_trip(value: u64) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos).unwrap(), value);
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn fields_round_trip(entries in proptest::collection::vec((1u32..1000, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..20)) {
            let mut out = Vec::new();
            for (number, varint, bytes, is_bytes) in &entries {
                if *is_bytes { put_bytes_field(&mut out, *number, bytes) } else { put_varint_field(&mut out, *number, *varint) }
            }
            let parsed: Vec<Field> = fields(&out).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parsed.len(), entries.len());
            for (field, (number, varint, bytes, is_bytes)) in parsed.iter().zip(&entries) {
                prop_assert_eq!(field.number, *number);
                if *is_bytes { prop_assert_eq!(field.value, WireValue::Bytes(bytes)) } else { prop_assert_eq!(field.value, WireValue::Varint(*varint)) }
            }
        }

        /// Any bytes: the iterator ends, an error is its last item and points into the
        /// input (or at its end), and every field read lies inside the input (a bytes field's value is a
        /// slice of it, fields follow each other without overlap).
        #[test]
        fn any_bytes_end_in_fields_or_one_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let parsed: Vec<Result<Field, WireError>> = fields(&bytes).take(bytes.len() + 2).collect();
            prop_assert!(parsed.len() <= bytes.len(), "every field takes at least one byte");
            if let Some(at) = parsed.iter().position(Result::is_err) {
                prop_assert_eq!(at, parsed.len() - 1, "nothing follows an error");
                let error = parsed[at].as_ref().unwrap_err();
                prop_assert!(error.offset <= bytes.len(), "{:?}", error);
            }
            let base = bytes.as_ptr() as usize;
            let mut end_of_last = 0usize;
            for field in parsed.iter().flatten() {
                prop_assert!(field.number >= 1);
                if let WireValue::Bytes(value) = field.value {
                    let start = value.as_ptr() as usize - base;
                    prop_assert!(start >= end_of_last && start + value.len() <= bytes.len());
                    end_of_last = start + value.len();
                }
            }
        }
    }
}
