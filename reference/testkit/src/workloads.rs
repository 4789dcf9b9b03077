//! Bench and test workloads made by deterministic generators, so every machine builds the
//! same files: a chat-like SQLite database (rows of short messages from a few chats, as in
//! WhatsApp's `msgstore.db`, with no long repeats for a compressor to find) and incompressible
//! media bytes. Used by the conformance runner's bench and the criterion benches.

use std::error::Error;
use std::io::{BufWriter, Write};
use std::path::Path;

/// A small deterministic generator (xorshift64*), so every machine builds the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "ok",
    "yes",
    "no",
    "see",
    "you",
    "tomorrow",
    "today",
    "at",
    "the",
    "station",
    "I",
    "am",
    "on",
    "my",
    "way",
    "haha",
    "thanks",
    "love",
    "it",
    "dinner",
    "tonight",
    "call",
    "me",
    "when",
    "free",
    "did",
    "get",
    "photo",
    "sent",
    "meeting",
    "moved",
    "to",
    "three",
    "pm",
    "good",
    "morning",
    "night",
    "where",
    "are",
    "we",
    "going",
    "weekend",
    "train",
    "late",
    "sorry",
    "birthday",
    "happy",
    "party",
    "bring",
    "something",
    "milk",
    "bread",
    "shop",
    "closed",
    "open",
    "again",
    "soon",
    "miss",
    "u",
    "lol",
    "what",
    "time",
    "is",
    "it",
    "now",
    "coffee",
    "later",
    "sure",
    "maybe",
    "next",
    "week",
    "holiday",
    "tickets",
    "booked",
];

/// A chat database of at least `len` bytes at `path`.
pub fn chat_database(path: &Path, len: u64) -> Result<(), Box<dyn Error + Send + Sync>> {
    let _ = std::fs::remove_file(path);
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA page_size = 4096;
         CREATE TABLE messages (_id INTEGER PRIMARY KEY, key_remote_jid TEXT NOT NULL,
             key_from_me INTEGER, timestamp INTEGER, status INTEGER, data TEXT);
         CREATE INDEX messages_jid_index ON messages (key_remote_jid, timestamp);",
    )?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut timestamp: u64 = 1_600_000_000_000;
    let mut text = String::new();
    // Rows take about 165 bytes: small databases grow in small steps, so they end near
    // their size; large ones in 20,000-row transactions.
    let batch = (len / 165 / 8).clamp(500, 20_000);
    loop {
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO messages (key_remote_jid, key_from_me, timestamp, status, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for _ in 0..batch {
                text.clear();
                for w in 0..(2 + rng.below(24)) {
                    if w > 0 {
                        text.push(' ');
                    }
                    // Small word numbers come up more often, as in speech.
                    let i = rng.below(WORDS.len() as u64) * rng.below(WORDS.len() as u64);
                    text.push_str(WORDS[(i / WORDS.len() as u64) as usize]);
                }
                timestamp += 1 + rng.below(90_000);
                let chat = format!("49176{:08}@s.whatsapp.net", rng.below(60));
                insert.execute(rusqlite::params![
                    chat,
                    rng.below(2),
                    timestamp as i64,
                    rng.below(14),
                    text
                ])?;
            }
        }
        tx.commit()?;
        let size: i64 = db.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )?;
        if u64::try_from(size).unwrap_or(0) >= len {
            return Ok(());
        }
    }
}

/// `len` incompressible bytes at `path`.
pub fn media(path: &Path, len: u64) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut block = vec![0u8; 1 << 16];
    let mut written = 0u64;
    while written < len {
        for word in block.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = usize::try_from((len - written).min(block.len() as u64))?;
        out.write_all(&block[..n])?;
        written += n as u64;
    }
    out.flush()?;
    Ok(())
}
