//! The Coffer-format side of `encrypt`, `decrypt`, `verify` and `info`.

use super::input::open_input;

use super::failure::{CliResult, Failure};
use super::output::{self, flush, name, progress_bar, AtomicOutput};
use super::{CompressArg, DecryptArgs, EncryptArgs, Report};
use coffer::format::{
    self, ByteRange, Compression, Content, FileSummary, Header, MetaValue, RandomAccess,
    WriteOptions,
};
use coffer::format::{
    check_footer, decrypt_parallel_at, inspect, tag, Discard, FooterState, Parallelism, RangeError,
    WriteAt, FOOTER_LEN,
};
use coffer::key::RootKey;
use coffer::ErrorClass;
use indicatif::ProgressBar;
use serde_json::json;
use std::io::{self, Read, Write};
use std::path::Path;

/// Counts bytes read for the progress bar.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn lib_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(format::FormatError) -> Failure + 'a {
    move |e| Failure::from_lib(&format!("cannot {what} {}", path.display()), e)
}

/// True when the file at `path` starts with the Coffer magic.
pub(super) fn is_coffer(path: &Path) -> CliResult<bool> {
    let (mut file, _) = open_input(path)?;
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::io(format!("cannot read {}", path.display()), e)),
        }
    }
    Ok(format::looks_like_coffer(&magic[..got]))
}

/// Today (UTC midnight) in Unix seconds: the header is public, so the time is coarse.
fn today_unix() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now - now % 86_400
}

/// `coffer encrypt --format coffer`: a file as is, a directory as a tar stream.
pub(super) fn encrypt(args: &EncryptArgs, root: &RootKey) -> CliResult<Report> {
    let compression = match args.compress.unwrap_or(CompressArg::Zstd) {
        CompressArg::None => Compression::None,
        CompressArg::Zstd => Compression::ZstdSeekable,
    };
    if compression == Compression::None && args.zstd_level.is_some() {
        return Err(Failure::usage(
            "--zstd-level applies to --compress zstd only",
        ));
    }
    check_readable(&args.input)?;
    let target = AtomicOutput::create_for(&args.input, &args.output, args.force)?;
    encrypt_path(
        &args.input,
        &args.output,
        target,
        compression,
        WriteOptions {
            zstd_level: args.zstd_level.unwrap_or(3),
            threads: args.threads.unwrap_or(0),
            ..WriteOptions::default()
        },
        root,
    )
}

/// Checks that `input` (a file or a directory) can be read, before any other work.
pub(super) fn check_readable(input: &Path) -> CliResult<()> {
    if input.is_dir() {
        std::fs::read_dir(input)
            .map(drop)
            .map_err(|e| Failure::io(format!("cannot read {}", input.display()), e))
    } else {
        open_input(input).map(drop)
    }
}

/// Checks that `input` is a Coffer file whose header parses, before any other work (a
/// restore asks the vault only for a file it can open); returns the header.
pub(super) fn check_coffer_input(input: &Path) -> CliResult<Header> {
    if !is_coffer(input)? {
        return Err(Failure::new(
            ErrorClass::Unsupported,
            format!("{} is not a Coffer file", input.display()),
        ));
    }
    let (mut file, size) = open_input(input)?;
    inspect(&mut file, size)
        .map(|info| info.header)
        .map_err(lib_err("read", input))
}

/// Encrypts a file, or a directory as tar, into a Coffer file at `output` (through `target`,
/// made for it).
pub(super) fn encrypt_path(
    input: &Path,
    output: &Path,
    target: AtomicOutput,
    compression: Compression,
    options: WriteOptions,
    root: &RootKey,
) -> CliResult<Report> {
    let is_dir = input.is_dir();
    let content = if is_dir { Content::Tar } else { Content::File };
    let header = Header::new(
        compression,
        vec![
            (tag::CREATED, MetaValue::U64(today_unix())),
            (
                tag::GENERATOR,
                MetaValue::Text(format!("coffer {}", env!("CARGO_PKG_VERSION"))),
            ),
            (tag::CONTENT, MetaValue::U64(u64::from(is_dir))),
        ],
    );
    if !is_dir && compression == Compression::None {
        let (file, size) = open_input(input)?;
        if file.metadata().is_ok_and(|m| m.is_file()) {
            // A regular file: workers read, seal and write their own batches.
            let bar = progress_bar(size, "encrypting");
            let summary =
                format::encrypt_parallel_at(root, header, &file, target.file(), &options, &|n| {
                    bar.set_position(n)
                })
                .map_err(lib_err("encrypt", input))?;
            bar.finish_and_clear();
            target.commit()?;
            return Ok(encrypt_report(input, output, summary, compression, content));
        }
    }
    let mut out = target.writer();
    let mut writer =
        format::Writer::new(&mut out, root, header, &options).map_err(lib_err("encrypt", input))?;
    if is_dir {
        let bar = ProgressBar::new_spinner();
        bar.set_message("packing and encrypting");
        let mut builder = tar::Builder::new(&mut writer);
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", input)
            .and_then(|()| builder.finish())
            .map_err(|e| Failure::from_io_lib(&format!("cannot pack {}", input.display()), e))?;
        drop(builder);
        bar.finish_and_clear();
    } else {
        let (file, size) = open_input(input)?;
        let bar = progress_bar(size, "encrypting");
        let mut reader = Progress {
            inner: file,
            bar: bar.clone(),
        };
        writer
            .copy_from(&mut reader)
            .map_err(|e| Failure::from_io_lib(&format!("cannot encrypt {}", input.display()), e))?;
        bar.finish_and_clear();
    }
    let (_, summary) = writer.finish().map_err(lib_err("encrypt", input))?;
    flush(out, output)?;
    target.commit()?;
    Ok(encrypt_report(input, output, summary, compression, content))
}

/// What `encrypt --format coffer` reports.
fn encrypt_report(
    input: &Path,
    output: &Path,
    summary: FileSummary,
    compression: Compression,
    content: Content,
) -> Report {
    let is_dir = content == Content::Tar;
    Report {
        text: format!(
            "{}: {} bytes{} -> Coffer file of {} bytes in {} ({}, {})",
            input.display(),
            summary.plaintext_len,
            if is_dir {
                " (tar of the directory)"
            } else {
                ""
            },
            summary.file_len,
            output.display(),
            name(&compression),
            name(&content),
        ),
        json: json!({
            "command": "encrypt",
            "input": input,
            "output": output,
            "format": "coffer",
            "compression": compression,
            "content": content,
            "plaintext_bytes": summary.plaintext_len,
            "output_bytes": summary.file_len,
        }),
    }
}

/// The progress bar of decrypting `input` (of `size` bytes), which counts plaintext bytes: its
/// total is the plaintext length when the file is uncompressed and complete, and there is no
/// total for a compressed file (its plaintext length is known only at its end).
fn plaintext_bar(input: &Path, size: u64, what: &str) -> ProgressBar {
    let plaintext = open_input(input)
        .ok()
        .and_then(|(mut file, _)| inspect(&mut file, size).ok())
        .filter(|info| info.header.compression == Compression::None)
        .and_then(|info| info.layout(size))
        .map(|(_, plain)| plain);
    match plaintext {
        Some(total) => progress_bar(total, what),
        None => output::counter_bar(what),
    }
}

/// Streaming on this thread (`threads == 1`) or on all cores, into a file or nowhere;
/// progress on `bar`.
fn decrypt_file<O: WriteAt + Sync>(
    file: std::fs::File,
    root: &RootKey,
    out: &O,
    threads: usize,
    bar: &ProgressBar,
) -> Result<(Header, FileSummary), format::FormatError> {
    decrypt_parallel_at(&file, root, out, Parallelism::threads(threads), &|n| {
        bar.set_position(n)
    })
}

/// Decrypts the Coffer file at `input` (checked by [`check_coffer_input`]) through `target`
/// (on all cores when uncompressed).
pub(super) fn decrypt_path(
    input: &Path,
    target: AtomicOutput,
    root: &RootKey,
) -> CliResult<(Header, FileSummary)> {
    let (file, size) = open_input(input)?;
    let bar = plaintext_bar(input, size, "decrypting");
    let done =
        decrypt_file(file, root, target.file(), 0, &bar).map_err(lib_err("decrypt", input))?;
    bar.finish_and_clear();
    target.commit()?;
    Ok(done)
}

/// `coffer decrypt` of a Coffer file: whole (parallel when uncompressed) or a byte range.
pub(super) fn decrypt(args: &DecryptArgs, root: &RootKey) -> CliResult<Report> {
    if let Some(range) = &args.range {
        return decrypt_range(args, root, range);
    }
    let (input, size) = open_input(&args.input)?;
    let target = AtomicOutput::create_for(&args.input, &args.output, args.force)?;
    let bar = plaintext_bar(&args.input, size, "decrypting");
    let (header, summary) =
        decrypt_file(input, root, target.file(), args.threads.unwrap_or(0), &bar)
            .map_err(lib_err("decrypt", &args.input))?;
    bar.finish_and_clear();
    target.commit()?;
    Ok(report("decrypt", args, &header, &summary, None))
}

/// `coffer decrypt --extract DIR`: a folder backup decrypted whole into an unnamed temporary
/// file, authenticated, then unpacked into a hidden directory beside DIR that takes DIR's name
/// only when every entry is in (an empty DIR is replaced; anything else in DIR is refused
/// before any work).
pub(super) fn extract(args: &DecryptArgs, dir: &Path) -> CliResult<Report> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Failure::new(
                ErrorClass::Io,
                format!("{} exists and is not an empty directory", dir.display()),
            ));
        }
    }
    let content = check_coffer_input(&args.input)?.content();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if content != Content::Tar {
        return Err(Failure::usage(format!(
            "{} holds one file, not a folder; decrypt it with -o",
            args.input.display()
        )));
    }
    let root = super::key_arg::resolve_root(args.key.key.as_deref())?;
    let staging = tempfile::Builder::new()
        .prefix(".coffer-extract.")
        .tempdir_in(parent)
        .map_err(|e| {
            Failure::io(
                format!("cannot create a directory in {}", parent.display()),
                e,
            )
        })?;
    let _registered = super::output::register_partial(staging.path())?;
    let plain = tempfile::tempfile_in(staging.path())
        .map_err(|e| Failure::io("cannot create a temporary file", e))?;
    let (input, size) = open_input(&args.input)?;
    let bar = plaintext_bar(&args.input, size, "decrypting");
    let (_, summary) = decrypt_file(input, &root, &plain, args.threads.unwrap_or(0), &bar)
        .map_err(lib_err("decrypt", &args.input))?;
    bar.finish_and_clear();
    let tree = staging.path().join("tree");
    std::fs::create_dir(&tree)
        .map_err(|e| Failure::io(format!("cannot create {}", tree.display()), e))?;
    let mut plain = plain;
    io::Seek::rewind(&mut plain).map_err(|e| Failure::io("cannot read the temporary file", e))?;
    let entries = super::unpack::unpack(io::BufReader::new(plain), &tree)?;
    std::fs::rename(&tree, dir).map_err(|e| {
        Failure::io(
            format!("cannot move the unpacked folder to {}", dir.display()),
            e,
        )
    })?;
    Ok(Report {
        text: format!(
            "{}: Coffer folder backup, {} bytes of tar -> {entries} entries in {}",
            args.input.display(),
            summary.plaintext_len,
            dir.display()
        ),
        json: json!({
            "command": "decrypt",
            "input": args.input,
            "extract": dir,
            "format": "coffer",
            "content": content,
            "plaintext_bytes": summary.plaintext_len,
            "entries": entries,
        }),
    })
}

fn decrypt_range(args: &DecryptArgs, root: &RootKey, range: &str) -> CliResult<Report> {
    let bad = |e: RangeError| Failure::usage(format!("--range {range:?}: {e}"));
    let wanted: ByteRange = range.parse().map_err(bad)?;
    let (input, _) = open_input(&args.input)?;
    let mut access = RandomAccess::open(input, root).map_err(lib_err("open", &args.input))?;
    let (start, end) = wanted.resolve(access.len()).map_err(bad)?;
    let total = access.len();
    let target = AtomicOutput::create_for(&args.input, &args.output, args.force)?;
    let mut out = target.writer();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = access
            .read_at(at, &mut buf[..want])
            .map_err(lib_err("decrypt", &args.input))?;
        out.write_all(&buf[..n])
            .map_err(|e| Failure::io(format!("cannot write {}", args.output.display()), e))?;
        at += n as u64;
    }
    flush(out, &args.output)?;
    target.commit()?;
    let header = access.header().clone();
    let summary = FileSummary {
        plaintext_len: total,
        file_len: 0,
    };
    let mut done = report("decrypt", args, &header, &summary, Some((start, end)));
    if header.compression == Compression::ZstdSeekable {
        // What the range cost: the frames it had to decompress (spec/format.md §9).
        done.json["range"]["frames_decompressed"] = json!(access.frames_decoded());
    }
    Ok(done)
}

fn report(
    command: &str,
    args: &DecryptArgs,
    header: &Header,
    summary: &FileSummary,
    range: Option<(u64, u64)>,
) -> Report {
    let what = match range {
        Some((s, e)) => format!(
            "bytes {s}..{e} of {} ({} bytes)",
            summary.plaintext_len,
            e - s
        ),
        None => format!("{} bytes", summary.plaintext_len),
    };
    let hint = if header.content() == Content::Tar {
        " (a tar stream: decrypt with --extract DIR to unpack it)"
    } else {
        ""
    };
    Report {
        text: format!(
            "{}: Coffer file, {} -> {what} in {}{hint}",
            args.input.display(),
            name(&header.compression),
            args.output.display()
        ),
        json: json!({
            "command": command,
            "input": args.input,
            "output": args.output,
            "format": "coffer",
            "compression": header.compression,
            "content": header.content(),
            "plaintext_bytes": summary.plaintext_len,
            "range": range.map(|(s, e)| json!({"start": s, "end": e})),
        }),
    }
}

/// `coffer verify` of a Coffer file: authenticate everything, write nothing.
pub(super) fn verify(path: &Path, root: &RootKey, threads: usize) -> CliResult<Report> {
    let (input, size) = open_input(path)?;
    let bar = plaintext_bar(path, size, "verifying");
    let (header, summary) =
        decrypt_file(input, root, &Discard, threads, &bar).map_err(lib_err("verify", path))?;
    bar.finish_and_clear();
    Ok(Report {
        text: format!(
            "{}: OK, Coffer file authenticated ({} plaintext bytes, {}, {})",
            path.display(),
            summary.plaintext_len,
            name(&header.compression),
            name(&header.content())
        ),
        json: json!({
            "command": "verify",
            "input": path,
            "format": "coffer",
            "authenticated": true,
            "compression": header.compression,
            "content": header.content(),
            "plaintext_bytes": summary.plaintext_len,
            "file_bytes": summary.file_len,
        }),
    })
}

/// `coffer info` of a Coffer file: the header, checked without the key.
pub(super) fn info(path: &Path) -> CliResult<Report> {
    let (mut file, size) = open_input(path)?;
    let info = inspect(&mut file, size).map_err(lib_err("read", path))?;
    let mut tail = [0u8; FOOTER_LEN];
    let footer = if size >= FOOTER_LEN as u64 {
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut tail, size - FOOTER_LEN as u64)
            .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?;
        check_footer(&tail, size)
    } else {
        FooterState::Missing
    };
    let footer_text = match footer {
        FooterState::Complete => "present, length matches".to_string(),
        FooterState::LengthMismatch { declared } => {
            format!("declares {declared} bytes: damaged or spliced")
        }
        FooterState::Missing => "missing: the file is cut short or has bytes appended".to_string(),
    };
    // Chunk count and payload length follow from the size only for a complete file.
    let layout = info
        .layout(size)
        .filter(|_| footer == FooterState::Complete);
    let mut lines = vec![
        format!("file            {} ({size} bytes)", path.display()),
        "format          coffer v1, suite 1 (Cobblestone-256: AES-256-GCM, HKDF-SHA-512, 16 KiB chunks)".to_string(),
        format!("header          {} bytes, check {}", info.header_len, if info.check_ok { "OK" } else { "FAILED (damaged)" }),
        format!("key id          {}", hex::encode(info.header.key_id)),
        format!("compression     {}", name(&info.header.compression)),
        format!("content         {}", name(&info.header.content())),
    ];
    for (t, value) in &info.header.metadata {
        let label = match *t {
            tag::CREATED => "created".to_string(),
            tag::GENERATOR => "generator".to_string(),
            tag::CONTENT => continue,
            other => format!("tag {other:#04x}"),
        };
        let shown = match value {
            MetaValue::U64(v) if *t == tag::CREATED => output::iso8601(*v),
            MetaValue::U64(v) => v.to_string(),
            MetaValue::Text(s) => s.clone(),
            MetaValue::Bytes(b) => hex::encode(b),
        };
        lines.push(format!("{label:<16}{shown}"));
    }
    lines.push(format!("footer          {footer_text}"));
    if let Some((chunks, plain)) = layout {
        lines.push(format!("chunks          {chunks}"));
        lines.push(format!(
            "payload         {plain} bytes{}",
            if info.header.compression != Compression::None {
                " (compressed)"
            } else {
                ""
            }
        ));
    }
    let metadata: serde_json::Map<String, serde_json::Value> = info
        .header
        .metadata
        .iter()
        .map(|(t, v)| {
            (
                format!("{t:#04x}"),
                serde_json::to_value(v).unwrap_or_default(),
            )
        })
        .collect();
    Ok(Report {
        text: lines.join("\n"),
        json: json!({
            "command": "info",
            "input": path,
            "size": size,
            "format": "coffer",
            "version": 1,
            "suite": "cobblestone-256",
            "header_bytes": info.header_len,
            "header_check": info.check_ok,
            "key_id": hex::encode(info.header.key_id),
            "compression": info.header.compression,
            "content": info.header.content(),
            "metadata": metadata,
            "created": info.header.metadata.iter().find_map(|(t, v)| match (t, v) {
                (&tag::CREATED, MetaValue::U64(at)) => Some(output::iso8601(*at)),
                _ => None,
            }),
            "footer": match footer { FooterState::Complete => "complete", FooterState::LengthMismatch { .. } => "length_mismatch", FooterState::Missing => "missing" },
            "chunks": layout.map(|l| l.0),
            "payload_bytes": layout.map(|l| l.1),
        }),
    })
}
