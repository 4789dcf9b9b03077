//! The bench workloads (spec/conformance.md §11): chat-like SQLite databases made by a
//! deterministic generator, and a media blob (incompressible bytes, as photos are), each
//! with its crypt15 and Coffer-format files, made once and kept in a cache directory.

use anyhow::Context;
use coffer::crypt15::{self, EncryptOptions, HeaderSpec};
use coffer::format::{Compression, Header, WriteOptions};
use coffer::key::RootKey;
use coffer_testkit::workloads;
use sha2::{Digest, Sha256};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The key every bench file is encrypted under. It protects nothing: the workloads are
/// generated text, and adapters must be given a key.
pub const BENCH_KEY: [u8; 32] = [0x42; 32];

/// Bumped when the generator changes, so a cache never serves old files.
const GENERATOR: &str = "v1";

/// What a workload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A chat-like SQLite database (zlib level 1 compresses it about 3x, zstd 3.5x).
    ChatDatabase,
    /// Incompressible bytes (a media folder's photos and videos).
    Media,
}

/// One workload: its plaintext, digest and encrypted forms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Workload {
    /// Name, e.g. `sqlite-64MiB`.
    pub name: String,
    /// What it holds.
    pub kind: Kind,
    /// The plaintext file.
    pub plain: PathBuf,
    /// Its length in bytes.
    pub plain_len: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    /// The plaintext as a crypt15 file (zlib level 1, as WhatsApp writes it).
    pub crypt15: PathBuf,
    /// The plaintext as a Coffer file (zstd level 3, the default).
    pub coffer: PathBuf,
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

fn encrypt_both(plain: &Path, crypt15_path: &Path, coffer_path: &Path) -> anyhow::Result<()> {
    let root = RootKey::from_bytes(BENCH_KEY);
    let header = HeaderSpec::new([7; 16], "2.24.1.1", "00", 1).encode();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(crypt15_path)?);
    crypt15::encrypt(
        &root,
        &header,
        BufReader::with_capacity(1 << 20, std::fs::File::open(plain)?),
        &mut out,
        &EncryptOptions::default(),
        &mut |_| {},
    )?;
    out.flush()?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(coffer_path)?);
    coffer::format::encrypt(
        &root,
        Header::new(Compression::ZstdSeekable, Vec::new()),
        &mut BufReader::with_capacity(1 << 20, std::fs::File::open(plain)?),
        &mut out,
        &WriteOptions::default(),
    )
    .map(|_| ())?;
    out.flush()?;
    Ok(())
}

/// A size as the workload names write it: `1MiB`, `64MiB`, `1GiB`.
pub fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}GiB", bytes >> 30)
    } else {
        format!("{}MiB", bytes >> 20)
    }
}

/// Makes (or finds in `dir`) the workloads: a chat database of each size in `sizes`, and a
/// media blob of `media` bytes if given. `progress` hears what is being made.
pub fn prepare(
    dir: &Path,
    sizes: &[u64],
    media: Option<u64>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Workload>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut wanted: Vec<(String, Kind, u64)> = sizes
        .iter()
        .map(|&s| (format!("sqlite-{}", size_name(s)), Kind::ChatDatabase, s))
        .collect();
    if let Some(m) = media {
        wanted.push((format!("media-{}", size_name(m)), Kind::Media, m));
    }
    let mut workloads = Vec::new();
    for (name, kind, len) in wanted {
        let base = dir.join(format!("{name}-{GENERATOR}"));
        let plain = base.with_extension("plain");
        let digest = base.with_extension("sha256");
        let crypt15_path = base.with_extension("crypt15");
        let coffer_path = base.with_extension("coffer");
        let cached = [&plain, &digest, &crypt15_path, &coffer_path]
            .iter()
            .all(|p| p.exists());
        if !cached {
            progress(&format!(
                "making {name} (once; cached in {})",
                dir.display()
            ));
            match kind {
                Kind::ChatDatabase => {
                    workloads::chat_database(&plain, len).map_err(anyhow::Error::from_boxed)?
                }
                Kind::Media => workloads::media(&plain, len).map_err(anyhow::Error::from_boxed)?,
            }
            encrypt_both(&plain, &crypt15_path, &coffer_path)?;
            std::fs::write(&digest, sha256_of(&plain)?)?;
        }
        workloads.push(Workload {
            name,
            kind,
            plain_len: std::fs::metadata(&plain)?.len(),
            sha256: std::fs::read_to_string(&digest)?.trim().to_owned(),
            plain,
            crypt15: crypt15_path,
            coffer: coffer_path,
        });
    }
    Ok(workloads)
}

/// SHA-256 of a file, hex (to check what a tool wrote).
pub fn digest(path: &Path) -> anyhow::Result<String> {
    sha256_of(path)
}

/// Decrypts `file` (crypt15 or Coffer) with the reference library and returns the
/// plaintext's SHA-256 (to check what a tool encrypted), streaming.
pub fn decrypted_digest(file: &Path, format: &str) -> anyhow::Result<String> {
    struct Hasher(Sha256);
    impl Write for Hasher {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let root = RootKey::from_bytes(BENCH_KEY);
    let input = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut hasher = Hasher(Sha256::new());
    match format {
        "crypt15" => {
            crypt15::decrypt(
                &coffer::key::BackupKey::Root(root),
                input,
                &mut hasher,
                &crypt15::DecryptOptions::default(),
                &mut |_| {},
            )?;
        }
        _ => {
            coffer::format::decrypt(input, &root, &mut hasher)?;
        }
    }
    Ok(hex::encode(hasher.0.finalize()))
}
