//! The Coffer format: round trips, random access, parallel = sequential, and every way a
//! file can be wrong, each with its documented class (spec/format.md §7).

use coffer::format::{
    self, Compression, FormatError, Header, MetaValue, RandomAccess, ReadAt, WriteOptions,
};
use coffer::format::{
    decrypt_parallel, decrypt_parallel_at, encrypt_parallel_at, Parallelism, WriteAt,
};
use coffer::internal::cobblestone::{derive, CHUNK_SIZE, PREFIX_LEN, SALT_LEN, SEALED_CHUNK_SIZE};
use coffer::internal::format_header::{
    self as header, encode_footer, header_check, key_id, tag, INFO_FILE_KEY,
};
use coffer::internal::stream::{ChunkedWriter, ParallelChunkedWriter};
use coffer::key::RootKey;
use coffer::{Classify, ErrorClass};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::sync::Mutex;

fn root() -> RootKey {
    RootKey::from_bytes([7u8; 32])
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1])
        .collect()
}

fn encrypt(plain: &[u8], compression: Compression) -> Vec<u8> {
    let header = Header::new(
        compression,
        vec![(tag::CREATED, MetaValue::U64(1_700_000_000))],
    );
    let options = WriteOptions {
        salt: Some([9u8; SALT_LEN]),
        ..WriteOptions::default()
    };
    let (out, summary) =
        format::encrypt(&root(), header, &mut &plain[..], Vec::new(), &options).unwrap();
    assert_eq!(summary.plaintext_len, plain.len() as u64);
    assert_eq!(summary.file_len, out.len() as u64);
    out
}

/// Sequential decryption: the plaintext released before the result.
fn sequential(file: &[u8], key: &RootKey) -> (Vec<u8>, Result<(), FormatError>) {
    let mut out = Vec::new();
    let result = format::decrypt(file, key, &mut out).map(|_| ());
    (out, result)
}

/// A positional input that is not a slice: the workers read their batches themselves, as
/// from a file.
struct Positional<'a>(&'a [u8]);

impl ReadAt for Positional<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// A positional output in memory.
struct MemOut(Mutex<Vec<u8>>);

impl WriteAt for MemOut {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut v = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
}

/// Parallel decryption every way: ordered output and positional output, from a slice (in
/// place) and from a positional reader, with workers even for tiny files. All must agree.
fn parallel(file: &[u8], key: &RootKey, threads: usize) -> (Vec<u8>, Result<(), FormatError>) {
    let how = Parallelism {
        threads,
        min_chunks: 0,
    };
    let class = |r: &Result<(), FormatError>| r.as_ref().map_err(|e| e.class()).err();
    let mut out = Vec::new();
    let result = decrypt_parallel(file, key, &mut out, how, &|_| {}).map(|_| ());
    let mut out2 = Vec::new();
    let result2 = decrypt_parallel(Positional(file), key, &mut out2, how, &|_| {}).map(|_| ());
    assert_eq!(out, out2);
    assert_eq!(class(&result), class(&result2));
    let positional = MemOut(Mutex::new(Vec::new()));
    let result3 = decrypt_parallel_at(file, key, &positional, how, &|_| {}).map(|_| ());
    assert_eq!(
        out,
        *positional.0.lock().unwrap(),
        "positional output, slice input"
    );
    assert_eq!(class(&result), class(&result3));
    let positional = MemOut(Mutex::new(Vec::new()));
    let result4 = decrypt_parallel_at(Positional(file), key, &positional, how, &|_| {}).map(|_| ());
    assert_eq!(
        out,
        *positional.0.lock().unwrap(),
        "positional output, positional input"
    );
    assert_eq!(class(&result), class(&result4));
    (out, result)
}

/// The class every reader gives; they must agree, and release only a prefix of `plain`.
fn class_of(file: &[u8], plain: &[u8]) -> ErrorClass {
    let (seq_out, seq) = sequential(file, &root());
    let (par_out, par) = parallel(file, &root(), 3);
    let seq_class = seq.as_ref().map_err(|e| e.class()).expect_err("must fail");
    let par_class = par.as_ref().map_err(|e| e.class()).expect_err("must fail");
    assert_eq!(
        seq_class, par_class,
        "sequential {seq:?} vs parallel {par:?}"
    );
    assert_eq!(seq_out, par_out, "both readers release the same prefix");
    assert!(
        plain.starts_with(&seq_out),
        "released bytes must be a prefix of the plaintext"
    );
    seq_class
}

const SIZES: [usize; 9] = [
    0,
    1,
    100,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE,
    5 * CHUNK_SIZE + 7,
    70 * CHUNK_SIZE + 3,
];

#[test]
fn round_trips_at_chunk_boundaries_all_readers() {
    for compression in [Compression::None, Compression::Zstd] {
        for len in SIZES {
            let plain = plaintext(len);
            let file = encrypt(&plain, compression);
            let (out, result) = sequential(&file, &root());
            result.unwrap_or_else(|e| panic!("{len} {compression:?}: {e}"));
            assert_eq!(out, plain, "{len}");
            for threads in [1, 2, 4] {
                let (out, result) = parallel(&file, &root(), threads);
                result.unwrap();
                assert_eq!(out, plain, "{len} parallel {threads}");
            }
            if compression == Compression::None {
                let mut access = RandomAccess::open(&file[..], &root()).unwrap();
                assert_eq!(access.len(), len as u64);
                let mut all = vec![0u8; len + 10];
                assert_eq!(access.read_at(0, &mut all).unwrap(), len);
                assert_eq!(&all[..len], &plain[..]);
                assert_eq!(access.read_at(len as u64, &mut all).unwrap(), 0);
                // The file size follows C2SP exactly: header + 56 + chunks + footer.
                let chunks = len / CHUNK_SIZE + 1;
                let header_len = file.len() - PREFIX_LEN - len - chunks * 16 - header::FOOTER_LEN;
                assert!(header_len >= header::MIN_HEADER_LEN);
            }
        }
    }
}

#[test]
fn salt_is_random_when_not_fixed() {
    let header = || Header::new(Compression::None, vec![]);
    let a = format::encrypt(
        &root(),
        header(),
        &mut &b"same"[..],
        Vec::new(),
        &WriteOptions::default(),
    )
    .unwrap()
    .0;
    let b = format::encrypt(
        &root(),
        header(),
        &mut &b"same"[..],
        Vec::new(),
        &WriteOptions::default(),
    )
    .unwrap()
    .0;
    assert_ne!(a, b);
    // Key ids differ too: files made with one key are not linkable by their headers.
    assert_ne!(a[16..32], b[16..32]);
}

#[test]
fn header_metadata_round_trips_and_nothing_identifying_is_written() {
    let header = Header::new(
        Compression::Zstd,
        vec![
            (tag::GENERATOR, MetaValue::Text("coffer test".into())),
            (tag::CREATED, MetaValue::U64(5)),
            (tag::CONTENT, MetaValue::U64(1)),
            (0x30, MetaValue::Bytes(vec![1, 2, 3])),
        ],
    );
    let (file, _) = format::encrypt(
        &root(),
        header.clone(),
        &mut &b"x"[..],
        Vec::new(),
        &WriteOptions::default(),
    )
    .unwrap();
    let reader = format::open(&file[..], &root()).unwrap();
    assert_eq!(reader.header().metadata, header.metadata);
    assert_eq!(reader.header().content(), format::Content::Tar);
}

// ---- negative cases ----

/// A five-and-a-bit-chunk uncompressed file and its layout.
struct Sample {
    plain: Vec<u8>,
    file: Vec<u8>,
    header_len: usize,
}

impl Sample {
    fn new() -> Self {
        let plain = plaintext(5 * CHUNK_SIZE + 1000);
        let file = encrypt(&plain, Compression::None);
        let header_len = u32::from_be_bytes(file[12..16].try_into().unwrap()) as usize;
        Sample {
            plain,
            file,
            header_len,
        }
    }
    fn body(&self) -> usize {
        self.header_len + PREFIX_LEN
    }
    fn chunk(&self, k: usize) -> usize {
        self.body() + k * SEALED_CHUNK_SIZE
    }
    fn footer(&self) -> usize {
        self.file.len() - header::FOOTER_LEN
    }
    fn flipped(&self, at: usize) -> Vec<u8> {
        let mut f = self.file.clone();
        f[at] ^= 0x01;
        f
    }
}

#[test]
fn every_header_byte_flip_is_caught_with_its_class() {
    let s = Sample::new();
    for at in 0..s.body() {
        let class = class_of(&s.flipped(at), &s.plain);
        let expected = match at {
            0..=7 => ErrorClass::Malformed,   // magic: not a Coffer file
            8 => ErrorClass::Unsupported,     // version 0 is not 1
            12..=13 => ErrorClass::Malformed, // header length above 64 KiB
            14..=15 => ErrorClass::Corrupt,   // 80 -> 336 or 81: more bytes read, the check fails
            _ => ErrorClass::Corrupt,         // everything else fails the header check
        };
        assert_eq!(class, expected, "flip at {at}");
    }
}

#[test]
fn flips_in_chunks_tags_and_footer_are_corrupt() {
    let s = Sample::new();
    for k in 0..=5 {
        let last = if k == 5 {
            s.footer() - 1
        } else {
            s.chunk(k + 1) - 1
        };
        for at in [s.chunk(k), s.chunk(k) + 500, last - 15, last] {
            assert_eq!(
                class_of(&s.flipped(at), &s.plain),
                ErrorClass::Corrupt,
                "chunk {k} byte {at}"
            );
        }
    }
    for at in s.footer()..s.file.len() {
        assert_eq!(
            class_of(&s.flipped(at), &s.plain),
            ErrorClass::Corrupt,
            "footer byte {at}"
        );
    }
}

#[test]
fn swapped_and_duplicated_chunks_are_corrupt() {
    let s = Sample::new();
    let mut swapped = s.file.clone();
    let (a, b) = (s.chunk(1), s.chunk(2));
    let first = s.file[a..b].to_vec();
    swapped.copy_within(b..b + SEALED_CHUNK_SIZE, a);
    swapped[b..b + SEALED_CHUNK_SIZE].copy_from_slice(&first);
    assert_eq!(class_of(&swapped, &s.plain), ErrorClass::Corrupt);
    let mut dup = s.file.clone();
    dup.copy_within(a..b, b);
    assert_eq!(class_of(&dup, &s.plain), ErrorClass::Corrupt);
    // Output stops after the last good chunk.
    let (out, _) = sequential(&dup, &root());
    assert_eq!(out.len(), 2 * CHUNK_SIZE);
}

#[test]
fn truncation_anywhere_is_truncated() {
    let s = Sample::new();
    let mut cuts: Vec<usize> = vec![
        0,
        1,
        7,
        8,
        15,
        16,
        40,
        s.header_len - 1,
        s.header_len,
        s.body() - 1,
        s.body(),
    ];
    for k in 0..=5 {
        cuts.extend([
            s.chunk(k),
            s.chunk(k) + 1,
            s.chunk(k) + 15,
            s.chunk(k) + 16,
            s.chunk(k) + 8000,
        ]);
    }
    cuts.extend([s.footer() - 1, s.footer(), s.footer() + 1, s.file.len() - 1]);
    cuts.retain(|&c| c < s.file.len());
    assert!(cuts.len() > 30);
    for cut in cuts {
        let file = &s.file[..cut];
        assert_eq!(
            class_of(file, &s.plain),
            ErrorClass::Truncated,
            "cut at {cut} of {}",
            s.file.len()
        );
        if cut >= s.body() {
            assert!(
                matches!(
                    RandomAccess::open(file, &root()).map_err(|e| e.class()),
                    Err(ErrorClass::Truncated)
                ),
                "cut {cut}"
            );
        }
    }
}

#[test]
fn appended_data_is_trailing_data() {
    let s = Sample::new();
    let tails: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0xAA; 16],
        vec![1; 100],
        vec![2; 20000],
        s.file.clone(),
    ];
    for tail in tails {
        let file = [s.file.clone(), tail.clone()].concat();
        assert_eq!(
            class_of(&file, &s.plain),
            ErrorClass::TrailingData,
            "{} bytes appended",
            tail.len()
        );
    }
}

#[test]
fn wrong_key_is_wrong_key_before_any_chunk() {
    let s = Sample::new();
    let other = RootKey::from_bytes([8u8; 32]);
    let (out, result) = sequential(&s.file, &other);
    assert_eq!(result.unwrap_err().class(), ErrorClass::WrongKey);
    assert!(out.is_empty());
    assert_eq!(
        RandomAccess::open(&s.file[..], &other)
            .err()
            .map(|e| e.class()),
        Some(ErrorClass::WrongKey)
    );
}

/// Writes a file around a hand-made header context (key id at 16..32 is filled in here),
/// so that structurally odd headers still pass the check and commitment.
fn craft(mut context: Vec<u8>, body: &[u8]) -> Vec<u8> {
    let salt = [3u8; SALT_LEN];
    context[16..32].copy_from_slice(&key_id(&root(), &salt));
    let total = (context.len() + 8) as u32;
    context[12..16].copy_from_slice(&total.to_be_bytes());
    let file_key = root().derive(INFO_FILE_KEY);
    let keys = derive(&file_key, &salt, &context);
    let mut out = context.clone();
    out.extend_from_slice(&header_check(&context, &salt, &keys.commitment));
    let mut writer = ChunkedWriter::new(&mut out, &file_key, &salt, &context).unwrap();
    writer.write_all(body).unwrap();
    writer.finish().unwrap();
    let len = out.len() as u64 + 16;
    out.extend_from_slice(&encode_footer(len));
    out
}

fn context(suite: u8, compression: u8, flags: u8, meta: &[u8]) -> Vec<u8> {
    let mut c = header::MAGIC.to_vec();
    c.extend_from_slice(&[1, suite, compression, flags, 0, 0, 0, 0]);
    c.extend_from_slice(&[0u8; 16]);
    c.extend_from_slice(meta);
    c
}

fn open_class(file: &[u8]) -> Result<Vec<u8>, ErrorClass> {
    let mut out = Vec::new();
    format::decrypt(file, &root(), &mut out)
        .map(|_| out)
        .map_err(|e| e.class())
}

#[test]
fn crafted_headers_get_their_classes() {
    let ok = craft(context(1, 0, 0, &[]), b"hello");
    assert_eq!(
        open_class(&ok),
        Ok(b"hello".to_vec()),
        "the crafting itself is right"
    );
    let cases: Vec<(&str, Vec<u8>, ErrorClass)> = vec![
        (
            "suite 2",
            craft(context(2, 0, 0, &[]), b"x"),
            ErrorClass::Unsupported,
        ),
        (
            "compression 9",
            craft(context(1, 9, 0, &[]), b"x"),
            ErrorClass::Unsupported,
        ),
        (
            "flags set",
            craft(context(1, 0, 4, &[]), b"x"),
            ErrorClass::Unsupported,
        ),
        (
            "unknown critical tag",
            craft(context(1, 0, 0, &[0x90, 3, 0, 1, 0]), b"x"),
            ErrorClass::Unsupported,
        ),
        (
            "content kind 7",
            craft(
                context(1, 0, 0, &[0x81, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]),
                b"x",
            ),
            ErrorClass::Unsupported,
        ),
        (
            "tags out of order",
            craft(
                context(
                    1,
                    0,
                    0,
                    &[2, 2, 0, 1, b'a', 1, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
                ),
                b"x",
            ),
            ErrorClass::Malformed,
        ),
        (
            "repeated tag",
            craft(
                context(1, 0, 0, &[2, 2, 0, 1, b'a', 2, 2, 0, 1, b'b']),
                b"x",
            ),
            ErrorClass::Malformed,
        ),
        (
            "entry past the header",
            craft(context(1, 0, 0, &[2, 2, 0, 200, b'a']), b"x"),
            ErrorClass::Malformed,
        ),
        (
            "cut entry",
            craft(context(1, 0, 0, &[2, 2]), b"x"),
            ErrorClass::Malformed,
        ),
        (
            "text not UTF-8",
            craft(context(1, 0, 0, &[2, 2, 0, 1, 0xff]), b"x"),
            ErrorClass::Malformed,
        ),
        (
            "u64 of 3 bytes",
            craft(context(1, 0, 0, &[1, 1, 0, 3, 0, 0, 0]), b"x"),
            ErrorClass::Malformed,
        ),
        (
            "unknown type",
            craft(context(1, 0, 0, &[0x30, 9, 0, 0]), b"x"),
            ErrorClass::Malformed,
        ),
        (
            "zstd flag on plain bytes",
            craft(context(1, 1, 0, &[]), b"not zstd at all"),
            ErrorClass::Corrupt,
        ),
    ];
    for (what, file, class) in cases {
        assert_eq!(open_class(&file).err(), Some(class), "{what}");
    }
    // Unknown non-critical tags are skipped.
    let extra = craft(context(1, 0, 0, &[0x30, 3, 0, 2, 1, 2]), b"ok");
    assert_eq!(open_class(&extra), Ok(b"ok".to_vec()));
}

#[test]
fn oversized_declared_lengths_are_refused_without_allocating() {
    let s = Sample::new();
    for len in [0u32, 39, 65537, u32::MAX] {
        let mut f = s.file.clone();
        f[12..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            open_class(&f).err(),
            Some(ErrorClass::Malformed),
            "header length {len}"
        );
    }
    let refused = format::Writer::new(
        Vec::new(),
        &root(),
        Header::new(
            Compression::None,
            vec![(0x30, MetaValue::Bytes(vec![0; 70000]))],
        ),
        &WriteOptions::default(),
    )
    .map(drop)
    .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Malformed, "{refused}");
}

#[test]
fn a_failed_reader_keeps_failing() {
    let s = Sample::new();
    let bad = s.flipped(s.chunk(2) + 3);
    let mut reader = format::open(&bad[..], &root()).unwrap();
    let mut sink = Vec::new();
    let first = reader.read_to_end(&mut sink).unwrap_err();
    assert_eq!(FormatError::from_io(first).class(), ErrorClass::Corrupt);
    let mut buf = [0u8; 10];
    let again = reader.read(&mut buf).unwrap_err();
    assert_eq!(FormatError::from_io(again).class(), ErrorClass::Corrupt);
}

#[test]
fn random_access_refuses_compressed_files_and_touches_only_its_chunks() {
    let plain = plaintext(3 * CHUNK_SIZE);
    let zstd = encrypt(&plain, Compression::Zstd);
    assert_eq!(
        RandomAccess::open(&zstd[..], &root())
            .err()
            .map(|e| e.class()),
        Some(ErrorClass::Unsupported)
    );
    // Damage chunk 0: reads in chunk 2 still work, reads in chunk 0 fail.
    let s = Sample::new();
    let bad = s.flipped(s.chunk(0) + 10);
    let mut access = RandomAccess::open(&bad[..], &root()).unwrap();
    let mut buf = vec![0u8; 100];
    assert_eq!(
        access.read_at(2 * CHUNK_SIZE as u64 + 5, &mut buf).unwrap(),
        100
    );
    assert_eq!(&buf[..], &s.plain[2 * CHUNK_SIZE + 5..2 * CHUNK_SIZE + 105]);
    assert_eq!(
        access.read_at(10, &mut buf).map_err(|e| e.class()),
        Err(ErrorClass::Corrupt)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Sizes around the chunk, within a few chunks, and across parallel decryption's
    /// batches of 64 chunks (one batch and a byte, up to three batches and more).
    #[test]
    fn round_trip_any_size(len in prop_oneof![0usize..100, (CHUNK_SIZE-2)..(CHUNK_SIZE+2), 0usize..(6 * CHUNK_SIZE), (64 * CHUNK_SIZE - 1)..(3 * 64 * CHUNK_SIZE + 2)], zstd in any::<bool>(), write_size in 1usize..200_000) {
        let plain = plaintext(len);
        let compression = if zstd { Compression::Zstd } else { Compression::None };
        let mut writer = format::Writer::new(Vec::new(), &root(), Header::new(compression, vec![]), &WriteOptions::default()).unwrap();
        for piece in plain.chunks(write_size) {
            writer.write_all(piece).unwrap();
        }
        let (file, _) = writer.finish().unwrap();
        let (out, result) = sequential(&file, &root());
        prop_assert!(result.is_ok());
        prop_assert_eq!(&out, &plain);
        let (out, result) = parallel(&file, &root(), 2);
        prop_assert!(result.is_ok());
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn read_at_equals_the_slice(len in 0usize..(5 * CHUNK_SIZE), ranges in proptest::collection::vec((0usize..(6 * CHUNK_SIZE), 0usize..(3 * CHUNK_SIZE)), 1..8)) {
        let plain = plaintext(len);
        let file = encrypt(&plain, Compression::None);
        let mut access = RandomAccess::open(&file[..], &root()).unwrap();
        for (start, want) in ranges {
            let mut buf = vec![0u8; want];
            let n = access.read_at(start as u64, &mut buf).unwrap();
            let end = (start + want).min(len);
            let expected = if start >= len { &[][..] } else { &plain[start..end] };
            prop_assert_eq!(&buf[..n], expected);
        }
    }
}

#[test]
fn bytes_after_the_zstd_frame_or_a_skippable_frame_are_corrupt() {
    let frame = zstd::bulk::compress(b"hello", 3).unwrap();
    let good = craft(context(1, 1, 0, &[]), &frame);
    assert_eq!(open_class(&good), Ok(b"hello".to_vec()));
    let junk = craft(
        context(1, 1, 0, &[]),
        &[frame.clone(), b"junk".to_vec()].concat(),
    );
    assert_eq!(open_class(&junk).err(), Some(ErrorClass::Corrupt));
    let two = craft(
        context(1, 1, 0, &[]),
        &[frame.clone(), frame.clone()].concat(),
    );
    assert_eq!(open_class(&two).err(), Some(ErrorClass::Corrupt));
    // A skippable frame first: the real frame would follow it, which is not allowed.
    let skippable = [&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0][..], &frame].concat();
    let skip = craft(context(1, 1, 0, &[]), &skippable);
    assert_eq!(open_class(&skip).err(), Some(ErrorClass::Corrupt));
    let empty = craft(context(1, 1, 0, &[]), b"");
    assert_eq!(open_class(&empty).err(), Some(ErrorClass::Corrupt));
}

#[test]
fn a_short_tail_with_a_footer_for_another_length_is_corrupt() {
    let s = Sample::new();
    let mut f = s.file[..s.chunk(5) + 4].to_vec();
    f.extend_from_slice(&encode_footer(12345));
    assert_eq!(class_of(&f, &s.plain), ErrorClass::Corrupt);
    // The same tail with no footer at all is a cut file.
    let cut = &s.file[..s.chunk(5) + 20];
    assert_eq!(class_of(cut, &s.plain), ErrorClass::Truncated);
}

/// A sink that fails once, then accepts everything.
struct FlakySink {
    calls: usize,
    data: Vec<u8>,
}

impl Write for FlakySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls == 3 {
            return Err(std::io::Error::other("disk full"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_encryptor_that_failed_once_refuses_to_go_on() {
    let sink = FlakySink {
        calls: 0,
        data: Vec::new(),
    };
    let key = [1u8; 32];
    let mut writer = ChunkedWriter::new(sink, &key, &[2u8; SALT_LEN], b"").unwrap();
    let chunk = vec![7u8; CHUNK_SIZE];
    // Salt and commitment were calls 1 and 2; the first chunk's write fails, with the
    // sink's own error.
    assert_eq!(writer.write(&chunk).unwrap_err().to_string(), "disk full");
    // Sealing that chunk again would reuse its nonce: everything now fails, saying why.
    const REFUSED: &str = "an earlier write to this encryptor failed";
    assert_eq!(writer.write(&chunk).unwrap_err().to_string(), REFUSED);
    assert_eq!(writer.write(b"x").unwrap_err().to_string(), REFUSED);
    let finished = writer.finish().map(drop).unwrap_err();
    assert_eq!(finished.class(), ErrorClass::Io);
    assert!(finished.to_string().contains(REFUSED), "{finished}");
}

/// `plain` written in pieces of `piece` bytes into a Coffer file with a fixed salt, on
/// `threads` threads.
fn encrypt_threads(
    plain: &[u8],
    compression: Compression,
    threads: usize,
    piece: usize,
) -> Vec<u8> {
    let options = WriteOptions {
        salt: Some([9u8; SALT_LEN]),
        threads,
        ..WriteOptions::default()
    };
    let header = Header::new(compression, vec![]);
    let mut writer = format::Writer::new(Vec::new(), &root(), header, &options).unwrap();
    for part in plain.chunks(piece.max(1)) {
        writer.write_all(part).unwrap();
    }
    let (file, summary) = writer.finish().unwrap();
    assert_eq!(summary.file_len, file.len() as u64);
    file
}

#[test]
fn parallel_encryption_writes_the_bytes_of_one_thread() {
    const BATCH: usize = 64 * CHUNK_SIZE;
    // Empty, under a chunk, at chunk and batch edges, and several windows of batches (the
    // writer keeps 2 x threads + 2 batches in flight).
    for len in [
        0,
        1,
        CHUNK_SIZE,
        BATCH - 1,
        BATCH,
        BATCH + 1,
        2 * BATCH,
        3 * BATCH + CHUNK_SIZE,
        21 * BATCH + 77,
    ] {
        let plain = plaintext(len);
        let one = encrypt_threads(&plain, Compression::None, 1, 1 << 20);
        for (threads, piece) in [(2, 1 << 20), (3, 7777), (8, BATCH + 3)] {
            let many = encrypt_threads(&plain, Compression::None, threads, piece);
            assert!(one == many, "{len} bytes on {threads} threads differ");
        }
        let (out, result) = sequential(&one, &root());
        result.unwrap();
        assert!(out == plain, "{len} bytes do not round-trip");
    }
}

#[test]
fn parallel_zstd_writes_the_bytes_of_one_thread() {
    // Chat-like text that zstd splits into several jobs, and random bytes it stores.
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < 24 << 20 {
        text.extend_from_slice(format!("msg {i}: see you at {} o'clock?\n", i % 24).as_bytes());
        i += 1;
    }
    let mut noise = vec![0u8; 3 << 20];
    getrandom::fill(&mut noise).unwrap();
    for plain in [text, noise, plaintext(100)] {
        let one = encrypt_threads(&plain, Compression::Zstd, 1, 1 << 20);
        for threads in [2, 4] {
            let many = encrypt_threads(&plain, Compression::Zstd, threads, 65536);
            assert!(one == many, "zstd on {threads} threads differs");
        }
        let (out, result) = sequential(&one, &root());
        result.unwrap();
        assert!(out == plain);
    }
}

#[test]
fn positional_encryption_writes_the_bytes_of_the_streaming_writer() {
    const BATCH: usize = 64 * CHUNK_SIZE;
    for len in [0, 5, CHUNK_SIZE, BATCH - 1, BATCH, BATCH + 1, 7 * BATCH + 3] {
        let plain = plaintext(len);
        let streamed = encrypt_threads(&plain, Compression::None, 1, 1 << 20);
        for threads in [1, 2, 5] {
            let out = MemOut(Mutex::new(Vec::new()));
            let options = WriteOptions {
                salt: Some([9u8; SALT_LEN]),
                threads,
                ..WriteOptions::default()
            };
            let header = Header::new(Compression::None, vec![]);
            let reported = std::sync::atomic::AtomicU64::new(0);
            let summary =
                encrypt_parallel_at(&root(), header, &Positional(&plain), &out, &options, &|n| {
                    reported.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                })
                .unwrap();
            let file = out.0.into_inner().unwrap();
            assert!(file == streamed, "{len} bytes on {threads} threads differ");
            assert_eq!(summary.file_len, file.len() as u64);
            assert_eq!(summary.plaintext_len, len as u64);
            assert_eq!(reported.into_inner(), len as u64);
        }
    }
}

/// An input whose length changes after it was first asked.
struct Shrinking<'a> {
    data: &'a [u8],
    asked: Mutex<u32>,
}

impl ReadAt for Shrinking<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let visible = &self.data[..self.data.len() / 2];
        visible.read_at(buf, offset)
    }
    fn size(&self) -> std::io::Result<u64> {
        let mut asked = self.asked.lock().unwrap();
        *asked += 1;
        Ok(if *asked == 1 {
            self.data.len() as u64
        } else {
            self.data.len() as u64 / 2
        })
    }
}

#[test]
fn positional_encryption_refuses_zstd_and_an_input_that_changes() {
    let plain = plaintext(3 << 20);
    let out = MemOut(Mutex::new(Vec::new()));
    let run = |input: &dyn Fn() -> Result<(), FormatError>| input();
    let zstd = run(&|| {
        encrypt_parallel_at(
            &root(),
            Header::new(Compression::Zstd, vec![]),
            &Positional(&plain),
            &out,
            &WriteOptions::default(),
            &|_| {},
        )
        .map(drop)
    });
    assert_eq!(zstd.unwrap_err().class(), ErrorClass::Unsupported);
    let shrinking = Shrinking {
        data: &plain,
        asked: Mutex::new(0),
    };
    let changed = encrypt_parallel_at(
        &root(),
        Header::new(Compression::None, vec![]),
        &shrinking,
        &out,
        &WriteOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert_eq!(changed.class(), ErrorClass::Io);
    assert!(changed.to_string().contains("changed length"), "{changed}");
}

/// A sink that fails at its `fail_at`-th write, then accepts everything.
struct FailingSink {
    calls: usize,
    fail_at: usize,
}

impl Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(std::io::Error::other("disk full"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_parallel_encryptor_that_failed_once_refuses_to_go_on() {
    const REFUSED: &str = "an earlier write to this encryptor failed";
    // Salt and commitment are writes 1 and 2; each sealed batch is one write.
    for fail_at in [3, 5, 9] {
        let sink = FailingSink { calls: 0, fail_at };
        let mut writer =
            ParallelChunkedWriter::new(sink, &[1u8; 32], &[2u8; SALT_LEN], b"", 2).unwrap();
        let batch = vec![7u8; 64 * CHUNK_SIZE];
        let failure = (0..40)
            .find_map(|_| writer.write_all(&batch).err())
            .expect("the sink's failure reaches the caller");
        assert_eq!(failure.to_string(), "disk full");
        assert_eq!(writer.write(b"x").unwrap_err().to_string(), REFUSED);
        let finished = writer.finish().map(drop).unwrap_err();
        assert_eq!(finished.class(), ErrorClass::Io);
        assert!(finished.to_string().contains(REFUSED), "{finished}");
    }
    // Dropped unfinished with batches in flight: the workers end, nothing hangs.
    let sink = FailingSink {
        calls: 0,
        fail_at: 0,
    };
    let mut writer =
        ParallelChunkedWriter::new(sink, &[1u8; 32], &[2u8; SALT_LEN], b"", 4).unwrap();
    writer.write_all(&vec![1u8; 10 << 20]).unwrap();
    drop(writer);
}

#[test]
fn writers_refuse_headers_their_readers_would_refuse() {
    // The class each reader would give the header (spec/format.md §3, vectors/format.yaml).
    let bad = [
        (
            tag::CREATED,
            MetaValue::Text("yesterday".into()),
            ErrorClass::Malformed,
        ),
        (tag::CONTENT, MetaValue::U64(9), ErrorClass::Unsupported),
        (0x90, MetaValue::U64(1), ErrorClass::Unsupported),
    ];
    for (t, value, class) in bad {
        let header = Header::new(Compression::None, vec![(t, value.clone())]);
        let refused = format::Writer::new(Vec::new(), &root(), header, &WriteOptions::default())
            .map(drop)
            .unwrap_err();
        assert_eq!(refused.class(), class, "{t:#04x} {value:?}: {refused}");
    }
    let level = WriteOptions {
        zstd_level: 30,
        ..WriteOptions::default()
    };
    let mut out = Vec::new();
    let refused = format::Writer::new(
        &mut out,
        &root(),
        Header::new(Compression::Zstd, vec![]),
        &level,
    )
    .map(drop)
    .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Unsupported, "{refused}");
    assert!(
        out.is_empty(),
        "nothing written before the options are checked"
    );
}

// ---- Seekable zstd (compression 02, spec/format.md §8.2) ----

/// Frames of two chunks, so that small plaintexts have many frames.
const SMALL_FRAME: usize = 2 * CHUNK_SIZE;

fn seekable(plain: &[u8], frame_len: usize, threads: usize) -> Vec<u8> {
    let options = WriteOptions {
        salt: Some([9u8; SALT_LEN]),
        zstd_frame_len: frame_len,
        threads,
        ..WriteOptions::default()
    };
    let header = Header::new(Compression::ZstdSeekable, vec![]);
    let (file, summary) =
        format::encrypt(&root(), header, &mut &plain[..], Vec::new(), &options).unwrap();
    assert_eq!(summary.plaintext_len, plain.len() as u64);
    file
}

/// A compressible plaintext: text-like lines with a counter.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("message {i} from +4915{:07} ok\n", i * 7919 % 9_999_999).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// The payload's frames and table, as a seekable writer lays them out, for hand-made files.
fn frames_payload(frames: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut entries = Vec::new();
    for plain in frames {
        let packed = zstd::bulk::compress(plain, 3).unwrap();
        entries.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        entries.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        payload.extend_from_slice(&packed);
    }
    payload.extend_from_slice(&seek_table(&entries, frames.len() as u32));
    payload
}

fn seek_table(entries: &[u8], count: u32) -> Vec<u8> {
    let mut t = vec![0x5e, 0x2a, 0x4d, 0x18];
    t.extend_from_slice(&(entries.len() as u32 + 9).to_le_bytes());
    t.extend_from_slice(entries);
    t.extend_from_slice(&count.to_le_bytes());
    t.push(0);
    t.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    t
}

#[test]
fn seekable_files_round_trip_and_do_not_depend_on_threads() {
    for len in [
        0,
        1,
        SMALL_FRAME - 1,
        SMALL_FRAME,
        SMALL_FRAME + 1,
        5 * SMALL_FRAME + 7,
        70 * CHUNK_SIZE + 3,
    ] {
        let plain = text(len);
        let file = seekable(&plain, SMALL_FRAME, 1);
        for threads in [2, 3, 8] {
            assert_eq!(
                seekable(&plain, SMALL_FRAME, threads),
                file,
                "{len} bytes, {threads} threads"
            );
        }
        let (out, result) = sequential(&file, &root());
        result.unwrap();
        assert_eq!(out, plain, "{len} bytes, streamed");
        let (out, result) = parallel(&file, &root(), 3);
        result.unwrap();
        assert_eq!(out, plain, "{len} bytes, in parallel");
        let mut access = RandomAccess::open(&file[..], &root()).unwrap();
        assert_eq!(access.len(), len as u64);
        for (start, want) in [
            (0, 10),
            (SMALL_FRAME - 3, 7),
            (len / 2, SMALL_FRAME + 5),
            (len, 1),
        ] {
            let mut buf = vec![0u8; want];
            let n = access.read_at(start as u64, &mut buf).unwrap();
            let end = (start + want).min(len);
            let expected = if start >= len {
                &[][..]
            } else {
                &plain[start..end]
            };
            assert_eq!(&buf[..n], expected, "{len} bytes, read at {start}");
        }
    }
}

#[test]
fn a_range_in_the_middle_decompresses_at_most_two_frames() {
    let plain = text(48 << 20);
    let file = seekable(&plain, format::DEFAULT_FRAME_LEN, 0);
    let mut access = RandomAccess::open(&file[..], &root()).unwrap();
    let mid = plain.len() / 2 - 300_000;
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(access.read_at(mid as u64, &mut buf).unwrap(), buf.len());
    assert_eq!(buf, plain[mid..mid + (1 << 20)]);
    assert_eq!(access.frames_decoded(), 2, "1 MiB across a frame boundary");
    // Reading inside the kept frame decompresses nothing more.
    let mut small = [0u8; 100];
    access.read_at(mid as u64 + 1_000_000, &mut small).unwrap();
    assert_eq!(access.frames_decoded(), 2);
}

#[test]
fn a_damaged_chunk_in_a_seekable_file_releases_the_same_prefix_everywhere() {
    let plain = text(40 * SMALL_FRAME);
    let file = seekable(&plain, SMALL_FRAME, 2);
    let header_len = u32::from_be_bytes(file[12..16].try_into().unwrap()) as usize;
    for chunk in [0, 3, 9] {
        let mut bad = file.clone();
        bad[header_len + PREFIX_LEN + chunk * SEALED_CHUNK_SIZE + 100] ^= 1;
        assert_eq!(class_of(&bad, &plain), ErrorClass::Corrupt, "chunk {chunk}");
    }
    // The table's chunk (the last): random access refuses at open, the readers agree.
    let mut bad = file.clone();
    let at = bad.len() - header::FOOTER_LEN - 30;
    bad[at] ^= 1;
    assert_eq!(class_of(&bad, &plain), ErrorClass::Corrupt);
    assert_eq!(
        RandomAccess::open(&bad[..], &root())
            .err()
            .map(|e| e.class()),
        Some(ErrorClass::Corrupt)
    );
    let cut = &file[..file.len() - 40];
    assert_eq!(class_of(cut, &plain), ErrorClass::Truncated);
}

#[test]
fn broken_seekable_payloads_are_corrupt_for_every_reader() {
    let s = vec![b'a'; CHUNK_SIZE];
    let good_frames: [&[u8]; 2] = [&s, b"tail"];
    let good = craft(context(1, 2, 0, &[]), &frames_payload(&good_frames));
    let mut expected = s.clone();
    expected.extend_from_slice(b"tail");
    assert_eq!(open_class(&good), Ok(expected.clone()));
    let packed_s = zstd::bulk::compress(&s, 3).unwrap();
    let packed_tail = zstd::bulk::compress(b"tail", 3).unwrap();
    let entry = |c: usize, d: usize| [(c as u32).to_le_bytes(), (d as u32).to_le_bytes()].concat();
    let frames = [packed_s.clone(), packed_tail.clone()].concat();
    let entries = [entry(packed_s.len(), s.len()), entry(packed_tail.len(), 4)].concat();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty payload", vec![]),
        ("no table", frames.clone()),
        (
            "a table listing one frame too few",
            [
                frames.clone(),
                seek_table(&entry(packed_s.len(), s.len()), 1),
            ]
            .concat(),
        ),
        (
            "a count that is not the entries'",
            [frames.clone(), seek_table(&entries, 3)].concat(),
        ),
        (
            "a wrong decompressed size",
            [
                frames.clone(),
                seek_table(
                    &[entry(packed_s.len(), s.len()), entry(packed_tail.len(), 5)].concat(),
                    2,
                ),
            ]
            .concat(),
        ),
        (
            "a wrong compressed size",
            [
                frames.clone(),
                seek_table(
                    &[
                        entry(packed_s.len() + 1, s.len()),
                        entry(packed_tail.len() - 1, 4),
                    ]
                    .concat(),
                    2,
                ),
            ]
            .concat(),
        ),
        (
            "bytes after the table",
            [frames.clone(), seek_table(&entries, 2), b"x".to_vec()].concat(),
        ),
        (
            "a table first",
            [seek_table(&[], 0), frames.clone()].concat(),
        ),
        (
            "junk between frames",
            [
                packed_s.clone(),
                b"junk".to_vec(),
                packed_tail.clone(),
                seek_table(&entries, 2),
            ]
            .concat(),
        ),
        ("only a table of no frames", seek_table(&[], 0)),
    ];
    let mut descriptor = [frames.clone(), seek_table(&entries, 2)].concat();
    let n = descriptor.len();
    descriptor[n - 5] = 0x80;
    cases.push(("checksums announced", descriptor));
    let mut cases: Vec<_> = cases
        .into_iter()
        .map(|(w, p)| (w, p, expected.clone()))
        .collect();
    // Frames that decode, in sizes the rule of §8.2 forbids.
    cases.push((
        "a short frame before the last",
        frames_payload(&[b"tail", &s]),
        [&b"tail"[..], &s].concat(),
    ));
    cases.push((
        "a frame size that is not a multiple of the chunk",
        frames_payload(&[&s[..100], &s[..100]]),
        s[..200].to_vec(),
    ));
    for (what, payload, plain) in cases {
        let file = craft(context(1, 2, 0, &[]), &payload);
        assert_eq!(class_of(&file, &plain), ErrorClass::Corrupt, "{what}");
        if let Ok(mut access) = RandomAccess::open(&file[..], &root()) {
            // Opening may pass when only a frame is wrong; reading all of it must not.
            let mut buf = vec![0u8; access.len() as usize];
            assert_eq!(
                access.read_at(0, &mut buf).map_err(|e| e.class()).err(),
                Some(ErrorClass::Corrupt),
                "{what}: random access"
            );
        }
    }
}

#[test]
fn one_frame_zstd_files_still_read_and_refuse_random_access() {
    let plain = text(3 * CHUNK_SIZE);
    let file = encrypt(&plain, Compression::Zstd);
    assert_eq!(sequential(&file, &root()).0, plain);
    assert_eq!(
        RandomAccess::open(&file[..], &root())
            .err()
            .map(|e| e.class()),
        Some(ErrorClass::Unsupported)
    );
}
