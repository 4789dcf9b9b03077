//! The vault's disk: it fills up mid-run (spec/vault.md §6: a guess is counted durably before
//! the vault answers), and a soak under mixed load while the disk fills and empties. `coffer vault serve` keeps its SQLite store on a small tmpfs of its own; a
//! filler file takes the last byte while registrations and wrong guesses keep coming. Every
//! request the vault cannot make durable is refused as `io`; every one it acknowledged is still
//! there afterwards, in the running vault and after a restart; once space is back it serves
//! again. The soak (`COFFER_SOAK_SECONDS`, 40 by default) registers, recovers with right and
//! wrong passwords, changes passwords and deletes from six clients while the disk is full one
//! second in three; the vault's memory and open files must stop growing once its sessions
//! start expiring, and every record the clients know of must open after a restart. Needs
//! root (to mount the tmpfs): opt out with COFFER_SKIP_DISK_FAULTS=1. Last, an fsync that
//! fails (an LD_PRELOAD shim built with the machine's C compiler).

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::vault::KsfFloor;
use coffer::{Classify, ErrorClass};
use coffer_testkit::Served;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// True (and recorded) when the disk faults were opted out by name.
fn skipped() -> bool {
    coffer_testkit::opt_out(
        "COFFER_SKIP_DISK_FAULTS",
        "disk faults (a tmpfs mount as root; an LD_PRELOAD fsync shim)",
    )
}

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
    served: Served,
    client: VaultClient,
}

fn serve(data: &Path) -> Vault {
    serve_with(data, &[])
}

fn serve_with(data: &Path, extra: &[&str]) -> Vault {
    serve_env(data, extra, &[])
}

fn serve_env(data: &Path, extra: &[&str], env: &[(String, PathBuf)]) -> Vault {
    let served = Served::start(
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["vault", "serve", "--listen", "127.0.0.1:0"])
            .args(["--ksf", "argon2id:m=256,t=1,p=1", "--data"])
            .arg(data)
            .args(extra)
            .env_remove("COFFER_VAULT_FAULT")
            .stderr(Stdio::null()),
    );
    let client =
        VaultClient::new(served.url(), &served.token(), "coffer-vault").ksf_floor(KsfFloor::NONE);
    Vault { served, client }
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
    if skipped() {
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
    coffer_testkit::report(&format!(
        "disk full: injected once ({filled} filler bytes); {acknowledged} operations acknowledged, \
         0 lost, {refused} refused as io, 0 limit violations; served again {} ms after space came back",
        again.as_millis()
    ));
}

/// What a client knows of one of its users, from the answers it got.
#[derive(Clone)]
struct Known {
    registered: bool,
    password: Vec<u8>,
    key: u8,
    /// An answer was `io`: the operation may or may not have happened.
    unsure: bool,
    /// The password a change that ended in `io` may have set.
    maybe: Option<Vec<u8>>,
}

/// The vault's resident memory (KiB) and open file descriptors, from /proc.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

/// A small generator for the clients' choices (xorshift): repeatable from its seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[derive(Default)]
struct Tally {
    acknowledged: u64,
    io: u64,
}

/// One client's run over its own users until `stop`.
fn soak_client(
    client: &VaultClient,
    users: &mut [(String, Known)],
    seed: u64,
    stop: &AtomicBool,
) -> Tally {
    let mut dice = Dice(seed);
    let mut tally = Tally::default();
    let mut version = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let i = dice.roll(users.len() as u64) as usize;
        let (user, known) = &mut users[i];
        if known.unsure && !resync(client, user, known) {
            continue;
        }
        let io = |e: &coffer::vault::VaultError| e.class() == ErrorClass::Io;
        let result: Result<(), coffer::vault::VaultError> = if !known.registered {
            version += 1;
            let password = format!("pw-{seed}-{version}").into_bytes();
            let done = client.register(user, &password, &key(known.key), Some(100));
            if done.is_ok() || done.as_ref().err().is_some_and(io) {
                known.password = password;
            }
            done.map(|()| known.registered = true)
        } else {
            match dice.roll(10) {
                0..=2 => client.recover(user, &known.password).map(|r| {
                    assert_eq!(
                        r.root.as_bytes(),
                        key(known.key).as_bytes(),
                        "{user}: another key"
                    );
                }),
                3..=6 => match client.recover(user, b"not the password") {
                    Err(e) if e.class() == ErrorClass::WrongPassword => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => panic!("{user}: a wrong password recovered a key"),
                },
                7..=8 => {
                    version += 1;
                    let new = format!("pw-{seed}-{version}").into_bytes();
                    match client.recover(user, &known.password) {
                        Ok(recovered) => match client.change_password(user, &recovered, &new) {
                            Ok(_) => {
                                known.password = new;
                                Ok(())
                            }
                            Err(e) => {
                                known.maybe = Some(new);
                                Err(e)
                            }
                        },
                        Err(e) => Err(e),
                    }
                }
                _ => client
                    .delete(user, &known.password)
                    .map(|()| known.registered = false),
            }
        };
        match result {
            Ok(()) => tally.acknowledged += 1,
            Err(e) if io(&e) => {
                tally.io += 1;
                known.unsure = true;
            }
            Err(e) => panic!("{user}: {e} ({:?})", e.class()),
        }
    }
    tally
}

/// After an `io` answer: what the vault holds for `user`, from its status and, if it is
/// registered, the passwords it may have. False while the vault cannot say.
fn resync(client: &VaultClient, user: &str, known: &mut Known) -> bool {
    let Ok(status) = client.status(user) else {
        return false;
    };
    known.registered = status.registered;
    if status.registered {
        let candidates = [Some(known.password.clone()), known.maybe.clone()];
        let mut opened = false;
        for password in candidates.into_iter().flatten() {
            match client.recover(user, &password) {
                Ok(r) => {
                    assert_eq!(r.root.as_bytes(), key(known.key).as_bytes(), "{user}");
                    known.password = password;
                    opened = true;
                    break;
                }
                Err(e) if e.class() == ErrorClass::WrongPassword => {}
                Err(_) => return false,
            }
        }
        assert!(
            opened,
            "{user}: registered, and neither password it may have opens it"
        );
    }
    known.unsure = false;
    known.maybe = None;
    true
}

#[test]
fn a_soak_under_mixed_load_and_disk_faults_keeps_memory_and_files_bounded() {
    if skipped() {
        return;
    }
    let seconds: u64 = std::env::var("COFFER_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("disk"), "64m");
    let data = mount.0.join("data");
    // Sessions live 5 s, so that those the wrong guesses leave open expire within the run:
    // after that the vault's memory has no reason to grow.
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        "session_ttl_seconds = 5\n[rate]\nuser_per_minute = 1000000.0\ntenant_per_second = 1000000.0\n",
    )
    .unwrap();
    let vault = serve_with(&data, &["--config", config.to_str().unwrap()]);
    let pid = vault.served.child.id();
    let stop = AtomicBool::new(false);
    let samples: Mutex<Vec<(Duration, u64, usize)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let mut faults = 0;
    let mut ledgers: Vec<Vec<(String, Known)>> = (0..6u8)
        .map(|c| {
            (0..8u8)
                .map(|u| {
                    let known = Known {
                        registered: false,
                        password: Vec::new(),
                        key: c * 8 + u,
                        unsure: false,
                        maybe: None,
                    };
                    (format!("soak-{c}-{u}"), known)
                })
                .collect()
        })
        .collect();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = ledgers
            .iter_mut()
            .enumerate()
            .map(|(c, users)| {
                let (client, stop) = (&vault.client, &stop);
                scope.spawn(move || soak_client(client, users, 0x9e37_79b9 + c as u64, stop))
            })
            .collect();
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (rss, fds) = usage(pid);
                samples.lock().unwrap().push((started.elapsed(), rss, fds));
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        // The fault: one second in three, the disk is full.
        while started.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_secs(2));
            fill(&mount.0.join("filler"), 0);
            faults += 1;
            std::thread::sleep(Duration::from_secs(1));
            std::fs::remove_file(mount.0.join("filler")).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let samples = samples.into_inner().unwrap();
    let half = Duration::from_secs(seconds / 2);
    let peak = |second: bool| {
        samples
            .iter()
            .filter(|(at, _, _)| (*at >= half) == second)
            .fold((0, 0), |(r, f), (_, rss, fds)| (r.max(*rss), f.max(*fds)))
    };
    let (first, second) = (peak(false), peak(true));
    let acknowledged: u64 = tallies.iter().map(|t| t.acknowledged).sum();
    let io: u64 = tallies.iter().map(|t| t.io).sum();
    coffer_testkit::report(&format!(
        "soak {seconds} s: {acknowledged} operations acknowledged, {io} refused as io, {faults} \
         disk-full faults; peak memory {} KiB in the first half, {} KiB in the second; peak open \
         files {} then {}",
        first.0, second.0, first.1, second.1
    ));
    assert!(io > 0 && faults > 0, "no fault was met");
    assert!(
        acknowledged > 100,
        "only {acknowledged} operations acknowledged"
    );
    // The bound: once sessions expire, nothing grows. 16 MiB of slack for the allocator and
    // SQLite's page cache; 16 descriptors for connections in flight.
    assert!(
        second.0 <= first.0 + 16 * 1024,
        "memory grew from {} to {} KiB",
        first.0,
        second.0
    );
    assert!(
        second.1 <= first.1 + 16,
        "open files grew from {} to {}",
        first.1,
        second.1
    );

    // Every record a client knows of opens after a restart with the password it knows.
    drop(vault);
    let vault = serve_with(&data, &["--config", config.to_str().unwrap()]);
    let mut checked = 0;
    for (user, known) in ledgers.iter_mut().flatten() {
        if known.unsure && !resync(&vault.client, user, known) {
            panic!("{user}: the restarted vault cannot say what it holds");
        }
        let status = vault.client.status(user).unwrap();
        assert_eq!(status.registered, known.registered, "{user}");
        if known.registered {
            let recovered = vault.client.recover(user, &known.password).map(|r| r.root);
            let recovered = recovered.unwrap_or_else(|e| panic!("{user}: {e}"));
            assert_eq!(recovered.as_bytes(), key(known.key).as_bytes(), "{user}");
            checked += 1;
        }
    }
    coffer_testkit::report(&format!(
        "soak: after a restart, all {checked} registered records open with their passwords"
    ));
}

/// The vault's fsync fails (an LD_PRELOAD shim, `coffer_testkit::FaultShim`: this kernel has
/// no device-mapper to fail a disk): every write it cannot make durable is refused as `io`;
/// what it acknowledged before stays, exactly; a refused write may or may not survive (its
/// bytes reached the file, only the sync failed), and it serves again once fsync works.
#[test]
fn a_failing_fsync_refuses_with_io_and_loses_nothing() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shim = coffer_testkit::FaultShim::build(dir.path(), &dir.path().join("none"));
    let flag = shim.fsync_fails.clone();
    let vault = serve_env(&data, &[], &shim.env);
    let mut ledger = Ledger::default();
    for i in 0..3u8 {
        let user = format!("early{i}");
        vault
            .client
            .register(&user, b"right", &key(i), None)
            .unwrap();
        ledger.keys.insert(user, i);
    }
    let e = vault.client.recover("early0", b"wrong").err().unwrap();
    assert_eq!(e.class(), ErrorClass::WrongPassword, "{e}");
    ledger.wrong.insert("early0".into(), 1);

    std::fs::write(&flag, "").unwrap();
    let failing = Instant::now();
    let mut refused = 0;
    for i in 0..5u8 {
        let e = vault
            .client
            .register(&format!("late{i}"), b"right", &key(100 + i), None)
            .expect_err("a registration acknowledged without fsync");
        assert_eq!(e.class(), ErrorClass::Io, "{e}");
        let e = vault.client.recover("early1", b"wrong").err().unwrap();
        assert_eq!(e.class(), ErrorClass::Io, "a guess without fsync: {e}");
        refused += 2;
    }
    std::fs::remove_file(&flag).unwrap();
    let again = Instant::now();
    vault
        .client
        .register("after", b"right", &key(250), None)
        .unwrap();
    ledger.keys.insert("after".into(), 250);
    let served_again = again.elapsed();

    // early1's five refused guesses may each have reached the file: between 0 and 5 counted.
    let check = |vault: &Vault, when: &str| {
        for user in ["early0", "early2", "after"] {
            let status = vault.client.status(user).unwrap();
            let counted = ledger.wrong.get(user).copied().unwrap_or(0);
            assert_eq!(
                status.limit - status.guesses_left,
                counted,
                "{when}: {user}"
            );
        }
        let status = vault.client.status("early1").unwrap();
        assert!(
            status.registered && status.guesses_left >= 5,
            "{when}: early1 {status:?}"
        );
        status.limit - status.guesses_left
    };
    let live = check(&vault, "with fsync back");
    drop(vault);
    let vault = serve(&data);
    let restarted = check(&vault, "after a restart");
    assert_eq!(live, restarted, "early1's count changed with the restart");
    ledger.check_keys(&vault, "after a restart");
    coffer_testkit::report(&format!(
        "fsync fails: injected once for {} ms; 4 operations acknowledged before, 0 lost, \
         {refused} refused as io (of which {live} guesses reached the file and count), 0 limit \
         violations; served again {} ms after fsync came back",
        (again - failing).as_millis(),
        served_again.as_millis()
    ));
}
