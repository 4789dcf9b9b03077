//! Every way a backup can be wrong gets its own class, and never a success.

mod common;

use coffer::crypt15::PayloadEncoding;
use coffer::internal::crypt15_header::MAX_PREFIX_LEN;
use coffer::key::{BackupKey, RootKey};
use coffer::ErrorClass;
use common::*;

fn key() -> BackupKey {
    BackupKey::Root(test_key())
}

fn file(len: usize) -> (Vec<u8>, Vec<u8>) {
    let plain = chat_like(len);
    let file = crypt15_file(
        &test_key(),
        &plain,
        PayloadEncoding::Zlib { level: 1 },
        true,
    );
    (plain, file)
}

fn header_len(file: &[u8]) -> usize {
    coffer::crypt15::read_header(&mut &file[..]).unwrap().len()
}

#[test]
fn generated_file_round_trips_at_every_block_size() {
    let (plain, file) = file(50_000);
    for block in [1, 2, 15, 16, 17, 31, 32, 33, 100, 4096, 1 << 20] {
        assert_eq!(
            try_decrypt(&key(), &file, block).unwrap(),
            plain,
            "block {block}"
        );
    }
}

#[test]
fn wrong_key() {
    let (_, file) = file(10_000);
    let other = BackupKey::Root(RootKey::from_bytes([8u8; 32]));
    expect_class(&other, &file, ErrorClass::WrongKey, "generated file");
    let real = read("msgstore.db.crypt15");
    expect_class(&other, &real, ErrorClass::WrongKey, "real crypt15");
    // A crypt12/14 key file cannot open crypt15, and a crypt15 key does not open crypt14.
    let legacy = BackupKey::from_file_bytes(&read("key")).unwrap();
    expect_class(
        &legacy,
        &real,
        ErrorClass::WrongKey,
        "legacy key on crypt15",
    );
    let root = BackupKey::from_file_bytes(&read("encrypted_backup.key")).unwrap();
    expect_class(
        &root,
        &read("msgstore.db.crypt14"),
        ErrorClass::WrongKey,
        "root key on crypt14",
    );
    expect_class(
        &root,
        &read("msgstore.db.crypt12"),
        ErrorClass::WrongKey,
        "root key on crypt12",
    );
}

#[test]
fn legacy_key_of_another_account_is_refused_before_decrypting() {
    let mut bytes = read("key");
    bytes[40] ^= 1; // inside the server salt
    let other = BackupKey::from_file_bytes(&bytes).unwrap();
    for name in [
        "msgstore.db.crypt14",
        "msgstore-noexpiry.db.crypt14",
        "msgstore.db.crypt12",
    ] {
        match try_decrypt(&other, &read(name), 4096) {
            Err((ErrorClass::WrongKey, message)) => {
                assert!(message.contains("salt"), "{name}: {message}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn flipped_ciphertext_bit_with_and_without_recomputed_md5() {
    for (name, key) in [
        ("generated", None),
        (
            "msgstore.db.crypt15",
            Some(BackupKey::from_file_bytes(&read("encrypted_backup.key")).unwrap()),
        ),
        (
            "msgstore.db.crypt14",
            Some(BackupKey::from_file_bytes(&read("key")).unwrap()),
        ),
    ] {
        let (file, key) = match key {
            Some(key) => (read(name), key),
            None => (file(20_000).1, self::key()),
        };
        let start = header_len(&file);
        // Not in the last bytes of the deflate stream: damage there can make the stream look
        // unfinished, which is indistinguishable from truncation (spec/crypt15.md).
        for position in [
            start + 2,
            start + 100,
            (start + file.len()) / 2,
            file.len() - 200,
        ] {
            let mut bad = file.clone();
            bad[position] ^= 0x10;
            expect_class(
                &key,
                &bad,
                ErrorClass::Corrupt,
                &format!("{name} bit at {position}"),
            );
            fix_md5(&mut bad);
            expect_class(
                &key,
                &bad,
                ErrorClass::Corrupt,
                &format!("{name} bit at {position}, MD5 recomputed"),
            );
        }
    }
}

#[test]
fn damaged_tag_or_md5_or_header_is_corrupt() {
    let (_, file) = file(5_000);
    let n = file.len();
    for (position, what) in [(n - 1, "MD5"), (n - 20, "tag"), (30, "header metadata")] {
        let mut bad = file.clone();
        bad[position] ^= 1;
        expect_class(&key(), &bad, ErrorClass::Corrupt, what);
    }
    let mut bad = file.clone();
    bad[n - 20] ^= 1;
    fix_md5(&mut bad);
    expect_class(&key(), &bad, ErrorClass::Corrupt, "tag with MD5 recomputed");
}

#[test]
fn truncation_at_every_offset_of_a_small_file() {
    let (_, file) = file(3_000);
    for cut in 0..file.len() {
        expect_class(
            &key(),
            &file[..cut],
            ErrorClass::Truncated,
            &format!("cut at {cut} of {}", file.len()),
        );
    }
}

#[test]
fn truncation_of_the_real_backups() {
    let root = BackupKey::from_file_bytes(&read("encrypted_backup.key")).unwrap();
    let legacy = BackupKey::from_file_bytes(&read("key")).unwrap();
    for (name, key) in [
        ("msgstore.db.crypt15", &root),
        ("msgstore.db.crypt14", &legacy),
        ("msgstore-noexpiry.db.crypt14", &legacy),
        ("msgstore.db.crypt12", &legacy),
    ] {
        let file = read(name);
        let n = file.len();
        let cuts = (0..200).chain((200..n).step_by(9_973)).chain(n - 40..n);
        for cut in cuts {
            expect_class(
                key,
                &file[..cut],
                ErrorClass::Truncated,
                &format!("{name} cut at {cut}"),
            );
        }
    }
}

#[test]
fn trailing_data() {
    let (_, file) = file(5_000);
    for extra in [1usize, 15, 16, 17, 32, 33, 1000] {
        let mut long = file.clone();
        long.extend((0..extra).map(|i| i as u8));
        expect_class(
            &key(),
            &long,
            ErrorClass::TrailingData,
            &format!("{extra} bytes appended"),
        );
    }
    let mut real = read("msgstore.db.crypt15");
    real.extend_from_slice(&[0u8; 64]);
    expect_class(
        &BackupKey::from_file_bytes(&read("encrypted_backup.key")).unwrap(),
        &real,
        ErrorClass::TrailingData,
        "real crypt15 + 64 zeros",
    );
}

#[test]
fn empty_file_and_short_files() {
    expect_class(&key(), b"", ErrorClass::Truncated, "empty file");
    let (_, file) = file(100);
    let h = header_len(&file);
    expect_class(&key(), &file[..h], ErrorClass::Truncated, "header only");
    expect_class(
        &key(),
        &file[..h + 15],
        ErrorClass::Truncated,
        "less than a tag",
    );
}

#[test]
fn header_length_beyond_the_file_or_the_limit() {
    // Declares 300 header bytes but the file has 10.
    let mut short = vec![0xac, 0x02];
    short.extend_from_slice(&[0x08, 0x01, 0x1a, 0x12, 0x0a, 0x10, 0, 0]);
    expect_class(
        &key(),
        &short,
        ErrorClass::Truncated,
        "length beyond the file",
    );
    // Declares more than the limit.
    let mut huge = Vec::new();
    let mut n = MAX_PREFIX_LEN as u64 + 1;
    while n >= 0x80 {
        huge.push((n as u8) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.extend_from_slice(&[0u8; 64]);
    expect_class(
        &key(),
        &huge,
        ErrorClass::Malformed,
        "length beyond the limit",
    );
    expect_class(
        &key(),
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        ErrorClass::Malformed,
        "5-byte varint",
    );
}

#[test]
fn unknown_key_type_is_unsupported() {
    let (_, mut file) = file(100);
    let h = header_len(&file);
    // Field 1 (key_type) is the first field of the prefix: bytes 08 01 after the length.
    let at = file[..h]
        .windows(2)
        .position(|w| w == [0x08, 0x01])
        .unwrap();
    file[at + 1] = 0x07;
    expect_class(&key(), &file, ErrorClass::Unsupported, "key_type 7");
}

#[test]
fn plaintext_files_are_malformed() {
    let db = msgstore();
    expect_class(
        &key(),
        &db,
        ErrorClass::Malformed,
        "plaintext SQLite named .crypt15",
    );
    expect_class(
        &key(),
        b"PK\x03\x04rest of a zip",
        ErrorClass::Malformed,
        "plaintext ZIP",
    );
    expect_class(
        &key(),
        &[0x78, 0x9c, 1, 2, 3],
        ErrorClass::Malformed,
        "plaintext zlib",
    );
}

#[test]
fn malformed_protobuf_headers() {
    for (what, body) in [
        ("group wire type", vec![0x0b, 0x00]),
        ("length past end", vec![0x1a, 0x40, 0x0a]),
        ("no cipher block", vec![0x08, 0x01]),
        ("short IV", {
            let mut b = vec![0x1a, 0x06, 0x0a, 0x04];
            b.extend([1, 2, 3, 4]);
            b
        }),
        ("both blocks", {
            let mut b = vec![0x1a, 0x12, 0x0a, 0x10];
            b.extend([0u8; 16]);
            b.extend([0x1a, 0x12, 0x0a, 0x10]);
            b.extend([0u8; 16]);
            b
        }),
        ("metadata text not UTF-8", {
            let mut b = vec![0x1a, 0x12, 0x0a, 0x10];
            b.extend([0u8; 16]);
            b.extend([0x22, 0x03, 0x0a, 0x01, 0xff]);
            b
        }),
    ] {
        let mut file = vec![body.len() as u8];
        file.extend(&body);
        file.extend([0u8; 64]);
        expect_class(&key(), &file, ErrorClass::Malformed, what);
    }
}

#[test]
fn stray_01_after_a_short_length_is_tolerated() {
    // wa-crypt-tools 0.1.0 writes `len 01 prefix` even when len < 128.
    let plain = chat_like(1000);
    let header = coffer::crypt15::HeaderSpec {
        key_type: 1,
        iv: [3u8; 16],
        metadata: vec![],
    }
    .encode();
    assert!(header[0] < 0x80);
    let mut legacy_header = vec![header[0], 0x01];
    legacy_header.extend_from_slice(&header[1..]);
    let mut out = Vec::new();
    coffer::crypt15::encrypt(
        &test_key(),
        &legacy_header,
        &plain[..],
        &mut out,
        &Default::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(try_decrypt(&key(), &out, 4096).unwrap(), plain);
    let parsed = coffer::crypt15::read_header(&mut &out[..]).unwrap();
    assert!(parsed.prefix.unwrap().legacy_flag_byte);
}

#[test]
fn multi_file_zip_without_md5() {
    // A stored ZIP (end record last), no MD5: the older multi-file layout.
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(chat_like(3000));
    zip.extend(b"PK\x05\x06");
    zip.extend([0u8; 18]);
    let file = crypt15_file(&test_key(), &zip, PayloadEncoding::Stored, false);
    assert_eq!(try_decrypt(&key(), &file, 4096).unwrap(), zip);
    let mut bad = file.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 4;
    expect_class(&key(), &bad, ErrorClass::Corrupt, "zip bit flip");
    expect_class(
        &key(),
        &file[..file.len() - 100],
        ErrorClass::Truncated,
        "zip truncated",
    );
}

#[test]
fn empty_plaintext_round_trips() {
    for (payload, md5) in [
        (PayloadEncoding::Zlib { level: 1 }, true),
        (PayloadEncoding::Stored, true),
        (PayloadEncoding::Stored, false),
    ] {
        let file = crypt15_file(&test_key(), b"", payload, md5);
        assert_eq!(
            try_decrypt(&key(), &file, 4096).unwrap(),
            b"",
            "{payload:?} md5 {md5}"
        );
    }
}

#[test]
fn new_iv_replaces_the_iv_field_even_when_its_bytes_repeat_later() {
    use coffer::crypt15::{with_new_iv, HeaderSpec, MetaField, MetaValue};
    let iv = [0x5au8; 16];
    let mut spec = HeaderSpec::new(iv, "2.24.1.1", "42", 1);
    // Field 40 (hash salt) happens to hold the same 16 bytes as the IV.
    spec.metadata.push(MetaField {
        number: 40,
        name: "backup_encrypted_hash_salt",
        value: MetaValue::Blob(iv.to_vec()),
    });
    let raw = spec.encode();
    let header = coffer::crypt15::read_header(&mut &raw[..]).unwrap();
    let replaced = with_new_iv(&header, &[0x11u8; 16]).unwrap();
    let reparsed = coffer::crypt15::read_header(&mut &replaced[..]).unwrap();
    assert_eq!(reparsed.iv, vec![0x11u8; 16]);
    let salt = reparsed
        .prefix
        .unwrap()
        .metadata
        .into_iter()
        .find(|f| f.number == 40)
        .unwrap();
    assert_eq!(
        salt.value,
        MetaValue::Blob(iv.to_vec()),
        "the metadata copy must be untouched"
    );
}
