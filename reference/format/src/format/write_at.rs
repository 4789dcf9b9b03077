//! Positional outputs: what the parallel paths write each batch or frame into, at its own
//! offset, so that no thread waits for another.

/// Positional writes, as files offer them; the parallel decryptor writes each batch at its
/// own offset, so no thread waits for another.
pub trait WriteAt {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    /// Cuts or extends the output to `len` bytes.
    fn set_len(&self, len: u64) -> std::io::Result<()>;
}

impl WriteAt for std::fs::File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

/// An output that keeps nothing: authenticate a file without writing plaintext.
pub struct Discard;

impl WriteAt for Discard {
    fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Ok(())
    }
}
