//! Real PKCS#11 tokens for tests, each under a private configuration in a temporary
//! directory: SoftHSM2 (Debian `softhsm2`, tokens made with `softhsm2-util`) and kryoptic
//! (built by scripts/kryoptic.sh, path in COFFER_KRYOPTIC_MODULE; tokens made with
//! `pkcs11-tool` from Debian `opensc`). Child processes get the configuration through
//! [`TestToken::apply`]. Opt out by name only: COFFER_SKIP_SOFTHSM=1, COFFER_SKIP_KRYOPTIC=1.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The security officer's PIN of every test token.
pub const SO_PIN: &str = "12345678";
/// The user PIN of every test token.
pub const USER_PIN: &str = "87654321";

/// A PKCS#11 module under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// SoftHSM2, from Debian's `softhsm2`.
    SoftHsm2,
    /// kryoptic, built from crates.io by scripts/kryoptic.sh.
    Kryoptic,
}

impl Module {
    /// The module's path, or None (with the skip printed) when the user opted out by name.
    /// Panics with instructions when the module is missing and not opted out.
    pub fn path(self) -> Option<PathBuf> {
        let (skip, name) = match self {
            Module::SoftHsm2 => ("COFFER_SKIP_SOFTHSM", "SoftHSM2"),
            Module::Kryoptic => ("COFFER_SKIP_KRYOPTIC", "kryoptic"),
        };
        if crate::opt_out(skip, &format!("{name} tests")) {
            return None;
        }
        let path = match self {
            Module::SoftHsm2 => PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            Module::Kryoptic => PathBuf::from(std::env::var("COFFER_KRYOPTIC_MODULE").unwrap_or_else(|_| {
                panic!("COFFER_KRYOPTIC_MODULE is not set: run scripts/kryoptic.sh (scripts/test.sh does) \
                        and export its output, or opt out with {skip}=1")
            })),
        };
        assert!(
            path.exists(),
            "{} is missing: scripts/test.sh installs SoftHSM2 (apt-get install softhsm2) and builds \
             kryoptic (scripts/kryoptic.sh); or opt out with {skip}=1",
            path.display()
        );
        Some(path)
    }

    fn config_var(self) -> &'static str {
        match self {
            Module::SoftHsm2 => "SOFTHSM2_CONF",
            Module::Kryoptic => "KRYOPTIC_CONF",
        }
    }
}

/// An initialised token with a user PIN, and how child processes reach it.
#[derive(Debug, Clone)]
pub struct TestToken {
    /// Which module holds it.
    pub module: Module,
    /// The module's `.so`.
    pub module_path: PathBuf,
    /// The token's label.
    pub label: String,
    /// `pkcs11:token=LABEL?module-path=...&pin-source=file:...`
    pub uri: String,
    /// A file holding the security officer's PIN.
    pub so_pin_file: PathBuf,
    config_var: &'static str,
    config: PathBuf,
}

impl TestToken {
    /// Points a child process at this token's configuration.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command.env(self.config_var, &self.config)
    }

    /// Points this process at the token's configuration (the module reads it when loaded;
    /// for a test binary that loads one module in-process).
    pub fn apply_to_this_process(&self) {
        std::env::set_var(self.config_var, &self.config);
    }

    /// The backend's configuration for loading the module in this process.
    pub fn config(&self) -> coffer_vault::hsm::Pkcs11Config {
        coffer_vault::hsm::Pkcs11Config {
            module: self.module_path.clone(),
            token: self.label.clone(),
            pin: USER_PIN.to_owned().into(),
            key_label: "coffer-vault-master".into(),
        }
    }

    /// `coffer ARGS` with this token's configuration.
    pub fn coffer(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(crate::coffer_exe());
        self.apply(&mut command).args(args).output().unwrap()
    }

    /// The URI with another master-key label (`object=`).
    pub fn uri_with_object(&self, object: &str) -> String {
        self.uri.replacen(
            &format!("pkcs11:token={}", self.label),
            &format!("pkcs11:token={};object={object}", self.label),
            1,
        )
    }
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a token labelled `label` under `dir`, or finds the one made before (several
/// SoftHSM2 tokens may share one `dir`; each kryoptic token needs its own). None when the
/// module was opted out.
pub fn create(module: Module, dir: &Path, label: &str) -> Option<TestToken> {
    let module_path = module.path()?;
    std::fs::create_dir_all(dir).unwrap();
    let made = dir.join(format!("{label}.made"));
    let fresh = !made.exists();
    let so_pin_file = dir.join("so.pin");
    std::fs::write(&so_pin_file, format!("{SO_PIN}\n")).unwrap();
    let pin_file = dir.join("user.pin");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    let config = match module {
        Module::SoftHsm2 => {
            let tokens = dir.join("softhsm-tokens");
            std::fs::create_dir_all(&tokens).unwrap();
            let conf = dir.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            if fresh {
                run(
                    Command::new("softhsm2-util")
                        .args(["--init-token", "--free", "--label", label])
                        .args(["--so-pin", SO_PIN, "--pin", USER_PIN])
                        .env("SOFTHSM2_CONF", &conf),
                    "softhsm2-util (Debian package softhsm2)",
                );
            }
            conf
        }
        Module::Kryoptic => {
            let conf = dir.join("kryoptic.conf");
            assert!(!fresh || !conf.exists(), "one kryoptic token per directory");
            std::fs::write(
                &conf,
                format!(
                    "[[slots]]\nslot = 42\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                    dir.join("kryoptic-token.sql").display()
                ),
            )
            .unwrap();
            let tool = || {
                let mut c = Command::new("pkcs11-tool");
                c.arg("--module")
                    .arg(&module_path)
                    .env("KRYOPTIC_CONF", &conf);
                c
            };
            if fresh {
                run(
                    tool().args(["--init-token", "--label", label, "--so-pin", SO_PIN]),
                    "pkcs11-tool --init-token (Debian package opensc)",
                );
                run(
                    tool()
                        .args(["--token-label", label, "--login", "--login-type", "so"])
                        .args(["--so-pin", SO_PIN, "--init-pin", "--pin", USER_PIN]),
                    "pkcs11-tool --init-pin",
                );
            }
            conf
        }
    };
    std::fs::write(&made, b"").unwrap();
    Some(TestToken {
        uri: format!(
            "pkcs11:token={label}?module-path={}&pin-source=file:{}",
            module_path.display(),
            pin_file.display()
        ),
        module,
        module_path,
        label: label.to_owned(),
        so_pin_file,
        config_var: module.config_var(),
        config,
    })
}

/// Stores `pem` on the token as a public wrapping key made by the user, so NOT trusted, with
/// the id the ceremony looks for (`pkcs11-tool --write-object`).
pub fn write_untrusted_public_key(token: &TestToken, pem: &Path, id_hex: &str) {
    let der = pem.with_extension("der");
    run(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-in"])
            .arg(pem)
            .args(["-outform", "DER", "-out"])
            .arg(&der),
        "openssl pkey",
    );
    let mut command = Command::new("pkcs11-tool");
    command
        .arg("--module")
        .arg(&token.module_path)
        .args(["--token-label", &token.label, "--login", "--pin", USER_PIN])
        .arg("--write-object")
        .arg(&der)
        .args([
            "--type",
            "pubkey",
            "--id",
            id_hex,
            "--label",
            "untrusted",
            "--usage-wrap",
        ]);
    token.apply(&mut command);
    run(&mut command, "pkcs11-tool --write-object");
}

/// Generates an AES-256 token key labelled `label` for encryption and decryption with
/// `pkcs11-tool --keygen`: sensitive and not extractable, or (`sensitive` false) extractable
/// and readable, a master key the profile must refuse.
pub fn generate_aes_key(token: &TestToken, label: &str, sensitive: bool) {
    let mut command = Command::new("pkcs11-tool");
    command
        .arg("--module")
        .arg(&token.module_path)
        .args(["--token-label", &token.label, "--login", "--pin", USER_PIN])
        .args(["--keygen", "--key-type", "AES:32", "--label", label])
        .args(["--usage-decrypt"]);
    if sensitive {
        command.arg("--sensitive");
    } else {
        command.arg("--extractable");
    }
    token.apply(&mut command);
    run(&mut command, "pkcs11-tool --keygen");
}

/// Deletes the secret key labelled `label` with `pkcs11-tool --delete-object`.
pub fn delete_secret_key(token: &TestToken, label: &str) {
    let mut command = Command::new("pkcs11-tool");
    command
        .arg("--module")
        .arg(&token.module_path)
        .args(["--token-label", &token.label, "--login", "--pin", USER_PIN])
        .args(["--delete-object", "--type", "secrkey", "--label", label]);
    token.apply(&mut command);
    run(&mut command, "pkcs11-tool --delete-object");
}
