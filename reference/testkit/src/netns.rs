//! Hosts of the test's own, each in its own Linux network namespace, joined by veth pairs to a
//! bridge in a namespace of their own (nothing is added to the machine's own network), and
//! faults between them made with nftables: one-way and two-way cuts, random loss. The kernel
//! of the project's machines has no `netem` qdisc, so delay is a TCP proxy
//! ([`DelayProxy`]) rather than a queueing discipline. Needs root, iproute2 and nftables
//! (scripts/test.sh installs them); opt out with COFFER_SKIP_PARTITIONS=1.
//!
//! A process runs on a host through [`Net::command`] (`ip netns exec`); a thread of the test
//! joins a host's network with [`Net::enter`], after which its sockets are that host's.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// True (and printed) when the partition tests were opted out by name.
pub fn skipped() -> bool {
    crate::opt_out(
        "COFFER_SKIP_PARTITIONS",
        "network partitions (network namespaces and nftables, as root)",
    )
}

/// One host: its namespace and its address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's name in the test (`e0`, `v1`, ...).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its IPv4 address.
    pub ip: String,
}

/// The hosts and the bridge namespace; every namespace, and every process in it, goes when
/// this is dropped.
pub struct Net {
    bridge: String,
    /// The hosts, in the order they were named.
    pub hosts: Vec<Host>,
}

/// Runs `ip`/`nft` arguments, panicking with what they printed if they fail.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{program}: {e} (scripts/test.sh installs iproute2 and nftables; opt out with \
                 COFFER_SKIP_PARTITIONS=1)"
            )
        });
    assert!(
        out.status.success(),
        "{program} {}: {} (network namespaces need root; opt out with COFFER_SKIP_PARTITIONS=1)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Creates one host per name on a fresh bridge, at 10.200.0.1, 10.200.0.2, ... (every
    /// `Net` is its own network, so these addresses never meet another test's).
    pub fn create(names: &[&str]) -> Net {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "coffer{}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let bridge = format!("{tag}-bridge");
        run("ip", &["netns", "add", &bridge]);
        let mut net = Net {
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        run(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &bridge, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{tag}-{name}");
            let ip = format!("10.200.0.{}", i + 1);
            run("ip", &["netns", "add", &ns]);
            net.hosts.push(Host {
                name: (*name).to_owned(),
                ns: ns.clone(),
                ip: ip.clone(),
            });
            let port = format!("p{i}");
            run(
                "ip",
                &[
                    "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run(
                "ip",
                &["-n", &bridge, "link", "set", &port, "master", "br0", "up"],
            );
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "netns", "exec", &ns, "nft", "add", "table", "inet", "coffer",
                ],
            );
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "nft",
                    "add chain inet coffer input { type filter hook input priority 0; policy accept; }",
                ],
            );
        }
        net
    }

    /// The index of the host called `name`.
    pub fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// `program` to run on host `host`.
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.hosts[host].ns])
            .arg(program);
        command
    }

    fn nft(&self, host: usize, rule: &str) {
        run("ip", &["netns", "exec", &self.hosts[host].ns, "nft", rule]);
    }

    /// `to` stops hearing `from`: every packet from `from` is dropped as it reaches `to`.
    /// `from` still hears `to`.
    pub fn block(&self, from: usize, to: usize) {
        self.nft(
            to,
            &format!(
                "add rule inet coffer input ip saddr {} drop",
                self.hosts[from].ip
            ),
        );
    }

    /// Cuts `a` and `b` apart, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Cuts every host of `side` from every host not in it, both ways.
    pub fn partition(&self, side: &[usize]) {
        for a in side {
            for b in (0..self.hosts.len()).filter(|b| !side.contains(b)) {
                self.cut(*a, b);
            }
        }
    }

    /// Drops `percent` of the packets that reach `host`, at random.
    pub fn loss(&self, host: usize, percent: u32) {
        self.nft(
            host,
            &format!(
                "add rule inet coffer input iifname eth0 numgen random mod 100 < {percent} drop"
            ),
        );
    }

    /// Removes every fault: all hosts hear all hosts again.
    pub fn heal(&self) {
        for host in 0..self.hosts.len() {
            self.nft(host, "flush chain inet coffer input");
        }
    }

    /// The calling thread joins host `host`'s network: the sockets it opens from now on are
    /// that host's (its loopback, its address, its faults).
    pub fn enter(&self, host: usize) {
        join_namespace(&format!("/run/netns/{}", self.hosts[host].ns));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self
            .hosts
            .iter()
            .map(|h| h.ns.as_str())
            .chain([self.bridge.as_str()])
        {
            // Whatever still runs there (a member, a node) goes with its network.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill")
                        .args(["-9", pid])
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A TCP proxy on a host of a [`Net`] that holds every chunk of bytes, each way, for a delay
/// with jitter before passing it on, in order (a chunk never overtakes the one before it):
/// the latency between sites, which the kernel here cannot add (no `netem`). It stops
/// accepting when dropped; open connections end with their peers.
pub struct DelayProxy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DelayProxy {
    /// Listens on `listen` (`ip:port`) on host `host` and forwards each connection to
    /// `target`, delaying both ways by `delay` ± `jitter` (uniform).
    pub fn start(
        net: &Net,
        host: usize,
        listen: &str,
        target: &str,
        delay: std::time::Duration,
        jitter: std::time::Duration,
    ) -> DelayProxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{}", net.hosts[host].ns);
        let (listen, target, flag) = (listen.to_owned(), target.to_owned(), stop.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            join_namespace(&path);
            let listener = std::net::TcpListener::bind(&listen)
                .unwrap_or_else(|e| panic!("proxy {listen}: {e}"));
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        inbound.set_nonblocking(false).unwrap();
                        let Ok(outbound) = std::net::TcpStream::connect(&target) else {
                            continue;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (a, b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                        delayed_copy(inbound, outbound, delay, jitter);
                        delayed_copy(b, a, delay, jitter);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        ready.recv().expect("the proxy started");
        DelayProxy { stop }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The calling thread joins the network namespace at `path`.
#[allow(unsafe_code)] // setns(2): std has no way to move a thread to another namespace
fn join_namespace(path: &str) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a plain syscall on a file descriptor that stays open for its duration.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Copies `from` to `to`, each chunk released `delay` ± `jitter` after it arrived and never
/// before the chunk ahead of it; a reader thread and a writer thread, in the namespace of the
/// thread that calls it.
fn delayed_copy(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    delay: std::time::Duration,
    jitter: std::time::Duration,
) {
    use std::io::{Read, Write};
    use std::time::Instant;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        // A small generator for the jitter (xorshift, seeded from the clock): enough to spread
        // delays, and no dependency for it.
        let mut state = Instant::now().elapsed().as_nanos() as u64 | 1;
        state ^= std::process::id() as u64 ^ (&state as *const u64 as u64);
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let spread = jitter.as_micros() as u64;
            let offset = if spread == 0 {
                0
            } else {
                state % (2 * spread + 1)
            };
            let wait = (delay + std::time::Duration::from_micros(offset)).saturating_sub(jitter);
            let due = (Instant::now() + wait).max(last);
            last = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
