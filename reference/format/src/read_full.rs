//! Reading untrusted input whole: the readers of every format fill fixed-size buffers
//! (headers, chunks) from streams that may return short reads.

use std::io::{self, Read};

/// Reads `buf.len()` bytes unless the input ends first; returns how many were read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
