//! Real etcd members for the tests (Debian `etcd-server`, which scripts/test.sh installs),
//! each on loopback ports with its own data directory. A watchdog shell kills a member when
//! the test process is gone, so none outlives the run. Missing etcd fails with instructions;
//! the only way to skip is COFFER_SKIP_ETCD=1, and the skip is printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// True (and printed) when etcd was opted out by name.
pub fn skipped() -> bool {
    crate::opt_out("COFFER_SKIP_ETCD", "etcd")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One member: its name, client endpoint, peer URL and data directory.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// `127.0.0.1:PORT` for clients.
    pub client: String,
    /// `http://127.0.0.1:PORT` for peers.
    pub peer: String,
    /// Its data directory.
    pub dir: PathBuf,
}

/// A cluster of members started together (one member: a single-node etcd).
pub struct Cluster {
    /// The members.
    pub members: Vec<Member>,
    initial: String,
    token: String,
}

impl Cluster {
    /// Starts `n` members under `dir` and waits until the cluster answers.
    pub fn start(dir: &Path, n: usize) -> Cluster {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok(),
            "etcd is not installed: apt-get install etcd-server (scripts/test.sh does), or \
             opt out with COFFER_SKIP_ETCD=1"
        );
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                dir: dir.join(format!("m{i}")),
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = Cluster {
            members,
            initial,
            token: format!("coffer-{}", std::process::id()),
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// Starts (or restarts, on its data directory) member `i`.
    pub fn start_member(&self, i: usize) {
        let m = &self.members[i];
        std::fs::create_dir_all(&m.dir).unwrap();
        let args = [
            format!("--name={}", m.name),
            format!("--data-dir={}", m.dir.join("data").display()),
            format!("--listen-client-urls=http://{}", m.client),
            format!("--advertise-client-urls=http://{}", m.client),
            format!("--listen-peer-urls={}", m.peer),
            format!("--initial-advertise-peer-urls={}", m.peer),
            format!("--initial-cluster={}", self.initial),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".to_owned(),
            "--heartbeat-interval=50".to_owned(),
            "--election-timeout=500".to_owned(),
            "--log-level=error".to_owned(),
        ];
        let script = format!(
            "etcd {} >>{} 2>&1 & e=$!; echo $e > {}; \
             while kill -0 {} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 0.2; done; \
             kill -9 $e 2>/dev/null",
            args.join(" "),
            m.dir.join("etcd.log").display(),
            m.dir.join("pid").display(),
            std::process::id()
        );
        let _ = std::fs::remove_file(m.dir.join("pid"));
        let mut watchdog = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        // Reaped when it ends (its member died); it outlives this call by design.
        std::thread::spawn(move || watchdog.wait());
        let started = Instant::now();
        while !m.dir.join("pid").exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "etcd {} did not start",
                m.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs member `i`.
    pub fn kill_member(&self, i: usize) {
        let pid = std::fs::read_to_string(self.members[i].dir.join("pid")).unwrap_or_default();
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        let _ = std::fs::remove_file(self.members[i].dir.join("pid"));
    }

    /// `host:port,host:port,...` of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.endpoints(), "endpoint", "health"])
                .args(["--command-timeout=2s"])
                .output()
                .expect("etcdctl (Debian etcd-client)");
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
}

/// One single-member etcd shared by every test of this process.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<(tempfile::TempDir, Cluster)> = OnceLock::new();
    let (_, cluster) = SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(dir.path(), 1);
        (dir, cluster)
    });
    cluster
}

/// An `etcd://` store URL on the shared member whose prefix is unique to `data` (and the
/// same every time for it, so a restarted vault finds its records).
pub fn store_url(data: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    format!(
        "etcd://{}/coffer-test-{:016x}",
        shared().members[0].client,
        hasher.finish()
    )
}
