//! Coffer-format throughput (encrypt and decrypt, sequential and parallel, with and without
//! zstd) at 1 MiB, 64 MiB and 1 GiB, each group with its ceilings measured in the same run:
//! raw one-shot AES-256-GCM over the whole plaintext (the baseline every ratio is taken
//! against), zstd alone, memcpy. Throughput counts plaintext bytes. The 1 GiB group reads
//! its input from a file (page cache), as the CLI does.

use coffer::format::header::tag;
use coffer::format::parallel::decrypt_parallel;
use coffer::format::{self, Compression, Header, MetaValue, WriteOptions};
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

/// The baseline (`benches/report.py` looks it up by name): one-shot AES-256-GCM over the
/// plaintext with OpenSSL, the fastest AES-GCM crate measured (benches/README.md).
fn aes_baseline(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, plain: &[u8]) {
    group.bench_function("ceiling_aes256gcm_openssl_full_plaintext", |b| {
        let mut tag = [0u8; 16];
        b.iter(|| {
            encrypt_aead(
                Cipher::aes_256_gcm(),
                &[3u8; 32],
                Some(&[1u8; 12]),
                &[],
                black_box(plain),
                &mut tag,
            )
            .unwrap()
        })
    });
}

fn in_memory(c: &mut Criterion, size: usize, label: &str) {
    let root = RootKey::from_bytes([5u8; 32]);
    let plain = coffer_bench::chat_sqlite(size);
    let file = encrypt(&root, &plain, Compression::None);
    let zstd = encrypt(&root, &plain, Compression::Zstd);
    let mut group = configure(c, &format!("format_{label}"), size);
    aes_baseline(&mut group, &plain);
    group.bench_function("encrypt_sequential", |b| {
        let mut out = Vec::with_capacity(file.len());
        b.iter(|| {
            out.clear();
            format::encrypt(
                &root,
                header(Compression::None),
                &mut &plain[..],
                &mut out,
                &WriteOptions::default(),
            )
            .unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("decrypt_sequential", |b| {
        b.iter(|| format::decrypt(&file[..], &root, &mut io::sink()).unwrap())
    });
    group.bench_function("decrypt_parallel", |b| {
        b.iter(|| decrypt_parallel(&file[..], &root, &mut io::sink(), 0).unwrap())
    });
    group.bench_function("encrypt_zstd3", |b| {
        let mut out = Vec::with_capacity(file.len());
        b.iter(|| {
            out.clear();
            format::encrypt(
                &root,
                header(Compression::Zstd),
                &mut &plain[..],
                &mut out,
                &WriteOptions::default(),
            )
            .unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("decrypt_zstd3", |b| {
        b.iter(|| format::decrypt(&zstd[..], &root, &mut io::sink()).unwrap())
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
    in_memory(c, MIB, "1MiB");
    in_memory(c, 64 * MIB, "64MiB");
}

/// 1 GiB: the encrypted file is read from disk (page cache), the plaintext goes to a sink.
fn one_gib(c: &mut Criterion) {
    let size = 1024 * MIB;
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
            let input = BufReader::with_capacity(MIB, std::fs::File::open(&path).unwrap());
            format::decrypt(input, &root, &mut io::sink()).unwrap()
        })
    });
    group.bench_function("decrypt_parallel_from_file", |b| {
        b.iter(|| {
            decrypt_parallel(
                std::fs::File::open(&path).unwrap(),
                &root,
                &mut io::sink(),
                0,
            )
            .unwrap()
        })
    });
    group.bench_function("encrypt_sequential_to_sink", |b| {
        b.iter(|| {
            format::encrypt(
                &root,
                header(Compression::None),
                &mut &plain[..],
                io::sink(),
                &WriteOptions::default(),
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, small_and_medium, one_gib);
criterion_main!(benches);
