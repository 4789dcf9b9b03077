//! `coffer info`: what a backup is, without the key.

use super::failure::{CliResult, Failure};
use super::input::open_input;
use super::output::name;
use super::Report;
use coffer::crypt15::{self, BackupFormat, MetaValue};
use openssl::hash::{Hasher, MessageDigest};
use serde_json::json;
use std::io::{BufReader, Read};
use std::path::Path;

/// Whether the file ends with an MD5 of what precedes it (checked without the key).
fn md5_trailer_matches(path: &Path, format: BackupFormat, size: u64) -> CliResult<bool> {
    let footer = if format == BackupFormat::Crypt12 {
        4
    } else {
        0
    };
    let Some(covered) = size.checked_sub(16 + footer) else {
        return Ok(false);
    };
    let (file, _) = open_input(path)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut md5 = Hasher::new(MessageDigest::md5())
        .map_err(|e| Failure::new(coffer::ErrorClass::Io, e.to_string()))?;
    let mut remaining = covered;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        reader
            .read_exact(&mut buf[..want])
            .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?;
        md5.update(&buf[..want])
            .map_err(|e| Failure::new(coffer::ErrorClass::Io, e.to_string()))?;
        remaining -= want as u64;
    }
    let mut stored = [0u8; 16];
    reader
        .read_exact(&mut stored)
        .map_err(|e| Failure::io(format!("cannot read {}", path.display()), e))?;
    let digest = md5
        .finish()
        .map_err(|e| Failure::new(coffer::ErrorClass::Io, e.to_string()))?;
    Ok(*digest == stored)
}

/// `coffer info`
pub(super) fn run(path: &Path) -> CliResult<Report> {
    if super::coffer_file::is_coffer(path)? {
        return super::coffer_file::info(path);
    }
    let (file, size) = open_input(path)?;
    let header = crypt15::read_header(&mut BufReader::new(file)).map_err(|e| {
        Failure::from_lib(&format!("{} is not a readable backup", path.display()), e)
    })?;
    let md5_ok = md5_trailer_matches(path, header.format, size)?;
    let trailer = if md5_ok {
        header.format.trailer_len() as u64
    } else {
        16
    };
    let ciphertext = size.saturating_sub(header.len() as u64 + trailer);

    let mut lines = vec![
        format!("file            {} ({size} bytes)", path.display()),
        format!("format          {}", header.format.as_str()),
        format!("header          {} bytes", header.len()),
        format!("iv              {}", hex::encode(&header.iv)),
    ];
    if let Some(prefix) = &header.prefix {
        if let Some(key_type) = prefix.key_type {
            let label = crypt15::KEY_TYPE_NAMES
                .get(key_type as usize)
                .copied()
                .unwrap_or("unknown");
            lines.push(format!("key type        {key_type} ({label})"));
        }
        if let Some(c14) = &prefix.c14_cipher {
            lines.push(format!("server salt     {}", hex::encode(&c14.server_salt)));
        }
        let mut flags_set = Vec::new();
        let mut flags_total = 0;
        for field in &prefix.metadata {
            match (&field.value, field.name) {
                (MetaValue::Flag(on), "feature_flag") => {
                    flags_total += 1;
                    if *on {
                        flags_set.push(field.number.to_string());
                    }
                }
                (MetaValue::Text(text), name) => {
                    lines.push(format!("{:<16}{text}", name.replace('_', " ")))
                }
                (MetaValue::Integer(value), name) => {
                    lines.push(format!("{:<16}{value}", name.replace('_', " ")))
                }
                (MetaValue::Flag(on), name) => {
                    lines.push(format!("{:<16}{on}", name.replace('_', " ")))
                }
                (MetaValue::Blob(bytes), name) => lines.push(format!(
                    "{:<16}{} bytes",
                    name.replace('_', " "),
                    bytes.len()
                )),
            }
        }
        if flags_total > 0 {
            lines.push(format!(
                "feature flags   {} of {flags_total} set: {}",
                flags_set.len(),
                flags_set.join(" ")
            ));
        }
        if !prefix.unknown_fields.is_empty() {
            lines.push(format!("unknown fields  {:?}", prefix.unknown_fields));
        }
        if prefix.legacy_flag_byte {
            lines.push(
                "note            stray 01 byte after the header length (written by older tools)"
                    .into(),
            );
        }
    }
    lines.push(format!(
        "trailer         {}",
        if md5_ok {
            "tag + MD5 (the MD5 matches; integrity needs the key)"
        } else {
            "no matching MD5: a multi-file backup (tag only) or a damaged file"
        }
    ));
    lines.push(format!("ciphertext      {ciphertext} bytes"));

    Ok(Report {
        text: lines.join("\n"),
        json: json!({
            "command": "info",
            "input": path,
            "size": size,
            "format": name(&header.format),
            "header_bytes": header.len(),
            "header": header,
            "md5_trailer": md5_ok,
            "ciphertext_bytes": ciphertext,
        }),
    })
}
