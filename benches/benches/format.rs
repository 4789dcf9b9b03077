//! Coffer-format throughput (encrypt and decrypt, sequential and parallel, with and without
//! zstd) at 1 MiB, 64 MiB and 1 GiB, each group with its ceilings measured in the same run:
//! raw one-shot AES-256-GCM over the whole plaintext with the fastest crate measured (the
//! baseline every ratio is taken against), zstd alone, memcpy. Group `aead_crates` is the
//! measurement that chose the AES-GCM crate. Throughput counts plaintext bytes. The 1 GiB group reads
//! its input from a file (page cache), as the CLI does.

use aws_lc_rs::aead as aws;
use coffer::format::{self, Compression, Header, MetaValue, WriteOptions};
use coffer::format::{
    decrypt_parallel, decrypt_parallel_at, encrypt_parallel_at, Discard, Parallelism,
};
use coffer::internal::format_header::tag;
use coffer::key::RootKey;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use openssl::symm::{encrypt_aead, Cipher};
use std::hint::black_box;
use std::io::{self, BufReader};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn header(compression: Compression) -> Header {
    Header::new(compression, vec![(tag::CREATED, MetaValue::U64(0))])
}

fn encrypt(root: &RootKey, plain: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 1000 + 4096);
    format::encrypt(
        root,
        header(compression),
        &mut &plain[..],
        &mut out,
        &WriteOptions::default(),
    )
    .unwrap();
    out
}

/// Default options on `threads` threads (0 = one per core).
fn threads_option(threads: usize) -> WriteOptions {
    WriteOptions {
        threads,
        ..WriteOptions::default()
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
    bytes: usize,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    let big = bytes >= 512 * MIB;
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if big { 100 } else { 1000 }))
        .measurement_time(Duration::from_secs(if big { 8 } else { 4 }));
    group.throughput(Throughput::Bytes(bytes as u64));
    group
}

/// The baseline (`benches/report.py` looks it up by name): one-shot AES-256-GCM in place over
/// the whole plaintext with aws-lc-rs, the fastest AES-GCM crate measured (group
/// `aead_crates`).
fn aes_baseline(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, plain: &[u8]) {
    let key = ceiling_key();
    let mut buf = plain.to_vec();
    group.bench_function(BASELINE, |b| {
        b.iter(|| {
            let nonce = aws::Nonce::assume_unique_for_key([1u8; 12]);
            black_box(
                key.seal_in_place_separate_tag(nonce, aws::Aad::empty(), &mut buf)
                    .unwrap(),
            )
        })
    });
}

/// Name of the baseline every ratio is taken against.
const BASELINE: &str = "ceiling_aes256gcm_aws_lc_rs_full_plaintext";

/// The key of the ceiling benches.
fn ceiling_key() -> aws::LessSafeKey {
    aws::LessSafeKey::new(aws::UnboundKey::new(&aws::AES_256_GCM, &[3u8; 32]).unwrap())
}

/// `plain` sealed in 16 KiB chunks in place, one nonce per chunk, and the chunks' tags.
fn sealed_chunks(key: &aws::LessSafeKey, plain: &[u8]) -> (Vec<u8>, Vec<aws::Tag>) {
    let mut sealed = plain.to_vec();
    let tags = sealed
        .chunks_mut(16384)
        .enumerate()
        .map(|(i, chunk)| {
            let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
            key.seal_in_place_separate_tag(nonce, aws::Aad::empty(), chunk)
                .unwrap()
        })
        .collect();
    (sealed, tags)
}

/// `plain` sealed as one message, and its tag.
fn sealed_whole(key: &aws::LessSafeKey, plain: &[u8]) -> (Vec<u8>, aws::Tag) {
    let mut sealed = plain.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            aws::Nonce::assume_unique_for_key([1u8; 12]),
            aws::Aad::empty(),
            &mut sealed,
        )
        .unwrap();
    (sealed, tag)
}

fn nonce_of(i: usize) -> [u8; 12] {
    let mut n = [1u8; 12];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

/// The AES-256-GCM crates evaluated for the C2SP chunk cipher: 64 MiB sealed in 16 KiB
/// chunks, in place, one nonce per chunk; plus one-shot over the whole buffer.
fn aead_crates(c: &mut Criterion) {
    let size = coffer_bench::size(64 * MIB);
    let plain = coffer_bench::chat_sqlite(size);
    let mut buf = plain.clone();
    let key_bytes = [3u8; 32];
    let mut group = configure(c, "aead_crates", size);
    aes_baseline(&mut group, &plain);
    group.bench_function("chunked_aws_lc_rs", |b| {
        let key =
            aws::LessSafeKey::new(aws::UnboundKey::new(&aws::AES_256_GCM, &key_bytes).unwrap());
        b.iter(|| {
            for (i, chunk) in buf.chunks_mut(16384).enumerate() {
                let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
                let _ = black_box(
                    key.seal_in_place_separate_tag(nonce, aws::Aad::empty(), chunk)
                        .unwrap(),
                );
            }
        })
    });
    group.bench_function("chunked_ring", |b| {
        use ring::aead as r;
        let key = r::LessSafeKey::new(r::UnboundKey::new(&r::AES_256_GCM, &key_bytes).unwrap());
        b.iter(|| {
            for (i, chunk) in buf.chunks_mut(16384).enumerate() {
                let nonce = r::Nonce::assume_unique_for_key(nonce_of(i));
                let _ = black_box(
                    key.seal_in_place_separate_tag(nonce, r::Aad::empty(), chunk)
                        .unwrap(),
                );
            }
        })
    });
    group.bench_function("chunked_openssl_cipher_ctx", |b| {
        let mut ctx = openssl::cipher_ctx::CipherCtx::new().unwrap();
        ctx.encrypt_init(
            Some(openssl::cipher::Cipher::aes_256_gcm()),
            Some(&key_bytes),
            None,
        )
        .unwrap();
        let mut tag = [0u8; 16];
        b.iter(|| {
            for (i, chunk) in buf.chunks_mut(16384).enumerate() {
                ctx.encrypt_init(None, None, Some(&nonce_of(i))).unwrap();
                let len = chunk.len();
                ctx.cipher_update_inplace(chunk, len).unwrap();
                ctx.cipher_final(&mut []).unwrap();
                ctx.tag(&mut tag).unwrap();
            }
        })
    });
    group.bench_function("chunked_rustcrypto_aes_gcm", |b| {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let key = aes_gcm::Aes256Gcm::new_from_slice(&key_bytes).unwrap();
        b.iter(|| {
            for (i, chunk) in buf.chunks_mut(16384).enumerate() {
                let nonce = nonce_of(i);
                black_box(
                    key.encrypt_in_place_detached((&nonce).into(), &[], chunk)
                        .unwrap(),
                );
            }
        })
    });
    // Opening, as the readers do: each sealed chunk into a small reused buffer. aws-lc-rs
    // opens out of place; ring only in place, so it copies each chunk first.
    let (sealed, tags) = sealed_chunks(&ceiling_key(), &plain);
    let mut out = vec![0u8; 8 * 16400];
    group.bench_function("open_chunks_aws_lc_rs_out_of_place", |b| {
        let key = ceiling_key();
        b.iter(|| {
            for (i, (chunk, tag)) in sealed.chunks(16384).zip(&tags).enumerate() {
                let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
                let dst = &mut out[(i % 8) * 16384..(i % 8) * 16384 + chunk.len()];
                key.open_separate_gather(nonce, aws::Aad::empty(), chunk, tag.as_ref(), dst)
                    .unwrap();
            }
        })
    });
    group.bench_function("open_chunks_ring_copy_then_in_place", |b| {
        use ring::aead as r;
        let key = r::LessSafeKey::new(r::UnboundKey::new(&r::AES_256_GCM, &[3u8; 32]).unwrap());
        b.iter(|| {
            for (i, (chunk, tag)) in sealed.chunks(16384).zip(&tags).enumerate() {
                let nonce = r::Nonce::assume_unique_for_key(nonce_of(i));
                let at = (i % 8) * 16400;
                let dst = &mut out[at..at + chunk.len() + 16];
                dst[..chunk.len()].copy_from_slice(chunk);
                dst[chunk.len()..].copy_from_slice(tag.as_ref());
                key.open_in_place(nonce, r::Aad::empty(), dst).unwrap();
            }
        })
    });
    group.bench_function("one_shot_openssl_new_buffer", |b| {
        let mut tag = [0u8; 16];
        b.iter(|| {
            encrypt_aead(
                Cipher::aes_256_gcm(),
                &key_bytes,
                Some(&[1u8; 12]),
                &[],
                black_box(&plain),
                &mut tag,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn in_memory(c: &mut Criterion, size: usize, label: &str) {
    let root = RootKey::from_bytes([5u8; 32]);
    let plain = coffer_bench::chat_sqlite(size);
    let file = encrypt(&root, &plain, Compression::None);
    let zstd = encrypt(&root, &plain, Compression::Zstd);
    let mut group = configure(c, &format!("format_{label}"), size);
    aes_baseline(&mut group, &plain);
    for (name, threads) in [("encrypt_sequential", 1), ("encrypt_parallel", 0)] {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(file.len());
            b.iter(|| {
                out.clear();
                format::encrypt(
                    &root,
                    header(Compression::None),
                    &mut &plain[..],
                    &mut out,
                    &threads_option(threads),
                )
                .unwrap();
                black_box(out.len())
            })
        });
    }
    group.bench_function("decrypt_sequential", |b| {
        b.iter(|| format::decrypt(&file[..], &root, &mut io::sink()).unwrap())
    });
    group.bench_function("decrypt_parallel_ordered_to_sink", |b| {
        b.iter(|| {
            decrypt_parallel(
                &file[..],
                &root,
                &mut io::sink(),
                Parallelism::threads(0),
                &|_| {},
            )
            .unwrap()
        })
    });
    group.bench_function("decrypt_parallel_positional_verify", |b| {
        b.iter(|| {
            decrypt_parallel_at(&file[..], &root, &Discard, Parallelism::threads(0), &|_| {})
                .unwrap()
        })
    });
    for (name, threads) in [("encrypt_zstd3", 1), ("encrypt_zstd3_parallel", 0)] {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(file.len());
            b.iter(|| {
                out.clear();
                format::encrypt(
                    &root,
                    header(Compression::Zstd),
                    &mut &plain[..],
                    &mut out,
                    &threads_option(threads),
                )
                .unwrap();
                black_box(out.len())
            })
        });
    }
    group.bench_function("decrypt_zstd3", |b| {
        b.iter(|| format::decrypt(&zstd[..], &root, &mut io::sink()).unwrap())
    });
    // The decrypt-side counterparts of the baseline: raw AES-256-GCM decryption of the whole
    // message at once (opening costs more than sealing from memory: the GHASH runs over
    // the input, so the loads cannot be overlapped as freely).
    group.bench_function(
        "ceiling_aes256gcm_aws_lc_rs_open_one_shot_out_of_place",
        |b| {
            let key = ceiling_key();
            let (sealed, tag) = sealed_whole(&key, &plain);
            let mut out = vec![0u8; size];
            b.iter(|| {
                let nonce = aws::Nonce::assume_unique_for_key([1u8; 12]);
                key.open_separate_gather(nonce, aws::Aad::empty(), &sealed, tag.as_ref(), &mut out)
                    .unwrap();
                black_box(out[0])
            })
        },
    );
    group.bench_function("ceiling_aes256gcm_aws_lc_rs_open_one_shot_in_place", |b| {
        let key = ceiling_key();
        let (mut sealed, tag) = sealed_whole(&key, &plain);
        sealed.extend_from_slice(tag.as_ref());
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| {
                let nonce = aws::Nonce::assume_unique_for_key([1u8; 12]);
                black_box(
                    key.open_in_place(nonce, aws::Aad::empty(), buf)
                        .unwrap()
                        .len(),
                )
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("ceiling_aws_lc_rs_open_chunks_out_of_place", |b| {
        // The primitive under the readers: open each 16400-byte chunk of the body into a
        // small reused buffer (no reading, no framing).
        let key = ceiling_key();
        let (sealed, tags) = sealed_chunks(&key, &plain);
        let mut out = vec![0u8; 8 * 16384];
        b.iter(|| {
            for (i, (chunk, tag)) in sealed.chunks(16384).zip(&tags).enumerate() {
                let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
                let dst = &mut out[(i % 8) * 16384..(i % 8) * 16384 + chunk.len()];
                key.open_separate_gather(nonce, aws::Aad::empty(), chunk, tag.as_ref(), dst)
                    .unwrap();
            }
        })
    });
    group.bench_function("ceiling_aws_lc_rs_open_chunks_file_layout", |b| {
        // The same primitive over the bytes as a file lays them out: each chunk's tag right
        // after it (a 16400-byte stride) and the body after the header, so most chunks do not
        // start on a cache line. The readers open from there; this separates the layout's
        // cost from the reader's own.
        let key = ceiling_key();
        let (sealed, tags) = sealed_chunks(&key, &plain);
        let body = file.len() - sealed.len() - tags.len() * 16 - format::FOOTER_LEN;
        let mut laid = vec![0u8; body];
        for (chunk, tag) in sealed.chunks(16384).zip(&tags) {
            laid.extend_from_slice(chunk);
            laid.extend_from_slice(tag.as_ref());
        }
        let mut out = vec![0u8; 8 * 16384];
        b.iter(|| {
            for (i, sealed) in laid[body..].chunks(16400).enumerate() {
                let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
                let (chunk, tag) = sealed.split_at(sealed.len() - 16);
                let dst = &mut out[(i % 8) * 16384..(i % 8) * 16384 + chunk.len()];
                key.open_separate_gather(nonce, aws::Aad::empty(), chunk, tag, dst)
                    .unwrap();
            }
        })
    });
    group.bench_function("alternative_open_chunks_copy_then_in_place", |b| {
        // The design not taken: each chunk copied into a small reused buffer and opened
        // there in place (slower than opening out of place from where it lies).
        let key = ceiling_key();
        let (sealed, tags) = sealed_chunks(&key, &plain);
        let mut out = vec![0u8; 8 * 16400];
        b.iter(|| {
            for (i, (chunk, tag)) in sealed.chunks(16384).zip(&tags).enumerate() {
                let nonce = aws::Nonce::assume_unique_for_key(nonce_of(i));
                let at = (i % 8) * 16400;
                let dst = &mut out[at..at + chunk.len() + 16];
                dst[..chunk.len()].copy_from_slice(chunk);
                dst[chunk.len()..].copy_from_slice(tag.as_ref());
                key.open_in_place(nonce, aws::Aad::empty(), dst).unwrap();
            }
        })
    });
    group.bench_function("ceiling_zstd3_decompress", |b| {
        let compressed = zstd::bulk::compress(&plain, 3).unwrap();
        b.iter(|| black_box(zstd::bulk::decompress(&compressed, size).unwrap().len()))
    });
    group.bench_function("ceiling_memcpy", |b| {
        let mut out = vec![0u8; size];
        b.iter(|| {
            out.copy_from_slice(black_box(&plain));
            black_box(out[size - 1])
        })
    });
    group.finish();
}

fn small_and_medium(c: &mut Criterion) {
    in_memory(c, 4 << 10, "4KiB");
    in_memory(c, MIB, "1MiB");
    if !coffer_bench::quick() {
        in_memory(c, 64 * MIB, "64MiB");
    }
}

/// 1 GiB: the encrypted file is read from disk (page cache), the plaintext goes to a sink.
fn one_gib(c: &mut Criterion) {
    let size = coffer_bench::size(1024 * MIB);
    let root = RootKey::from_bytes([5u8; 32]);
    let plain = coffer_bench::chat_sqlite(size);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("1gib.coffer");
    {
        let out = std::fs::File::create(&path).unwrap();
        format::encrypt(
            &root,
            header(Compression::None),
            &mut &plain[..],
            io::BufWriter::new(out),
            &WriteOptions::default(),
        )
        .unwrap();
    }
    let mut group = configure(c, "format_1GiB", size);
    aes_baseline(&mut group, &plain);
    group.bench_function("decrypt_sequential_from_file", |b| {
        b.iter(|| {
            let input =
                BufReader::with_capacity(format::READ_BUFFER, std::fs::File::open(&path).unwrap());
            format::decrypt(input, &root, &mut io::sink()).unwrap()
        })
    });
    group.bench_function("decrypt_parallel_positional_from_file_verify", |b| {
        b.iter(|| {
            let input = std::fs::File::open(&path).unwrap();
            decrypt_parallel_at(input, &root, &Discard, Parallelism::threads(0), &|_| {}).unwrap()
        })
    });
    // Encryption reads the plaintext from a file in the page cache, as the CLI does.
    let plain_path = dir.path().join("1gib.plain");
    std::fs::write(&plain_path, &plain).unwrap();
    drop(plain);
    let cases = [
        ("encrypt_sequential_from_file_to_sink", Compression::None, 1),
        ("encrypt_parallel_from_file_to_sink", Compression::None, 0),
        (
            "encrypt_zstd3_sequential_from_file_to_sink",
            Compression::Zstd,
            1,
        ),
        (
            "encrypt_zstd3_parallel_from_file_to_sink",
            Compression::Zstd,
            0,
        ),
    ];
    let positional = [
        ("encrypt_parallel_positional_from_file_discard", 0),
        ("encrypt_positional_one_thread_from_file_discard", 1),
    ];
    for (name, threads) in positional {
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = std::fs::File::open(&plain_path).unwrap();
                encrypt_parallel_at(
                    &root,
                    header(Compression::None),
                    &input,
                    &Discard,
                    &threads_option(threads),
                    &|_| {},
                )
                .unwrap()
            })
        });
    }
    for (name, compression, threads) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut input = std::fs::File::open(&plain_path).unwrap();
                format::encrypt(
                    &root,
                    header(compression),
                    &mut input,
                    io::sink(),
                    &threads_option(threads),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

/// zstd level 3 on a generated chat database (`coffer_testkit::workloads`, the peer bench's
/// generator: no long repeats, unlike the cycled sample the other groups use, which zstd
/// compresses at memcpy-like speed), read from a file: seekable frames (compression 02, what
/// the CLI writes) encrypted and decrypted on one thread and on all cores, one frame (01)
/// for comparison, and zstd alone. Prints the size each costs and what a 1 MiB `--range`
/// in the middle decompresses.
fn zstd_chat_database(c: &mut Criterion) {
    let size = coffer_bench::size(256 * MIB);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("chat.db");
    coffer_testkit::workloads::chat_database(&path, size as u64).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let root = RootKey::from_bytes([5u8; 32]);
    let plain = std::fs::read(&path).unwrap();
    let write = |name: &str, compression: Compression| {
        let (file, _) = format::encrypt(
            &root,
            header(compression),
            &mut &plain[..],
            Vec::new(),
            &threads_option(0),
        )
        .unwrap();
        let at = dir.path().join(name);
        std::fs::write(&at, &file).unwrap();
        (at, file.len())
    };
    let (seekable, seekable_len) = write("chat.seekable.coffer", Compression::ZstdSeekable);
    let (one_frame, one_frame_len) = write("chat.one-frame.coffer", Compression::Zstd);
    let single = zstd::bulk::compress(&plain, 3).unwrap();
    let price = |n: usize| (n as f64 / single.len() as f64 - 1.0) * 100.0;
    eprintln!(
        "format_zstd_chat_database: {len} bytes; zstd -3 in one frame without workers {}, \
         Coffer seekable {seekable_len} ({:+.2}%), Coffer one frame {one_frame_len} ({:+.2}%)",
        single.len(),
        price(seekable_len),
        price(one_frame_len)
    );
    range_in_the_middle(&root, &seekable, len);

    let mut group = c.benchmark_group("format_zstd_chat_database");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(len));
    for (name, compression, threads) in [
        ("encrypt_zstd3_one_thread", Compression::ZstdSeekable, 1),
        ("encrypt_zstd3_all_cores", Compression::ZstdSeekable, 0),
        ("encrypt_zstd3_one_frame_all_cores", Compression::Zstd, 0),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut input = std::fs::File::open(&path).unwrap();
                format::encrypt(
                    &root,
                    header(compression),
                    &mut input,
                    io::sink(),
                    &threads_option(threads),
                )
                .unwrap()
            })
        });
    }
    for (name, file, threads) in [
        ("decrypt_zstd3_one_thread", &seekable, 1),
        ("decrypt_zstd3_all_cores", &seekable, 0),
        ("decrypt_zstd3_one_frame", &one_frame, 0),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = std::fs::File::open(file).unwrap();
                let how = Parallelism::threads(threads);
                decrypt_parallel_at(&input, &root, &Discard, how, &|_| {}).unwrap()
            })
        });
    }
    group.bench_function("ceiling_zstd3_compress_one_thread", |b| {
        b.iter(|| black_box(zstd::bulk::compress(&plain, 3).unwrap().len()))
    });
    group.bench_function("ceiling_zstd_decompress_one_thread", |b| {
        let mut out = Vec::with_capacity(plain.len());
        b.iter(|| {
            out.clear();
            zstd::bulk::Decompressor::new()
                .unwrap()
                .decompress_to_buffer(&single, &mut out)
                .unwrap()
        })
    });
    group.finish();
}

/// A 1 MiB `--range` across the middle of a seekable file, opened each time as the CLI
/// does: its median time over 20 reads and the frames it decompressed.
fn range_in_the_middle(root: &RootKey, file: &std::path::Path, len: u64) {
    let mid = len / 2 - 300_000;
    let mut buf = vec![0u8; MIB];
    let mut times = Vec::new();
    let mut frames = 0;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let input = std::fs::File::open(file).unwrap();
        let mut access = format::RandomAccess::open(input, root).unwrap();
        access.read_at(mid, &mut buf).unwrap();
        frames = access.frames_decoded();
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "format_zstd_chat_database: 1 MiB range at {mid}: {frames} frame(s) decompressed, median {:?}",
        times[times.len() / 2]
    );
}

criterion_group!(
    benches,
    aead_crates,
    small_and_medium,
    one_gib,
    zstd_chat_database
);
criterion_main!(benches);
