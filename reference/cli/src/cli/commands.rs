//! The `key`, `decrypt` and `encrypt` commands.

use super::failure::{CliResult, Failure};
use super::input::open_input;
use super::output::{self, flush, name, progress_bar, AtomicOutput, Naming};
use super::{
    coffer_file, key_arg, DecryptArgs, EncryptArgs, FormatArg, KeyFileForm, Report, VerifyArgs,
};
use coffer::crypt15::{
    self, with_new_iv, BackupFormat, DecryptOptions, EncryptOptions, HeaderSpec, PayloadEncoding,
    IV_LEN,
};
use coffer::key::{BackupKey, RootKey};
use coffer::ErrorClass;
use serde_json::json;
use std::io::{BufReader, Write};
use std::path::Path;

/// `coffer key new`
pub(super) fn key_new(out: Option<&Path>, form: KeyFileForm, force: bool) -> CliResult<Report> {
    let key = RootKey::generate().map_err(|e| Failure::from_lib("key generation", e))?;
    if let Some(path) = out {
        let target = AtomicOutput::create(path, force)?;
        let bytes = match form {
            KeyFileForm::Java => key.to_encrypted_backup_key(),
            KeyFileForm::Hex => format!("{}\n", key.to_grouped().as_str()).into_bytes(),
        };
        let mut writer = target.writer();
        writer
            .write_all(&bytes)
            .map_err(|e| Failure::io(format!("cannot write {}", path.display()), e))?;
        flush(writer, path)?;
        target.commit()?;
    }
    let grouped = key.to_grouped();
    let saved = out
        .map(|p| format!("\nsaved to {}", p.display()))
        .unwrap_or_default();
    Ok(Report {
        text: format!("{}{saved}", grouped.as_str()),
        json: json!({"command": "key new", "key": key.to_hex().as_str(), "grouped": grouped.as_str(), "file": out}),
    })
}

/// `coffer key show`
pub(super) fn key_show(spec: Option<&str>) -> CliResult<Report> {
    match key_arg::resolve(spec)? {
        BackupKey::Root(root) => {
            let grouped = root.to_grouped();
            Ok(Report {
                text: grouped.as_str().to_owned(),
                json: json!({"command": "key show", "kind": "root", "key": root.to_hex().as_str(), "grouped": grouped.as_str()}),
            })
        }
        BackupKey::Legacy(legacy) => {
            let root = RootKey::from_bytes(legacy.aes_key);
            let grouped = root.to_grouped();
            Ok(Report {
                text: format!(
                    "{}\n(crypt12/14 key file: this is its AES key; server salt {})",
                    grouped.as_str(),
                    hex::encode(legacy.server_salt)
                ),
                json: json!({
                    "command": "key show",
                    "kind": "legacy",
                    "key": root.to_hex().as_str(),
                    "grouped": grouped.as_str(),
                    "server_salt": hex::encode(legacy.server_salt),
                    "google_id_salt": hex::encode(legacy.google_id_salt),
                }),
            })
        }
    }
}

/// Refuses the first option set in `options` (set, name) with `why`: an option that does not
/// apply is an error, never ignored.
pub(super) fn refuse_inapplicable(options: &[(bool, &str)], why: &str) -> CliResult<()> {
    match options.iter().find(|(set, _)| *set) {
        Some((_, flag)) => Err(Failure::usage(format!("{flag} {why}"))),
        None => Ok(()),
    }
}

/// A wrong 64-digit key for a crypt14/12 file is most often encrypted_backup.key given where
/// the phone's `key` file belongs: say so (the reverse case's hint comes from the library).
fn with_legacy_key_hint(mut failure: Failure, key: &BackupKey, input: &Path) -> Failure {
    if failure.class != ErrorClass::WrongKey || !matches!(key, BackupKey::Root(_)) {
        return failure;
    }
    let format = open_input(input)
        .ok()
        .and_then(|(file, _)| crypt15::read_header(&mut BufReader::new(file)).ok())
        .map(|header| header.format);
    if let Some(format @ (BackupFormat::Crypt14 | BackupFormat::Crypt12)) = format {
        failure.message = format!(
            "{}; a {} backup opens with the phone's `key` file (158 bytes, beside the \
             backups in WhatsApp's files directory), not with encrypted_backup.key or the \
             64-digit key of end-to-end encrypted backups",
            failure.message,
            format.as_str()
        );
    }
    failure
}

/// `coffer decrypt`
pub(super) fn decrypt(args: &DecryptArgs) -> CliResult<Report> {
    let mut args = args.clone();
    if let Some(dir) = &args.extract {
        return coffer_file::extract(&args, dir);
    }
    args.output = match &args.output_arg {
        Some(output) => output::resolve(&args.input, output, Naming::Decrypted)?,
        None => return Err(Failure::usage("give -o OUTPUT or --extract DIR")),
    };
    let args = &args;
    if coffer_file::is_coffer(&args.input)? {
        refuse_inapplicable(&[(args.raw, "--raw")], "applies to crypt15/14/12 only")?;
        let root = key_arg::resolve_root(args.key.key.as_deref())?;
        return coffer_file::decrypt(args, &root);
    }
    refuse_inapplicable(
        &[
            (args.range.is_some(), "--range"),
            (args.threads.is_some(), "--threads"),
        ],
        "applies to Coffer files only (a crypt15/14/12 backup is one GCM message, read in one pass)",
    )?;
    let key = key_arg::resolve(args.key.key.as_deref())?;
    let (input, size) = open_input(&args.input)?;
    let target = AtomicOutput::create_for(&args.input, &args.output, args.force)?;
    let bar = progress_bar(size, "decrypting");
    let options = DecryptOptions {
        decompress: !args.raw,
        ..DecryptOptions::default()
    };
    let mut writer = target.writer();
    let summary = crypt15::decrypt(&key, input, &mut writer, &options, &mut |done| {
        bar.set_position(done)
    })
    .map_err(|e| {
        with_legacy_key_hint(
            Failure::from_lib(&format!("cannot decrypt {}", args.input.display()), e),
            &key,
            &args.input,
        )
    })?;
    flush(writer, &args.output)?;
    bar.finish_and_clear();
    target.commit()?;
    let inner = summary
        .inner
        .map(|k| format!(" -> {}", name(&k)))
        .unwrap_or_default();
    Ok(Report {
        text: format!(
            "{}: {} backup, {} payload{inner}, MD5 {}; {} bytes -> {} bytes in {}",
            args.input.display(),
            summary.header.format.as_str(),
            name(&summary.payload),
            name(&summary.md5),
            summary.input_bytes,
            summary.output_bytes,
            args.output.display()
        ),
        json: json!({
            "command": "decrypt",
            "input": args.input,
            "output": args.output,
            "format": summary.header.format,
            "payload": summary.payload,
            "inner": summary.inner,
            "md5": summary.md5,
            "crypt12_footer": summary.crypt12_footer,
            "input_bytes": summary.input_bytes,
            "ciphertext_bytes": summary.ciphertext_bytes,
            "output_bytes": summary.output_bytes,
            "plaintext_bytes": summary.output_bytes,
        }),
    })
}

fn parse_iv(text: &str) -> CliResult<[u8; IV_LEN]> {
    let bytes =
        hex::decode(text.trim()).map_err(|e| Failure::usage(format!("--iv is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| Failure::usage(format!("--iv must be 16 bytes, not {}", b.len())))
}

fn random_iv() -> CliResult<[u8; IV_LEN]> {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv)
        .map_err(|e| Failure::new(ErrorClass::Io, format!("OS random generator: {e}")))?;
    Ok(iv)
}

/// `--iv` if given, else a fresh random IV.
fn chosen_iv(args: &EncryptArgs) -> CliResult<[u8; IV_LEN]> {
    match &args.iv {
        Some(text) => parse_iv(text),
        None => random_iv(),
    }
}

/// The exact header bytes for `coffer encrypt`. A non-crypt15 `--like` file is refused by
/// `crypt15::encrypt` (`unsupported`).
fn output_header(args: &EncryptArgs) -> CliResult<Vec<u8>> {
    if let Some(like) = &args.like {
        let (file, _) = open_input(like)?;
        let reference = crypt15::read_header(&mut BufReader::new(file)).map_err(|e| {
            Failure::from_lib(&format!("cannot read the header of {}", like.display()), e)
        })?;
        if args.keep_iv {
            return Ok(reference.raw);
        }
        return with_new_iv(&reference, &chosen_iv(args)?)
            .map_err(|e| Failure::from_lib("--like", e));
    }
    let jid_suffix = args.jid_suffix.as_deref().unwrap_or("00");
    if jid_suffix.len() != 2 || !jid_suffix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::usage("--jid-suffix must be two digits"));
    }
    Ok(HeaderSpec::new(
        chosen_iv(args)?,
        args.app_version.as_deref().unwrap_or("2.22.5.13"),
        jid_suffix,
        args.backup_version.unwrap_or(0),
    )
    .encode())
}

/// `coffer verify`: authenticate without writing plaintext.
pub(super) fn verify(args: &VerifyArgs) -> CliResult<Report> {
    if coffer_file::is_coffer(&args.input)? {
        let root = key_arg::resolve_root(args.key.key.as_deref())?;
        return coffer_file::verify(&args.input, &root, args.threads.unwrap_or(0));
    }
    refuse_inapplicable(
        &[(args.threads.is_some(), "--threads")],
        "applies to Coffer files only",
    )?;
    let key = key_arg::resolve(args.key.key.as_deref())?;
    let (input, size) = open_input(&args.input)?;
    let bar = progress_bar(size, "verifying");
    let summary = crypt15::decrypt(
        &key,
        input,
        &mut std::io::sink(),
        &DecryptOptions::default(),
        &mut |done| bar.set_position(done),
    )
    .map_err(|e| {
        with_legacy_key_hint(
            Failure::from_lib(&format!("cannot verify {}", args.input.display()), e),
            &key,
            &args.input,
        )
    })?;
    bar.finish_and_clear();
    Ok(Report {
        text: format!(
            "{}: OK, {} backup authenticated ({} plaintext bytes)",
            args.input.display(),
            summary.header.format.as_str(),
            summary.output_bytes
        ),
        json: json!({
            "command": "verify",
            "input": args.input,
            "format": summary.header.format,
            "authenticated": true,
            "md5": summary.md5,
            "plaintext_bytes": summary.output_bytes,
        }),
    })
}

/// `coffer encrypt`
pub(super) fn encrypt(args: &EncryptArgs) -> CliResult<Report> {
    let extension = match args.format {
        FormatArg::Coffer => "coffer",
        FormatArg::Crypt15 => "crypt15",
    };
    let mut args = args.clone();
    args.output = output::resolve(&args.input, &args.output, Naming::Encrypted(extension))?;
    let args = &args;
    if args.format == FormatArg::Coffer {
        refuse_inapplicable(
            &[
                (args.like.is_some(), "--like"),
                (args.iv.is_some(), "--iv"),
                (args.stored, "--stored"),
                (args.no_md5, "--no-md5"),
                (args.level.is_some(), "--level"),
                (args.app_version.is_some(), "--app-version"),
                (args.jid_suffix.is_some(), "--jid-suffix"),
                (args.backup_version.is_some(), "--backup-version"),
            ],
            "applies to crypt15 only",
        )?;
        let root = key_arg::resolve_root(args.key.key.as_deref())?;
        return coffer_file::encrypt(args, &root);
    }
    refuse_inapplicable(
        &[
            (args.compress.is_some(), "--compress"),
            (args.zstd_level.is_some(), "--zstd-level"),
            (args.threads.is_some(), "--threads"),
        ],
        "applies to --format coffer only (crypt15 is zlib: --level)",
    )?;
    if args.input.is_dir() {
        return Err(Failure::usage(
            "crypt15 holds one file; use --format coffer for a directory",
        ));
    }
    let root = key_arg::resolve_root(args.key.key.as_deref())?;
    let header = output_header(args)?;
    let (input, size) = open_input(&args.input)?;
    let target = AtomicOutput::create_for(&args.input, &args.output, args.force)?;
    let options = EncryptOptions {
        payload: if args.stored {
            PayloadEncoding::Stored
        } else {
            PayloadEncoding::Zlib {
                level: args.level.unwrap_or(1),
            }
        },
        md5: !args.no_md5,
        ..EncryptOptions::default()
    };
    let bar = progress_bar(size, "encrypting");
    let mut writer = target.writer();
    let summary = crypt15::encrypt(&root, &header, input, &mut writer, &options, &mut |done| {
        bar.set_position(done)
    })
    .map_err(|e| Failure::from_lib(&format!("cannot encrypt {}", args.input.display()), e))?;
    flush(writer, &args.output)?;
    bar.finish_and_clear();
    target.commit()?;
    Ok(Report {
        text: format!(
            "{}: {} bytes -> crypt15 backup of {} bytes in {}",
            args.input.display(),
            summary.input_bytes,
            summary.output_bytes,
            args.output.display()
        ),
        json: json!({
            "command": "encrypt",
            "input": args.input,
            "output": args.output,
            "format": "crypt15",
            "payload": options.payload,
            // The same words as decrypt's: the trailer is there to verify, or absent.
            "md5": if options.md5 { "written" } else { "absent" },
            "input_bytes": summary.input_bytes,
            "ciphertext_bytes": summary.ciphertext_bytes,
            "output_bytes": summary.output_bytes,
        }),
    })
}

/// `coffer man`: the man page on stdout, or every command's page written to `out_dir`.
pub(super) fn man(out_dir: Option<&Path>) -> CliResult<Report> {
    use clap::CommandFactory;
    let command = super::Cli::command();
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| Failure::io("cannot render the man page", e))?;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| Failure::io("cannot write to standard output", e))?;
            output::report_on_stderr();
            Ok(Report {
                text: String::new(),
                json: json!({"command": "man"}),
            })
        }
        Some(dir) => {
            clap_mangen::generate_to(command, dir).map_err(|e| {
                Failure::io(format!("cannot write man pages to {}", dir.display()), e)
            })?;
            Ok(Report {
                text: format!("man pages written to {}", dir.display()),
                json: json!({"command": "man", "out_dir": dir}),
            })
        }
    }
}
