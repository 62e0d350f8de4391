//! A real BEAM node started by the test and driven over stdin/stdout.
//!
//! Line protocol: the test writes one line per request, the hex of the
//! UTF-8 text of an Erlang expression sequence (hex so that newlines and
//! quotes in the expression need no escaping). The node's control loop
//! parses and evaluates it (bindings kept across requests), and prints
//! `R:<hex of term_to_binary(Result)>`; an exception becomes the result
//! `{'$eval_error', Class, Reason, Stacktrace}`. Any other stdout line
//! (logger output, io:format from evaluated code) is kept as log. On
//! stdin EOF the node halts, at once, also in the middle of an eval, so
//! a test that dies leaves no node behind.

use super::epmd::Epmd;
use super::proc::{kill_and_reap_blocking, send_signal, SIGKILL};
use super::{hex_decode_bytes, hex_encode, hex_encode_bytes, require_erlang, tail, unique};
use erlnode::term::Term;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, Mutex};

/// How long `start()` waits for the node's READY line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `eval` waits for a reply.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The control loop, passed with `-eval`. `%ELIXIR%` is replaced with
/// `true` or `false`. The loop runs in its own process (trapping exits,
/// so evaluated code may link to processes that die) watched by another
/// one that halts the node if the loop ever dies. A third process reads
/// stdin and hands each line to the loop, and halts the node on EOF even
/// while the loop is busy: a test killed during an eval that does not
/// return (a `receive` that waits for ever) leaves no node behind. The
/// test writes a request only after the previous reply, so a line never
/// waits in the loop's mailbox while evaluated code runs there.
const CONTROL_LOOP: &str = r#"
Elixir = %ELIXIR%,
Loop = fun Loop(B) ->
    receive {'$harness_line', Line} ->
            {Res, B2} =
                try
                    Src = unicode:characters_to_list(binary:decode_hex(string:trim(Line))),
                    {Toks, End} = case erl_scan:string(Src) of
                        {ok, T, L} -> {T, L};
                        {error, {_, SMod, SDesc}, _} -> error({scan_error, lists:flatten(SMod:format_error(SDesc))})
                    end,
                    Toks2 = case lists:reverse(Toks) of
                                [{dot, _} | _] -> Toks;
                                [] -> [{atom, End, ok}, {dot, End}];
                                _ -> Toks ++ [{dot, End}]
                            end,
                    Exprs = case erl_parse:parse_exprs(Toks2) of
                        {ok, Es} -> Es;
                        {error, {_, PMod, PDesc}} -> error({parse_error, lists:flatten(PMod:format_error(PDesc))})
                    end,
                    {value, V, NB} = erl_eval:exprs(Exprs, B),
                    {V, NB}
                catch C:E:St ->
                    Text = try unicode:characters_to_binary(erl_error:format_exception(C, E, St))
                           catch _:_ -> iolist_to_binary(io_lib:format("~tp:~tp", [C, E]))
                           end,
                    put('$eval_error_text', Text),
                    {{'$eval_error', C, E, St}, B}
                end,
            io:put_chars(standard_io, [<<"R:">>, binary:encode_hex(term_to_binary(Res)), <<"\n">>]),
            Loop(B2)
    end
end,
Reader = fun Reader(To) ->
    case io:get_line(standard_io, "") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(0);
        Line -> To ! {'$harness_line', Line}, Reader(To)
    end
end,
WaitStarted = fun W(N) ->
    case init:get_status() of
        {started, _} -> ok;
        _ when N > 3000 -> ok;
        _ -> timer:sleep(10), W(N + 1)
    end
end,
Ctl = fun() ->
    process_flag(trap_exit, true),
    ok = io:setopts(standard_io, [binary]),
    WaitStarted(0),
    case Elixir of
        true ->
            case application:ensure_all_started(elixir) of
                {ok, _} -> ok;
                Err ->
                    io:format(standard_error, "erlnode-harness: cannot start elixir: ~p~n", [Err]),
                    erlang:halt(3)
            end;
        false -> ok
    end,
    io:put_chars(standard_io, [<<"READY ">>, atom_to_binary(node(), utf8), <<"\n">>]),
    Me = self(),
    spawn(fun() -> Reader(Me) end),
    Loop(erl_eval:new_bindings())
end,
spawn(fun() ->
    {Pid, MRef} = spawn_monitor(Ctl),
    receive {'DOWN', MRef, process, Pid, Why} ->
        io:format(standard_error, "erlnode-harness: control loop died: ~p~n", [Why]),
        erlang:halt(2)
    end
end).
"#;

/// The `ebin` directories of Elixir's applications (elixir, logger,
/// ex_unit, ...), found once via `elixir`, else /usr/lib/elixir/lib.
pub fn elixir_ebin_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let lib_root = std::process::Command::new("elixir")
            .args(["-e", "IO.puts(:code.lib_dir(:elixir))"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let p = PathBuf::from(s);
                p.canonicalize().ok()?.parent().map(Path::to_path_buf)
            })
            .unwrap_or_else(|| PathBuf::from("/usr/lib/elixir/lib"));
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib_root)
            .map(|rd| {
                rd.filter_map(|e| Some(e.ok()?.path().join("ebin")))
                    .filter(|p| p.join("elixir.app").exists() || p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        assert!(
            dirs.iter().any(|d| d.join("elixir.app").exists()),
            "Elixir's ebin directories not found under {} (is elixir installed? \
             `apt-get install elixir`)",
            lib_root.display()
        );
        dirs
    })
}

/// Builder for [`BeamNode`].
#[derive(Default)]
pub struct BeamNodeBuilder {
    prefix: Option<String>,
    name: Option<String>,
    cookie: Option<String>,
    epmd_port: Option<u16>,
    elixir: bool,
    hidden: bool,
    code_paths: Vec<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// `Some(None)`: the host's OTP even in a matrix run; `Some(Some(r))`:
    /// the root `r`; `None`: the run's default ([`super::otp::suite_root`]).
    otp_root: Option<Option<PathBuf>>,
    erlnode_ex: bool,
    /// Network namespace to start the node in (`ip netns exec NS ...`).
    netns: Option<String>,
    /// `inet_dist_use_interface` (default 127.0.0.1).
    interface: Option<std::net::Ipv4Addr>,
}

impl BeamNodeBuilder {
    /// Prefix of the unique node name (default `beam`).
    pub fn prefix(mut self, p: &str) -> Self {
        self.prefix = Some(p.to_string());
        self
    }
    /// Full node name (`name@host`), instead of a unique one.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.to_string());
        self
    }
    /// Cookie (default: a unique one).
    pub fn cookie(mut self, c: &str) -> Self {
        self.cookie = Some(c.to_string());
        self
    }
    /// Port of the epmd to register with. Without it the node gets a
    /// private [`Epmd`] that lives as long as the node.
    pub fn epmd_port(mut self, p: u16) -> Self {
        self.epmd_port = Some(p);
        self
    }
    /// Load Elixir and start the `elixir` application (for `eval_elixir`).
    pub fn elixir(mut self, yes: bool) -> Self {
        self.elixir = yes;
        self
    }
    /// Start as a hidden node (`-hidden`).
    pub fn hidden(mut self, yes: bool) -> Self {
        self.hidden = yes;
        self
    }
    /// Add a code path (`-pa`).
    pub fn code_path(mut self, p: impl AsRef<Path>) -> Self {
        self.code_paths.push(p.as_ref().to_path_buf());
        self
    }
    /// Add a raw argument to `erl` (e.g. `.arg("-connect_all").arg("false")`).
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    /// Set an environment variable for the node.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_string(), v.to_string()));
        self
    }
    /// Load the Elixir library `erlnode_ex` compiled for the node's
    /// release (implies `.elixir(true)`).
    pub fn erlnode_ex(mut self, yes: bool) -> Self {
        self.erlnode_ex = yes;
        self.elixir |= yes;
        self
    }
    /// Start the node inside network namespace `ns` (`ip netns exec NS`,
    /// which execs: the child's pid stays the BEAM's). Composes with an
    /// OTP root: `ip netns exec NS chroot ROOT ... erl`.
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }
    /// The address the distribution listens on (`-kernel
    /// inet_dist_use_interface`), 127.0.0.1 by default.
    pub fn interface(mut self, ip: &str) -> Self {
        self.interface = Some(ip.parse().unwrap_or_else(|e| panic!("interface {ip:?}: {e}")));
        self
    }
    /// Run the node on OTP `release` whatever the run's default is (25:
    /// the host's; 27, 29: their Debian roots), for mixed-release tests.
    pub fn otp(mut self, release: u32) -> Self {
        self.otp_root = Some(match release {
            25 => None,
            r => Some(super::otp::root_for(r)),
        });
        self
    }

    /// Starts the node and waits (at most 30 s) until its control loop is
    /// ready. Panics with the node's output if it does not come up.
    pub async fn start(self) -> BeamNode {
        require_erlang();
        let private_epmd = match self.epmd_port {
            Some(_) => None,
            None => Some(Epmd::start().await),
        };
        let epmd_port = self
            .epmd_port
            .unwrap_or_else(|| private_epmd.as_ref().unwrap().port());
        let prefix = self.prefix.as_deref().unwrap_or("beam");
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}@127.0.0.1", unique(prefix)));
        let cookie = self.cookie.clone().unwrap_or_else(|| unique("cookie"));

        let root: Option<PathBuf> = match &self.otp_root {
            Some(r) => r.clone(),
            None => super::otp::suite_root().map(Path::to_path_buf),
        };
        // In a root, `chroot` and `env` exec into `erl`, which execs the
        // emulator: the child's pid stays the BEAM's, so kill-by-pid holds.
        // `ip netns exec NS` execs its command too.
        let mut prefix = match &self.netns {
            None => None,
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                Some(c)
            }
        };
        let mut program = |p: &str| match prefix.take() {
            None => Command::new(p),
            Some(mut c) => {
                c.arg(p);
                c
            }
        };
        let mut cmd = match &root {
            None => program("erl"),
            Some(r) => {
                let mut c = program("chroot");
                c.arg(r).args(["env", "HOME=/tmp", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", "/usr/bin/erl"]);
                c
            }
        };
        let code_path = |p: &Path| match &root {
            None => p.to_path_buf(),
            Some(r) => super::otp::inside(r, p),
        };
        cmd.args([
            "-noshell",
            "-start_epmd",
            "false",
            "-name",
            &name,
            "-setcookie",
            &cookie,
        ]);
        let [i1, i2, i3, i4] = self.interface.unwrap_or(std::net::Ipv4Addr::LOCALHOST).octets();
        cmd.args(["-kernel", "inet_dist_use_interface", &format!("{{{i1},{i2},{i3},{i4}}}")]);
        if self.hidden {
            cmd.arg("-hidden");
        }
        if self.elixir {
            let dirs = match &root {
                None => elixir_ebin_dirs().to_vec(),
                Some(r) => super::otp::elixir_ebin_dirs_in(r),
            };
            for d in dirs {
                cmd.arg("-pa").arg(code_path(&d));
            }
        }
        if self.erlnode_ex {
            cmd.arg("-pa").arg(code_path(&super::otp::erlnode_ex_ebin_in(root.as_deref())));
        }
        for p in &self.code_paths {
            cmd.arg("-pa").arg(code_path(p));
        }
        cmd.args(&self.args);
        cmd.arg("-eval")
            .arg(CONTROL_LOOP.replace("%ELIXIR%", if self.elixir { "true" } else { "false" }));
        for v in ["ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS", "ERL_LIBS"] {
            cmd.env_remove(v);
        }
        cmd.env("ERL_EPMD_PORT", epmd_port.to_string());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);

        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn erl: {e}"));
        let pid = child.id().expect("erl has a pid");
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Arc::new(StdMutex::new(Vec::new()));
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let short = name.split('@').next().unwrap_or(&name).to_string();
        spawn_stdout_reader(
            child.stdout.take().unwrap(),
            reply_tx,
            ready_tx,
            log.clone(),
            short.clone(),
        );
        spawn_log_reader(child.stderr.take().unwrap(), log.clone(), short);

        let mut node = BeamNode {
            name,
            cookie,
            pid,
            elixir: self.elixir,
            epmd_port,
            child,
            ctl: Mutex::new(Ctl {
                stdin: Some(stdin),
                replies,
                stale: 0,
            }),
            log,
            _private_epmd: private_epmd,
        };
        match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(ready_name)) if ready_name == node.name => node,
            Ok(Ok(other)) => panic!("BEAM node came up as {other}, expected {}", node.name),
            Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), node.child.wait()).await;
                panic!(
                    "BEAM node {} exited before READY ({status:?}). Output:\n{}",
                    node.name,
                    node.log_tail(100)
                )
            }
            Err(_) => {
                node.kill().await;
                panic!(
                    "BEAM node {} not READY within {START_TIMEOUT:?}. Output:\n{}",
                    node.name,
                    node.log_tail(100)
                )
            }
        }
    }
}

struct Ctl {
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<Result<Vec<u8>, String>>,
    /// Replies still owed to requests that timed out; skipped when they come.
    stale: usize,
}

/// A running BEAM node. Killed by pid when dropped.
pub struct BeamNode {
    name: String,
    cookie: String,
    pid: u32,
    elixir: bool,
    epmd_port: u16,
    child: Child,
    ctl: Mutex<Ctl>,
    log: Arc<StdMutex<Vec<String>>>,
    _private_epmd: Option<Epmd>,
}

fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| {
        std::env::var_os("ERLNODE_TEST_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
    })
}

fn push_log(log: &StdMutex<Vec<String>>, line: String) {
    let mut l = log.lock().unwrap();
    if l.len() >= 20_000 {
        l.drain(..10_000);
    }
    l.push(line);
}

fn spawn_stdout_reader(
    out: impl AsyncRead + Unpin + Send + 'static,
    replies: mpsc::UnboundedSender<Result<Vec<u8>, String>>,
    ready: oneshot::Sender<String>,
    log: Arc<StdMutex<Vec<String>>>,
    who: String,
) {
    tokio::spawn(async move {
        let mut ready = Some(ready);
        // Replies can be 100 MB lines: read bytes, no UTF-8 check, big buffer.
        let mut reader = BufReader::with_capacity(1 << 20, out);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if let Some(hex) = buf.strip_prefix(b"R:") {
                let reply = hex_decode_bytes(hex).ok_or_else(|| {
                    format!(
                        "bad reply line: R:{}",
                        String::from_utf8_lossy(&hex[..hex.len().min(200)])
                    )
                });
                let _ = replies.send(reply);
                continue;
            }
            let line = String::from_utf8_lossy(&buf).into_owned();
            if let Some(n) = line.strip_prefix("READY ") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(n.trim().to_string());
                    continue;
                }
            }
            if verbose() {
                eprintln!("[{who} stdout] {line}");
            }
            push_log(&log, line);
        }
    });
}

fn spawn_log_reader(
    err: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<StdMutex<Vec<String>>>,
    who: String,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(err).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if verbose() {
                eprintln!("[{who} stderr] {line}");
            }
            push_log(&log, line);
        }
    });
}

fn eval_error(t: &Term) -> Option<String> {
    match t {
        Term::Tuple(items) if items.len() == 4 && items[0].is_atom("$eval_error") => Some(format!(
            "{:?}:{:?}\n  stacktrace: {:?}",
            items[1], items[2], items[3]
        )),
        _ => None,
    }
}

impl BeamNode {
    pub fn builder() -> BeamNodeBuilder {
        BeamNodeBuilder::default()
    }

    /// Full node name, e.g. `ex_1234_0_ab12cd@127.0.0.1`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The epmd port the node registered with.
    pub fn epmd_port(&self) -> u16 {
        self.epmd_port
    }

    /// OS pid of the BEAM (`erl` execs into `beam.smp`, so it is the same).
    pub fn os_pid(&self) -> u32 {
        self.pid
    }

    /// Non-reply stdout lines and stderr lines received so far.
    pub fn output(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn log_tail(&self, n: usize) -> String {
        tail(&self.log.lock().unwrap(), n)
    }

    /// Evaluates an Erlang expression sequence (a trailing `.` is
    /// optional) and returns the exact `term_to_binary` bytes of its value.
    pub async fn eval_raw(&self, expr: &str) -> Result<Vec<u8>, String> {
        self.eval_raw_timeout(expr, EVAL_TIMEOUT).await
    }

    /// [`eval_raw`](Self::eval_raw) with a custom timeout.
    pub async fn eval_raw_timeout(&self, expr: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut ctl = self.ctl.lock().await;
        let Some(stdin) = ctl.stdin.as_mut() else {
            return Err(format!("stdin of {} is closed", self.name));
        };
        let mut line = hex_encode_bytes(expr.as_bytes());
        line.push(b'\n');
        if let Err(e) = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
        .await
        {
            return Err(format!(
                "cannot send `{expr}` to {}: {e}. Output:\n{}",
                self.name,
                self.log_tail(50)
            ));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, ctl.replies.recv()).await {
                Err(_) => {
                    ctl.stale += 1;
                    return Err(format!(
                        "timeout ({timeout:?}) evaluating `{expr}` on {}",
                        self.name
                    ));
                }
                Ok(None) => {
                    return Err(format!(
                        "node {} exited while evaluating `{expr}`. Output:\n{}",
                        self.name,
                        self.log_tail(50)
                    ))
                }
                Ok(Some(_)) if ctl.stale > 0 => ctl.stale -= 1,
                Ok(Some(reply)) => return reply,
            }
        }
    }

    /// Evaluates an Erlang expression sequence and decodes the result with
    /// `erlnode::term::decode`. Exceptions, timeouts (60 s) and decode
    /// failures are `Err` with a readable message.
    pub async fn try_eval(&self, expr: &str) -> Result<Term, String> {
        self.try_eval_timeout(expr, EVAL_TIMEOUT).await
    }

    /// [`try_eval`](Self::try_eval) with a custom timeout.
    pub async fn try_eval_timeout(&self, expr: &str, timeout: Duration) -> Result<Term, String> {
        let bytes = self.eval_raw_timeout(expr, timeout).await?;
        let term = erlnode::term::decode(&bytes).map_err(|e| {
            format!(
                "cannot decode the result of `{expr}`: {e}; ETF: {}",
                hex_encode(&bytes)
            )
        })?;
        match eval_error(&term) {
            None => Ok(term),
            Some(raw) => {
                // The control loop keeps erl_error's rendering of the last
                // exception; far more readable than the raw tuple.
                let text = match self
                    .eval_raw_timeout("get('$eval_error_text')", timeout)
                    .await
                {
                    Ok(b) => match erlnode::term::decode(&b) {
                        Ok(Term::Binary(t)) => String::from_utf8_lossy(&t).trim_end().to_string(),
                        _ => raw,
                    },
                    Err(_) => raw,
                };
                Err(format!("`{expr}` raised on {}:\n{text}", self.name))
            }
        }
    }

    /// Like [`try_eval`](Self::try_eval) but panics with the expression and
    /// the error.
    pub async fn eval(&self, erlang_expr: &str) -> Term {
        match self.try_eval(erlang_expr).await {
            Ok(t) => t,
            Err(e) => panic!("eval failed: {e}"),
        }
    }

    fn elixir_expr(&self, code: &str) -> String {
        assert!(
            self.elixir,
            "eval_elixir on {}: start the node with .elixir(true)",
            self.name
        );
        let bytes: Vec<String> = code.bytes().map(|b| b.to_string()).collect();
        format!(
            "element(1, 'Elixir.Code':eval_string(<<{}>>))",
            bytes.join(",")
        )
    }

    /// Evaluates Elixir code with `Code.eval_string/1` and returns its value.
    pub async fn try_eval_elixir(&self, code: &str) -> Result<Term, String> {
        self.try_eval(&self.elixir_expr(code))
            .await
            .map_err(|e| format!("Elixir `{code}`: {e}"))
    }

    /// Starts `erlnode_ex` (a node built with `erlnode_ex(true)`) with
    /// `replicas: 1, :sync` for the example accounts and no placement on
    /// join: a library (Horde, ProcessHub) places them, erlnode keeps
    /// their replicas.
    pub async fn start_erlnode_ex_with_account_replicas(&self) {
        let r = self
            .eval(
                "application:load(erlnode_ex), \
                 application:set_env(erlnode_ex, replicas, #{<<\"account\">> => {1, sync}}), \
                 application:set_env(erlnode_ex, rebalance_on_join, false), \
                 application:ensure_all_started(erlnode_ex)",
            )
            .await;
        assert_eq!(r.as_tuple().map(|t| t[0].clone()), Some(Term::atom("ok")), "{}: erlnode_ex starts: {r:?}", self.name());
    }

    /// Like [`try_eval_elixir`](Self::try_eval_elixir), panicking on error.
    pub async fn eval_elixir(&self, code: &str) -> Term {
        match self.try_eval_elixir(code).await {
            Ok(t) => t,
            Err(e) => panic!("eval_elixir failed: {e}"),
        }
    }

    /// Closes the node's stdin; the control loop then halts the node.
    pub async fn close_stdin(&self) {
        self.ctl.lock().await.stdin = None;
    }

    /// Waits (bounded) for the OS process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(|r| r.ok())
    }

    /// SIGKILLs the node by pid and waits for it to exit.
    pub async fn kill(&mut self) {
        send_signal(self.pid, SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Graceful stop: `init:stop()`, then waits up to 15 s, then kills.
    pub async fn stop(&mut self) {
        {
            let mut ctl = self.ctl.lock().await;
            let line = format!("{}\n", hex_encode(b"init:stop()"));
            let sent = match ctl.stdin.as_mut() {
                Some(stdin) => {
                    stdin.write_all(line.as_bytes()).await.is_ok() && stdin.flush().await.is_ok()
                }
                None => false,
            };
            if sent {
                ctl.stale += 1;
            }
        }
        if self.wait_exit(Duration::from_secs(15)).await.is_none() {
            self.kill().await;
        }
    }
}

impl Drop for BeamNode {
    fn drop(&mut self) {
        kill_and_reap_blocking(&mut self.child, self.pid);
    }
}
