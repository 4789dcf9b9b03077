//! The measurement behind the Coffer format's compression codec (spec/format.md §8):
//! zstd, deflate (zlib-rs and C zlib) and LZ4 on the real WhatsApp `msgstore.db` and on
//! incompressible bytes (a stand-in for JPEG/MP4 media), compress and decompress, with
//! memcpy of the same buffer as the ceiling. Compressed sizes are written to
//! `target/criterion/compression-ratios.md` (benches/report.py prints it).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

/// Deterministic incompressible bytes (xorshift64*).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

type Codec = (
    &'static str,
    fn(&[u8]) -> Vec<u8>,
    fn(&[u8], usize) -> Vec<u8>,
);

fn zstd_c(level: i32) -> impl Fn(&[u8]) -> Vec<u8> {
    move |d| zstd::bulk::compress(d, level).unwrap()
}

fn codecs() -> Vec<Codec> {
    vec![
        (
            "zstd1",
            |d| zstd_c(1)(d),
            |c, n| zstd::bulk::decompress(c, n).unwrap(),
        ),
        (
            "zstd3",
            |d| zstd_c(3)(d),
            |c, n| zstd::bulk::decompress(c, n).unwrap(),
        ),
        (
            "zstd9",
            |d| zstd_c(9)(d),
            |c, n| zstd::bulk::decompress(c, n).unwrap(),
        ),
        ("zlib_rs_level1", |d| zlib_rs_c(d, 1), zlib_rs_d),
        ("zlib_rs_level6", |d| zlib_rs_c(d, 6), zlib_rs_d),
        ("c_zlib_level1", |d| c_zlib_c(d, 1), c_zlib_d),
        ("c_zlib_level6", |d| c_zlib_c(d, 6), c_zlib_d),
        (
            "lz4_flex_block",
            |d| lz4_flex::compress(d),
            |c, n| lz4_flex::decompress(c, n).unwrap(),
        ),
    ]
}

fn zlib_rs_c(data: &[u8], level: i32) -> Vec<u8> {
    let mut out = vec![0u8; zlib_rs::compress_bound(data.len())];
    let (done, rc) = zlib_rs::compress_slice(&mut out, data, zlib_rs::DeflateConfig::new(level));
    assert_eq!(rc, zlib_rs::ReturnCode::Ok);
    let n = done.len();
    out.truncate(n);
    out
}

fn zlib_rs_d(data: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let (done, rc) = zlib_rs::decompress_slice(&mut out, data, zlib_rs::InflateConfig::default());
    assert_eq!(rc, zlib_rs::ReturnCode::Ok);
    assert_eq!(done.len(), len);
    out
}

fn c_zlib_c(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn c_zlib_d(data: &[u8], len: usize) -> Vec<u8> {
    let mut d = flate2::write::ZlibDecoder::new(Vec::with_capacity(len));
    d.write_all(data).unwrap();
    d.finish().unwrap()
}

fn bench_input(c: &mut Criterion, name: &str, data: &[u8], ratios: &mut String) {
    let mut group = c.benchmark_group(format!("compression_{name}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("ceiling_memcpy", |b| {
        let mut out = vec![0u8; data.len()];
        b.iter(|| {
            out.copy_from_slice(black_box(data));
            black_box(out[0])
        })
    });
    for (codec, compress, decompress) in codecs() {
        let packed = compress(data);
        assert_eq!(decompress(&packed, data.len()), data, "{codec} round trip");
        ratios.push_str(&format!(
            "| {name} | {codec} | {} | {:.2} |\n",
            packed.len(),
            data.len() as f64 / packed.len() as f64
        ));
        group.bench_function(format!("{codec}_compress"), |b| {
            b.iter(|| black_box(compress(black_box(data)).len()))
        });
        group.bench_function(format!("{codec}_decompress"), |b| {
            b.iter(|| black_box(decompress(black_box(&packed), data.len()).len()))
        });
    }
    group.finish();
}

fn compression(c: &mut Criterion) {
    let db_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vectors/external/wa-crypt-tools/msgstore.db"
    );
    let db = std::fs::read(db_path).expect("msgstore.db sample");
    let random = random_bytes(coffer_bench::size(16 << 20));
    let mut ratios =
        String::from("| input | codec | compressed bytes | ratio |\n|---|---|---:|---:|\n");
    bench_input(c, "msgstore_db", &db, &mut ratios);
    bench_input(c, "random_16MiB", &random, &mut ratios);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    // Quick mode's inputs are not the ones the table names.
    if !coffer_bench::quick() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("compression-ratios.md"), ratios);
    }
}

criterion_group!(benches, compression);
criterion_main!(benches);
