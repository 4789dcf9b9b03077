//! The real WhatsApp-made backups in `vectors/external/wa-crypt-tools/`: every one decrypts to
//! `msgstore.db`, and re-encrypting with the original header and IV reproduces crypt15 exactly.

mod common;

use coffer::crypt15::{
    self, BackupFormat, DecryptOptions, EncryptOptions, HeaderSpec, Md5Status, PayloadKind,
};
use coffer::key::{BackupKey, RootKey};

fn decrypt_file(key: &BackupKey, name: &str) -> (Vec<u8>, crypt15::DecryptSummary) {
    let mut out = Vec::new();
    let summary = crypt15::decrypt(
        key,
        &common::read(name)[..],
        &mut out,
        &DecryptOptions::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (out, summary)
}

#[test]
fn every_sample_decrypts_to_msgstore() {
    let root = BackupKey::from_file_bytes(&common::read("encrypted_backup.key")).unwrap();
    let legacy = BackupKey::from_file_bytes(&common::read("key")).unwrap();
    let expected = common::msgstore();
    for (name, key, format) in [
        ("msgstore.db.crypt15", &root, BackupFormat::Crypt15),
        ("msgstore.db.crypt14", &legacy, BackupFormat::Crypt14),
        (
            "msgstore-noexpiry.db.crypt14",
            &legacy,
            BackupFormat::Crypt14,
        ),
        ("msgstore.db.crypt12", &legacy, BackupFormat::Crypt12),
    ] {
        let (plain, summary) = decrypt_file(key, name);
        assert_eq!(summary.header.format, format, "{name}");
        assert_eq!(summary.payload, PayloadKind::Zlib, "{name}");
        assert_eq!(summary.md5, Md5Status::Verified, "{name}");
        assert_eq!(summary.input_bytes, common::read(name).len() as u64);
        assert!(plain == expected, "{name} does not decrypt to msgstore.db");
    }
}

#[test]
fn crypt14_and_crypt12_also_open_with_the_64_digit_aes_key() {
    let legacy = common::read("key");
    let aes_key: [u8; 32] = legacy[126..158].try_into().unwrap();
    let key = BackupKey::Root(RootKey::from_bytes(aes_key));
    for name in ["msgstore.db.crypt14", "msgstore.db.crypt12"] {
        assert!(decrypt_file(&key, name).0 == common::msgstore(), "{name}");
    }
}

#[test]
fn crypt12_footer_is_reported() {
    let legacy = BackupKey::from_file_bytes(&common::read("key")).unwrap();
    let (_, summary) = decrypt_file(&legacy, "msgstore.db.crypt12");
    assert_eq!(summary.crypt12_footer.as_deref(), Some("--67"));
}

#[test]
fn reencrypting_with_the_original_header_and_iv_is_byte_exact() {
    let original = common::read("msgstore.db.crypt15");
    let header = crypt15::read_header(&mut &original[..]).unwrap();
    let root = match BackupKey::from_file_bytes(&common::read("encrypted_backup.key")).unwrap() {
        BackupKey::Root(root) => root,
        other => panic!("unexpected {other:?}"),
    };
    let mut out = Vec::new();
    let summary = crypt15::encrypt(
        &root,
        &header.raw,
        &common::msgstore()[..],
        &mut out,
        &EncryptOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.output_bytes, original.len() as u64);
    assert!(
        out == original,
        "re-encryption differs from the WhatsApp-made file"
    );
}

#[test]
fn default_header_spec_reproduces_the_whatsapp_header() {
    let original = common::read("msgstore.db.crypt15");
    let header = crypt15::read_header(&mut &original[..]).unwrap();
    let iv: [u8; 16] = header.iv.clone().try_into().unwrap();
    let spec = HeaderSpec::new(iv, "2.22.5.13", "67", 0);
    assert_eq!(hex::encode(spec.encode()), hex::encode(&header.raw));
}
