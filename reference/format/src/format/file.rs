//! Coffer files as streaming `Write` / `Read` adapters: header, C2SP body, footer, and
//! optional zstd compression of the plaintext before encryption.

use super::batching::Parallelism;
use super::cobblestone::{
    commitment_matches, derive, ChunkCipher, COMMITMENT_LEN, PREFIX_LEN, SALT_LEN,
};
use super::frame_reader::{FrameReader, ZSTD_FRAME_MAGIC, ZSTD_WINDOW_LOG_MAX};
use super::frame_writer::{FrameWriter, DEFAULT_FRAME_LEN};
use super::header::{
    encode_footer, header_check, key_id, key_id_matches, parse_context, parse_fixed,
    validate_fixed, Compression, Header, CHECK_LEN, FIXED_LEN, FOOTER_LEN, INFO_FILE_KEY,
    KEY_ID_LEN, MAGIC,
};
use super::parallel_seal::ParallelChunkedWriter;
use super::stream::{ChunkedReader, ChunkedWriter, Ending};
use super::wiped::WipedBuf;
use super::FormatError;
use crate::key::RootKey;
use crate::read_full::read_full;
use std::io::{self, BufRead, Read, Write};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of input per zstd job when compressing on several threads.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// How to write a file.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// zstd level (1..=19) when the header asks for compression.
    pub zstd_level: i32,
    /// Fixed salt, for test vectors only; `None` draws 24 bytes from the OS.
    pub salt: Option<[u8; SALT_LEN]>,
    /// Threads that seal chunks (uncompressed) or compress (zstd); 0 = one per core. The
    /// file's bytes are the same whatever the number.
    pub threads: usize,
    /// Plaintext bytes per frame of a seekable zstd file (a multiple of 16 KiB up to
    /// 2^24; default 2 MiB).
    pub zstd_frame_len: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            zstd_level: 3,
            salt: None,
            threads: 0,
            zstd_frame_len: DEFAULT_FRAME_LEN,
        }
    }
}

/// Sizes of a finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// Plaintext bytes (before compression).
    pub plaintext_len: u64,
    /// Bytes of the whole Coffer file.
    pub file_len: u64,
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The C2SP layer: on this thread, or on worker threads for uncompressed files.
enum SealBody<W: Write> {
    One(ChunkedWriter<W>),
    Many(ParallelChunkedWriter<W>),
}

impl<W: Write> SealBody<W> {
    fn finish(self) -> Result<(W, u64), FormatError> {
        match self {
            SealBody::One(w) => w.finish(),
            SealBody::Many(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for SealBody<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SealBody::One(w) => w.write(buf),
            SealBody::Many(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            SealBody::One(w) => w.flush(),
            SealBody::Many(w) => w.flush(),
        }
    }
}

enum Sink<W: Write> {
    Plain(SealBody<Counting<W>>),
    Zstd(zstd::stream::write::Encoder<'static, SealBody<Counting<W>>>),
    Frames(FrameWriter<SealBody<Counting<W>>>),
}

/// What every writer needs before the body: the header's bytes and the body's key.
pub(crate) struct Preamble {
    /// The header without its check.
    pub context: Vec<u8>,
    pub check: [u8; CHECK_LEN],
    pub salt: [u8; SALT_LEN],
    pub file_key: Zeroizing<[u8; 32]>,
    pub compression: Compression,
}

/// Draws the salt (unless fixed), computes the key id, and checks the header and options
/// as a reader would: a writer never writes a file its reader refuses.
pub(crate) fn preamble(
    root: &RootKey,
    mut header: Header,
    options: &WriteOptions,
) -> Result<Preamble, FormatError> {
    let salt = match options.salt {
        Some(s) => s,
        None => {
            let mut s = [0u8; SALT_LEN];
            getrandom::fill(&mut s).map_err(|e| FormatError::Crypto(format!("OS random: {e}")))?;
            s
        }
    };
    let level = options.zstd_level;
    let zstd = matches!(
        header.compression,
        Compression::Zstd | Compression::ZstdSeekable
    );
    if zstd && !(1..=19).contains(&level) {
        return Err(FormatError::Unsupported(format!(
            "zstd level {level} (use 1..=19)"
        )));
    }
    header.key_id = key_id(root, &salt);
    let context = header.encode_context()?;
    // Never write a header this reader would refuse (wrong types, unknown critical tags).
    parse_context(&context, header.compression)?;
    let file_key = root.derive(INFO_FILE_KEY);
    let keys = derive(&file_key, &salt, &context);
    let check = header_check(&context, &salt, &keys.commitment);
    Ok(Preamble {
        context,
        check,
        salt,
        file_key,
        compression: header.compression,
    })
}

/// Encrypts what is written to it into a Coffer file. [`Writer::finish`] must be called;
/// a file without its final chunk and footer reads as truncated.
pub struct Writer<W: Write> {
    sink: Sink<W>,
    plaintext_len: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header and prepares the body. `header.key_id` is computed here.
    pub fn new(
        inner: W,
        root: &RootKey,
        header: Header,
        options: &WriteOptions,
    ) -> Result<Self, FormatError> {
        let Preamble {
            context,
            check,
            salt,
            file_key,
            compression,
        } = preamble(root, header, options)?;
        let level = options.zstd_level;
        let mut out = Counting { inner, count: 0 };
        out.write_all(&context).map_err(FormatError::Io)?;
        out.write_all(&check).map_err(FormatError::Io)?;
        let workers = Parallelism::threads(options.threads).workers();
        let sink = match compression {
            Compression::None if workers > 1 => Sink::Plain(SealBody::Many(
                ParallelChunkedWriter::new(out, &file_key, &salt, &context, workers)?,
            )),
            Compression::None => Sink::Plain(SealBody::One(ChunkedWriter::new(
                out, &file_key, &salt, &context,
            )?)),
            Compression::Zstd => {
                // The compressed stream is a fifth of the input: sealing it is cheap, so the
                // threads compress. zstd's multi-threaded mode writes the same frame for any
                // number of workers from one up (never zero, which would differ).
                let body = SealBody::One(ChunkedWriter::new(out, &file_key, &salt, &context)?);
                let mut enc =
                    zstd::stream::write::Encoder::new(body, level).map_err(FormatError::Io)?;
                enc.include_checksum(false).map_err(FormatError::Io)?;
                enc.multithread(workers as u32).map_err(FormatError::Io)?;
                // Jobs of 2 MiB (zstd's default is 4 windows, 8 MiB at level 3): memory stays
                // under peak-memory.sh's bound with two workers, and the size is fixed, so
                // the frame still does not depend on the number of workers.
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                    .map_err(FormatError::Io)?;
                Sink::Zstd(enc)
            }
            Compression::ZstdSeekable => {
                // Frames are compressed on the workers; sealing a fifth of the volume stays
                // on this thread with the reading.
                let body = SealBody::One(ChunkedWriter::new(out, &file_key, &salt, &context)?);
                Sink::Frames(FrameWriter::new(
                    body,
                    level,
                    options.zstd_frame_len,
                    workers,
                )?)
            }
        };
        Ok(Writer {
            sink,
            plaintext_len: 0,
        })
    }

    /// Ends the compressed stream, seals the final chunk, writes the footer.
    pub fn finish(self) -> Result<(W, FileSummary), FormatError> {
        let body = match self.sink {
            Sink::Plain(body) => body,
            Sink::Zstd(enc) => enc.finish().map_err(FormatError::from_io)?,
            Sink::Frames(frames) => frames.finish()?,
        };
        let (mut out, _) = body.finish()?;
        let file_len = out.count + FOOTER_LEN as u64;
        out.write_all(&encode_footer(file_len))
            .map_err(FormatError::Io)?;
        out.flush().map_err(FormatError::Io)?;
        Ok((
            out.inner,
            FileSummary {
                plaintext_len: self.plaintext_len,
                file_len,
            },
        ))
    }
}

impl<W: Write> Writer<W> {
    /// Encrypts everything `input` gives until its end, reading in large blocks (straight
    /// into the sealing batches when they run on worker threads); returns the bytes read.
    /// Faster than `io::copy`, whose 8 KiB reads cost a system call each.
    pub fn copy_from<R: Read>(&mut self, input: &mut R) -> io::Result<u64> {
        let mut total = 0u64;
        if let Sink::Plain(SealBody::Many(w)) = &mut self.sink {
            loop {
                let n = w.fill_from(input)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
                self.plaintext_len += n as u64;
            }
        }
        let mut buf = WipedBuf::zeroed(COPY_BUFFER);
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write_all(&buf[..n])?;
            total += n as u64;
        }
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.sink {
            Sink::Plain(w) => w.write(buf)?,
            Sink::Zstd(w) => w.write(buf)?,
            Sink::Frames(w) => w.write(buf)?,
        };
        self.plaintext_len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
            Sink::Frames(w) => w.flush(),
        }
    }
}

/// Encrypts all of `input` into `output` as one Coffer file.
pub fn encrypt<R: Read, W: Write>(
    root: &RootKey,
    header: Header,
    input: &mut R,
    output: W,
    options: &WriteOptions,
) -> Result<(W, FileSummary), FormatError> {
    let mut writer = Writer::new(output, root, header, options)?;
    writer.copy_from(input).map_err(FormatError::from_io)?;
    writer.finish()
}

/// A header that has been read and checked against the key, ready for the body.
pub(crate) struct Opened {
    pub header: Header,
    /// Bytes before the first chunk: header and C2SP prefix.
    pub body_offset: u64,
    pub cipher: ChunkCipher,
}

/// Reads and checks everything before the first chunk (`spec/format.md` §7 steps 1-7).
pub(crate) fn read_preamble(input: &mut impl Read, root: &RootKey) -> Result<Opened, FormatError> {
    let mut fixed = [0u8; FIXED_LEN];
    let n = read_full(input, &mut fixed).map_err(FormatError::Io)?;
    if n < FIXED_LEN {
        let seen = n.min(MAGIC.len());
        return Err(if n > 0 && fixed[..seen] == MAGIC[..seen] {
            FormatError::Truncated(format!(
                "the file ends inside its {FIXED_LEN}-byte fixed header"
            ))
        } else if n == 0 {
            FormatError::Truncated("the input is empty".into())
        } else {
            FormatError::NotCoffer
        });
    }
    let header_len = parse_fixed(&fixed)?;
    let mut rest = vec![0u8; header_len - FIXED_LEN + PREFIX_LEN];
    let n = read_full(input, &mut rest).map_err(FormatError::Io)?;
    if n < rest.len() {
        return Err(FormatError::Truncated(format!(
            "the file ends inside its {header_len}-byte header or the 56-byte salt and commitment"
        )));
    }
    let mut context = Vec::with_capacity(header_len - CHECK_LEN);
    context.extend_from_slice(&fixed);
    context.extend_from_slice(&rest[..header_len - FIXED_LEN - CHECK_LEN]);
    let stored_check = &rest[header_len - FIXED_LEN - CHECK_LEN..header_len - FIXED_LEN];
    let prefix = &rest[header_len - FIXED_LEN..];
    let (salt, commitment) = prefix.split_at(SALT_LEN);
    if !bool::from(header_check(&context, salt, commitment).ct_eq(stored_check)) {
        return Err(FormatError::HeaderDamaged);
    }
    let compression = validate_fixed(&fixed)?;
    let header = parse_context(&context, compression)?;
    let mut salt_arr = [0u8; SALT_LEN];
    salt_arr.copy_from_slice(salt);
    let mut stored_id = [0u8; KEY_ID_LEN];
    stored_id.copy_from_slice(&header.key_id);
    if !key_id_matches(root, &salt_arr, &stored_id) {
        return Err(FormatError::WrongKey);
    }
    let file_key = root.derive(INFO_FILE_KEY);
    let keys = derive(&file_key, &salt_arr, &context);
    debug_assert_eq!(commitment.len(), COMMITMENT_LEN);
    if !commitment_matches(&keys, commitment) {
        return Err(FormatError::Tampered);
    }
    Ok(Opened {
        header,
        body_offset: (header_len + PREFIX_LEN) as u64,
        cipher: ChunkCipher::new(&keys)?,
    })
}

type Body<R> = ChunkedReader<R>;

// The plain reader is the hot path and lives as long as the file: 225 bytes inline cost
// nothing, an extra indirection on every read would.
#[allow(clippy::large_enum_variant)]
enum Source<R: BufRead> {
    Plain(Body<R>),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<Body<R>>>>),
    Frames(Box<FrameReader<io::BufReader<Body<R>>>>),
}

impl<R: BufRead> Source<R> {
    fn body(&self) -> &Body<R> {
        match self {
            Source::Plain(b) => b,
            Source::Zstd(d) => d.get_ref().get_ref(),
            Source::Frames(f) => f.get_ref().get_ref(),
        }
    }
    fn body_mut(&mut self) -> &mut Body<R> {
        match self {
            Source::Plain(b) => b,
            Source::Zstd(d) => d.get_mut().get_mut(),
            Source::Frames(f) => f.get_mut().get_mut(),
        }
    }
}

/// Decrypts a Coffer file as a stream. Plaintext comes out chunk by chunk, each chunk
/// authenticated; the end of the stream is reported only after the final chunk and the
/// footer check out. Errors carry a [`FormatError`] (see [`FormatError::from_io`]).
pub struct Reader<R: BufRead> {
    header: Header,
    source: Source<R>,
    body_offset: u64,
    plaintext_len: u64,
    failed: Option<(crate::ErrorClass, String)>,
    done: bool,
    /// Whether the zstd payload's first bytes were checked to be a frame's magic.
    frame_checked: bool,
}

/// Opens a Coffer file for streaming decryption, checking everything before the body.
/// Give a slice or a `BufReader` (of at least 64 KiB for speed): whole chunks are decrypted
/// straight out of its buffer.
pub fn open<R: BufRead>(mut input: R, root: &RootKey) -> Result<Reader<R>, FormatError> {
    let opened = read_preamble(&mut input, root)?;
    resume(input, opened)
}

/// A streaming reader for the body of a file whose preamble has been read.
pub(crate) fn resume<R: BufRead>(input: R, opened: Opened) -> Result<Reader<R>, FormatError> {
    let ending = Ending::Footer {
        body_offset: opened.body_offset,
    };
    let body = ChunkedReader::after_prefix(input, opened.cipher, ending);
    let source = match opened.header.compression {
        Compression::None => Source::Plain(body),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(
                2 * super::cobblestone::CHUNK_SIZE,
                body,
            ))
            .map_err(FormatError::Io)?;
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(FormatError::Io)?;
            Source::Zstd(Box::new(dec.single_frame()))
        }
        Compression::ZstdSeekable => Source::Frames(Box::new(FrameReader::new(
            io::BufReader::with_capacity(2 * super::cobblestone::CHUNK_SIZE, body),
        )?)),
    };
    Ok(Reader {
        header: opened.header,
        source,
        body_offset: opened.body_offset,
        plaintext_len: 0,
        failed: None,
        done: false,
        frame_checked: false,
    })
}

impl<R: BufRead> Reader<R> {
    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Plaintext bytes released so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Bytes of the file read so far (the whole file once the reader is done).
    pub fn file_len(&self) -> u64 {
        self.body_offset + self.source.body().consumed()
    }

    /// Turns a failure into its documented class (`spec/format.md` §7): the body reader has
    /// already classified its own failures; anything else from zstd is a broken payload.
    fn classify(&mut self, err: io::Error) -> FormatError {
        let err = FormatError::from_io(err);
        let body = self.source.body();
        match (err, body.fault()) {
            (_, Some(fault)) => FormatError::from(fault.clone()),
            (FormatError::Io(e), None)
                if self.header.compression != Compression::None && !body.saw_io_error() =>
            {
                FormatError::Decompress(e.to_string())
            }
            (other, None) => other,
        }
    }

    /// At the end of the plaintext the body must be complete (its reader checked the
    /// footer): a zstd frame that ends before the body does is a broken payload.
    fn finish_checks(&mut self) -> Result<(), FormatError> {
        if let Source::Zstd(d) = &self.source {
            // Bytes the decoder read ahead but did not use: not part of the one frame.
            if !d.get_ref().buffer().is_empty() {
                return Err(FormatError::Decompress(
                    "authenticated bytes follow the compressed frame".into(),
                ));
            }
        }
        let body = self.source.body_mut();
        if !body.is_done() {
            let mut probe = [0u8; 1];
            let n = body.read(&mut probe).map_err(FormatError::from_io)?;
            if n > 0 || !body.is_done() {
                return Err(FormatError::Decompress(
                    "authenticated bytes follow the compressed frame".into(),
                ));
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some((class, msg)) = &self.failed {
            return Err(FormatError::Failed {
                class: *class,
                message: msg.clone(),
            }
            .into_io());
        }
        if self.done {
            return Ok(0);
        }
        let result = match &mut self.source {
            Source::Plain(b) => b.read(out),
            // The payload must be one ordinary frame (spec/format.md §8): the decoder alone
            // would step over a skippable frame, so look at the magic before it starts.
            Source::Zstd(d) if !self.frame_checked => match d.get_mut().fill_buf() {
                Ok(head) if head.len() >= 4 && head[..4] != ZSTD_FRAME_MAGIC => {
                    Err(FormatError::Decompress(
                        "the payload does not start with a Zstandard frame".into(),
                    )
                    .into_io())
                }
                Ok(_) => {
                    self.frame_checked = true;
                    d.read(out)
                }
                Err(e) => Err(e),
            },
            Source::Zstd(d) => d.read(out),
            Source::Frames(f) => f.read(out),
        };
        let err = match result {
            Ok(0) if !out.is_empty() => match self.finish_checks() {
                Ok(()) => {
                    self.done = true;
                    return Ok(0);
                }
                Err(e) => e,
            },
            Ok(n) => {
                self.plaintext_len += n as u64;
                return Ok(n);
            }
            Err(e) => self.classify(e),
        };
        use crate::Classify;
        self.failed = Some((err.class(), err.to_string()));
        Err(err.into_io())
    }
}

/// Copies all plaintext of `reader` into `output` through a buffer large enough for the
/// reader to decrypt straight into it.
pub(crate) fn drain_into<R: BufRead, W: Write>(
    mut reader: Reader<R>,
    output: &mut W,
) -> Result<(Header, FileSummary), FormatError> {
    let mut buf = super::wiped::WipedBuf::zeroed(COPY_BUFFER);
    loop {
        let n = reader.read(&mut buf).map_err(FormatError::from_io)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(FormatError::Io)?;
    }
    Ok((
        reader.header.clone(),
        FileSummary {
            plaintext_len: reader.plaintext_len,
            file_len: reader.file_len(),
        },
    ))
}

/// A good `BufReader` capacity for a Coffer input: 16 chunks.
pub const READ_BUFFER: usize = 16 * super::cobblestone::SEALED_CHUNK_SIZE;

/// Size of the buffer plaintext is decrypted into, or read into for encryption on one
/// thread: 4 chunks, below the allocator's mmap threshold, so small files do not pay for
/// fresh pages.
const COPY_BUFFER: usize = 4 * super::cobblestone::CHUNK_SIZE;

/// Decrypts a whole Coffer file from `input` to `output`, streaming. The output holds only
/// authenticated chunks, but on error it may hold a valid prefix: discard it.
pub fn decrypt<R: BufRead, W: Write>(
    input: R,
    root: &RootKey,
    output: &mut W,
) -> Result<(Header, FileSummary), FormatError> {
    drain_into(open(input, root)?, output)
}
