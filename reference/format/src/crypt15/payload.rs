//! What the plaintext is, and the evidence a reader needs to classify a failure: the payload
//! kind from its first bytes, where a zlib stream ended, whether a ZIP looks complete.

use serde::Serialize;
use std::io::Write;
use zlib_rs::{Inflate, InflateFlush, Status};

/// What the decrypted payload is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// A zlib stream (every current WhatsApp backup): inflated on output.
    Zlib,
    /// A stored ZIP archive (older multi-file backups): written as is.
    Zip,
    /// Zero bytes of plaintext.
    Empty,
    /// Neither: written as is (only ever reported for authenticated files).
    Unknown,
}

/// What a zlib payload inflated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InnerKind {
    /// An SQLite database (msgstore, wa.db, ...).
    Sqlite,
    /// A ZIP archive (multi-file and incremental backups).
    Zip,
    /// Nothing.
    Empty,
    /// Something else (JSON settings, WebP stickers, ...).
    Other,
}

fn inner_kind(head: &[u8]) -> InnerKind {
    if head.is_empty() {
        InnerKind::Empty
    } else if head.starts_with(b"SQLite format 3\0") {
        InnerKind::Sqlite
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        InnerKind::Zip
    } else {
        InnerKind::Other
    }
}

/// RFC 1950 header check: deflate, window <= 32 KiB, no preset dictionary, FCHECK valid.
pub(crate) fn is_zlib_header(head: &[u8]) -> bool {
    match head {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
const ZIP_EOCD: &[u8] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;

/// State of the zlib stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZlibState {
    Running,
    /// The stream ended after this many payload bytes.
    Ended {
        at: u64,
    },
    Failed(String),
}

/// Receives plaintext in order, writes the output, and keeps the evidence for classification.
pub(crate) struct PayloadSink<W: Write> {
    out: W,
    decompress: bool,
    head: Vec<u8>,
    kind: Option<PayloadKind>,
    inflate: Option<Box<Inflate>>,
    inflate_buf: Vec<u8>,
    pub(crate) zlib: ZlibState,
    inner_head: Vec<u8>,
    /// Plaintext bytes received.
    pub(crate) received: u64,
    /// Bytes written to `out`.
    pub(crate) written: u64,
    /// Last bytes of a passed-through payload, to look for a ZIP end record.
    tail: Vec<u8>,
}

/// What the sink learned, once all plaintext has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PayloadReport {
    pub kind: PayloadKind,
    pub inner: Option<InnerKind>,
    pub zlib: Option<ZlibState>,
    /// For stored payloads: the last 22 bytes are a ZIP end-of-central-directory record.
    pub zip_complete: bool,
    pub received: u64,
    pub written: u64,
}

impl PayloadReport {
    /// The plaintext starts like a payload WhatsApp writes (zlib or ZIP).
    pub(super) fn plausible(&self) -> bool {
        matches!(self.kind, PayloadKind::Zlib | PayloadKind::Zip)
    }
}

impl<W: Write> PayloadSink<W> {
    pub(crate) fn new(out: W, decompress: bool) -> Self {
        PayloadSink {
            out,
            decompress,
            head: Vec::with_capacity(4),
            kind: None,
            inflate: None,
            inflate_buf: Vec::new(),
            zlib: ZlibState::Running,
            inner_head: Vec::new(),
            received: 0,
            written: 0,
            tail: Vec::new(),
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn decide(&mut self, complete: bool) -> std::io::Result<()> {
        if self.kind.is_some() || (self.head.len() < 4 && !complete) {
            return Ok(());
        }
        let kind = if self.head.is_empty() {
            PayloadKind::Empty
        } else if is_zlib_header(&self.head) {
            PayloadKind::Zlib
        } else if self.head.starts_with(ZIP_LOCAL) {
            PayloadKind::Zip
        } else {
            PayloadKind::Unknown
        };
        self.kind = Some(kind);
        if kind == PayloadKind::Zlib {
            self.inflate = Some(Box::new(Inflate::new(true, 15)));
            self.inflate_buf = vec![0u8; 64 * 1024];
        }
        let head = std::mem::take(&mut self.head);
        self.route(&head)
    }

    /// Sends bytes to the inflater and/or the output, according to the decided kind.
    fn route(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let zlib = self.kind == Some(PayloadKind::Zlib);
        if !zlib || !self.decompress {
            self.emit(bytes)?;
            if !zlib {
                self.remember_tail(bytes);
            }
        }
        if zlib {
            self.inflate_bytes(bytes)?;
        }
        Ok(())
    }

    fn remember_tail(&mut self, bytes: &[u8]) {
        if bytes.len() >= EOCD_LEN {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - EOCD_LEN..]);
        } else {
            self.tail.extend_from_slice(bytes);
            let excess = self.tail.len().saturating_sub(EOCD_LEN);
            self.tail.drain(..excess);
        }
    }

    fn inflate_bytes(&mut self, mut input: &[u8]) -> std::io::Result<()> {
        let Some(inflate) = self.inflate.as_mut() else {
            return Ok(());
        };
        while !input.is_empty() && self.zlib == ZlibState::Running {
            let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
            let status = inflate.decompress(input, &mut self.inflate_buf, InflateFlush::NoFlush);
            let consumed = (inflate.total_in() - in_before) as usize;
            let produced = (inflate.total_out() - out_before) as usize;
            input = &input[consumed..];
            match status {
                Ok(Status::StreamEnd) => {
                    self.zlib = ZlibState::Ended {
                        at: inflate.total_in(),
                    }
                }
                Ok(Status::Ok) | Ok(Status::BufError) => {
                    if consumed == 0 && produced == 0 {
                        self.zlib = ZlibState::Failed("inflate made no progress".into());
                    }
                }
                Err(e) => {
                    let detail = inflate.error_message().unwrap_or(e.as_str());
                    self.zlib = ZlibState::Failed(format!("invalid zlib stream: {detail}"));
                }
            }
            if self.inner_head.len() < 16 {
                let take = produced.min(16 - self.inner_head.len());
                self.inner_head.extend_from_slice(&self.inflate_buf[..take]);
            }
            if self.decompress && produced > 0 {
                self.out.write_all(&self.inflate_buf[..produced])?;
                self.written += produced as u64;
            }
        }
        Ok(())
    }

    /// Accepts the next plaintext bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.received += bytes.len() as u64;
        if self.kind.is_none() {
            let take = bytes.len().min(4 - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            self.decide(false)?;
            return if self.kind.is_some() {
                self.route(&bytes[take..])
            } else {
                Ok(())
            };
        }
        self.route(bytes)
    }

    /// All plaintext has arrived: flush and report.
    pub(crate) fn finish(mut self) -> std::io::Result<(W, PayloadReport)> {
        self.decide(true)?;
        self.out.flush()?;
        let kind = self.kind.unwrap_or(PayloadKind::Empty);
        let report = PayloadReport {
            kind,
            inner: (kind == PayloadKind::Zlib).then(|| inner_kind(&self.inner_head)),
            zlib: (kind == PayloadKind::Zlib).then(|| self.zlib.clone()),
            zip_complete: self.tail.len() == EOCD_LEN && self.tail.starts_with(ZIP_EOCD),
            received: self.received,
            written: self.written,
        };
        Ok((self.out, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_header_check() {
        for ok in [
            [0x78, 0x01],
            [0x78, 0x5e],
            [0x78, 0x9c],
            [0x78, 0xda],
            [0x08, 0x1d],
        ] {
            assert!(is_zlib_header(&ok), "{ok:02x?}");
        }
        for bad in [[0x78, 0x00], [0x79, 0x9c], [0x88, 0x98], [0x78, 0xbb]] {
            assert!(!is_zlib_header(&bad), "{bad:02x?}");
        }
    }

    #[test]
    fn sink_inflates_in_any_chunking_and_records_the_end() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        for chunk in [1, 3, 4, 7, 4096, z.len()] {
            let mut sink = PayloadSink::new(Vec::new(), true);
            for piece in z.chunks(chunk) {
                sink.write(piece).unwrap();
            }
            sink.write(b"extra").unwrap();
            let (out, report) = sink.finish().unwrap();
            assert_eq!(out, data, "chunk {chunk}");
            assert_eq!(report.zlib, Some(ZlibState::Ended { at: z.len() as u64 }));
            assert_eq!(report.inner, Some(InnerKind::Other));
        }
    }
}
