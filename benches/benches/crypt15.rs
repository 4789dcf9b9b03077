//! crypt15 decrypt and encrypt throughput, with the ceilings that bound them measured in the
//! same run: raw AES-256-GCM (OpenSSL, the crate Coffer uses), MD5, memcpy, and inflate/deflate
//! with each candidate zlib backend. All throughputs count plaintext bytes so ratios compare.

use coffer::crypt15::{self, DecryptOptions, EncryptOptions, HeaderSpec};
use coffer::key::{BackupKey, RootKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

/// 16 MiB of chat-like SQLite (1 MiB in quick mode).
fn size() -> usize {
    coffer_bench::size(16 << 20)
}

struct Workload {
    plain: Vec<u8>,
    zlib: Vec<u8>,
    file: Vec<u8>,
    key: RootKey,
}

fn workload() -> Workload {
    workload_of(size())
}

fn workload_of(size: usize) -> Workload {
    let plain = coffer_bench::chat_sqlite(size);
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
    encoder.write_all(&plain).unwrap();
    let zlib = encoder.finish().unwrap();
    let key = RootKey::from_bytes([5u8; 32]);
    let header = HeaderSpec::new([1u8; 16], "2.24.1.1", "00", 0).encode();
    let mut file = Vec::new();
    crypt15::encrypt(
        &key,
        &header,
        &plain[..],
        &mut file,
        &EncryptOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    Workload {
        plain,
        zlib,
        file,
        key,
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(size() as u64));
    group
}

/// The baseline every ratio is taken against (`benches/report.py` looks it up by name): raw
/// AES-256-GCM over the whole plaintext.
fn bench_aes_baseline(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    key: &[u8],
    plain: &[u8],
) {
    group.bench_function("ceiling_aes256gcm_openssl_full_plaintext", |b| {
        let mut tag = [0u8; 16];
        b.iter(|| {
            encrypt_aead(
                Cipher::aes_256_gcm(),
                key,
                Some(&[1u8; 16]),
                &[],
                black_box(plain),
                &mut tag,
            )
            .unwrap()
        })
    });
}

fn decrypt_path(c: &mut Criterion) {
    let w = workload();
    let key = BackupKey::Root(w.key.clone());
    let file_key = w.key.crypt15_file_key();
    let iv = [1u8; 16];
    let mut tag = [0u8; 16];
    let zlib_ct = encrypt_aead(
        Cipher::aes_256_gcm(),
        file_key.as_slice(),
        Some(&iv),
        &[],
        &w.zlib,
        &mut tag,
    )
    .unwrap();

    let mut group = configure(c, "crypt15_decrypt");
    group.bench_function("coffer_decrypt", |b| {
        let mut out = Vec::with_capacity(size());
        b.iter(|| {
            out.clear();
            crypt15::decrypt(
                &key,
                &w.file[..],
                &mut out,
                &DecryptOptions::default(),
                &mut |_| {},
            )
            .unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("ceiling_aes256gcm_openssl_ciphertext_only", |b| {
        b.iter(|| {
            decrypt_aead(
                Cipher::aes_256_gcm(),
                file_key.as_slice(),
                Some(&iv),
                &[],
                &zlib_ct,
                &tag,
            )
            .unwrap()
        })
    });
    bench_aes_baseline(&mut group, file_key.as_slice(), &w.plain);
    group.bench_function("ceiling_md5_ciphertext", |b| {
        b.iter(|| {
            openssl::hash::hash(openssl::hash::MessageDigest::md5(), black_box(&w.file)).unwrap()
        })
    });
    group.bench_function("ceiling_inflate_zlib_rs", |b| {
        let mut out = vec![0u8; size() + 1024];
        b.iter(|| {
            let (done, status) =
                zlib_rs::decompress_slice(&mut out, &w.zlib, zlib_rs::InflateConfig::default());
            assert_eq!(status, zlib_rs::ReturnCode::Ok);
            black_box(done.len())
        })
    });
    group.bench_function("ceiling_inflate_miniz_oxide", |b| {
        b.iter(|| {
            black_box(
                miniz_oxide::inflate::decompress_to_vec_zlib(&w.zlib)
                    .unwrap()
                    .len(),
            )
        })
    });
    group.bench_function("ceiling_inflate_c_zlib", |b| {
        let mut out = Vec::with_capacity(size());
        b.iter(|| {
            out.clear();
            let mut decoder = flate2::write::ZlibDecoder::new(&mut out);
            decoder.write_all(&w.zlib).unwrap();
            decoder.finish().unwrap();
        })
    });
    group.bench_function("ceiling_memcpy", |b| {
        let mut out = vec![0u8; size()];
        b.iter(|| {
            out.copy_from_slice(black_box(&w.plain));
            black_box(out[size() - 1])
        })
    });
    group.finish();
}

fn encrypt_path(c: &mut Criterion) {
    let w = workload();
    let header = HeaderSpec::new([1u8; 16], "2.24.1.1", "00", 0).encode();
    let file_key = w.key.crypt15_file_key();
    let mut group = configure(c, "crypt15_encrypt");
    group.bench_function("coffer_encrypt_level1", |b| {
        let mut out = Vec::with_capacity(size());
        b.iter(|| {
            out.clear();
            crypt15::encrypt(
                &w.key,
                &header,
                &w.plain[..],
                &mut out,
                &EncryptOptions::default(),
                &mut |_| {},
            )
            .unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("ceiling_deflate_c_zlib_level1", |b| {
        b.iter(|| {
            let mut encoder = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(size() / 4),
                flate2::Compression::new(1),
            );
            encoder.write_all(&w.plain).unwrap();
            black_box(encoder.finish().unwrap().len())
        })
    });
    bench_aes_baseline(&mut group, file_key.as_slice(), &w.plain);
    group.finish();
}

/// The 1 GiB chat database: Coffer's crypt15 decryption (MD5 and AES-GCM on one thread,
/// inflate on another) against inflate alone on the same stream, as the reader inflates
/// (zlib-rs, 256 KiB at a time, output discarded): the inflate bound.
fn decrypt_1gib(c: &mut Criterion) {
    let size = coffer_bench::size(1 << 30);
    let w = workload_of(size);
    let key = BackupKey::Root(w.key.clone());
    drop(w.plain);
    let mut group = c.benchmark_group("crypt15_decrypt_1GiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("ceiling_inflate_zlib_rs_streaming", |b| {
        let mut out = vec![0u8; 256 * 1024];
        b.iter(|| {
            let mut inflate = zlib_rs::Inflate::new(true, 15);
            let mut input = &w.zlib[..];
            loop {
                let before = inflate.total_in();
                let status = inflate
                    .decompress(input, &mut out, zlib_rs::InflateFlush::NoFlush)
                    .unwrap();
                input = &input[(inflate.total_in() - before) as usize..];
                if status == zlib_rs::Status::StreamEnd {
                    break;
                }
            }
            black_box(inflate.total_out())
        })
    });
    group.bench_function("coffer_decrypt_to_sink", |b| {
        b.iter(|| {
            crypt15::decrypt(
                &key,
                &w.file[..],
                std::io::sink(),
                &DecryptOptions::default(),
                &mut |_| {},
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, decrypt_path, encrypt_path, decrypt_1gib);
criterion_main!(benches);
