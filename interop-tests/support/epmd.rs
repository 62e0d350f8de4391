//! The real `epmd` binary, in the foreground, on a free port.

use super::proc::{kill_and_reap_blocking, SIGKILL};
use super::{free_port, require_erlang};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A private `epmd -port P` (no -daemon) child, loopback only. Killed by
/// pid on drop, and by the kernel if the test process dies first
/// (`proc::die_with_parent`).
pub struct Epmd {
    child: Child,
    pid: u32,
    port: u16,
}

impl Epmd {
    /// Starts epmd on a free port and waits (bounded) until it accepts
    /// connections. Retries on another port if the chosen one was taken.
    pub async fn start() -> Epmd {
        require_erlang();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start(port).await {
                Ok(e) => return e,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start epmd: {last_err}");
    }

    /// Starts epmd on `port` (which must be free).
    pub async fn start_on(port: u16) -> Epmd {
        require_erlang();
        Self::try_start(port)
            .await
            .unwrap_or_else(|e| panic!("could not start epmd: {e}"))
    }

    async fn try_start(port: u16) -> Result<Epmd, String> {
        let mut cmd = Command::new("epmd");
        super::proc::die_with_parent(&mut cmd);
        let mut child = cmd
            .arg("-port")
            .arg(port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn epmd: {e}"))?;
        let pid = child.id().ok_or("epmd exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err).await;
                }
                return Err(format!(
                    "epmd -port {port} exited ({status}): {}",
                    err.trim()
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                // Keep draining stderr so epmd never blocks on a full pipe.
                if let Some(mut e) = child.stderr.take() {
                    tokio::spawn(async move {
                        let mut sink = Vec::new();
                        let _ = e.read_to_end(&mut sink).await;
                    });
                }
                return Ok(Epmd { child, pid, port });
            }
            if Instant::now() >= deadline {
                super::proc::send_signal(pid, SIGKILL);
                let _ = child.wait().await;
                return Err(format!(
                    "epmd on port {port} did not accept connections within 10 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn os_pid(&self) -> u32 {
        self.pid
    }

    /// Output of `epmd -names` against this epmd.
    pub async fn names(&self) -> String {
        let out = Command::new("epmd")
            .arg("-port")
            .arg(self.port.to_string())
            .arg("-names")
            .output()
            .await
            .expect("run epmd -names");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILLs epmd and waits for it to exit.
    pub async fn kill(&mut self) {
        super::proc::send_signal(self.pid, SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Epmd {
    fn drop(&mut self) {
        kill_and_reap_blocking(&mut self.child, self.pid);
    }
}
