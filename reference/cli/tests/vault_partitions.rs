//! The multi-site vault when the network between its sites fails, on hosts of the test's own
//! (`coffer_testkit::netns`: a network namespace each, a bridge, nftables for the faults):
//! e0, e1, e2 run the three etcd members, v0, v1, v2 the vault nodes. Site i is {e_i, v_i},
//! and node i talks to member i only, so what the network does between the sites decides what
//! the node may answer. Clients reach node i on v_i's own loopback.
//!
//! Scenarios, each bounded in time, each with its history checked
//! (`coffer_testkit::history`: every count 1..=c once, in order, between the acknowledged
//! guesses and those plus the unknown ones) and these invariants: no acknowledged guess or
//! registration is lost; no record releases more real KE2s than its limit; a node on the
//! minority side acknowledges nothing (it refuses, or times out); after healing every count
//! is exact and every node serves.
//!
//! - a node cut off from its member while guesses are in flight;
//! - a symmetric partition, site 0 | sites 1 and 2;
//! - an asymmetric one: member 0 hears the others, they do not hear it;
//! - a leader change forced during a guessing run (`etcdctl move-leader`);
//! - partition and heal, again and again, for a minute (`COFFER_NEMESIS_SECONDS` sets it);
//! - 100 ms ± 20 ms each way between sites (a delaying proxy in front of every member's peer
//!   port) with 1% loss: guesses/s and p99 reported.
//!
//! Needs root, iproute2, nftables and etcd (scripts/test.sh installs them); opt out with
//! COFFER_SKIP_PARTITIONS=1 or COFFER_SKIP_ETCD=1. The scenarios run one at a time.

use coffer::http::VaultClient;
use coffer::key::RootKey;
use coffer::store::AuditEvent;
use coffer::Classify;
use coffer_testkit::history::{self, Outcome};
use coffer_testkit::netns::{DelayProxy, Net};
use coffer_testkit::Served;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TOKEN: &str = "partition-test-tenant-token-of-forty-chars!";
const ADMIN: &str = "partition-test-admin-token-of-forty-chars!!";
/// Each user's guess limit.
const LIMIT: u32 = 30;
/// The least time between two guesses of one client: six clients send at most 60 a second,
/// so that a run's users last through its faults on a fast machine, and a slow one is not
/// swamped.
const PACE: Duration = Duration::from_millis(100);

/// The scenarios share the machine's two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn skipped() -> bool {
    coffer_testkit::etcd::skipped() || coffer_testkit::netns::skipped()
}

/// etcd's timing (a heartbeat near the round trip, an election ten heartbeats: etcd's tuning
/// guide), and the longest a node waits for etcd in one call (`--etcd-timeout`).
#[derive(Clone, Copy)]
struct Timing {
    heartbeat_ms: u64,
    election_ms: u64,
    etcd_timeout_s: u64,
}

impl Timing {
    /// How long a client waits for a guess before it counts it unknown: longer than the
    /// node's own bound, so that the node's answer, not the client's patience, decides.
    fn guess_timeout(&self) -> Duration {
        Duration::from_secs(self.etcd_timeout_s + 6)
    }
}

const LAN: Timing = Timing {
    heartbeat_ms: 50,
    election_ms: 500,
    etcd_timeout_s: 2,
};

type Node = Served;

/// Three sites: the hosts, the members, the nodes.
struct Sites {
    net: Net,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    timing: Timing,
    /// The peer port each member advertises (2380, or a delaying proxy's port).
    peer_port: u16,
    nodes: Vec<Option<Node>>,
    _proxies: Vec<DelayProxy>,
}

const E: [usize; 3] = [0, 1, 2];
const V: [usize; 3] = [3, 4, 5];

impl Sites {
    /// Six hosts, three members (with `delay` each way between sites, if given), three nodes.
    fn start(timing: Timing, delay: Option<(Duration, Duration)>) -> Sites {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let net = Net::create(&["e0", "e1", "e2", "v0", "v1", "v2"]);
        let mut proxies = Vec::new();
        let peer_port = if let Some((delay, jitter)) = delay {
            for e in E {
                let ip = &net.hosts[e].ip;
                proxies.push(DelayProxy::start(
                    &net,
                    e,
                    &format!("{ip}:2390"),
                    &format!("{ip}:2380"),
                    delay,
                    jitter,
                ));
            }
            2390
        } else {
            2380
        };
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        std::fs::write(dir.join("admin"), ADMIN).unwrap();
        std::fs::write(
            dir.join("vault.json"),
            r#"{"tenants": [{"name": "default", "token_file": "token", "admin_token_file": "admin"}]}"#,
        )
        .unwrap();
        let mut sites = Sites {
            net,
            dir,
            _tmp: tmp,
            timing,
            peer_port,
            nodes: Vec::new(),
            _proxies: proxies,
        };
        for i in 0..3 {
            sites.start_member(i);
        }
        sites.wait_healthy(Duration::from_secs(60));
        for i in 0..3 {
            let node = sites.start_node(i);
            sites.nodes.push(Some(node));
        }
        sites
    }

    fn member_ip(&self, i: usize) -> &str {
        &self.net.hosts[E[i]].ip
    }

    /// Starts member `i` on host e_i, behind a watchdog that kills it if the test is gone.
    fn start_member(&self, i: usize) {
        let initial = (0..3)
            .map(|j| format!("m{j}=http://{}:{}", self.member_ip(j), self.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let ip = self.member_ip(i);
        let data = self.dir.join(format!("m{i}"));
        std::fs::create_dir_all(&data).unwrap();
        let args = [
            format!("--name=m{i}"),
            format!("--data-dir={}", data.join("data").display()),
            format!("--listen-client-urls=http://{ip}:2379"),
            format!("--advertise-client-urls=http://{ip}:2379"),
            format!("--listen-peer-urls=http://{ip}:2380"),
            format!(
                "--initial-advertise-peer-urls=http://{ip}:{}",
                self.peer_port
            ),
            format!("--initial-cluster={initial}"),
            "--initial-cluster-token=coffer-partitions".to_owned(),
            "--initial-cluster-state=new".to_owned(),
            format!("--heartbeat-interval={}", self.timing.heartbeat_ms),
            format!("--election-timeout={}", self.timing.election_ms),
            "--log-level=error".to_owned(),
        ];
        let script = format!(
            "etcd {} >>{} 2>&1 & e=$!; \
             while kill -0 {} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 0.2; done; \
             kill -9 $e 2>/dev/null",
            args.join(" "),
            data.join("etcd.log").display(),
            std::process::id()
        );
        let mut watchdog = self
            .net
            .command(E[i], "bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        std::thread::spawn(move || watchdog.wait());
    }

    /// `etcdctl` on host e_`from`, against the members `endpoints`.
    fn etcdctl(&self, from: usize, endpoints: &[usize], args: &[&str]) -> std::process::Output {
        let endpoints = endpoints
            .iter()
            .map(|&j| format!("http://{}:2379", self.member_ip(j)))
            .collect::<Vec<_>>()
            .join(",");
        self.net
            .command(E[from], "etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoints, "--command-timeout=3s"])
            .args(args)
            .output()
            .expect("etcdctl (Debian etcd-client)")
    }

    fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let out = self.etcdctl(0, &[0, 1, 2], &["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "etcd did not become healthy: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts node `i` on host v_i against member i only; nodes after the first get the
    /// first node's master key (the same key on every site).
    fn start_node(&self, i: usize) -> Node {
        let data = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&data).unwrap();
        if i > 0 {
            std::fs::copy(self.dir.join("node0/master.key"), data.join("master.key")).unwrap();
        }
        let store = format!("etcd://{}:2379/coffer-partitions", self.member_ip(i));
        Served::start(
            self.net
                .command(V[i], env!("CARGO_BIN_EXE_coffer"))
                .args(["vault", "serve", "--listen", "127.0.0.1:0"])
                .args(["--ksf", "argon2id:m=256,t=1,p=1"])
                .args([
                    "--user-per-minute",
                    "1000000",
                    "--tenant-per-second",
                    "1000000",
                ])
                .args(["--etcd-timeout", &self.timing.etcd_timeout_s.to_string()])
                .args(["--store", &store, "--config"])
                .arg(self.dir.join("vault.json"))
                .arg("--data")
                .arg(&data)
                .env_remove("COFFER_VAULT_FAULT")
                .stderr(Stdio::null()),
        )
    }

    fn url(&self, node: usize) -> String {
        self.nodes[node]
            .as_ref()
            .expect("node running")
            .url()
            .to_owned()
    }

    /// Runs `f` on a thread inside node `node`'s host (its sockets are that host's).
    fn on<T: Send>(&self, node: usize, f: impl FnOnce(&str) -> T + Send) -> T {
        let url = self.url(node);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.net.enter(V[node]);
                    f(&url)
                })
                .join()
                .unwrap()
        })
    }

    fn client(url: &str, token: &str) -> VaultClient {
        VaultClient::new(url, token, "coffer-vault").ksf_floor(coffer::vault::KsfFloor::NONE)
    }

    /// The tenant's whole audit log, read through node `node`.
    fn audit(&self, node: usize) -> Vec<AuditEvent> {
        self.on(node, |url| {
            let admin = Sites::client(url, ADMIN);
            let mut events = Vec::new();
            let mut after = 0;
            loop {
                let page = admin.audit(after, 1000).unwrap();
                events.extend(page.events);
                match page.next {
                    Some(next) => after = next,
                    None => return events,
                }
            }
        })
    }

    /// Registers `users` (limit [`LIMIT`]) through node 0, each acknowledged.
    fn register(&self, users: &[String]) {
        self.on(0, |url| {
            let client = Sites::client(url, TOKEN);
            for (i, user) in users.iter().enumerate() {
                let root = RootKey::from_bytes([i as u8; 32]);
                // A registration cut short by the store (`io`) may or may not have been
                // written: again, and one that finds its record there is done.
                for attempt in 1.. {
                    match client.register(user, b"right", &root, Some(LIMIT)) {
                        Ok(()) => break,
                        Err(e) if attempt > 1 && e.class() == coffer::ErrorClass::Unauthorized => {
                            break
                        }
                        Err(e) if attempt < 5 && e.class() == coffer::ErrorClass::Io => {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => panic!("registering {user}: {e}"),
                    }
                }
            }
        });
    }

    /// Waits until every node acknowledges a guess again (after a heal), within `limit`.
    fn wait_serving(&self, user: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        for node in 0..3 {
            loop {
                let (outcome, _) = self.on(node, |url| {
                    history::guess(url, TOKEN, user, b"right", self.timing.guess_timeout())
                });
                if outcome == Outcome::Acknowledged {
                    break;
                }
                assert!(
                    started.elapsed() < limit,
                    "node {node} did not serve within {limit:?} of the heal"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        started.elapsed()
    }
}

/// One KE1 and its answer.
#[derive(Debug, Clone)]
struct Guess {
    user: usize,
    node: usize,
    outcome: Outcome,
    real: bool,
    sent: Instant,
    answered: Instant,
}

/// Guessing with the right password (never finishing, so every KE1 counts) from `workers`
/// threads, each sending to one node (worker w to node w mod 3, so a node that hangs on
/// its store holds up only its own workers), until `stop` is set. Each user gets at most
/// LIMIT + 10 KE1s, so records reach their limit and are destroyed under the faults.
fn guessing<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    sites: &'s Sites,
    users: &'s [String],
    workers: usize,
    log: &'s Mutex<Vec<Guess>>,
    stop: &'s AtomicBool,
    sent: &'s [AtomicUsize],
) {
    for worker in 0..workers {
        let urls: Vec<String> = (0..3).map(|n| sites.url(n)).collect();
        scope.spawn(move || {
            let node = worker % 3;
            sites.net.enter(V[node]);
            let mut n = worker;
            let mut last = Instant::now() - PACE;
            while !stop.load(Ordering::Relaxed) {
                let user = n % users.len();
                n += 1;
                if sent[user].fetch_add(1, Ordering::Relaxed) >= (LIMIT + 10) as usize {
                    if sent
                        .iter()
                        .all(|s| s.load(Ordering::Relaxed) >= (LIMIT + 10) as usize)
                    {
                        return;
                    }
                    continue;
                }
                let at = Instant::now();
                if let Some(rest) = (last + PACE).checked_duration_since(at) {
                    std::thread::sleep(rest);
                }
                let at = Instant::now();
                last = at;
                let (outcome, real) = history::guess(
                    &urls[node],
                    TOKEN,
                    &users[user],
                    b"right",
                    sites.timing.guess_timeout(),
                );
                log.lock().unwrap().push(Guess {
                    user,
                    node,
                    outcome,
                    real,
                    sent: at,
                    answered: Instant::now(),
                });
            }
        });
    }
}

/// What a run proved, for its report line.
struct Verdict {
    acknowledged: usize,
    unknown: usize,
    refused: usize,
    counted: usize,
}

/// The checks after healing: each user's history, the limit, the exact count, and the
/// registrations.
fn verify(sites: &Sites, users: &[String], log: &[Guess]) -> Verdict {
    let events = sites.audit(1);
    let mut counted = 0;
    for (u, user) in users.iter().enumerate() {
        let of = |o: Outcome| log.iter().filter(|g| g.user == u && g.outcome == o).count();
        // A KE2 that verifies under the right password is a real evaluation, so a counted
        // guess; an acknowledged one that does not is the fake answer for a record that is
        // no more (spec/vault.md §4.3), which counts nothing.
        let real = log.iter().filter(|g| g.user == u && g.real).count();
        let fake = of(Outcome::Acknowledged) - real;
        let c = history::check_counter(&events, user, real, of(Outcome::Unknown));
        assert!(
            real <= LIMIT as usize,
            "{user}: {real} real KE2s for a limit of {LIMIT}"
        );
        assert!(
            fake == 0 || c == LIMIT as usize,
            "{user}: {fake} fake KE2s before its record reached its limit ({c} of {LIMIT})"
        );
        let status = sites.on(2, |url| Sites::client(url, TOKEN).status(user).unwrap());
        if fake > 0 {
            // A KE1 at the limit destroys the record (spec/vault.md §4.3).
            assert!(
                !status.registered,
                "{user}: a fake KE2, and still registered"
            );
        } else if c == LIMIT as usize {
            // The last guess given out and not yet answered: active with none left, until
            // its next KE1 (an unknown one may have come) destroys it.
            assert!(
                !status.registered || status.guesses_left == 0,
                "{user}: {c} guesses counted, {} left",
                status.guesses_left
            );
        } else {
            assert!(status.registered, "{user} lost its registration");
            assert_eq!(status.limit - status.guesses_left, c as u32, "{user}");
        }
        counted += c;
    }
    let count = |o: Outcome| log.iter().filter(|g| g.outcome == o).count();
    Verdict {
        acknowledged: count(Outcome::Acknowledged),
        unknown: count(Outcome::Unknown),
        refused: count(Outcome::Refused),
        counted,
    }
}

/// The minority rule: of the guesses sent to node `node` after `from` (the fault, plus
/// [`GRACE`]) and answered before `to` (the heal), it acknowledged none. Returns how many
/// there were.
fn assert_refused_while(
    log: &[Guess],
    node: usize,
    from: Instant,
    to: Instant,
    what: &str,
) -> usize {
    let answered: Vec<&Guess> = log
        .iter()
        .filter(|g| g.node == node && g.sent > from && g.answered < to)
        .collect();
    let acknowledged = answered
        .iter()
        .filter(|g| g.outcome == Outcome::Acknowledged)
        .count();
    assert_eq!(
        acknowledged,
        0,
        "{what}: node {node} acknowledged {acknowledged} of {} guesses while cut off",
        answered.len()
    );
    answered.len()
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

/// A guessing run with a fault: `fault` starts it (given the sites and the time guessing
/// began) and returns when it is over and healed, with the window in which `minority` (if
/// any) must acknowledge nothing. Prints the scenario's line and returns its log.
fn scenario(
    name: &str,
    sites: &Sites,
    users: &[String],
    fault: impl FnOnce(&Sites, &Mutex<Vec<Guess>>) -> Vec<(usize, Instant, Instant)>,
) -> Vec<Guess> {
    let log = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let sent: Vec<AtomicUsize> = users.iter().map(|_| AtomicUsize::new(0)).collect();
    let mut windows = Vec::new();
    let mut serving_again = Duration::ZERO;
    std::thread::scope(|scope| {
        guessing(scope, sites, users, 6, &log, &stop, &sent);
        // Guesses flow before the fault (not a fixed time: a loaded machine is slow).
        let deadline = Instant::now() + Duration::from_secs(30);
        while log.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        windows = fault(sites, &log);
        let healed = Instant::now();
        sites.net.heal();
        // The guessing ran through the whole fault: the budget of guesses was not spent
        // before it ended. The fault's last second is counted from the end of its last
        // window (a run of several faults heals each, and the heal's re-election can leave
        // the second after it without an answer), up to the final heal.
        let last_fault = windows.last().map_or(healed, |(_, _, to)| *to).min(healed);
        let during = log
            .lock()
            .unwrap()
            .iter()
            .filter(|g| {
                g.outcome == Outcome::Acknowledged
                    && g.answered > last_fault - Duration::from_secs(1)
            })
            .count();
        assert!(
            during > 0 || healed - started < Duration::from_secs(1),
            "{name}: no guess was acknowledged in the fault's last second (too few users?)"
        );
        serving_again = sites.wait_serving("probe", Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
    });
    let log = log.into_inner().unwrap();
    let cut_off: usize = windows
        .iter()
        .map(|(node, from, to)| assert_refused_while(&log, *node, *from, *to, name))
        .sum();
    let verdict = verify(sites, users, &log);
    assert!(
        verdict.acknowledged > 20,
        "{name}: only {} guesses acknowledged: the run did not run",
        verdict.acknowledged
    );
    coffer_testkit::report(&format!(
        "{name}: {} KE1s: {} acknowledged, {} unknown, {} refused; {} counted, 0 lost, \
         0 over a limit; {} faults, the cut-off node acknowledged 0 of the {cut_off} guesses \
         it was sent; every node served again {} ms after the heal; history check: ok",
        log.len(),
        verdict.acknowledged,
        verdict.unknown,
        verdict.refused,
        verdict.counted,
        windows.len(),
        serving_again.as_millis()
    ));
    log
}

/// Holds a fault for `hold`, while guesses keep coming.
fn hold(hold: Duration) {
    std::thread::sleep(hold);
}

/// When the minority rule starts to apply after a fault is made. Only guesses sent after
/// it count (one sent before may finish on the old network); a guess sent after the rules are
/// in place needs a quorum the node's member cannot reach, so it is never acknowledged. The
/// grace covers nothing but the clock's granularity.
const GRACE: Duration = Duration::from_millis(300);

fn sites_with_users(n: usize) -> (Sites, Vec<String>) {
    let sites = Sites::start(LAN, None);
    let users = users(n);
    sites.register(&users);
    sites.register(&["probe".to_owned()]);
    (sites, users)
}

#[test]
fn a_node_cut_off_from_its_member_refuses_and_the_others_go_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    let (sites, users) = sites_with_users(48);
    scenario("node 0 cut from member 0", &sites, &users, |sites, log| {
        sites.net.cut(V[0], E[0]);
        let from = Instant::now();
        let before = log.lock().unwrap().len();
        hold(Duration::from_secs(5));
        // The majority moved on: nodes 1 and 2 acknowledged guesses while node 0 was cut.
        let others = log.lock().unwrap()[before..]
            .iter()
            .filter(|g| g.node != 0 && g.outcome == Outcome::Acknowledged)
            .count();
        assert!(
            others > 5,
            "nodes 1 and 2 acknowledged only {others} guesses"
        );
        vec![(0, from + GRACE, Instant::now())]
    });
}

#[test]
fn a_symmetric_partition_leaves_the_minority_refusing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    let (sites, users) = sites_with_users(48);
    scenario(
        "partition site 0 | sites 1, 2",
        &sites,
        &users,
        |sites, _| {
            sites.net.partition(&[E[0], V[0]]);
            let from = Instant::now();
            hold(Duration::from_secs(6));
            vec![(0, from + GRACE, Instant::now())]
        },
    );
}

#[test]
fn an_asymmetric_partition_keeps_every_count() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    let (sites, users) = sites_with_users(48);
    scenario(
        "asymmetric: member 0 hears members 1, 2; they do not hear it",
        &sites,
        &users,
        |sites, _| {
            sites.net.block(E[0], E[1]);
            sites.net.block(E[0], E[2]);
            let from = Instant::now();
            hold(Duration::from_secs(6));
            // Member 0 cannot get a write acknowledged by anyone: node 0 must not answer.
            vec![(0, from + GRACE, Instant::now())]
        },
    );
}

/// The current leader's member index, from `etcdctl endpoint status`.
fn leader(sites: &Sites) -> (usize, Vec<String>) {
    let out = sites.etcdctl(0, &[0, 1, 2], &["endpoint", "status", "-w", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{:x}", s["Status"]["header"]["member_id"].as_u64().unwrap()))
        .collect();
    let leader = format!(
        "{:x}",
        status[0]["Status"]["leader"].as_u64().expect("a leader")
    );
    (ids.iter().position(|id| *id == leader).unwrap(), ids)
}

#[test]
fn a_leader_change_during_guessing_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    let (sites, users) = sites_with_users(48);
    scenario(
        "leader moved twice during guessing",
        &sites,
        &users,
        |sites, _| {
            for _ in 0..2 {
                let (from, ids) = leader(sites);
                let to = (from + 1) % 3;
                let out = sites.etcdctl(from, &[from], &["move-leader", &ids[to]]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let moved = Instant::now();
                while leader(sites).0 != to {
                    assert!(
                        moved.elapsed() < Duration::from_secs(10),
                        "the leader did not move"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                hold(Duration::from_secs(2));
            }
            Vec::new()
        },
    );
}

#[test]
fn partitions_and_heals_for_a_minute_keep_every_count() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    let seconds: u64 = std::env::var("COFFER_NEMESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Enough users that their guesses last the whole run.
    let (sites, users) = sites_with_users(16 + 2 * seconds as usize);
    let mut injected = 0;
    scenario(
        &format!("nemesis for {seconds} s"),
        &sites,
        &users,
        |sites, _| {
            let started = Instant::now();
            let mut round = 0usize;
            let mut windows = Vec::new();
            while started.elapsed() < Duration::from_secs(seconds) {
                // Each round a different fault: one site cut off both ways, then one member
                // deaf to the others, then one node cut from its member; two seconds each,
                // and a second healed in between.
                let site = round % 3;
                match (round / 3) % 3 {
                    0 => sites.net.partition(&[E[site], V[site]]),
                    1 => {
                        for other in (0..3).filter(|&o| o != site) {
                            sites.net.block(E[site], E[other]);
                        }
                    }
                    _ => sites.net.cut(V[site], E[site]),
                }
                let from = Instant::now();
                injected += 1;
                hold(Duration::from_secs(2));
                // In each of the three faults node `site` is cut from any quorum.
                windows.push((site, from + GRACE, Instant::now()));
                sites.net.heal();
                hold(Duration::from_secs(1));
                round += 1;
            }
            windows
        },
    );
    coffer_testkit::report(&format!("nemesis: {injected} faults injected"));
    assert!(injected >= 3);
}

#[test]
fn latency_and_loss_between_sites_slow_guesses_but_lose_none() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if skipped() {
        return;
    }
    // Round trips of about 200 ms: a heartbeat of 200 ms, an election of 2 s, and 10 s for
    // one store call (a recovery through a follower takes several round trips to the leader).
    let wan = Timing {
        heartbeat_ms: 200,
        election_ms: 2000,
        etcd_timeout_s: 10,
    };
    let sites = Sites::start(
        wan,
        Some((Duration::from_millis(100), Duration::from_millis(20))),
    );
    let users = users(16);
    sites.register(&users);
    sites.register(&["probe".to_owned()]);
    // 1% of the packets between sites are lost (the members' traffic with each other).
    for e in E {
        sites.net.loss(e, 1);
    }
    let seconds = 10;
    let log = scenario(
        "100 ms ± 20 ms each way between sites, 1% loss",
        &sites,
        &users,
        |_, _| {
            hold(Duration::from_secs(seconds));
            Vec::new()
        },
    );
    let mut latencies: Vec<Duration> = log
        .iter()
        .filter(|g| g.outcome == Outcome::Acknowledged)
        .map(|g| g.answered - g.sent)
        .collect();
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let span = log.last().unwrap().answered - log.first().unwrap().sent;
    coffer_testkit::report(&format!(
        "under 100 ms ± 20 ms and 1% loss: {:.1} acknowledged guesses/s from 6 clients; \
         p50 {} ms, p99 {} ms",
        latencies.len() as f64 / span.as_secs_f64(),
        p(0.5).as_millis(),
        p(0.99).as_millis()
    ));
}
