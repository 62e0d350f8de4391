//! The `erlnode` binary under test, as a child process.

use super::proc::{kill_and_reap_blocking, send_signal, SIGKILL};
use super::tail;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// How long [`Erlnode::run`] waits for the `node up` line.
pub const UP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Output {
    /// All lines, stdout and stderr interleaved as received, ANSI stripped.
    lines: Vec<String>,
    /// Number of output streams that reached EOF (2 = both).
    closed: usize,
}

struct Shared {
    out: StdMutex<Output>,
    changed: Notify,
}

/// A running `erlnode` (or any program started with [`Erlnode::spawn_program`]).
/// Killed by pid when dropped.
pub struct Erlnode {
    child: Child,
    pid: u32,
    shared: Arc<Shared>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Erlnode {
    /// Path of the `erlnode` binary: `CARGO_BIN_EXE_erlnode` (set by cargo
    /// when building integration tests, or at run time), else
    /// target/{debug,release}/erlnode.
    pub fn bin() -> PathBuf {
        if let Some(p) = option_env!("CARGO_BIN_EXE_erlnode") {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("CARGO_BIN_EXE_erlnode") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for profile in ["debug", "release"] {
            let p = root.join("target").join(profile).join("erlnode");
            if p.exists() {
                return p;
            }
        }
        panic!("erlnode binary not found: run `cargo build --bins`");
    }

    /// Starts `erlnode <args>`.
    pub fn spawn<I, S>(args: I) -> Erlnode
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_with_env(args, &[])
    }

    /// Starts `erlnode <args>` with extra environment variables.
    pub fn spawn_with_env<I, S>(args: I, env: &[(&str, &str)]) -> Erlnode
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_program(Self::bin(), args, env)
    }

    /// Starts any program with the same capture and cleanup (used by the
    /// harness self-test, handy for helper tools).
    pub fn spawn_program<P, I, S>(program: P, args: I, env: &[(&str, &str)]) -> Erlnode
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program.as_ref());
        super::proc::die_with_parent(&mut cmd);
        cmd.args(args);
        cmd.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.as_ref().to_string_lossy()));
        let pid = child.id().expect("child has a pid");
        let shared = Arc::new(Shared {
            out: StdMutex::new(Output::default()),
            changed: Notify::new(),
        });
        spawn_reader(child.stdout.take().unwrap(), shared.clone(), "stdout");
        spawn_reader(child.stderr.take().unwrap(), shared.clone(), "stderr");
        Erlnode { child, pid, shared }
    }

    /// `erlnode run --name NAME --cookie COOKIE --epmd-port PORT [extra]`,
    /// waiting (30 s) for its `node up` line; panics with its output if it
    /// does not come up.
    pub async fn run(name: &str, cookie: &str, epmd_port: u16, extra: &[&str]) -> Erlnode {
        let port = epmd_port.to_string();
        let mut args = vec![
            "run",
            "--name",
            name,
            "--cookie",
            cookie,
            "--epmd-port",
            &port,
        ];
        args.extend_from_slice(extra);
        let node = Self::spawn(&args);
        if let Err(e) = node.wait_for_line("node up", UP_TIMEOUT).await {
            panic!("erlnode {name} did not come up: {e}");
        }
        node
    }

    pub fn os_pid(&self) -> u32 {
        self.pid
    }

    /// The distribution port of an `erlnode run`, from its `node up` line
    /// (waits for it, 30 s).
    pub async fn listen_port(&self) -> u16 {
        let up = self.wait_for_line("node up", UP_TIMEOUT).await.unwrap_or_else(|e| panic!("{e}"));
        up.split_whitespace()
            .find_map(|w| w.strip_prefix("port="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {up:?}"))
    }

    /// All output lines so far (stdout and stderr).
    pub fn output(&self) -> Vec<String> {
        self.shared.out.lock().unwrap().lines.clone()
    }

    /// Waits until an output line contains `pattern`; returns that line.
    /// Searches from the beginning of the output, so a line printed before
    /// the call counts. Errs with the output on timeout or process exit.
    pub async fn wait_for_line(&self, pattern: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_line_after(0, pattern, timeout).await
    }

    /// Number of output lines so far, to use with
    /// [`wait_for_line_after`](Self::wait_for_line_after).
    pub fn line_count(&self) -> usize {
        self.shared.out.lock().unwrap().lines.len()
    }

    /// Like [`wait_for_line`](Self::wait_for_line), only looking at lines
    /// with index >= `from`.
    pub async fn wait_for_line_after(
        &self,
        from: usize,
        pattern: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let out = self.shared.out.lock().unwrap();
                if let Some(l) = out.lines.iter().skip(from).find(|l| l.contains(pattern)) {
                    return Ok(l.clone());
                }
                if out.closed == 2 {
                    return Err(format!(
                        "process {} ended its output without a line containing {pattern:?}. Output:\n{}",
                        self.pid,
                        tail(&out.lines, 100)
                    ));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "no line containing {pattern:?} within {timeout:?}. Output:\n{}",
                    tail(&self.shared.out.lock().unwrap().lines, 100)
                ));
            }
        }
    }

    /// Sends a signal (e.g. [`super::SIGTERM`]) by pid.
    pub fn signal(&self, sig: i32) -> bool {
        send_signal(self.pid, sig)
    }

    /// Waits (bounded) for the process to exit, then (at most 5 s more)
    /// for its stdout and stderr to reach EOF, so that [`output`](Self::output)
    /// holds every line it wrote: the exit can be seen before the readers
    /// have taken the last lines from the pipes.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait()).await.ok().and_then(|r| r.ok())?;
        let drained = async {
            loop {
                let changed = self.shared.changed.notified();
                if self.shared.out.lock().unwrap().closed >= 2 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
        Some(status)
    }

    /// SIGKILLs by pid and waits for the exit.
    pub async fn kill(&mut self) {
        send_signal(self.pid, SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

fn spawn_reader(
    r: impl AsyncRead + Unpin + Send + 'static,
    shared: Arc<Shared>,
    which: &'static str,
) {
    let verbose =
        std::env::var_os("ERLNODE_TEST_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0");
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = strip_ansi(&line);
            if verbose {
                eprintln!("[erlnode {which}] {line}");
            }
            shared.out.lock().unwrap().lines.push(line);
            shared.changed.notify_waiters();
        }
        shared.out.lock().unwrap().closed += 1;
        shared.changed.notify_waiters();
    });
}

impl Drop for Erlnode {
    fn drop(&mut self) {
        kill_and_reap_blocking(&mut self.child, self.pid);
    }
}
