//! Which Rust type runs a child spec's module.
//!
//! A child spec names its start function, `{MyApp.Counter, :start_link,
//! [args]}`; the Rust member runs the [`Migratable`] type registered for
//! `MyApp.Counter` instead, with `args` decoded by serde (a one-element
//! argument list decodes its element, any other list decodes as a
//! whole). The function name is not checked: it is Elixir's business.

use super::child::{self, ChildCtl, ChildEnv};
use super::Dialect;
use crate::migration::replica::delta::DeltaFns;
use crate::migration::replica::owner::Replicator;
use crate::migration::replica::placement::ReplicaCtx;
use crate::migration::replica::ReplicaConfig;
use crate::migration::Migratable;
use crate::term::serde::from_term;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A started child: its pid and its control channel.
pub(crate) struct Started {
    pub pid: Pid,
    pub ctl: mpsc::UnboundedSender<ChildCtl>,
}

type Factory = Arc<dyn Fn(Node, Term, Term, Dialect, StartOpts) -> BoxFuture<'static, Result<Started, Term>> + Send + Sync>;

/// How a child starts besides its spec.
#[derive(Default)]
pub(crate) struct StartOpts {
    /// The replica context and the child's replica name: a type with
    /// replicas (its `REPLICAS`, or the node's setting for it) keeps them
    /// (docs/replicas.md, "Processes Horde or ProcessHub places").
    pub replica: Option<(Arc<ReplicaCtx>, Atom)>,
    /// A state to start from, written by that version of the type (a
    /// replica's, after the previous owner's node died), and the
    /// replica sequence it had.
    pub initial: Option<(u32, Term, u64)>,
}

impl StartOpts {
    /// Starts from `f`, a dead owner's replica, when the child keeps
    /// replicas and has no state to start from yet (a handed-over state
    /// is newer than any replica: it wins). Whether it will.
    pub fn restore(&mut self, f: &crate::migration::replica::placed::Fetched) -> bool {
        if self.replica.is_none() || self.initial.is_some() {
            return false;
        }
        let (vsn, state) = crate::migration::versioned::unwrap(f.state.clone());
        self.initial = Some((vsn, state, f.seq));
        true
    }
}

/// Module name (`Elixir.MyApp.Counter`) -> how to start the Rust twin.
#[derive(Clone, Default)]
pub(crate) struct ChildTypes {
    by_module: HashMap<String, (&'static str, u32, Factory)>,
}

/// The atom Elixir writes for `MyApp.Counter`: `Elixir.MyApp.Counter`
/// (a name that already starts with `Elixir.` or is an Erlang module name
/// in lower case is kept).
pub fn module_atom(module: &str) -> String {
    if module.starts_with("Elixir.") || module.starts_with(|c: char| c.is_ascii_lowercase()) {
        module.to_string()
    } else {
        format!("Elixir.{module}")
    }
}

impl ChildTypes {
    pub fn insert<M: Migratable>(&mut self, module: &str) {
        let f: Factory = Arc::new(|node, cid, args, dialect, opts| Box::pin(start::<M>(node, cid, args, dialect, opts)));
        self.by_module.insert(module_atom(module), (M::TYPE, M::VERSION, f));
    }

    /// `(module, Rust type)` pairs, for logs and docs.
    pub fn modules(&self) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = self.by_module.iter().map(|(m, (t, _, _))| (m.clone(), *t)).collect();
        v.sort();
        v
    }

    /// The Rust type name and state version that run `module`.
    pub fn type_of(&self, module: &str) -> Option<(&'static str, u32)> {
        self.by_module.get(module).map(|(t, v, _)| (*t, *v))
    }

    /// Starts the child of `child_spec` as its module's Rust type, with
    /// replicas and a state to start from as `opts` say; the error is
    /// the reason ProcessHub reports for the child.
    pub async fn start_with(&self, node: &Node, cid: &Term, child_spec: &Term, dialect: Dialect, opts: StartOpts) -> Result<Started, Term> {
        let (module, args) = start_mfa(child_spec)?;
        let Some((_, _, f)) = self.by_module.get(module.as_str()) else {
            return Err(Term::tuple([Term::atom("erlnode_no_rust_type"), Term::Atom(module)]));
        };
        f(node.clone(), cid.clone(), args, dialect, opts).await
    }
}

/// The `{module, args}` of a spec's `start: {M, F, A}`.
fn start_mfa(spec: &Term) -> Result<(Atom, Term), Term> {
    let start = match spec {
        Term::Map(entries) => entries.iter().find(|(k, _)| k.is_atom("start")).map(|(_, v)| v),
        _ => None,
    };
    match start.and_then(|s| s.as_tuple()) {
        Some([Term::Atom(m), Term::Atom(_), args @ Term::List(_)]) => Ok((m.clone(), args.clone())),
        _ => Err(Term::tuple([Term::atom("erlnode_bad_child_spec"), Term::from("expected %{start: {Module, Function, [args]}}")])),
    }
}

async fn start<M: Migratable>(node: Node, cid: Term, args_term: Term, dialect: Dialect, opts: StartOpts) -> Result<Started, Term> {
    let decoded = match &args_term {
        Term::List(items) if items.len() == 1 => from_term::<M::Args>(items[0].clone()),
        other => from_term::<M::Args>(other.clone()),
    };
    let args = decoded.map_err(|e| Term::tuple([Term::atom("erlnode_bad_args"), Term::from(e.to_string().as_str())]))?;
    let st = M::init_state(args)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (started_tx, started_rx) = oneshot::channel();
    let mut seq = 0;
    if let Some((from_version, state, at)) = opts.initial {
        // Taken before the first message (child::run).
        let _ = tx.send(ChildCtl::Adopt { from_version, state });
        seq = at;
    }
    let replica = opts.replica.and_then(|(ctx, name)| {
        let cfg = ctx.config_for(M::TYPE, ReplicaConfig { replicas: M::REPLICAS, mode: M::REPLICA_MODE });
        cfg.enabled().then(|| {
            ctx.set_delta(M::TYPE, DeltaFns::new(M::replica_delta, M::apply_replica_delta));
            Replicator::new(ctx, cfg, M::TYPE, name, args_term, seq)
        })
    });
    let env = ChildEnv { cid, dialect, ctl: rx, replica };
    let pid = node.spawn(move |mb| child::run::<M>(mb, st, env, started_tx));
    match started_rx.await {
        Ok(Ok(())) => Ok(Started { pid, ctl: tx }),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(Term::atom("erlnode_child_died_in_init")),
    }
}
