//! Remote calls a BEAM peer makes into erlnode.
//!
//! `erpc:call(N, M, F, A)` arrives as a SPAWN_REQUEST of
//! `erpc:execute_call(Ref, M, F, A)`; the result travels back as the exit
//! reason `{Ref, return, Value}` of the spawned process, through the
//! monitor the caller asked for. erlnode runs no BEAM code, so it honours
//! only MFAs that Rust code registered with `Node::allow_erpc`; every
//! other spawn request gets SPAWN_REPLY `notsup` at once, so no caller
//! (and no `global` resolver) ever hangs.

use crate::control::Control;
use crate::node::NodeInner;
use crate::term::{Atom, Pid, Reference, Term};
use std::collections::HashMap;
use std::sync::Arc;

/// A Rust implementation of an allow-listed MFA: arguments in, value or
/// exit reason out.
pub type ErpcHandler = Arc<dyn Fn(&crate::Node, &[Term]) -> Result<Term, Term> + Send + Sync>;

#[derive(Default)]
pub(crate) struct AllowList {
    map: std::sync::RwLock<HashMap<(Atom, Atom, usize), ErpcHandler>>,
    /// `Node::accept_spawned_funs`: spawn requests of funs get a process
    /// that exits `normal` at once instead of `notsup`.
    funs_noop: std::sync::atomic::AtomicBool,
}

impl AllowList {
    pub fn insert(&self, m: Atom, f: Atom, arity: usize, h: ErpcHandler) {
        self.map.write().unwrap().insert((m, f, arity), h);
    }
    fn get(&self, m: &Atom, f: &Atom, arity: usize) -> Option<ErpcHandler> {
        self.map.read().unwrap().get(&(m.clone(), f.clone(), arity)).cloned()
    }
    pub fn set_funs_noop(&self, on: bool) {
        self.funs_noop.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `spawn(Node, Fun)` arrives as `erlang:apply(Fun, [])`.
fn is_fun_spawn(module: &Atom, function: &Atom, arity: i64, args: &Term) -> bool {
    module.as_str() == "erlang" && function.as_str() == "apply" && arity == 2 && matches!(args, Term::List(a) if matches!(a.first(), Some(Term::Fun(_))))
}

const SPAWN_FLAG_LINK: i64 = 1;
const SPAWN_FLAG_MONITOR: i64 = 2;

impl NodeInner {
    pub(crate) fn run_allowed(self: &Arc<Self>, m: &Atom, f: &Atom, args: &[Term]) -> Option<Result<Term, Term>> {
        let h = self.erpc_allow.get(m, f, args.len())?;
        let node = crate::Node::from_inner(self.clone());
        Some(h(&node, args))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_request(self: &Arc<Self>, peer: &Atom, req_id: Reference, from: Pid, module: Atom, function: Atom, arity: i64, opts: Term, args: Term) {
        let call = match (module.as_str(), function.as_str(), &args) {
            ("erpc", "execute_call", Term::List(a)) if arity == 4 && a.len() == 4 => match (&a[1], &a[2], &a[3]) {
                (Term::Atom(m), Term::Atom(f), Term::List(xs)) => self.erpc_allow.get(m, f, xs.len()).map(|h| (a[0].clone(), h, xs.clone())),
                _ => None,
            },
            _ => None,
        };
        let noop = call.is_none() && self.erpc_allow.funs_noop.load(std::sync::atomic::Ordering::Relaxed) && is_fun_spawn(&module, &function, arity, &args);
        if call.is_none() && !noop {
            tracing::info!(%peer, mfa = %format!("{module}:{function}/{arity}"), "refusing spawn request: erlnode runs no BEAM code");
            self.send_control(peer, &Control::SpawnReply { req_id, to: from, flags: 0, result: Term::atom("notsup") });
            return;
        }
        let has = |o: &str| matches!(&opts, Term::List(l) if l.iter().any(|x| x.is_atom(o)));
        let mut flags = 0;
        let mb = crate::process::Mailbox::standalone(self.clone());
        let pid = mb.pid().clone();
        {
            let mut procs = self.processes.write();
            let e = procs.get_mut(&pid.id).expect("just created");
            if has("monitor") {
                flags |= SPAWN_FLAG_MONITOR;
                e.monitored_by.get_mut().insert(req_id.clone(), (from.clone(), Term::Pid(pid.clone())));
            }
            if has("link") {
                flags |= SPAWN_FLAG_LINK;
                e.links.get_mut().insert(from.clone());
            }
        }
        self.send_control(peer, &Control::SpawnReply { req_id, to: from, flags, result: Term::Pid(pid.clone()) });
        let reason = match call {
            Some((erpc_ref, handler, call_args)) => match handler(&crate::Node::from_inner(self.clone()), &call_args) {
                Ok(v) => Term::tuple([erpc_ref, Term::atom("return"), v]),
                Err(e) => Term::tuple([erpc_ref, Term::atom("exit"), e]),
            },
            None => {
                static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
                if FIRST.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(%peer, "spawned fun not run (accept_spawned_funs): its process exits normal; further ones are logged at debug");
                } else {
                    tracing::debug!(%peer, "spawned fun not run (accept_spawned_funs): its process exits normal");
                }
                Term::atom("normal")
            }
        };
        self.exit_process(&pid, reason);
        drop(mb);
    }
}
