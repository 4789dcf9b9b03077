//! The vault's disk fills up mid-run (spec/vault.md §6: a guess is counted durably before the
//! vault answers). `coffer vault serve` keeps its SQLite store on a small tmpfs of its own; a
//! filler file takes the last byte while registrations and wrong guesses keep coming. Every
//! request the vault cannot make durable is refused as `io`; every one it acknowledged is still
//! there afterwards, in the running vault and after a restart; once space is back it serves
//! again. Needs root (to mount the tmpfs): opt out with COFFER_SKIP_DISK_FAULTS=1.

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::vault::KsfFloor;
use coffer::{Classify, ErrorClass};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (opt out with COFFER_SKIP_DISK_FAULTS=1): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Vault {
    child: Child,
    client: VaultClient,
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Vault {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["vault", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data"])
        .arg(data)
        .env_remove("COFFER_VAULT_FAULT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start coffer vault serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let first: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let token = std::fs::read_to_string(first["token_file"].as_str().unwrap()).unwrap();
    let url = first["listening"].as_str().unwrap();
    let client = VaultClient::new(url, token.trim(), "coffer-vault").ksf_floor(KsfFloor::NONE);
    Vault { child, client }
}

fn key(i: u8) -> RootKey {
    RootKey::from_bytes([i; 32])
}

/// What the vault acknowledged: who is registered, with which key, and how many wrong
/// guesses each record has counted.
#[derive(Default)]
struct Ledger {
    keys: BTreeMap<String, u8>,
    wrong: BTreeMap<String, u32>,
}

impl Ledger {
    /// Every acknowledged registration and guess is in `vault`, with its exact count.
    fn check_counts(&self, vault: &Vault, when: &str) {
        for user in self.keys.keys() {
            let status = vault.client.status(user).unwrap();
            let counted = self.wrong.get(user).copied().unwrap_or(0);
            assert_eq!(
                status.guesses_left,
                10 - counted,
                "{when}: {user} has {} guesses left after {counted} acknowledged wrong ones",
                status.guesses_left
            );
        }
    }

    /// Each record still opens with its own password and key (which resets its count).
    fn check_keys(&mut self, vault: &Vault, when: &str) {
        for (user, &k) in &self.keys {
            let recovered = vault.client.recover(user, b"right").unwrap();
            assert_eq!(
                recovered.root.as_bytes(),
                key(k).as_bytes(),
                "{when}: {user}"
            );
        }
        self.wrong.clear();
    }
}

/// Writes until the file system is full, then gives `leave` bytes back: the vault runs out of
/// space partway through the requests that follow, not at the first.
fn fill(path: &Path, leave: u64) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
    }
    file.set_len(written.saturating_sub(leave)).unwrap();
    file.sync_all().unwrap();
    written.saturating_sub(leave)
}

#[test]
fn a_full_disk_refuses_with_io_loses_nothing_and_serves_again() {
    if coffer_testkit::opt_out(
        "COFFER_SKIP_DISK_FAULTS",
        "disk faults (a tmpfs mount, root)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("disk"), "8m");
    let data = mount.0.join("data");
    let mut ledger = Ledger::default();
    let vault = serve(&data);
    for i in 0..5u8 {
        let user = format!("early{i}");
        vault
            .client
            .register(&user, b"right", &key(i), None)
            .unwrap();
        ledger.keys.insert(user, i);
    }

    let filled = fill(&mount.0.join("filler"), 96 * 1024);
    assert!(filled > 0, "the filler wrote nothing");
    // Registrations (new pages) and wrong guesses (a count each) on the full disk. Every
    // answer is an acknowledgement or an `io` refusal; nothing else.
    let (mut acknowledged, mut refused) = (0u32, 0u32);
    for i in 0..40u8 {
        let user = format!("late{i}");
        match vault.client.register(&user, b"right", &key(100 + i), None) {
            Ok(()) => {
                ledger.keys.insert(user, 100 + i);
                acknowledged += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.class(),
                    ErrorClass::Io,
                    "a registration on a full disk: {e}"
                );
                refused += 1;
            }
        }
        let guessed = format!("early{}", i % 5);
        match vault.client.recover(&guessed, b"wrong") {
            Err(e) if e.class() == ErrorClass::WrongPassword => {
                *ledger.wrong.entry(guessed).or_default() += 1;
                acknowledged += 1;
            }
            Err(e) => {
                assert_eq!(e.class(), ErrorClass::Io, "a guess on a full disk: {e}");
                refused += 1;
            }
            Ok(_) => panic!("a wrong password recovered a key"),
        }
        if refused >= 6 {
            break;
        }
    }
    assert!(
        refused >= 6,
        "the full disk refused only {refused} requests"
    );
    assert!(
        acknowledged > 0,
        "nothing succeeded before the disk was full"
    );
    ledger.check_counts(&vault, "on the full disk, before any space is back");

    std::fs::remove_file(mount.0.join("filler")).unwrap();
    let freed = Instant::now();
    let again = loop {
        match vault.client.register("after", b"right", &key(250), None) {
            Ok(()) => break freed.elapsed(),
            Err(e) if freed.elapsed() < Duration::from_secs(10) => {
                assert_eq!(e.class(), ErrorClass::Io, "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no service 10 s after space came back: {e}"),
        }
    };
    ledger.keys.insert("after".into(), 250);
    ledger.check_counts(&vault, "with space back");
    drop(vault);
    let vault = serve(&data);
    ledger.check_counts(&vault, "after a restart");
    ledger.check_keys(&vault, "after a restart");
    ledger.check_counts(&vault, "after every record recovered");
    eprintln!(
        "disk full: injected once ({filled} filler bytes); {acknowledged} operations acknowledged, \
         0 lost, {refused} refused as io, 0 limit violations; served again {} ms after space came back",
        again.as_millis()
    );
}
