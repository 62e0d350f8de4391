//! Real network partitions for netsplit tests: two network namespaces
//! joined by one veth link, made by the test and deleted on drop (also
//! when the test panics).
//!
//! Each [`NetPair`] makes its own namespaces `en<pid>_<n>a` and
//! `en<pid>_<n>b` and a veth pair with the same names, one end in each.
//! (Those a SIGKILLed test process left behind are deleted by the next
//! [`NetPair::new`].)
//! Addresses ([`ADDR_A`], [`ADDR_B`]) exist only on those two veth ends,
//! inside those namespaces: nothing is routed anywhere else, and the
//! host's network is never touched. Each namespace gets its own `epmd` on
//! the standard port ([`EPMD_PORT`]: namespaces have their own ports, so
//! it clashes with nothing), since a node looks up a peer `n@ADDR` in the
//! epmd at `ADDR`.
//!
//! What runs inside a namespace:
//! - BEAM nodes: [`Side::beam`] (`ip netns exec NS erl ...`, or
//!   `ip netns exec NS chroot ROOT ... erl` in an OTP matrix run; both
//!   exec, so the child's pid stays the BEAM's and kill-by-pid holds);
//! - in-process Rust nodes: [`Side::runtime`] is a tokio runtime on a
//!   thread that joined the namespace (`setns`), so every socket its tasks
//!   open is in the namespace. Start the node and call anything that may
//!   dial a peer through [`NsRuntime::run`].
//!
//! [`NetPair::cut`] sets both veth ends down (a clean partition: the
//! routes between the sides vanish, nothing crosses, established links
//! die by tick timeout or by a failed send); [`NetPair::heal`] sets them
//! up again.

use super::proc::kill_and_reap_blocking;
use super::BeamNodeBuilder;
use std::future::Future;
use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Address of side a's veth end (inside namespace a only).
pub const ADDR_A: &str = "10.77.0.1";
/// Address of side b's veth end (inside namespace b only).
pub const ADDR_B: &str = "10.77.0.2";
/// EPMD port inside each namespace.
pub const EPMD_PORT: u16 = 4369;

extern "C" {
    fn geteuid() -> u32;
    fn setns(fd: i32, nstype: i32) -> i32;
}
const CLONE_NEWNET: i32 = 0x4000_0000;

/// Panics with a clear message unless the test runs as root with a
/// working `ip netns` (the netsplit tests never skip).
pub fn require_netns() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { geteuid() };
    assert!(
        euid == 0,
        "netsplit tests with network namespaces need root (they run `ip netns add`, `ip link add`); \
         this process runs as uid {euid}. Run the interop tests as root (`make test`)"
    );
    match StdCommand::new("ip").args(["netns", "list"]).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`ip netns list` failed ({}): {}; network namespaces are needed for the netsplit tests",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run `ip` ({e}): install iproute2 (`apt-get install iproute2`) for the netsplit tests"),
    }
}

/// Runs `ip ARGS`; Err with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = StdCommand::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn ip_or_panic(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// One side of a [`NetPair`]: a namespace, its veth end and its address.
pub struct Side {
    ns: String,
    addr: &'static str,
    epmd: Option<NsEpmd>,
}

impl Side {
    /// Name of the namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The side's address (on its veth end).
    pub fn addr(&self) -> &'static str {
        self.addr
    }

    /// `<unique name>@<address>` for a node on this side.
    pub fn node_name(&self, prefix: &str) -> String {
        format!("{}@{}", super::unique(prefix), self.addr)
    }

    /// A builder for a BEAM node inside this namespace: named
    /// `<unique prefix>@<address>`, distribution on the side's address,
    /// registered with the side's epmd, `net_ticktime` `ticktime` seconds.
    pub fn beam(&self, prefix: &str, cookie: &str, ticktime: u32) -> BeamNodeBuilder {
        BeamNodeBuilder::default()
            .name(&self.node_name(prefix))
            .cookie(cookie)
            .epmd_port(EPMD_PORT)
            .netns(&self.ns)
            .interface(self.addr)
            .arg("-kernel")
            .arg("net_ticktime")
            .arg(&ticktime.to_string())
    }

    /// `erlnode run --name NAME` inside this namespace (`ip netns exec`
    /// execs it: kill-by-pid holds), listening on the side's address,
    /// registered with the side's epmd, with `--net-ticktime ticktime` and
    /// `extra` arguments; waits for its `node up` line.
    pub async fn erlnode_run(&self, name: &str, cookie: &str, ticktime: u32, extra: &[&str]) -> super::Erlnode {
        let bin = super::Erlnode::bin();
        let (port, tick) = (EPMD_PORT.to_string(), ticktime.to_string());
        let mut args: Vec<&std::ffi::OsStr> = vec!["netns".as_ref(), "exec".as_ref(), self.ns.as_ref(), bin.as_os_str()];
        for a in ["run", "--name", name, "--cookie", cookie, "--epmd-port", &port, "--no-embedded-epmd"] {
            args.push(a.as_ref());
        }
        for a in ["--listen-address", self.addr, "--net-ticktime", &tick] {
            args.push(a.as_ref());
        }
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let node = super::Erlnode::spawn_program("ip", args, &[]);
        if let Err(e) = node.wait_for_line("node up", super::erlnode::UP_TIMEOUT).await {
            panic!("erlnode {name} in {} did not come up: {e}", self.ns);
        }
        node
    }

    /// A tokio runtime whose thread is inside this namespace, for
    /// in-process Rust nodes of this side.
    pub fn runtime(&self) -> NsRuntime {
        NsRuntime::start(&self.ns)
    }
}

/// Two namespaces joined by a veth pair, each with its own epmd. Deletes
/// both namespaces (and with them the veth pair) on drop.
pub struct NetPair {
    pub a: Side,
    pub b: Side,
    made: Vec<String>,
}

impl NetPair {
    /// Makes the namespaces, the link and the epmds. Panics (after
    /// deleting whatever it made) if any step fails.
    pub async fn new() -> NetPair {
        require_netns();
        static N: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let base = format!("en{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        assert!(base.len() < 15, "interface name {base}a is too long");
        let (na, nb) = (format!("{base}a"), format!("{base}b"));
        let mut pair = NetPair {
            a: Side { ns: na.clone(), addr: ADDR_A, epmd: None },
            b: Side { ns: nb.clone(), addr: ADDR_B, epmd: None },
            made: Vec::new(),
        };
        for ns in [&na, &nb] {
            ip_or_panic(&["netns", "add", ns]);
            pair.made.push(ns.clone());
        }
        // The veth is made directly with its ends in the two namespaces.
        ip_or_panic(&["link", "add", &na, "netns", &na, "type", "veth", "peer", "name", &nb, "netns", &nb]);
        for (ns, addr) in [(&na, ADDR_A), (&nb, ADDR_B)] {
            ip_or_panic(&["-n", ns, "link", "set", "dev", "lo", "up"]);
            ip_or_panic(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ns]);
            ip_or_panic(&["-n", ns, "link", "set", "dev", ns, "up"]);
        }
        pair.a.epmd = Some(NsEpmd::start(&na).await);
        pair.b.epmd = Some(NsEpmd::start(&nb).await);
        pair
    }

    /// Partition: both veth ends down.
    pub fn cut(&self) {
        for s in [&self.a, &self.b] {
            ip_or_panic(&["-n", &s.ns, "link", "set", "dev", &s.ns, "down"]);
        }
    }

    /// Heal: both veth ends up again.
    pub fn heal(&self) {
        for s in [&self.a, &self.b] {
            ip_or_panic(&["-n", &s.ns, "link", "set", "dev", &s.ns, "up"]);
        }
    }

    /// Names of the namespaces this pair made (for the self-check that
    /// they are gone after drop).
    pub fn namespaces(&self) -> Vec<String> {
        self.made.clone()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // epmds first (they keep their namespace alive), then the
        // namespaces; deleting a namespace deletes its veth end, and a veth
        // pair dies with either end.
        self.a.epmd = None;
        self.b.epmd = None;
        for ns in self.made.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

/// Deletes the namespaces a test process that no longer exists left
/// behind (it was SIGKILLed before its drops ran): only names of this
/// harness's exact shape, `en<pid>_<n>a|b`, whose pid is gone.
fn remove_stale() {
    let Ok(out) = StdCommand::new("ip").args(["netns", "list"]).output() else { return };
    for ns in String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix("en").and_then(|r| r.strip_suffix(['a', 'b'])) else { continue };
        let Some((pid, n)) = rest.split_once('_') else { continue };
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if digits(pid) && digits(n) && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// True if `ip netns list` shows `ns`.
pub fn netns_exists(ns: &str) -> bool {
    let out = StdCommand::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(ns))
}

/// `epmd -port 4369` inside a namespace, killed by pid on drop, and by the
/// kernel if the test process dies first (`proc::die_with_parent`).
struct NsEpmd {
    child: Child,
    pid: u32,
}

impl NsEpmd {
    async fn start(ns: &str) -> NsEpmd {
        super::require_erlang();
        let mut cmd = Command::new("ip");
        // `ip netns exec` execs epmd, which keeps the death signal.
        super::proc::die_with_parent(&mut cmd);
        let child = cmd
            .args(["netns", "exec", ns, "epmd", "-port", &EPMD_PORT.to_string()])
            .env_remove("ERL_EPMD_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn epmd in {ns}: {e}"));
        let pid = child.id().expect("epmd has a pid");
        let epmd = NsEpmd { child, pid };
        // Ready when it accepts on the namespace's loopback.
        let ns2 = ns.to_string();
        let ready = tokio::task::spawn_blocking(move || {
            in_netns(&ns2, || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if std::net::TcpStream::connect(("127.0.0.1", EPMD_PORT)).is_ok() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20)); // bounded poll: no event to await
                }
                false
            })
        })
        .await
        .expect("epmd readiness check");
        assert!(matches!(ready, Ok(true)), "epmd in {ns} did not accept connections within 10 s: {ready:?}");
        epmd
    }
}

impl Drop for NsEpmd {
    fn drop(&mut self) {
        kill_and_reap_blocking(&mut self.child, self.pid);
    }
}

/// Moves the calling thread into namespace `ns` (network only).
fn enter_netns(ns: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open /run/netns/{ns}: {e}"))?;
    // SAFETY: setns(2) on a valid fd; it only changes this thread's namespace.
    if unsafe { setns(f.as_raw_fd(), CLONE_NEWNET) } != 0 {
        return Err(format!("setns({ns}): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns`.
fn in_netns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?
}

/// A single-threaded tokio runtime on a thread inside a namespace. Tasks
/// it runs (and threads they start) open their sockets there. Stopped on
/// drop; nodes started on it should be shut down first (through
/// [`run`](Self::run)).
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    fn start(ns: &str) -> NsRuntime {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ns2 = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn(move || {
                let rt = enter_netns(&ns2).and_then(|_| {
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
                });
                match rt {
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                        rt.shutdown_timeout(Duration::from_secs(2));
                    }
                }
            })
            .expect("spawn the namespace thread");
        let handle = rx.recv().expect("namespace thread answers").unwrap_or_else(|e| panic!("runtime in {ns}: {e}"));
        NsRuntime { handle, stop: Some(stop), thread: Some(thread) }
    }

    /// Handle of the runtime (spawned tasks run inside the namespace).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `f` on this runtime (inside the namespace) and returns its
    /// output; a panic in `f` is resumed here.
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task in the namespace runtime: {e}"),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
