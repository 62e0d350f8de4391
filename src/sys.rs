//! OTP system messages (`{system, From, Request}`, what the `:sys` module
//! and observer send) answered by Rust servers, so that
//! `:sys.get_state(rust_pid)`, `:sys.get_status/1`,
//! `:sys.replace_state/2` and `:sys.terminate/2` work on Rust pids as on
//! any `gen_server`.
//!
//! `replace_state` carries an Erlang fun, which Rust cannot run: the
//! server asks the caller's node to apply it (`rpc:call(CallerNode,
//! erlang, apply, [Fun, [State]])` through its `rex`) and takes the
//! result as its new state, so `:sys.replace_state(pid, fn s -> ... end)`
//! behaves as it does on a BEAM process.

use crate::gen_server::Flow;
use crate::process::{Dest, Mailbox};
use crate::term::{Atom, Term};
use std::time::Duration;

/// How long `replace_state` waits for the caller's node to apply its fun.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A server's state as `:sys` sees it: a term to show, and a term to
/// take back.
pub trait SysState {
    /// The state `:sys.get_state/1` returns; `None`: the server does not
    /// expose one (the caller gets `{error, state_not_exposed}`).
    fn sys_get(&self) -> Option<Term>;
    /// Takes `state` (the result of a `replace_state` fun) as the new
    /// state; an error leaves the state unchanged and is returned to
    /// the caller.
    fn sys_replace(&mut self, state: Term) -> Result<(), Term>;
}

fn error(reason: Term) -> Term {
    Term::tuple([Term::atom("error"), reason])
}

/// Answers one system message. `{terminate, Reason}` stops the server
/// with `Reason` (its `terminate` callback runs; the caller sees the
/// process exit with `Reason`, as `:sys.terminate/2` expects).
pub(crate) async fn handle(from: &Term, request: Term, mb: &mut Mailbox, state: &mut (dyn SysState + Send)) -> Flow {
    let reply = match &request {
        Term::Atom(a) if a.as_str() == "get_state" => match state.sys_get() {
            Some(s) => ok_for_caller(from, mb, s).await,
            None => error(Term::atom("state_not_exposed")),
        },
        Term::Atom(a) if a.as_str() == "get_status" => status(mb, state.sys_get()),
        Term::Tuple(t) if t.len() == 2 && t[0].is_atom("terminate") => return Flow::Stop(t[1].clone()),
        Term::Tuple(t) if t.len() == 2 && t[0].is_atom("replace_state") => replace(from, t[1].clone(), mb, state).await,
        // Accepted and ignored: no debug options (trace, log) on Rust
        // servers, and they are never suspended.
        Term::Atom(a) if a.as_str() == "suspend" || a.as_str() == "resume" => Term::atom("ok"),
        Term::Tuple(t) if t.len() == 2 && t[0].is_atom("debug") => Term::atom("ok"),
        _ => error(Term::tuple([Term::atom("unknown_system_msg"), request.clone()])),
    };
    mb.reply(from, reply);
    Flow::Continue
}

async fn replace(from: &Term, fun: Term, mb: &mut Mailbox, state: &mut (dyn SysState + Send)) -> Term {
    let Some(current) = state.sys_get() else { return error(Term::atom("state_not_exposed")) };
    let caller_node = match from.as_tuple() {
        Some([Term::Pid(p), _]) if p.node != mb.pid().node => p.node.clone(),
        _ => return error(Term::atom("replace_state_needs_a_beam_caller")),
    };
    let args = Term::list([fun, Term::list([current])]);
    let req = Term::tuple([Term::atom("call"), Term::atom("erlang"), Term::atom("apply"), args, Term::atom("user")]);
    let node = mb.node();
    let mut asker = node.spawn_mailbox();
    let new = match asker.call(Dest::Name { name: Atom::new("rex"), node: caller_node }, req, APPLY_TIMEOUT).await {
        Ok(t) => t,
        Err(e) => return error(Term::tuple([Term::atom("callback_failed"), Term::from(e.to_string().as_str())])),
    };
    if let Some([tag, _]) = new.as_tuple() {
        if tag.is_atom("badrpc") {
            return error(Term::tuple([Term::atom("callback_failed"), new.clone()]));
        }
    }
    match state.sys_replace(new.clone()) {
        Ok(()) => ok_for_caller(from, mb, new).await,
        Err(reason) => error(Term::tuple([Term::atom("callback_failed"), reason])),
    }
}

/// `get_state` and `replace_state` answer `{ok, State}` to callers whose
/// `sys` is OTP 26.1's or later (stdlib 5.1+), the bare state to older
/// ones: each release's `sys` accepts only its own form. The caller's
/// stdlib version comes from its node (`rex`); a Rust caller gets the
/// bare state.
async fn ok_for_caller(from: &Term, mb: &Mailbox, state: Term) -> Term {
    let node = match from.as_tuple() {
        Some([Term::Pid(p), _]) if p.node != mb.pid().node => p.node.clone(),
        _ => return state,
    };
    let req = Term::tuple([
        Term::atom("call"),
        Term::atom("application"),
        Term::atom("get_key"),
        Term::list([Term::atom("stdlib"), Term::atom("vsn")]),
        Term::atom("user"),
    ]);
    let mut asker = mb.node().spawn_mailbox();
    let vsn = match asker.call(Dest::Name { name: Atom::new("rex"), node }, req, APPLY_TIMEOUT).await {
        Ok(Term::Tuple(t)) if t.len() == 2 && t[0].is_atom("ok") => charlist(&t[1]),
        _ => None,
    };
    if vsn.map(|v| stdlib_wants_ok(&v)).unwrap_or(false) {
        Term::tuple([Term::atom("ok"), state])
    } else {
        state
    }
}

fn charlist(t: &Term) -> Option<String> {
    match t {
        Term::List(cs) => cs.iter().map(|c| c.as_int().and_then(|i| char::from_u32(i as u32))).collect(),
        Term::Binary(b) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    }
}

/// stdlib 5.1 (OTP 26.1) changed `sys:get_state/replace_state`'s reply.
fn stdlib_wants_ok(vsn: &str) -> bool {
    let mut parts = vsn.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stdlib_versions_that_want_ok_tuples() {
        assert!(!super::stdlib_wants_ok("4.3.1.3"), "OTP 25");
        assert!(!super::stdlib_wants_ok("5.0.2"), "OTP 26.0");
        assert!(super::stdlib_wants_ok("5.1"), "OTP 26.1");
        assert!(super::stdlib_wants_ok("6.2.2"), "OTP 27");
        assert!(super::stdlib_wants_ok("7.0"), "OTP 29");
    }
}

/// `get_status`'s reply, shaped as `gen_server`'s so observer and
/// `:sys.get_status/1` readers find the state where they look for it.
fn status(mb: &Mailbox, state: Option<Term>) -> Term {
    let pid = Term::Pid(mb.pid().clone());
    let chars = |s: &str| Term::List(s.chars().map(|c| Term::Int(c as i64)).collect());
    let header = chars(&format!("Status for Rust generic server {}", mb.pid()));
    let misc = Term::list([
        Term::tuple([Term::atom("header"), header]),
        Term::tuple([
            Term::atom("data"),
            Term::list([
                Term::tuple([chars("Status"), Term::atom("running")]),
                Term::tuple([chars("Parent"), pid.clone()]),
                Term::tuple([chars("Logged events"), Term::list([])]),
            ]),
        ]),
        Term::tuple([Term::atom("data"), Term::list([Term::tuple([chars("State"), state.unwrap_or_else(|| Term::atom("undefined"))])])]),
    ]);
    Term::tuple([
        Term::atom("status"),
        pid.clone(),
        Term::tuple([Term::atom("module"), Term::atom("gen_server")]),
        Term::list([Term::list([]), Term::atom("running"), pid, Term::list([]), misc]),
    ])
}
