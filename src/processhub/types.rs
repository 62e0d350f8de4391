//! Which Rust type runs a child spec's module.
//!
//! A child spec names its start function, `{MyApp.Counter, :start_link,
//! [args]}`; the Rust member runs the [`Migratable`] type registered for
//! `MyApp.Counter` instead, with `args` decoded by serde (a one-element
//! argument list decodes its element, any other list decodes as a
//! whole). The function name is not checked: it is Elixir's business.

use super::child::{self, ChildCtl, ChildEnv};
use super::Dialect;
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

type Factory = Arc<dyn Fn(Node, Term, Term, Dialect) -> BoxFuture<'static, Result<Started, Term>> + Send + Sync>;

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
        let f: Factory = Arc::new(|node, cid, args, dialect| Box::pin(start::<M>(node, cid, args, dialect)));
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

    /// Starts the child of `child_spec` as its module's Rust type; the
    /// error is the reason ProcessHub reports for the child.
    pub async fn start(&self, node: &Node, cid: &Term, child_spec: &Term, dialect: Dialect) -> Result<Started, Term> {
        let (module, args) = start_mfa(child_spec)?;
        let Some((_, _, f)) = self.by_module.get(module.as_str()) else {
            return Err(Term::tuple([Term::atom("erlnode_no_rust_type"), Term::Atom(module)]));
        };
        f(node.clone(), cid.clone(), args, dialect).await
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

async fn start<M: Migratable>(node: Node, cid: Term, args: Term, dialect: Dialect) -> Result<Started, Term> {
    let decoded = match &args {
        Term::List(items) if items.len() == 1 => from_term::<M::Args>(items[0].clone()),
        other => from_term::<M::Args>(other.clone()),
    };
    let args = decoded.map_err(|e| Term::tuple([Term::atom("erlnode_bad_args"), Term::from(e.to_string().as_str())]))?;
    let st = M::init_state(args)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (started_tx, started_rx) = oneshot::channel();
    let env = ChildEnv { cid, dialect, ctl: rx };
    let pid = node.spawn(move |mb| child::run::<M>(mb, st, env, started_tx));
    match started_rx.await {
        Ok(Ok(())) => Ok(Started { pid, ctl: tx }),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(Term::atom("erlnode_child_died_in_init")),
    }
}
