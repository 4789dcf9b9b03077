//! Streaming crypt15 encryption: header, then the payload (zlib-compressed with C zlib so that
//! WhatsApp's own files are reproduced byte for byte), AES-256-GCM, tag, MD5.

use super::header::BackupFormat;
use super::{Crypt15Error, DEFAULT_BLOCK_SIZE};
use crate::key::RootKey;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use openssl::hash::{Hasher, MessageDigest};
use openssl::symm::{Cipher, Crypter, Mode};
use serde::Serialize;
use std::io::{Read, Write};

/// How the plaintext becomes the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "encoding")]
pub enum PayloadEncoding {
    /// zlib at this level (0-9); WhatsApp writes level 1.
    Zlib {
        /// Compression level.
        level: u32,
    },
    /// The plaintext as is (e.g. a ZIP for an older-style multi-file backup).
    Stored,
}

/// Options for [`encrypt`].
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// Payload encoding.
    pub payload: PayloadEncoding,
    /// Append the MD5 trailer (every current backup has it; older multi-file backups do not).
    pub md5: bool,
    /// Size of the blocks read from the input.
    pub block_size: usize,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            payload: PayloadEncoding::Zlib { level: 1 },
            md5: true,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// The result of [`encrypt`].
#[derive(Debug, Clone, Serialize)]
pub struct EncryptSummary {
    /// Plaintext bytes read.
    pub input_bytes: u64,
    /// Bytes written: header, ciphertext, tag, MD5.
    pub output_bytes: u64,
    /// Ciphertext bytes (the payload length).
    pub ciphertext_bytes: u64,
}

fn emit_to(
    out: &mut impl Write,
    md5: &mut Hasher,
    written: &mut u64,
    bytes: &[u8],
) -> std::io::Result<()> {
    md5.update(bytes).map_err(std::io::Error::other)?;
    out.write_all(bytes)?;
    *written += bytes.len() as u64;
    Ok(())
}

/// Encrypts ciphertext as it is written, hashing what it emits.
struct GcmWriter<W: Write> {
    out: W,
    gcm: Crypter,
    md5: Hasher,
    buf: Vec<u8>,
    written: u64,
    ciphertext: u64,
}

impl<W: Write> GcmWriter<W> {
    /// Writes bytes that are part of the file, adding them to the MD5.
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        emit_to(&mut self.out, &mut self.md5, &mut self.written, bytes)
    }

    fn finish(mut self, with_md5: bool) -> Result<(W, u64, u64), Crypt15Error> {
        let mut last = [0u8; 32];
        let count = self.gcm.finalize(&mut last)?;
        let mut tag = [0u8; 16];
        self.gcm.get_tag(&mut tag)?;
        self.emit(&last[..count])
            .map_err(Crypt15Error::io("writing the output"))?;
        self.emit(&tag)
            .map_err(Crypt15Error::io("writing the output"))?;
        if with_md5 {
            let digest = self.md5.finish()?;
            self.out
                .write_all(&digest)
                .map_err(Crypt15Error::io("writing the output"))?;
            self.written += digest.len() as u64;
        }
        self.out
            .flush()
            .map_err(Crypt15Error::io("writing the output"))?;
        Ok((self.out, self.written, self.ciphertext))
    }
}

impl<W: Write> Write for GcmWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let take = data.len().min(DEFAULT_BLOCK_SIZE);
        self.buf.resize(take + 32, 0);
        let count = self
            .gcm
            .update(&data[..take], &mut self.buf)
            .map_err(std::io::Error::other)?;
        emit_to(
            &mut self.out,
            &mut self.md5,
            &mut self.written,
            &self.buf[..count],
        )?;
        self.ciphertext += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Encrypts `input` as a crypt15 backup with the given header bytes (length prefix included,
/// as produced by [`super::HeaderSpec::encode`] or taken from an existing file) and IV, which
/// must be the IV inside `header`.
///
/// Never reuse an IV with the same key for different plaintext: GCM then leaks the XOR of the
/// plaintexts and lets an attacker forge files.
pub fn encrypt<R: Read, W: Write>(
    root: &RootKey,
    header: &[u8],
    mut input: R,
    output: W,
    options: &EncryptOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<EncryptSummary, Crypt15Error> {
    if !options.md5 && options.payload != PayloadEncoding::Stored {
        return Err(Crypt15Error::Unsupported(
            "only a stored payload may omit the MD5 trailer (readers treat a zlib payload without it as truncated)".into(),
        ));
    }
    let parsed = super::read_header(&mut &header[..])?;
    if parsed.format != BackupFormat::Crypt15 || parsed.len() != header.len() {
        return Err(Crypt15Error::Unsupported(
            "encryption needs a crypt15 header".into(),
        ));
    }
    let file_key = root.crypt15_file_key();
    let gcm = Crypter::new(
        Cipher::aes_256_gcm(),
        Mode::Encrypt,
        file_key.as_slice(),
        Some(&parsed.iv),
    )?;
    let mut writer = GcmWriter {
        out: output,
        gcm,
        md5: Hasher::new(MessageDigest::md5())?,
        buf: Vec::new(),
        written: 0,
        ciphertext: 0,
    };
    writer
        .emit(header)
        .map_err(Crypt15Error::io("writing the output"))?;

    let mut block = vec![0u8; options.block_size.max(1)];
    let mut input_bytes = 0u64;
    let mut pump = |sink: &mut dyn Write| -> Result<(), Crypt15Error> {
        loop {
            let n = match input.read(&mut block) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Crypt15Error::Io {
                        context: "reading the input",
                        source: e,
                    })
                }
            };
            sink.write_all(&block[..n])
                .map_err(Crypt15Error::io("writing the output"))?;
            input_bytes += n as u64;
            progress(input_bytes);
        }
    };
    let writer = match options.payload {
        PayloadEncoding::Zlib { level } => {
            let mut encoder = ZlibEncoder::new(writer, Compression::new(level.min(9)));
            pump(&mut encoder)?;
            encoder
                .finish()
                .map_err(Crypt15Error::io("writing the output"))?
        }
        PayloadEncoding::Stored => {
            let mut writer = writer;
            pump(&mut writer)?;
            writer
        }
    };
    let (_, output_bytes, ciphertext_bytes) = writer.finish(options.md5)?;
    Ok(EncryptSummary {
        input_bytes,
        output_bytes,
        ciphertext_bytes,
    })
}
