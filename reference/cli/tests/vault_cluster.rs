//! The multi-site vault under faults: three vault nodes on one three-member etcd cluster (all
//! real processes on loopback; Debian etcd-server; opt out with COFFER_SKIP_ETCD=1).
//!
//! - Parallel guesses spread over the three nodes never release more real KE2s than the
//!   limit, in total.
//! - SIGKILL of one etcd member and one vault node during a guessing run loses no
//!   registration and no acknowledged guess, and the surviving nodes keep serving.
//! - A node cut off from the quorum refuses guesses instead of answering from stale state;
//!   when the members come back, the counts are exact.
//!
//! Each run's history is checked by `coffer_testkit::history` (every count 1..=c once, in
//! order, between the acknowledged guesses and those plus the unknown ones).

use coffer::Classify;
use coffer_testkit::etcd;
use coffer_testkit::history::{self, Outcome};

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::store::{EtcdConfig, EtcdStore, Store};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TOKEN: &str = "cluster-test-tenant-token-of-forty-characters!";

struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three nodes' shared settings: the tenants file and the store URL.
struct Site {
    dir: PathBuf,
    store: String,
}

impl Site {
    fn new(dir: &Path, cluster: &etcd::Cluster) -> Site {
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        std::fs::write(
            dir.join("vault.json"),
            r#"{"tenants": [{"name": "default", "token_file": "token"}]}"#,
        )
        .unwrap();
        Site {
            dir: dir.to_owned(),
            store: format!("etcd://{}/coffer-cluster-test", cluster.endpoints()),
        }
    }

    /// Starts node `i`; nodes after the first get the first node's master key (a copy of the
    /// soft backend's key file: the same key on every site).
    fn start(&self, i: usize) -> Node {
        let data = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&data).unwrap();
        if i > 0 {
            std::fs::copy(self.dir.join("node0/master.key"), data.join("master.key")).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["vault", "serve", "--listen", "127.0.0.1:0"])
            .args([
                "--ksf",
                "argon2id:m=256,t=1,p=1",
                "--user-per-minute",
                "100000",
            ])
            .args(["--etcd-timeout", "2", "--store", &self.store, "--config"])
            .arg(self.dir.join("vault.json"))
            .arg("--data")
            .arg(&data)
            .env_remove("COFFER_VAULT_FAULT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("coffer vault serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let first: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("node {i}: {e}: {line}"));
        assert_eq!(first["store"], self.store.as_str());
        Node {
            child,
            url: first["listening"].as_str().unwrap().to_owned(),
        }
    }

    /// The store, read directly (for the audit log).
    fn store(&self) -> EtcdStore {
        EtcdStore::connect(&EtcdConfig::parse(&self.store).unwrap()).unwrap()
    }
}

fn client(node: &Node) -> VaultClient {
    VaultClient::new(&node.url, TOKEN, "coffer-vault").ksf_floor(coffer::vault::KsfFloor::NONE)
}

/// One KE1 to the node at `url` (see [`history::guess`]).
fn guess(url: &str, user: &str, password: &[u8]) -> (Outcome, bool) {
    history::guess(url, TOKEN, user, password, Duration::from_secs(10))
}

/// The history check on the store's audit log (see [`history::check_counter`]).
fn check_counter(store: &EtcdStore, user: &str, acknowledged: usize, unknown: usize) -> usize {
    history::check_counter(
        &store.audit(0, 1_000_000).unwrap(),
        user,
        acknowledged,
        unknown,
    )
}

#[test]
fn parallel_guesses_over_three_nodes_never_exceed_the_limit() {
    if etcd::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = etcd::Cluster::start(dir.path(), 3);
    let site = Site::new(dir.path(), &cluster);
    let nodes: Vec<Node> = (0..3).map(|i| site.start(i)).collect();
    client(&nodes[0])
        .register("zoe", b"right", &RootKey::from_bytes([1; 32]), Some(5))
        .unwrap();
    // 30 guesses with the right password, 10 per node, all at once: each KE2 that verifies
    // is a real evaluation.
    let results: Vec<(Outcome, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let url = nodes[i % 3].url.clone();
                scope.spawn(move || guess(&url, "zoe", b"right"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let real = results.iter().filter(|(_, real)| *real).count();
    assert_eq!(
        real, 5,
        "exactly the limit of real evaluations: {results:?}"
    );
    let acknowledged = results
        .iter()
        .filter(|(o, _)| *o == Outcome::Acknowledged)
        .count();
    assert_eq!(
        acknowledged, 30,
        "every guess is answered (fake KE2s after the limit)"
    );
    let status = client(&nodes[1]).status("zoe").unwrap();
    assert!(!status.registered, "{status:?}");
    check_counter(&site.store(), "zoe", 5, 0);
}

#[test]
fn killing_an_etcd_member_and_a_vault_node_loses_nothing() {
    if etcd::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = etcd::Cluster::start(dir.path(), 3);
    let site = Site::new(dir.path(), &cluster);
    let mut nodes: Vec<Option<Node>> = (0..3).map(|i| Some(site.start(i))).collect();
    // Each user takes at most 95 guesses (its limit is 100): acknowledged guesses are all real.
    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let sent: Vec<std::sync::atomic::AtomicUsize> = (0..40)
        .map(|_| std::sync::atomic::AtomicUsize::new(0))
        .collect();
    for (i, user) in users.iter().enumerate() {
        client(nodes[i % 3].as_ref().unwrap())
            .register(
                user,
                b"right",
                &RootKey::from_bytes([i as u8; 32]),
                Some(100),
            )
            .unwrap();
    }
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().url.clone())
        .collect();
    let history: Mutex<Vec<(String, usize, Outcome, Instant)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let killed_at = std::thread::scope(|scope| {
        for worker in 0..6 {
            let (history, stop, urls, users, sent) = (&history, &stop, &urls, &users, &sent);
            scope.spawn(move || {
                let mut n = worker;
                while !stop.load(Ordering::Relaxed) {
                    let node = n % 3;
                    let which = n % users.len();
                    n += 1;
                    if sent[which].fetch_add(1, Ordering::Relaxed) >= 95 {
                        if sent.iter().all(|s| s.load(Ordering::Relaxed) >= 95) {
                            break;
                        }
                        continue;
                    }
                    let user = &users[which];
                    let (outcome, _) = guess(&urls[node], user, b"wrong");
                    history
                        .lock()
                        .unwrap()
                        .push((user.clone(), node, outcome, Instant::now()));
                }
            });
        }
        // Guesses flow before the kill (not a fixed time: a loaded machine is slow).
        let deadline = Instant::now() + Duration::from_secs(60);
        while history.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster.kill_member(2);
        drop(nodes[2].take());
        let killed_at = Instant::now();
        // Run until the survivors have served enough after the election settled (a second
        // after the kill), at least four seconds, and at most a minute.
        let served_after = || {
            history
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, node, o, at)| {
                    *node < 2
                        && *o == Outcome::Acknowledged
                        && *at > killed_at + Duration::from_secs(1)
                })
                .count()
        };
        while (served_after() <= 10 || killed_at.elapsed() < Duration::from_secs(4))
            && killed_at.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        killed_at
    });
    let history = history.into_inner().unwrap();
    // The surviving nodes kept serving after the kill (after the election settles).
    let served_after = history
        .iter()
        .filter(|(_, node, o, at)| {
            *node < 2 && *o == Outcome::Acknowledged && *at > killed_at + Duration::from_secs(1)
        })
        .count();
    assert!(
        served_after > 10,
        "{served_after} guesses served after the kill (within a minute)"
    );
    // Every registration is there, and every acknowledged guess was counted.
    let store = site.store();
    let survivor = client(nodes[0].as_ref().unwrap());
    let mut total = 0;
    for user in &users {
        let of_user = |o: Outcome| {
            history
                .iter()
                .filter(|(u, _, x, _)| u == user && *x == o)
                .count()
        };
        let counted = check_counter(
            &store,
            user,
            of_user(Outcome::Acknowledged),
            of_user(Outcome::Unknown),
        );
        let status = survivor.status(user).unwrap();
        assert!(status.registered, "{user} lost its registration");
        assert_eq!(status.limit - status.guesses_left, counted as u32, "{user}");
        total += counted;
    }
    let count = |o: Outcome| history.iter().filter(|(_, _, x, _)| *x == o).count();
    eprintln!(
        "kill run: {} KE1s, {} acknowledged, {} unknown, {} refused; {total} counted; \
         {served_after} acknowledged by the survivors after the kill",
        history.len(),
        count(Outcome::Acknowledged),
        count(Outcome::Unknown),
        count(Outcome::Refused)
    );
    assert!(
        total > 50,
        "only {total} guesses were made: the run did not run"
    );
}

#[test]
fn a_node_cut_off_from_the_quorum_refuses_then_counts_stay_exact() {
    if etcd::skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = etcd::Cluster::start(dir.path(), 3);
    let site = Site::new(dir.path(), &cluster);
    let node = site.start(0);
    let vault = client(&node);
    vault
        .register("ann", b"right", &RootKey::from_bytes([9; 32]), Some(10))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(guess(&node.url, "ann", b"wrong").0, Outcome::Acknowledged);
    }
    // Only member 0 is left: no quorum. The node must not answer a guess from what it read
    // before; it fails (io, 500) within its etcd timeout.
    cluster.kill_member(1);
    cluster.kill_member(2);
    for _ in 0..3 {
        let started = Instant::now();
        let (outcome, _) = guess(&node.url, "ann", b"wrong");
        assert_eq!(
            outcome,
            Outcome::Unknown,
            "a guess without a quorum was answered"
        );
        // Its etcd timeout is 2 s; the margin is for a loaded machine, not a second chance.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
    let refused = vault.status("ann").unwrap_err();
    assert_eq!(
        refused.class(),
        coffer::ErrorClass::Io,
        "status without a quorum: {refused}"
    );
    // The members come back: the count is exactly the three acknowledged guesses (the
    // refused ones were never committed), and guessing works again.
    cluster.start_member(1);
    cluster.start_member(2);
    cluster.wait_healthy(Duration::from_secs(30));
    let status = vault.status("ann").unwrap();
    assert_eq!(status.guesses_left, 7, "{status:?}");
    assert_eq!(guess(&node.url, "ann", b"wrong").0, Outcome::Acknowledged);
    check_counter(&site.store(), "ann", 4, 0);
    let recovered = vault.recover("ann", b"right").unwrap();
    assert_eq!(recovered.root.as_bytes(), &[9; 32]);
}

/// `scripts/cluster.sh`: three sites, each with its own SoftHSM2 token holding the same key
/// after the key ceremony; a key registered at site 1 is recovered at site 3 (opt out with
/// COFFER_SKIP_ETCD=1 or COFFER_SKIP_SOFTHSM=1).
#[test]
fn the_three_site_script_starts_a_working_vault_and_tears_it_down() {
    if etcd::skipped() || coffer_testkit::opt_out("COFFER_SKIP_SOFTHSM", "scripts/cluster.sh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
    // A port range of its own, below the kernel's ephemeral range (where the other tests'
    // members get theirs), with all 23 ports free now.
    let base = (0..200u16)
        .map(|i| 20_000 + (std::process::id() as u16 % 400 + i * 53) % 12_000)
        .find(|&b| (1..=23).all(|p| std::net::TcpListener::bind(("127.0.0.1", b + p)).is_ok()))
        .expect("a free port range");
    let up = Command::new("bash")
        .arg(&script)
        .args(["up", "--detach"])
        .arg(&cluster_dir)
        .env("COFFER_BIN", env!("CARGO_BIN_EXE_coffer"))
        .env("COFFER_CLUSTER_PORT_BASE", base.to_string())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&up.stdout).into_owned();
    struct Down<'a>(&'a Path, &'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(self.0)
                .arg("down")
                .arg(self.1)
                .output();
        }
    }
    let _down = Down(&script, &cluster_dir);
    assert!(
        up.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let token = std::fs::read_to_string(cluster_dir.join("tenant.token")).unwrap();
    let node = |i: u16| {
        VaultClient::new(
            &format!("http://127.0.0.1:{}", base + 20 + i),
            &token,
            "coffer-vault",
        )
        .ksf_floor(coffer::vault::KsfFloor::NONE)
    };
    let root = RootKey::from_bytes([4; 32]);
    node(1).register("bob", b"pw", &root, None).unwrap();
    assert_eq!(
        node(3).recover("bob", b"pw").unwrap().root.as_bytes(),
        &[4; 32]
    );
    assert_eq!(node(2).status("bob").unwrap().guesses_left, 10);
    // Each site seals with its own token.
    for i in 1..=3 {
        let first = std::fs::read_to_string(cluster_dir.join(format!("vault{i}.out"))).unwrap();
        assert!(first.contains(&format!("token site{i}")), "{first}");
    }
}
