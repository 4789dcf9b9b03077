//! HSM locations as strings: RFC 7512 PKCS#11 URIs (`pkcs11:token=vault;object=master?
//! module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/coffer/pin`) and
//! `soft:DIR` for the software backend.

use super::HsmError;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where the master key is: a PKCS#11 module, a token in it, the PIN and the key's label.
/// Parsing one needs no PKCS#11 library; opening it needs the `pkcs11` feature.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The module (`.so`).
    pub module: PathBuf,
    /// The token label.
    pub token: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
    /// The master key's label.
    pub key_label: String,
}

/// A parsed `--hsm` value.
pub enum HsmLocation {
    /// The software backend with its key file in DIR (`soft:DIR`).
    Soft(PathBuf),
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

fn percent_decode(text: &str) -> Result<String, HsmError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| HsmError::Malformed(format!("bad percent-encoding in {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HsmError::Malformed(format!("{text:?} is not UTF-8")))
}

/// The `pkcs11:` URI naming the token labelled `token` in `module` (PIN from the
/// environment), percent-encoding what RFC 7512 reserves.
pub fn pkcs11_uri(module: &std::path::Path, token: &str) -> String {
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    format!(
        "pkcs11:token={}?module-path={}",
        encode(token),
        encode(&module.to_string_lossy())
    )
}

/// The longest first line a PIN file may have. PKCS#11 PINs are short (SoftHSM2 takes at
/// most 255 bytes); the bound keeps a URI naming `/dev/zero` or a huge file from taking
/// the process's memory.
pub const MAX_PIN_LINE: usize = 4096;

/// Reads a PIN from the first line of `path` (at most [`MAX_PIN_LINE`] bytes); every copy is
/// zeroized when dropped.
pub fn read_pin_file(path: &std::path::Path) -> Result<Zeroizing<String>, HsmError> {
    use std::io::Read;
    let failed = |e: std::io::Error| HsmError::Backend(format!("PIN file {}: {e}", path.display()));
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PIN_LINE + 1));
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PIN_LINE as u64 + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    let line = match bytes.iter().position(|b| *b == b'\n') {
        Some(end) => &bytes[..end],
        None if bytes.len() > MAX_PIN_LINE => {
            return Err(HsmError::Malformed(format!(
                "PIN file {}: the first line is longer than {MAX_PIN_LINE} bytes",
                path.display()
            )))
        }
        None => &bytes[..],
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    std::str::from_utf8(line)
        .map(|pin| Zeroizing::new(pin.to_owned()))
        .map_err(|_| HsmError::Malformed(format!("PIN file {} is not UTF-8", path.display())))
}

/// Parses `soft:DIR` or a `pkcs11:` URI. The PIN comes from `pin-value`, `pin-source=file:...`
/// or the `COFFER_PKCS11_PIN` environment variable, in that order; `object` names the master
/// key (default `coffer-vault-master`); `module-path` is required.
pub fn parse(text: &str) -> Result<HsmLocation, HsmError> {
    parse_inner(text, true)
}

/// Parses a `pkcs11:` URI for an operation that needs no user PIN (the security officer's
/// commands): the PIN is empty unless the URI or `COFFER_PKCS11_PIN` gives one.
pub fn parse_token(text: &str) -> Result<Pkcs11Config, HsmError> {
    match parse_inner(text, false)? {
        HsmLocation::Pkcs11(config) => Ok(config),
        HsmLocation::Soft(_) => Err(HsmError::Malformed(
            "this command needs a pkcs11: URI, not soft:DIR".into(),
        )),
    }
}

fn parse_inner(text: &str, require_pin: bool) -> Result<HsmLocation, HsmError> {
    if let Some(dir) = text.strip_prefix("soft:") {
        return Ok(HsmLocation::Soft(PathBuf::from(dir)));
    }
    let rest = text.strip_prefix("pkcs11:").ok_or_else(|| {
        HsmError::Malformed(format!(
            "{text:?}: expected soft:DIR or a pkcs11: URI (RFC 7512)"
        ))
    })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut token, mut object, mut module, mut pin) = (None, None, None, None);
    for attr in path.split(';').filter(|a| !a.is_empty()) {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| HsmError::Malformed(format!("path attribute {attr:?} has no value")))?;
        let v = percent_decode(v)?;
        match k {
            "token" => token = Some(v),
            "object" => object = Some(v),
            // Other standard attributes (manufacturer, serial, model, type, id, ...) narrow the
            // choice further; this version matches by token label only.
            _ => {}
        }
    }
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (k, v) = attr
            .split_once('=')
            .ok_or_else(|| HsmError::Malformed(format!("query attribute {attr:?} has no value")))?;
        let v = percent_decode(v)?;
        match k {
            "module-path" => module = Some(PathBuf::from(v)),
            "pin-value" => pin = Some(Zeroizing::new(v)),
            "pin-source" => {
                let file = v.strip_prefix("file:").unwrap_or(&v);
                pin = Some(read_pin_file(std::path::Path::new(file))?);
            }
            _ => {}
        }
    }
    let pin = match pin {
        Some(p) => p,
        None => match std::env::var("COFFER_PKCS11_PIN") {
            Ok(pin) => Zeroizing::new(pin),
            Err(_) if !require_pin => Zeroizing::new(String::new()),
            Err(_) => {
                return Err(HsmError::Malformed(
                    "no PIN: give pin-source=file:PATH in the URI or set COFFER_PKCS11_PIN".into(),
                ))
            }
        },
    };
    Ok(HsmLocation::Pkcs11(Pkcs11Config {
        module: module
            .ok_or_else(|| HsmError::Malformed("the URI needs module-path=...".into()))?,
        token: token.ok_or_else(|| HsmError::Malformed("the URI needs token=...".into()))?,
        pin,
        key_label: object.unwrap_or_else(|| "coffer-vault-master".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;

    #[test]
    fn a_pin_file_without_an_end_is_refused_in_bounded_memory() {
        let err = read_pin_file(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.class(), crate::error::ErrorClass::Malformed, "{err}");
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("pin");
        std::fs::write(&long, [b'1'; MAX_PIN_LINE + 1]).unwrap();
        let err = read_pin_file(&long).unwrap_err();
        assert_eq!(err.class(), crate::error::ErrorClass::Malformed, "{err}");
        std::fs::write(&long, [&[b'1'; MAX_PIN_LINE][..], b"\nrest"].concat()).unwrap();
        assert_eq!(read_pin_file(&long).unwrap().len(), MAX_PIN_LINE);
    }

    #[test]
    fn parses_rfc7512_uris() {
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "1234\n").unwrap();
        let uri = format!("pkcs11:token=my%20vault;object=master;manufacturer=x?module-path=/lib/m.so&pin-source=file:{}", pin.display());
        let HsmLocation::Pkcs11(c) = parse(&uri).unwrap() else {
            panic!("pkcs11")
        };
        assert_eq!(c.token, "my vault");
        assert_eq!(c.key_label, "master");
        assert_eq!(c.module, PathBuf::from("/lib/m.so"));
        assert_eq!(c.pin.as_str(), "1234");
        assert!(matches!(
            parse("soft:/var/lib/x").unwrap(),
            HsmLocation::Soft(_)
        ));
        assert!(
            parse("pkcs11:object=x?module-path=/m.so&pin-value=1")
                .map(drop)
                .unwrap_err()
                .class()
                == crate::error::ErrorClass::Malformed,
            "token is required"
        );
        assert!(
            parse("pkcs11:token=t?pin-value=1")
                .map(drop)
                .unwrap_err()
                .class()
                == crate::error::ErrorClass::Malformed,
            "module-path is required"
        );
        for text in ["pkcs11:token=%zz?module-path=/m.so&pin-value=1", "file:/x"] {
            let refused = parse(text).map(drop).unwrap_err();
            assert_eq!(
                refused.class(),
                crate::error::ErrorClass::Malformed,
                "{text}: {refused}"
            );
        }
        // --module/--token become a URI that parses back to the same names.
        std::env::set_var("COFFER_PKCS11_PIN", "4321");
        let uri = pkcs11_uri(std::path::Path::new("/opt/my hsm/lib;x.so"), "vault?a&b=c");
        let HsmLocation::Pkcs11(c) = parse(&uri).unwrap() else {
            panic!("pkcs11")
        };
        assert_eq!(c.token, "vault?a&b=c");
        assert_eq!(c.module, PathBuf::from("/opt/my hsm/lib;x.so"));
        assert_eq!(c.pin.as_str(), "4321");
    }
}
