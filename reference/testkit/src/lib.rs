//! What Coffer's tests, benches and conformance runs share: real PKCS#11 tokens
//! ([`tokens`]: SoftHSM2 and kryoptic), a real etcd cluster ([`etcd`]), hosts of their own in network namespaces with faults
//! between them ([`netns`]), guess histories and their check ([`history`]), whole vault flows
//! in process ([`flows`]), a private CA for TLS on loopback ([`tls`]), and the one way a prerequisite may be skipped ([`opt_out`]). Not published; a
//! dev-dependency, and the conformance runner's source of a private CA for its own HTTPS.

pub mod etcd;
pub mod flows;
pub mod history;
pub mod netns;
pub mod tls;
pub mod tokens;
pub mod workloads;

/// The `coffer` binary of this build, beside the running test (as cargo lays them out:
/// `target/<profile>/deps/<test>` and `target/<profile>/coffer`). Cargo builds it for the
/// integration tests of the `coffer` package.
pub fn coffer_exe() -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("the test's own path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let exe = dir.join("coffer");
    assert!(
        exe.exists(),
        "{} is missing: run the tests of the coffer package (cargo test -p coffer)",
        exe.display()
    );
    exe
}

/// Adds `args` to `command`, except that a `--key` followed by 64 hex digits goes to
/// `COFFER_KEY` instead: the CLI refuses a key on the command line (every user of the
/// machine could read it), so tests hand it over as a user would. Call it after any
/// `env_remove("COFFER_KEY")`.
pub fn args_with_key_in_env<'a>(
    command: &mut std::process::Command,
    args: impl IntoIterator<Item = &'a str>,
) -> &mut std::process::Command {
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--key" {
            if let Some(value) = args.peek().filter(|v| is_key_digits(v)) {
                command.env("COFFER_KEY", value);
                args.next();
                continue;
            }
        }
        command.arg(arg);
    }
    command
}

fn is_key_digits(text: &str) -> bool {
    let digits: Vec<char> = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    digits.len() == 64 && digits.iter().all(char::is_ascii_hexdigit)
}

/// Whether the user opted out of the tests that need `what` by setting `var=1`; the skip is
/// printed, and recorded for the test command's summary, so a skipped test is never silent
/// and never counted as passed. Anything other than `1` means "run them": a missing
/// prerequisite then fails with instructions instead of passing.
pub fn opt_out(var: &str, what: &str) -> bool {
    let skipped = opted_out(var);
    if skipped {
        eprintln!("SKIPPED: {what} ({var}=1)");
        record_skip(&format!("{what} ({var}=1)"));
    }
    skipped
}

/// The rule of [`opt_out`] alone: `var` is exactly `1`.
fn opted_out(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Prints a fault run's verdict (what was injected, acknowledged, lost, refused, and when the
/// service came back), and appends it to the file COFFER_FAULT_REPORT names: scripts/test.sh
/// prints that file at the end, since cargo test shows no output of a test that passed.
pub fn report(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    if let Ok(path) = std::env::var("COFFER_FAULT_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line, whole under O_APPEND however many tests report at once.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Appends `test name<TAB>why` to the file COFFER_SKIPPED_TESTS names (scripts/test.sh sets it, and
/// counts the lines apart from the passes). The test's name is its thread's, as libtest
/// names it; a test's name appears once however many times it skips.
fn record_skip(why: &str) {
    use std::io::Write;
    let Ok(log) = std::env::var("COFFER_SKIPPED_TESTS") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed)")
        .to_owned();
    let crate_name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| {
            stem.rsplit_once('-')
                .map_or(stem.clone(), |(name, _)| name.to_owned())
        })
        .unwrap_or_default();
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        // One write per line: tests skip on several threads at once, and O_APPEND keeps a
        // single small write whole.
        let line = format!("{crate_name}::{test}\t{why}\n");
        let _ = file.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod key_tests {
    #[test]
    fn only_a_64_digit_key_moves_to_the_environment() {
        let key = "00".repeat(32);
        let mut command = std::process::Command::new("true");
        super::args_with_key_in_env(&mut command, ["a", "--key", &key, "--key", "file.key"]);
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["a", "--key", "file.key"]);
        let env: Vec<_> = command.get_envs().collect();
        assert_eq!(env, [("COFFER_KEY".as_ref(), Some(key.as_ref()))]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_1_opts_out() {
        // Names no other test or user sets.
        std::env::set_var("COFFER_TESTKIT_PROBE_A", "1");
        std::env::set_var("COFFER_TESTKIT_PROBE_B", "yes");
        // The rule alone: calling opt_out would record this test as skipped.
        assert!(super::opted_out("COFFER_TESTKIT_PROBE_A"));
        assert!(!super::opted_out("COFFER_TESTKIT_PROBE_B"));
        assert!(!super::opted_out("COFFER_TESTKIT_PROBE_UNSET"));
    }
}

/// A server process of the tests (`coffer vault serve`, a realm), killed when dropped, and the
/// JSON line it printed first (`listening`, `token_file`, `admin`, `hsm`, `store`, ...).
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// Its first line of output.
    pub first: serde_json::Value,
}

impl Served {
    /// Spawns `command` with its output piped and reads the first line it prints.
    pub fn start(command: &mut std::process::Command) -> Served {
        use std::io::BufRead;
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the server's first line");
        let first = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Served { child, first }
    }

    /// Where it listens (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.first["listening"].as_str().expect("listening")
    }

    /// The tenant token it wrote (`token_file`).
    pub fn token(&self) -> String {
        let path = self.first["token_file"].as_str().expect("token_file");
        std::fs::read_to_string(path)
            .expect("the token file")
            .trim()
            .to_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Faults injected into a child process by an LD_PRELOAD shim (`fault_shim.c`, built with
/// the machine's C compiler): each is on while its flag file exists.
pub struct FaultShim {
    /// `LD_PRELOAD` and the shim's variables, for the child's environment.
    pub env: Vec<(String, std::path::PathBuf)>,
    /// While this exists, every `fsync`/`fdatasync` fails with EIO.
    pub fsync_fails: std::path::PathBuf,
    /// While this exists, opening a file under the `hang_under` directory waits.
    pub opens_hang: std::path::PathBuf,
}

impl FaultShim {
    /// Builds the shim into `dir`; its open hangs apply to paths under `hang_under`.
    pub fn build(dir: &std::path::Path, hang_under: &std::path::Path) -> FaultShim {
        let source = dir.join("fault_shim.c");
        let library = dir.join("libcofferfaults.so");
        std::fs::write(&source, include_str!("fault_shim.c")).expect("write the shim's source");
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("cc (the C compiler every Rust toolchain here has)");
        assert!(
            out.status.success(),
            "building the fault shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (fsync_fails, opens_hang) = (dir.join("fsync-fails"), dir.join("opens-hang"));
        FaultShim {
            env: vec![
                ("LD_PRELOAD".to_owned(), library),
                ("COFFER_FAIL_FSYNC".to_owned(), fsync_fails.clone()),
                ("COFFER_HANG_OPEN".to_owned(), opens_hang.clone()),
                ("COFFER_HANG_UNDER".to_owned(), hang_under.to_owned()),
            ],
            fsync_fails,
            opens_hang,
        }
    }
}
