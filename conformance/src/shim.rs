//! The shim protocol (spec/conformance.md §7): the runner starts an implementation's adapter
//! once and speaks JSON lines on its stdin and stdout. A crashed or hung adapter fails the
//! case it was on and is started again.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The protocol version in every hello.
pub const PROTOCOL: &str = "coffer-shim/1";

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The adapter exited or closed its stdout.
    #[error("the adapter crashed or exited")]
    Crashed,
    /// No answer within the time limit.
    #[error("the adapter did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer that is not the protocol's.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The adapter could not be started.
    #[error("cannot start the adapter: {0}")]
    Start(std::io::Error),
}

/// A running adapter.
pub struct Adapter {
    argv: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    reaped: bool,
    lines: Receiver<String>,
    /// What the adapter declared in its hello.
    pub hello: Value,
}

impl Adapter {
    /// Starts `argv` and exchanges hellos.
    pub fn start(argv: &[String], timeout: Duration) -> Result<Self, ShimError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| ShimError::Protocol("an empty adapter command".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(ShimError::Start)?;
        let stdin = child.stdin.take().ok_or(ShimError::Crashed)?;
        let stdout = child.stdout.take().ok_or(ShimError::Crashed)?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut adapter = Adapter {
            argv: argv.to_vec(),
            child,
            stdin: Some(stdin),
            reaped: false,
            lines,
            hello: Value::Null,
        };
        let hello = adapter.exchange(&json!({"type": "hello", "protocol": PROTOCOL}), timeout)?;
        if hello["type"] != "hello" || hello["protocol"] != PROTOCOL {
            return Err(ShimError::Protocol(format!(
                "expected a {PROTOCOL} hello, got {hello}"
            )));
        }
        adapter.hello = hello;
        Ok(adapter)
    }

    fn exchange(&mut self, message: &Value, timeout: Duration) -> Result<Value, ShimError> {
        let stdin = self.stdin.as_mut().ok_or(ShimError::Crashed)?;
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .map_err(|_| ShimError::Crashed)?;
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => return Err(ShimError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => return Err(ShimError::Crashed),
        };
        serde_json::from_str(&line).map_err(|e| ShimError::Protocol(format!("{e}: {line}")))
    }

    /// Sends one request (an object with `op` and its fields) and returns the response.
    /// On a crash or a timeout the adapter is restarted for the next request.
    pub fn request(
        &mut self,
        id: &str,
        request: Value,
        timeout: Duration,
    ) -> Result<Value, ShimError> {
        let mut message = request;
        message["type"] = json!("request");
        message["id"] = json!(id);
        let answer = self.exchange(&message, timeout);
        match &answer {
            Err(ShimError::Crashed | ShimError::Timeout(_)) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                if let Ok(fresh) = Adapter::start(&self.argv, timeout) {
                    *self = fresh;
                }
            }
            Ok(a) if a["id"] != id => {
                return Err(ShimError::Protocol(format!(
                    "an answer for {} to request {id}",
                    a["id"]
                )))
            }
            _ => {}
        }
        answer
    }

    /// Whether the adapter declared `op` for `format` (e.g. "decrypt", "crypt15").
    pub fn supports(&self, op: &str, format: &str) -> bool {
        self.hello["capabilities"][op]
            .as_array()
            .is_some_and(|formats| formats.iter().any(|f| f == format))
    }
}

/// What an adapter process used, itself and every descendant it waited for (`wait4`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Usage {
    /// Largest resident set of the adapter or any descendant, bytes.
    pub max_rss_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl Adapter {
    /// Closes the adapter's stdin (it must then exit) and waits for it, returning what it
    /// used. Waits at most `timeout`, then kills it.
    #[allow(unsafe_code)] // wait4: std's Child::wait does not report the child's resource use
    pub fn finish(mut self, timeout: Duration) -> Result<Usage, ShimError> {
        drop(self.stdin.take());
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| ShimError::Protocol("a process id out of range".into()))?;
        let started = std::time::Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: a plain syscall on our own child's pid with valid out-pointers.
            let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if done == pid {
                self.reaped = true;
                let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                return Ok(Usage {
                    // Linux reports ru_maxrss in KiB.
                    max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
                    cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
                });
            }
            if done < 0 {
                return Err(ShimError::Protocol(format!(
                    "wait4: {}",
                    std::io::Error::last_os_error()
                )));
            }
            if started.elapsed() > timeout {
                return Err(ShimError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
