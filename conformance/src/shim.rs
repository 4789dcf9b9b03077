//! The shim protocol (spec/conformance.md §7): the runner starts an implementation's adapter
//! once and speaks JSON lines on its stdin and stdout. A crashed or hung adapter fails the
//! case it was on and is started again.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The protocol version in every hello.
pub const PROTOCOL: &str = "coffer-shim/1";

/// The longest line an adapter may send, its newline excluded (spec/conformance.md §7): a
/// line past it fails its case, and the runner's memory stays bounded whatever it sends.
pub const MAX_LINE: usize = 64 << 20;

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
    /// Output the runner stops reading (a line too long, or not UTF-8): the adapter is
    /// started again, like one that crashed.
    #[error("unreadable output: {0}")]
    Unreadable(String),
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
    lines: Receiver<Result<String, String>>,
    /// What the adapter declared in its hello.
    pub hello: Value,
}

/// One line of at most [`MAX_LINE`] bytes of UTF-8, without its newline; `None` at the end of
/// the output; an error for a longer line or one that is not UTF-8 (after which the adapter's
/// output is no longer read).
pub fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    match reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
    {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(format!("reading the adapter's output: {e}")),
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_LINE {
        return Err(format!("a line longer than {MAX_LINE} bytes"));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| "a line that is not UTF-8".to_owned())
}

/// One line of the adapter's output as the JSON value it must be.
pub fn parse_answer(line: &str) -> Result<Value, ShimError> {
    serde_json::from_str(line).map_err(|e| ShimError::Protocol(format!("{e}: {line}")))
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
        // One line in hand at most: an adapter that writes ahead waits, so the runner holds at
        // most two lines (the one read, the one waiting) whatever the adapter sends.
        let (tx, lines) = sync_channel(0);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let line = match read_line(&mut reader) {
                    Ok(Some(line)) => Ok(line),
                    Ok(None) => break,
                    Err(why) => Err(why),
                };
                let last = line.is_err();
                if tx.send(line).is_err() || last {
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
            Ok(Ok(line)) => line,
            Ok(Err(why)) => return Err(ShimError::Unreadable(why)),
            Err(RecvTimeoutError::Timeout) => return Err(ShimError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => return Err(ShimError::Crashed),
        };
        parse_answer(&line)
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
        let answer = match self.exchange(&message, timeout) {
            Ok(a) if a["id"] != id => Err(ShimError::Protocol(format!(
                "an answer for {} to request {id}",
                a["id"]
            ))),
            other => other,
        };
        // A crash, a hang, unreadable output or an answer out of protocol: the adapter is
        // started again, so a stray line cannot leave every later answer one request behind
        // (spec/conformance.md §7).
        if answer.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Ok(fresh) = Adapter::start(&self.argv, timeout) {
                *self = fresh;
            }
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
