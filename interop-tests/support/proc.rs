//! Process helpers: signals by pid and liveness checks through /proc.

use std::time::{Duration, Instant};

pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

extern "C" {
    // libc's kill(2); std already links libc, so no crate is needed.
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends `sig` to `pid`. Returns false if the process does not exist.
pub fn send_signal(pid: u32, sig: i32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false; // never signal a process group by accident
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { kill(pid as i32, sig) == 0 }
}

/// State letter and parent pid of `pid` from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ..."; comm may contain spaces and parens.
    let rest = &s[s.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Waits (polling, bounded) until `pid` is gone or a zombie.
pub async fn wait_pid_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Live direct children of `pid` (e.g. a BEAM's `erl_child_setup`).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| matches!(stat(p), Some((s, pp)) if pp == pid && s != 'Z' && s != 'X'))
        .collect()
}

/// Blocking, bounded reap of a child after SIGKILL, for use in `Drop`.
pub(crate) fn kill_and_reap_blocking(child: &mut tokio::process::Child, pid: u32) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    send_signal(pid, SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Has the child `cmd` starts receive SIGKILL when the thread that
/// started it ends (Linux `PR_SET_PDEATHSIG`).
///
/// Why: a test process killed by a signal (a CI timeout, a Ctrl-C of
/// `cargo test`) runs no destructor, so the kill-by-pid on drop never
/// happens; BEAM nodes halt on their stdin's EOF, but epmd and erlnode
/// would outlive it. The harness starts children from the test's thread or
/// the runtime's workers, which live as long as the test.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
