//! The migration manager, `erlnode_migration`: starts targets of a
//! registered type and takes migration requests for processes hosted
//! here. It never waits on a migration: results come back to it as
//! messages and are matched to the waiting caller.

use super::messages::{result_term, Op, Request};
use super::runtime::{run_fresh, run_target, Meta};
use super::{HandoffConfig, Migratable, MigrationError, Mode, NameRegistry};
use crate::node::gen_call_parts;
use crate::term::serde::from_term;
use crate::term::{Atom, Pid, Reference, Term};
use crate::Node;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const MANAGER_NAME: &str = "erlnode_migration";

type Factory = Arc<dyn Fn(&Node, &Shared, Term, Atom, Option<(Reference, Pid)>) -> Result<Pid, Term> + Send + Sync>;

pub(crate) struct Shared {
    types: RwLock<HashMap<String, Factory>>,
    pub registry: Arc<dyn NameRegistry>,
    pub cfg: HandoffConfig,
}

/// Handle to this node's migration service.
#[derive(Clone)]
pub struct Migration {
    node: Node,
    shared: Arc<Shared>,
}

impl Migration {
    /// Starts the manager (registered as `erlnode_migration`) with the
    /// registry that holds the processes' names.
    pub fn start(node: &Node, registry: Arc<dyn NameRegistry>, cfg: HandoffConfig) -> Result<Migration, crate::NodeError> {
        let shared = Arc::new(Shared { types: RwLock::new(HashMap::new()), registry, cfg });
        let s2 = shared.clone();
        let n2 = node.clone();
        let pid = node.spawn(move |mb| manager_loop(n2, s2, mb));
        node.register(MANAGER_NAME, &pid)?;
        Ok(Migration { node: node.clone(), shared })
    }

    /// Makes `M` startable here by its type name, as a target of
    /// migrations from any node.
    pub fn register_type<M: Migratable>(&self) {
        let f: Factory = Arc::new(|node, shared, args_term, name, handover| {
            let args: M::Args = from_term(args_term.clone()).map_err(|e| {
                Term::tuple([Term::atom("bad_args"), Term::from(e.to_string().as_str())])
            })?;
            let meta = Meta { type_name: M::TYPE, args: args_term, name, registry: shared.registry.clone(), cfg: shared.cfg.clone() };
            Ok(match handover {
                None => node.spawn(move |mb| run_fresh::<M>(mb, meta, args)),
                Some((r, s)) => node.spawn(move |mb| run_target::<M>(mb, meta, args, r, s)),
            })
        });
        self.shared.types.write().unwrap().insert(M::TYPE.to_string(), f);
    }

    /// Starts a process of type `M` here and registers it under `name`.
    pub async fn start_process<M: Migratable>(&self, args: M::Args, name: &str) -> Result<Pid, MigrationError> {
        self.register_type::<M>();
        let args_term = crate::term::serde::to_term(&args).map_err(|e| MigrationError::Failed(Term::from(e.to_string().as_str())))?;
        let factory = self.shared.types.read().unwrap().get(M::TYPE).cloned().expect("just registered");
        let pid = factory(&self.node, &self.shared, args_term, Atom::new(name), None).map_err(MigrationError::Failed)?;
        if let Err(e) = self.shared.registry.register(name, &pid).await {
            self.node.exit(&pid, Term::atom("kill"));
            return Err(MigrationError::Name(e));
        }
        Ok(pid)
    }

    /// Moves the process registered as `name` to `target`, wherever it
    /// runs now. Returns the new pid.
    pub async fn migrate(&self, name: &str, target: &str, mode: Mode, timeout: Duration) -> Result<Pid, MigrationError> {
        let host = self.shared.registry.whereis(name).ok_or_else(|| MigrationError::NoSuchName(name.to_string()))?;
        let req = Request::Migrate { name: Atom::new(name), target: Atom::new(target), mode };
        let mut mb = self.node.spawn_mailbox();
        let reply = mb.call((MANAGER_NAME, host.node.as_str()), req.to_term(), timeout).await?;
        parse_result(reply)
    }
}

fn parse_result(reply: Term) -> Result<Pid, MigrationError> {
    match reply.as_tuple() {
        Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => Ok(p.clone()),
        Some([e, reason]) if e.is_atom("error") => Err(MigrationError::Failed(reason.clone())),
        _ => Err(MigrationError::Failed(Term::tuple([Term::atom("bad_reply"), reply]))),
    }
}

async fn manager_loop(node: Node, shared: Arc<Shared>, mut mb: crate::process::Mailbox) -> Term {
    // Migrations in flight: our reference -> the caller's From.
    let mut pending: HashMap<Reference, Term> = HashMap::new();
    while let Some(msg) = mb.recv().await {
        if let Some((from, request)) = gen_call_parts(&msg) {
            match Request::parse(request) {
                Some(Request::Start { type_name, args, name, reference, source }) => {
                    let factory = shared.types.read().unwrap().get(&type_name).cloned();
                    let reply = match factory {
                        Some(f) => result_term(&f(&node, &shared, args, name, Some((reference, source)))),
                        None => Term::tuple([Term::atom("error"), Term::tuple([Term::atom("unknown_type"), Term::from(type_name.as_str())])]),
                    };
                    mb.reply(from, reply);
                }
                Some(Request::Migrate { name, target, mode }) => match shared.registry.whereis(name.as_str()) {
                    Some(pid) if node.is_alive(&pid) => {
                        let reference = node.make_ref();
                        pending.insert(reference.clone(), from.clone());
                        let begin = Op::Begin { reference, target, mode, reply_to: Some(mb.pid().clone()) };
                        mb.send(&pid, begin.to_term());
                    }
                    Some(pid) => {
                        // Hosted elsewhere: ask that node's manager on the caller's behalf.
                        let from = from.clone();
                        let node2 = node.clone();
                        tokio::spawn(async move {
                            let mut tmp = node2.spawn_mailbox();
                            let req = Request::Migrate { name, target, mode }.to_term();
                            let reply = match tmp.call((MANAGER_NAME, pid.node.as_str()), req, Duration::from_secs(60)).await {
                                Ok(r) => r,
                                Err(e) => Term::tuple([Term::atom("error"), Term::from(e.to_string().as_str())]),
                            };
                            node2.reply(&from, reply);
                        });
                    }
                    None => mb.reply(from, Term::tuple([Term::atom("error"), Term::atom("no_such_name")])),
                },
                None => {
                    tracing::warn!(?request, "migration manager: unknown call");
                    mb.reply(from, Term::tuple([Term::atom("error"), Term::atom("unknown_request")]));
                }
            }
            continue;
        }
        match Op::parse(&msg) {
            Some(Ok(Op::Result { reference, result })) => match pending.remove(&reference) {
                Some(from) => mb.reply(&from, result_term(&result)),
                None => tracing::debug!("migration result for nobody dropped"),
            },
            _ => tracing::debug!(?msg, "migration manager: unexpected message dropped"),
        }
    }
    Term::atom("normal")
}
