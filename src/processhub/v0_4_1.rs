//! The 0.4.1-beta dialect: terms to [`HubMessage`]s and back.
//!
//! Shapes as recorded from real 0.4.1-beta nodes
//! (docs/processhub-protocol.md). Building is the inverse of parsing: a
//! parsed message builds back to the term parsed. Maps are built with
//! their keys in term order, as OTP 25 keeps small maps, so that a message
//! from an OTP 25 node builds back `==` and byte-exact; OTP 26 and later
//! keep small-map atom keys in atom-table order, so theirs build back equal
//! up to map key order (which no receiver depends on).

use super::messages::*;
use super::{Dialect, ParseError};
use crate::term::{Atom, Pid, Term};

const D: Dialect = Dialect::V0_4_1;

/// The Elixir module name of the registration struct.
pub const POST_START_DATA: &str = "Elixir.ProcessHub.Handler.ChildrenAdd.PostStartData";
/// The module whose `handle_storage_update` receives graceful-shutdown states.
pub const HOT_SWAP: &str = "Elixir.ProcessHub.Strategy.Migration.HotSwap";

// ---------------------------------------------------------------- parsing

pub(super) fn parse(term: &Term) -> Result<HubMessage, ParseError> {
    let items = match term {
        Term::Tuple(items) if !items.is_empty() => items.as_slice(),
        _ => return Err(unknown(term)),
    };
    let tag = match &items[0] {
        Term::Atom(a) => a.as_str(),
        _ => return Err(unknown(term)),
    };
    match (tag, items.len()) {
        ("$gen_cast", 2) => parse_cast(term, &items[1]),
        ("discover", 2) => Ok(HubMessage::Pg(PgScopeMessage::Discover {
            scope: pid(&items[1], "pg_discover", "scope")?,
        })),
        ("join", 4) => {
            let m = "pg_join";
            Ok(HubMessage::Pg(PgScopeMessage::Join {
                scope: pid(&items[1], m, "scope")?,
                group: group(&items[2]),
                pids: pid_or_pids(&items[3], m)?,
            }))
        }
        ("leave", 4) => {
            let m = "pg_leave";
            Ok(HubMessage::Pg(PgScopeMessage::Leave {
                scope: pid(&items[1], m, "scope")?,
                pids: pid_or_pids(&items[2], m)?,
                groups: list(&items[3], m, "groups")?.iter().map(group).collect(),
            }))
        }
        ("collect_start_results", 3) => {
            let m = "collect_start_results";
            let results = list(&items[1], m, "results")?
                .iter()
                .map(|r| {
                    let [cid, res] = tuple::<2>(r, m, "result")?;
                    Ok((cid.clone(), start_outcome(res)))
                })
                .collect::<Result<_, ParseError>>()?;
            Ok(HubMessage::CollectStartResults {
                results,
                node: atom(&items[2], m, "node")?,
            })
        }
        ("collect_stop_results", 3) => {
            let m = "collect_stop_results";
            let results = list(&items[1], m, "results")?
                .iter()
                .map(|r| {
                    let [cid, res] = tuple::<2>(r, m, "result")?;
                    Ok((cid.clone(), res.clone()))
                })
                .collect::<Result<_, ParseError>>()?;
            Ok(HubMessage::CollectStopResults {
                results,
                node: atom(&items[2], m, "node")?,
            })
        }
        ("process_hub", _) => parse_process_hub(term, items),
        (ev, 2) => match HubEvent::from_atom_name(ev) {
            Some(event) => parse_event(event, &items[1]),
            None => Err(unknown(term)),
        },
        _ => Err(unknown(term)),
    }
}

fn parse_event(event: HubEvent, payload: &Term) -> Result<HubMessage, ParseError> {
    let m = event.atom_name();
    Ok(match event {
        HubEvent::ClusterJoin => HubMessage::ClusterJoin {
            node: atom(payload, m, "node")?,
        },
        HubEvent::ClusterLeave => HubMessage::ClusterLeave {
            node: atom(payload, m, "node")?,
        },
        HubEvent::DistributeChildren => HubMessage::DistributeChildren {
            node: atom(payload, m, "node")?,
        },
        HubEvent::SyncRemoteChildren => {
            let [children, from] = tuple::<2>(payload, m, "payload")?;
            let children = list(children, m, "children")?
                .iter()
                .map(|c| {
                    let [spec, p, meta] = tuple::<3>(c, m, "child")?;
                    Ok(SyncedChild {
                        child_spec: spec.clone(),
                        pid: pid(p, m, "pid")?,
                        metadata: meta.clone(),
                    })
                })
                .collect::<Result<_, ParseError>>()?;
            HubMessage::SyncRemoteChildren {
                children,
                from_node: atom(from, m, "from_node")?,
            }
        }
        HubEvent::ChildrenRegistration => {
            let [children, node, opts] = tuple::<3>(payload, m, "payload")?;
            let children = list(children, m, "children")?
                .iter()
                .map(post_start_data)
                .collect::<Result<_, ParseError>>()?;
            HubMessage::ChildrenRegistration {
                children,
                node: atom(node, m, "node")?,
                opts: keyword(opts, m, "opts")?,
            }
        }
        HubEvent::ChildrenUnregistration => {
            let [children, node, opts] = tuple::<3>(payload, m, "payload")?;
            let children = list(children, m, "children")?
                .iter()
                .map(|c| {
                    let [cid, result, n] = tuple::<3>(c, m, "child")?;
                    Ok(Unregistered {
                        child_id: cid.clone(),
                        result: result.clone(),
                        node: atom(n, m, "child node")?,
                    })
                })
                .collect::<Result<_, ParseError>>()?;
            HubMessage::ChildrenUnregistration {
                children,
                node: atom(node, m, "node")?,
                opts: keyword(opts, m, "opts")?,
            }
        }
        HubEvent::MigrationAdd => {
            let [children, opts] = tuple::<2>(payload, m, "payload")?;
            HubMessage::MigrationAdd {
                children: child_starts(children, m)?,
                opts: keyword(opts, m, "opts")?,
            }
        }
        HubEvent::ChildProcessPidUpdate => {
            let [cid, at] = tuple::<2>(payload, m, "payload")?;
            let [node, p] = tuple::<2>(at, m, "{node, pid}")?;
            HubMessage::ChildPidUpdate {
                child_id: cid.clone(),
                node: atom(node, m, "node")?,
                pid: pid(p, m, "pid")?,
            }
        }
    })
}

fn parse_cast(whole: &Term, inner: &Term) -> Result<HubMessage, ParseError> {
    let items = match inner {
        Term::Tuple(items) if !items.is_empty() => items.as_slice(),
        _ => return Err(unknown(whole)),
    };
    let tag = items[0].as_atom().map(|a| a.as_str()).unwrap_or("");
    match (tag, items.len()) {
        ("sync", 3) => {
            let m = "pg_sync";
            let groups = list(&items[2], m, "groups")?
                .iter()
                .map(|g| {
                    let [name, pids] = tuple::<2>(g, m, "group")?;
                    let pids = list(pids, m, "group members")?
                        .iter()
                        .map(|p| pid(p, m, "member"))
                        .collect::<Result<_, ParseError>>()?;
                    Ok((group(name), pids))
                })
                .collect::<Result<_, ParseError>>()?;
            Ok(HubMessage::Pg(PgScopeMessage::Sync {
                scope: pid(&items[1], m, "scope")?,
                groups,
            }))
        }
        ("start_children", 3) => {
            let m = "cast_start_children";
            Ok(HubMessage::StartChildren {
                children: child_starts(&items[1], m)?,
                opts: keyword(&items[2], m, "opts")?,
            })
        }
        ("stop_children", 3) => {
            let m = "cast_stop_children";
            let children = list(&items[1], m, "children")?
                .iter()
                .map(|c| {
                    let mut fields = Fields::new(c, m, "child")?;
                    let child_id = fields.take("child_id")?.clone();
                    let nodes = atoms(fields.take("nodes")?, m, "nodes")?;
                    Ok(ChildStop {
                        child_id,
                        nodes,
                        extra: fields.rest(),
                    })
                })
                .collect::<Result<_, ParseError>>()?;
            Ok(HubMessage::StopChildren {
                children,
                opts: keyword(&items[2], m, "opts")?,
            })
        }
        ("exec_cast", 2) => {
            let m = "cast_exec_cast";
            let [module, function, args] = tuple::<3>(&items[1], m, "{M, F, A}")?;
            let module = atom(module, m, "module")?;
            let function = atom(function, m, "function")?;
            let args = list(args, m, "args")?;
            if module.as_str() == HOT_SWAP && function.as_str() == "handle_storage_update" {
                if let [Term::List(states)] = args {
                    let states = states
                        .iter()
                        .map(|s| {
                            let [cid, held] = tuple::<2>(s, m, "stored state")?;
                            let [state, opts] = tuple::<2>(held, m, "{state, opts}")?;
                            Ok(StoredState {
                                child_id: cid.clone(),
                                state: state.clone(),
                                opts: keyword(opts, m, "state opts")?,
                            })
                        })
                        .collect::<Result<_, ParseError>>()?;
                    return Ok(HubMessage::ExecCast(ExecCast::HotSwapStorageUpdate {
                        states,
                    }));
                }
                return Err(malformed(
                    m,
                    "handle_storage_update takes one list of states",
                ));
            }
            Ok(HubMessage::ExecCast(ExecCast::Other {
                module,
                function,
                args: args.to_vec(),
            }))
        }
        _ => Err(unknown(whole)),
    }
}

fn parse_process_hub(whole: &Term, items: &[Term]) -> Result<HubMessage, ParseError> {
    let tag = items
        .get(1)
        .and_then(|t| t.as_atom())
        .map(|a| a.as_str())
        .unwrap_or("");
    match (tag, items.len()) {
        ("send_handover_state", 5) => {
            let m = "process_hub_send_handover_state";
            Ok(HubMessage::SendHandoverState {
                receiver: pid(&items[2], m, "receiver")?,
                child_id: items[3].clone(),
                opts: keyword(&items[4], m, "opts")?,
            })
        }
        ("handover", 4) => {
            let m = "process_hub_handover";
            let [state, opts] = tuple::<2>(&items[3], m, "{state, opts}")?;
            Ok(HubMessage::Handover {
                child_id: items[2].clone(),
                state: state.clone(),
                opts: keyword(opts, m, "opts")?,
            })
        }
        ("retention_handled", 3) => Ok(HubMessage::RetentionHandled {
            child_id: items[2].clone(),
        }),
        ("handover_confirmed", 3) => Ok(HubMessage::HandoverConfirmed {
            child_id: items[2].clone(),
        }),
        ("retention_over", 2) => Ok(HubMessage::RetentionOver),
        _ => Err(unknown(whole)),
    }
}

fn child_starts(t: &Term, m: &'static str) -> Result<Vec<ChildStart>, ParseError> {
    list(t, m, "children")?
        .iter()
        .map(|c| {
            let mut f = Fields::new(c, m, "child")?;
            let child_id = f.take("child_id")?.clone();
            let child_spec = f.take("child_spec")?.clone();
            let hub_id = atom(f.take("hub_id")?, m, "hub_id")?;
            let metadata = f.take("metadata")?.clone();
            let nodes = atoms(f.take("nodes")?, m, "nodes")?;
            let migration_add = f
                .take_opt("migration_add")
                .map(|t| boolean(t, m, "migration_add"))
                .transpose()?;
            let reply_to = f
                .take_opt("reply_to")
                .map(|t| {
                    list(t, m, "reply_to")?
                        .iter()
                        .map(|p| pid(p, m, "reply_to"))
                        .collect()
                })
                .transpose()?;
            Ok(ChildStart {
                child_id,
                child_spec,
                hub_id,
                metadata,
                nodes,
                migration_add,
                reply_to,
                extra: f.rest(),
            })
        })
        .collect()
}

fn post_start_data(t: &Term) -> Result<PostStartData, ParseError> {
    let m = "children_registration_event";
    let mut f = Fields::new(t, m, "PostStartData")?;
    match f.take("__struct__")? {
        Term::Atom(a) if a.as_str() == POST_START_DATA => {}
        other => {
            return Err(malformed(
                m,
                &format!("expected a %PostStartData{{}}, got __struct__ {other:?}"),
            ))
        }
    }
    let cid = f.take("cid")?.clone();
    let pid_t = f.take("pid")?;
    let child_pid = if pid_t.is_atom("nil") {
        None
    } else {
        Some(pid(pid_t, m, "pid")?)
    };
    let child_spec = f.take("child_spec")?.clone();
    let result = start_outcome(f.take("result")?);
    let [for_node, for_opts] = tuple::<2>(f.take("for_node")?, m, "for_node")?;
    let for_node = (
        atom(for_node, m, "for_node")?,
        keyword(for_opts, m, "for_node opts")?,
    );
    let child_nodes = list(f.take("child_nodes")?, m, "child_nodes")?
        .iter()
        .map(|cn| {
            let [n, p] = tuple::<2>(cn, m, "child_nodes entry")?;
            Ok((
                atom(n, m, "child_nodes node")?,
                pid(p, m, "child_nodes pid")?,
            ))
        })
        .collect::<Result<_, ParseError>>()?;
    let has_errors = boolean(f.take("has_errors")?, m, "has_errors")?;
    let nodes = atoms(f.take("nodes")?, m, "nodes")?;
    let metadata = f.take("metadata")?.clone();
    Ok(PostStartData {
        cid,
        pid: child_pid,
        child_spec,
        result,
        for_node,
        child_nodes,
        has_errors,
        nodes,
        metadata,
        extra: f.rest(),
    })
}

fn start_outcome(t: &Term) -> StartOutcome {
    match t.as_tuple() {
        Some([ok, Term::Pid(p)]) if ok.is_atom("ok") => StartOutcome::Ok(p.clone()),
        Some([err, reason]) if err.is_atom("error") => StartOutcome::Error(reason.clone()),
        _ => StartOutcome::Other(t.clone()),
    }
}

fn group(t: &Term) -> Group {
    match t
        .as_atom()
        .and_then(|a| HubEvent::from_atom_name(a.as_str()))
    {
        Some(e) => Group::Event(e),
        None => Group::Other(t.clone()),
    }
}

fn pid_or_pids(t: &Term, m: &'static str) -> Result<PidOrPids, ParseError> {
    match t {
        Term::Pid(p) => Ok(PidOrPids::One(p.clone())),
        Term::List(ps) => Ok(PidOrPids::Many(
            ps.iter()
                .map(|p| pid(p, m, "pids"))
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(malformed(m, "expected a pid or a list of pids")),
    }
}

/// The fields of a map with atom keys, taken one by one; what is left over
/// is kept as `extra`.
struct Fields<'a> {
    entries: Vec<&'a (Term, Term)>,
    message: &'static str,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(t: &'a Term, message: &'static str, what: &'static str) -> Result<Self, ParseError> {
        match t {
            Term::Map(entries) => Ok(Fields {
                entries: entries.iter().collect(),
                message,
                what,
            }),
            _ => Err(malformed(message, &format!("{what}: expected a map"))),
        }
    }
    fn take_opt(&mut self, key: &str) -> Option<&'a Term> {
        let i = self.entries.iter().position(|(k, _)| k.is_atom(key))?;
        Some(&self.entries.remove(i).1)
    }
    fn take(&mut self, key: &str) -> Result<&'a Term, ParseError> {
        let (m, w) = (self.message, self.what);
        self.take_opt(key)
            .ok_or_else(|| malformed(m, &format!("{w}: missing key {key}")))
    }
    fn rest(self) -> Vec<(Term, Term)> {
        self.entries.into_iter().cloned().collect()
    }
}

fn tuple<'a, const N: usize>(
    t: &'a Term,
    m: &'static str,
    what: &str,
) -> Result<&'a [Term; N], ParseError> {
    match t {
        Term::Tuple(items) => items.as_slice().try_into().map_err(|_| {
            malformed(
                m,
                &format!("{what}: expected a {N}-tuple, got {}", items.len()),
            )
        }),
        _ => Err(malformed(m, &format!("{what}: expected a {N}-tuple"))),
    }
}

fn list<'a>(t: &'a Term, m: &'static str, what: &str) -> Result<&'a [Term], ParseError> {
    match t {
        Term::List(items) => Ok(items),
        _ => Err(malformed(m, &format!("{what}: expected a proper list"))),
    }
}

fn atom(t: &Term, m: &'static str, what: &str) -> Result<Atom, ParseError> {
    t.as_atom()
        .cloned()
        .ok_or_else(|| malformed(m, &format!("{what}: expected an atom")))
}

fn atoms(t: &Term, m: &'static str, what: &str) -> Result<Vec<Atom>, ParseError> {
    list(t, m, what)?.iter().map(|a| atom(a, m, what)).collect()
}

fn pid(t: &Term, m: &'static str, what: &str) -> Result<Pid, ParseError> {
    t.as_pid()
        .cloned()
        .ok_or_else(|| malformed(m, &format!("{what}: expected a pid")))
}

fn boolean(t: &Term, m: &'static str, what: &str) -> Result<bool, ParseError> {
    if t.is_atom("true") {
        Ok(true)
    } else if t.is_atom("false") {
        Ok(false)
    } else {
        Err(malformed(m, &format!("{what}: expected a boolean")))
    }
}

fn keyword(t: &Term, m: &'static str, what: &str) -> Result<Keyword, ParseError> {
    list(t, m, what)?
        .iter()
        .map(|kv| match kv.as_tuple() {
            Some([Term::Atom(k), v]) => Ok((k.clone(), v.clone())),
            _ => Err(malformed(m, &format!("{what}: expected a keyword list"))),
        })
        .collect::<Result<_, _>>()
        .map(Keyword)
}

fn malformed(message: &'static str, reason: &str) -> ParseError {
    ParseError::Malformed {
        dialect: D,
        message,
        reason: reason.to_string(),
    }
}

fn unknown(t: &Term) -> ParseError {
    ParseError::Unknown {
        dialect: D,
        shape: super::shape(t),
    }
}

// --------------------------------------------------------------- building

pub(super) fn build(msg: &HubMessage) -> Term {
    match msg {
        HubMessage::Pg(pg) => build_pg(pg),
        HubMessage::ClusterJoin { node } => event(HubEvent::ClusterJoin, a(node)),
        HubMessage::ClusterLeave { node } => event(HubEvent::ClusterLeave, a(node)),
        HubMessage::DistributeChildren { node } => event(HubEvent::DistributeChildren, a(node)),
        HubMessage::SyncRemoteChildren {
            children,
            from_node,
        } => event(
            HubEvent::SyncRemoteChildren,
            Term::tuple([
                Term::List(
                    children
                        .iter()
                        .map(|c| Term::tuple([c.child_spec.clone(), p(&c.pid), c.metadata.clone()]))
                        .collect(),
                ),
                a(from_node),
            ]),
        ),
        HubMessage::ChildrenRegistration {
            children,
            node,
            opts,
        } => event(
            HubEvent::ChildrenRegistration,
            Term::tuple([
                Term::List(children.iter().map(build_post_start_data).collect()),
                a(node),
                kw(opts),
            ]),
        ),
        HubMessage::ChildrenUnregistration {
            children,
            node,
            opts,
        } => event(
            HubEvent::ChildrenUnregistration,
            Term::tuple([
                Term::List(
                    children
                        .iter()
                        .map(|c| Term::tuple([c.child_id.clone(), c.result.clone(), a(&c.node)]))
                        .collect(),
                ),
                a(node),
                kw(opts),
            ]),
        ),
        HubMessage::MigrationAdd { children, opts } => event(
            HubEvent::MigrationAdd,
            Term::tuple([
                Term::List(children.iter().map(build_child_start).collect()),
                kw(opts),
            ]),
        ),
        HubMessage::ChildPidUpdate {
            child_id,
            node,
            pid,
        } => event(
            HubEvent::ChildProcessPidUpdate,
            Term::tuple([child_id.clone(), Term::tuple([a(node), p(pid)])]),
        ),
        HubMessage::StartChildren { children, opts } => cast(Term::tuple([
            Term::atom("start_children"),
            Term::List(children.iter().map(build_child_start).collect()),
            kw(opts),
        ])),
        HubMessage::StopChildren { children, opts } => cast(Term::tuple([
            Term::atom("stop_children"),
            Term::List(
                children
                    .iter()
                    .map(|c| {
                        let mut e = vec![
                            (Term::atom("child_id"), c.child_id.clone()),
                            (Term::atom("nodes"), atom_list(&c.nodes)),
                        ];
                        e.extend(c.extra.iter().cloned());
                        sorted_map(e)
                    })
                    .collect(),
            ),
            kw(opts),
        ])),
        HubMessage::ExecCast(ec) => {
            let mfa = match ec {
                ExecCast::HotSwapStorageUpdate { states } => Term::tuple([
                    Term::atom(HOT_SWAP),
                    Term::atom("handle_storage_update"),
                    Term::list([Term::List(
                        states
                            .iter()
                            .map(|s| {
                                Term::tuple([
                                    s.child_id.clone(),
                                    Term::tuple([s.state.clone(), kw(&s.opts)]),
                                ])
                            })
                            .collect(),
                    )]),
                ]),
                ExecCast::Other {
                    module,
                    function,
                    args,
                } => Term::tuple([a(module), a(function), Term::List(args.clone())]),
            };
            cast(Term::tuple([Term::atom("exec_cast"), mfa]))
        }
        HubMessage::CollectStartResults { results, node } => Term::tuple([
            Term::atom("collect_start_results"),
            Term::List(
                results
                    .iter()
                    .map(|(cid, r)| Term::tuple([cid.clone(), outcome(r)]))
                    .collect(),
            ),
            a(node),
        ]),
        HubMessage::CollectStopResults { results, node } => Term::tuple([
            Term::atom("collect_stop_results"),
            Term::List(
                results
                    .iter()
                    .map(|(cid, r)| Term::tuple([cid.clone(), r.clone()]))
                    .collect(),
            ),
            a(node),
        ]),
        HubMessage::SendHandoverState {
            receiver,
            child_id,
            opts,
        } => Term::tuple([
            Term::atom("process_hub"),
            Term::atom("send_handover_state"),
            p(receiver),
            child_id.clone(),
            kw(opts),
        ]),
        HubMessage::Handover {
            child_id,
            state,
            opts,
        } => Term::tuple([
            Term::atom("process_hub"),
            Term::atom("handover"),
            child_id.clone(),
            Term::tuple([state.clone(), kw(opts)]),
        ]),
        HubMessage::RetentionHandled { child_id } => Term::tuple([
            Term::atom("process_hub"),
            Term::atom("retention_handled"),
            child_id.clone(),
        ]),
        HubMessage::HandoverConfirmed { child_id } => Term::tuple([
            Term::atom("process_hub"),
            Term::atom("handover_confirmed"),
            child_id.clone(),
        ]),
        HubMessage::RetentionOver => {
            Term::tuple([Term::atom("process_hub"), Term::atom("retention_over")])
        }
    }
}

fn build_pg(pg: &PgScopeMessage) -> Term {
    match pg {
        PgScopeMessage::Discover { scope } => Term::tuple([Term::atom("discover"), p(scope)]),
        PgScopeMessage::Sync { scope, groups } => cast(Term::tuple([
            Term::atom("sync"),
            p(scope),
            Term::List(
                groups
                    .iter()
                    .map(|(g, pids)| {
                        Term::tuple([group_term(g), Term::List(pids.iter().map(p).collect())])
                    })
                    .collect(),
            ),
        ])),
        PgScopeMessage::Join { scope, group, pids } => Term::tuple([
            Term::atom("join"),
            p(scope),
            group_term(group),
            pids_term(pids),
        ]),
        PgScopeMessage::Leave {
            scope,
            pids,
            groups,
        } => Term::tuple([
            Term::atom("leave"),
            p(scope),
            pids_term(pids),
            Term::List(groups.iter().map(group_term).collect()),
        ]),
    }
}

fn build_child_start(c: &ChildStart) -> Term {
    let mut e = vec![
        (Term::atom("child_id"), c.child_id.clone()),
        (Term::atom("child_spec"), c.child_spec.clone()),
        (Term::atom("hub_id"), a(&c.hub_id)),
        (Term::atom("metadata"), c.metadata.clone()),
        (Term::atom("nodes"), atom_list(&c.nodes)),
    ];
    if let Some(m) = c.migration_add {
        e.push((Term::atom("migration_add"), bool_term(m)));
    }
    if let Some(r) = &c.reply_to {
        e.push((
            Term::atom("reply_to"),
            Term::List(r.iter().map(p).collect()),
        ));
    }
    e.extend(c.extra.iter().cloned());
    sorted_map(e)
}

fn build_post_start_data(d: &PostStartData) -> Term {
    let mut e = vec![
        (Term::atom("__struct__"), Term::atom(POST_START_DATA)),
        (Term::atom("cid"), d.cid.clone()),
        (
            Term::atom("pid"),
            d.pid.as_ref().map(p).unwrap_or_else(|| Term::atom("nil")),
        ),
        (Term::atom("child_spec"), d.child_spec.clone()),
        (Term::atom("result"), outcome(&d.result)),
        (
            Term::atom("for_node"),
            Term::tuple([a(&d.for_node.0), kw(&d.for_node.1)]),
        ),
        (
            Term::atom("child_nodes"),
            Term::List(
                d.child_nodes
                    .iter()
                    .map(|(n, pid)| Term::tuple([a(n), p(pid)]))
                    .collect(),
            ),
        ),
        (Term::atom("has_errors"), bool_term(d.has_errors)),
        (Term::atom("nodes"), atom_list(&d.nodes)),
        (Term::atom("metadata"), d.metadata.clone()),
    ];
    e.extend(d.extra.iter().cloned());
    sorted_map(e)
}

fn outcome(r: &StartOutcome) -> Term {
    match r {
        StartOutcome::Ok(pid) => Term::tuple([Term::atom("ok"), p(pid)]),
        StartOutcome::Error(reason) => Term::tuple([Term::atom("error"), reason.clone()]),
        StartOutcome::Other(t) => t.clone(),
    }
}

fn event(e: HubEvent, payload: Term) -> Term {
    Term::tuple([Term::atom(e.atom_name()), payload])
}

fn cast(inner: Term) -> Term {
    Term::tuple([Term::atom("$gen_cast"), inner])
}

fn group_term(g: &Group) -> Term {
    match g {
        Group::Event(e) => Term::atom(e.atom_name()),
        Group::Other(t) => t.clone(),
    }
}

fn pids_term(ps: &PidOrPids) -> Term {
    match ps {
        PidOrPids::One(pid) => p(pid),
        PidOrPids::Many(pids) => Term::List(pids.iter().map(p).collect()),
    }
}

fn kw(k: &Keyword) -> Term {
    Term::List(
        k.0.iter()
            .map(|(key, v)| Term::tuple([a(key), v.clone()]))
            .collect(),
    )
}

fn a(x: &Atom) -> Term {
    Term::Atom(x.clone())
}

fn p(x: &Pid) -> Term {
    Term::Pid(x.clone())
}

fn atom_list(xs: &[Atom]) -> Term {
    Term::List(xs.iter().map(a).collect())
}

fn bool_term(b: bool) -> Term {
    Term::atom(if b { "true" } else { "false" })
}

/// A map with its entries in the order OTP 25 keeps a small map's keys:
/// term order (numbers < atoms < refs < funs < ports < pids < tuples <
/// OTP 29's native records < maps < lists < binaries), atoms by their
/// text. Keys of the same other type keep their relative order (no 0.4.1
/// message has such keys).
fn sorted_map(mut entries: Vec<(Term, Term)>) -> Term {
    fn rank(t: &Term) -> u8 {
        match t {
            Term::Int(_) | Term::Big(_) | Term::Float(_) => 0,
            Term::Atom(_) => 1,
            Term::Ref(_) => 2,
            Term::Fun(_) => 3,
            Term::Port(_) => 4,
            Term::Pid(_) => 5,
            Term::Tuple(_) => 6,
            Term::Record(_) => 7,
            Term::Map(_) => 8,
            Term::List(_) | Term::ImproperList(..) => 9,
            Term::Binary(_) | Term::BitBinary { .. } => 10,
        }
    }
    entries.sort_by(|(x, _), (y, _)| match (x, y) {
        (Term::Atom(x), Term::Atom(y)) => x.as_str().cmp(y.as_str()),
        _ => rank(x).cmp(&rank(y)),
    });
    Term::Map(entries)
}
