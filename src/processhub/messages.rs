//! The messages hub members exchange, as typed values.
//!
//! One type per message shape observed between ProcessHub 0.4.1-beta nodes
//! (tests/traces/processhub-0.4.1/, docs/processhub-protocol.md). Parsing
//! and building live in the dialect modules; these types only hold data.
//!
//! Values a member does not interpret (child specs, metadata, child ids,
//! handed-over states, error reasons) stay [`Term`]s so that they travel
//! back unchanged. Keyword option lists stay [`Keyword`]s in the order
//! received, so that a parsed message builds back to the same term.

use crate::term::{Atom, Pid, Term};

/// An Elixir keyword list (`[key: value, ...]`), order kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keyword(pub Vec<(Atom, Term)>);

impl Keyword {
    /// The empty list `[]`.
    pub fn new() -> Keyword {
        Keyword(Vec::new())
    }
    /// The first value under `key`, as `Keyword.get/2` finds it.
    pub fn get(&self, key: &str) -> Option<&Term> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }
    /// Appends `key: value` (keeps any earlier entry for `key`).
    pub fn push(&mut self, key: &str, value: Term) {
        self.0.push((Atom::new(key), value));
    }
    /// The pids under `reply_to` (`[]` when absent or not a pid list).
    pub fn reply_to(&self) -> Vec<Pid> {
        match self.get("reply_to") {
            Some(Term::List(items)) => items.iter().filter_map(|t| t.as_pid().cloned()).collect(),
            _ => Vec::new(),
        }
    }
    /// `true` when `key` holds the atom `true`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some(t) if t.is_atom("true"))
    }
}

/// The pg groups a 0.4.1 coordinator joins in the hub's scope, one per
/// event; a message dispatched to a group is `{group_atom, payload}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HubEvent {
    ClusterJoin,
    ClusterLeave,
    DistributeChildren,
    SyncRemoteChildren,
    ChildrenRegistration,
    ChildrenUnregistration,
    MigrationAdd,
    ChildProcessPidUpdate,
}

impl HubEvent {
    /// Every group, in the order the coordinator joins them.
    pub const ALL: [HubEvent; 8] = [
        HubEvent::DistributeChildren,
        HubEvent::ClusterJoin,
        HubEvent::ClusterLeave,
        HubEvent::SyncRemoteChildren,
        HubEvent::ChildrenRegistration,
        HubEvent::ChildrenUnregistration,
        HubEvent::MigrationAdd,
        HubEvent::ChildProcessPidUpdate,
    ];

    /// The group's atom (also the message tag).
    pub fn atom_name(self) -> &'static str {
        match self {
            HubEvent::ClusterJoin => "cluster_join_event",
            HubEvent::ClusterLeave => "cluster_leave_event",
            HubEvent::DistributeChildren => "distribute_children_event",
            HubEvent::SyncRemoteChildren => "sync_remote_children_event",
            HubEvent::ChildrenRegistration => "children_registration_event",
            HubEvent::ChildrenUnregistration => "children_unregistration_event",
            HubEvent::MigrationAdd => "migration_add_event",
            HubEvent::ChildProcessPidUpdate => "child_process_pid_update_event",
        }
    }

    /// The event for a group atom, if it is one of the eight.
    pub fn from_atom_name(s: &str) -> Option<HubEvent> {
        HubEvent::ALL.into_iter().find(|e| e.atom_name() == s)
    }
}

/// A pg group name in the hub's scope: one of the eight events, or any
/// other term (kept, so that a scope peer's full sync builds back).
#[derive(Clone, Debug, PartialEq)]
pub enum Group {
    Event(HubEvent),
    Other(Term),
}

/// Messages between the hub's pg scope processes
/// (`:"hub.<id>.event_queue_pg"`), OTP 25 `pg` as ProcessHub uses it.
#[derive(Clone, Debug, PartialEq)]
pub enum PgScopeMessage {
    /// `{:discover, scope_pid}` to `{scope_name, node}` of every node
    /// that comes up (and at scope start).
    Discover { scope: Pid },
    /// `{:"$gen_cast", {:sync, scope_pid, [{group, [pid]}]}}`: the
    /// sender's local members of every group (answer to discover).
    Sync {
        scope: Pid,
        groups: Vec<(Group, Vec<Pid>)>,
    },
    /// `{:join, scope_pid, group, pid | [pid]}`: local processes joined.
    Join {
        scope: Pid,
        group: Group,
        pids: PidOrPids,
    },
    /// `{:leave, scope_pid, pid | [pid], [group]}`: left those groups.
    Leave {
        scope: Pid,
        pids: PidOrPids,
        groups: Vec<Group>,
    },
}

/// pg sends a single pid or a list depending on how the join was made.
#[derive(Clone, Debug, PartialEq)]
pub enum PidOrPids {
    One(Pid),
    Many(Vec<Pid>),
}

impl PidOrPids {
    pub fn to_vec(&self) -> Vec<Pid> {
        match self {
            PidOrPids::One(p) => vec![p.clone()],
            PidOrPids::Many(ps) => ps.clone(),
        }
    }
}

/// A child a coordinator is asked to start: the map in
/// `{:start_children, [map], opts}` and `{:migration_add_event, {[map], opts}}`.
///
/// `%{child_id:, child_spec:, hub_id:, metadata:, nodes: [node]}` plus
/// `migration_add: true` and `reply_to: [pid]` in migration requests.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildStart {
    pub child_id: Term,
    /// The user's child spec (`%{id:, start: {M, F, A}}` or richer).
    pub child_spec: Term,
    pub hub_id: Atom,
    pub metadata: Term,
    /// The nodes the ring gives the child (the receiver is among them).
    pub nodes: Vec<Atom>,
    /// `Some(true)` in migration requests (`migration_add_event`).
    pub migration_add: Option<bool>,
    /// The migration handler expecting `collect_start_results`.
    pub reply_to: Option<Vec<Pid>>,
    /// Keys this dialect does not know, kept for re-encoding.
    pub extra: Vec<(Term, Term)>,
}

/// A child a coordinator is asked to stop: `%{child_id:, nodes: [node]}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildStop {
    pub child_id: Term,
    pub nodes: Vec<Atom>,
    pub extra: Vec<(Term, Term)>,
}

/// `%ProcessHub.Handler.ChildrenAdd.PostStartData{}`: one started child,
/// as broadcast in `children_registration_event`.
#[derive(Clone, Debug, PartialEq)]
pub struct PostStartData {
    pub cid: Term,
    /// The child's pid (`nil` when the start failed).
    pub pid: Option<Pid>,
    pub child_spec: Term,
    /// `{:ok, pid}` or `{:error, reason}`.
    pub result: StartOutcome,
    /// `{node, [migration: bool]}`: the starting node and whether the
    /// start was a migration (observed `false` even for migrations).
    pub for_node: (Atom, Keyword),
    /// `[{node, pid}]`: where the child runs after this start.
    pub child_nodes: Vec<(Atom, Pid)>,
    pub has_errors: bool,
    pub nodes: Vec<Atom>,
    pub metadata: Term,
    pub extra: Vec<(Term, Term)>,
}

/// The result of starting one child.
#[derive(Clone, Debug, PartialEq)]
pub enum StartOutcome {
    /// `{:ok, pid}`.
    Ok(Pid),
    /// `{:error, reason}` (e.g. `{:already_started, pid}`).
    Error(Term),
    /// Anything else a start function returned (`:ignore`, ...).
    Other(Term),
}

/// One child in `sync_remote_children_event`: `{child_spec, pid, metadata}`.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncedChild {
    pub child_spec: Term,
    pub pid: Pid,
    pub metadata: Term,
}

/// One child in `children_unregistration_event`: `{cid, result, node}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Unregistered {
    pub child_id: Term,
    /// `:ok` or `{:error, reason}` from the local stop.
    pub result: Term,
    pub node: Atom,
}

/// `{:exec_cast, {M, F, A}}`: a named remote call the coordinator applies
/// as `apply(M, F, [hub | A])`.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecCast {
    /// `{ProcessHub.Strategy.Migration.HotSwap, :handle_storage_update,
    /// [[{cid, {state, opts}}]]}`: states of a gracefully leaving node's
    /// children, to hand to them once they start on the receiver.
    HotSwapStorageUpdate { states: Vec<StoredState> },
    /// Any other MFA (a foreign member must refuse unknown ones).
    Other {
        module: Atom,
        function: Atom,
        args: Vec<Term>,
    },
}

/// A handover state kept for a child that will start here:
/// `{cid, {state, opts}}` (opts is `[]` on graceful shutdown).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredState {
    pub child_id: Term,
    pub state: Term,
    pub opts: Keyword,
}

/// Every message of the hub protocol a member sends or receives.
#[derive(Clone, Debug, PartialEq)]
pub enum HubMessage {
    /// Scope-to-scope pg traffic.
    Pg(PgScopeMessage),
    /// `{:cluster_join_event, node}`: the sender's hub is up (sent at
    /// start and every `hubs_discover_interval`, 10 s).
    ClusterJoin { node: Atom },
    /// `{:cluster_leave_event, node}`: from a coordinator's terminate.
    ClusterLeave { node: Atom },
    /// `{:distribute_children_event, node}`: local only (a coordinator to
    /// itself through the scope) to redistribute after `node` joined.
    DistributeChildren { node: Atom },
    /// `{:sync_remote_children_event, {[{spec, pid, meta}], from_node}}`:
    /// the sender's local children, to a node that just joined.
    SyncRemoteChildren {
        children: Vec<SyncedChild>,
        from_node: Atom,
    },
    /// `{:children_registration_event, {[%PostStartData{}], node, opts}}`.
    ChildrenRegistration {
        children: Vec<PostStartData>,
        node: Atom,
        opts: Keyword,
    },
    /// `{:children_unregistration_event, {[{cid, result, node}], node, opts}}`.
    ChildrenUnregistration {
        children: Vec<Unregistered>,
        node: Atom,
        opts: Keyword,
    },
    /// `{:migration_add_event, {[child], opts}}`: start these children
    /// here (a migration); answer `reply_to` with `CollectStartResults`.
    MigrationAdd {
        children: Vec<ChildStart>,
        opts: Keyword,
    },
    /// `{:child_process_pid_update_event, {cid, {node, pid}}}`: the local
    /// supervisor restarted a child.
    ChildPidUpdate {
        child_id: Term,
        node: Atom,
        pid: Pid,
    },
    /// `GenServer.cast({hub_id, node}, {:start_children, [child], opts})`.
    StartChildren {
        children: Vec<ChildStart>,
        opts: Keyword,
    },
    /// `GenServer.cast({hub_id, node}, {:stop_children, [child], opts})`.
    StopChildren {
        children: Vec<ChildStop>,
        opts: Keyword,
    },
    /// `GenServer.cast({hub_id, node}, {:exec_cast, {M, F, A}})`.
    ExecCast(ExecCast),
    /// `{:collect_start_results, [{cid, result}], node}` to each `reply_to`.
    CollectStartResults {
        results: Vec<(Term, StartOutcome)>,
        node: Atom,
    },
    /// `{:collect_stop_results, [{cid, result}], node}` to each `reply_to`.
    CollectStopResults {
        results: Vec<(Term, Term)>,
        node: Atom,
    },
    /// `{:process_hub, :send_handover_state, receiver, cid, opts}`: to the
    /// old child; it must send its state to `receiver` (`Handover`).
    SendHandoverState {
        receiver: Pid,
        child_id: Term,
        opts: Keyword,
    },
    /// `{:process_hub, :handover, cid, {state, opts}}`: a child's state, to
    /// its new process (or to a leaving coordinator collecting states).
    Handover {
        child_id: Term,
        state: Term,
        opts: Keyword,
    },
    /// `{:process_hub, :retention_handled, cid}`: old child to the
    /// migration handler, after sending its state.
    RetentionHandled { child_id: Term },
    /// `{:process_hub, :handover_confirmed, cid}` (`confirm_handover: true`).
    HandoverConfirmed { child_id: Term },
    /// `{:process_hub, :retention_over}`: the handler's own timer.
    RetentionOver,
}

impl HubMessage {
    /// A short stable name for the message's shape (the `kind` column of
    /// the recorded traces).
    pub fn kind(&self) -> &'static str {
        match self {
            HubMessage::Pg(PgScopeMessage::Discover { .. }) => "pg_discover",
            HubMessage::Pg(PgScopeMessage::Sync { .. }) => "pg_sync",
            HubMessage::Pg(PgScopeMessage::Join { .. }) => "pg_join",
            HubMessage::Pg(PgScopeMessage::Leave { .. }) => "pg_leave",
            HubMessage::ClusterJoin { .. } => "cluster_join_event",
            HubMessage::ClusterLeave { .. } => "cluster_leave_event",
            HubMessage::DistributeChildren { .. } => "distribute_children_event",
            HubMessage::SyncRemoteChildren { .. } => "sync_remote_children_event",
            HubMessage::ChildrenRegistration { .. } => "children_registration_event",
            HubMessage::ChildrenUnregistration { .. } => "children_unregistration_event",
            HubMessage::MigrationAdd { .. } => "migration_add_event",
            HubMessage::ChildPidUpdate { .. } => "child_process_pid_update_event",
            HubMessage::StartChildren { .. } => "cast_start_children",
            HubMessage::StopChildren { .. } => "cast_stop_children",
            HubMessage::ExecCast(_) => "cast_exec_cast",
            HubMessage::CollectStartResults { .. } => "collect_start_results",
            HubMessage::CollectStopResults { .. } => "collect_stop_results",
            HubMessage::SendHandoverState { .. } => "process_hub_send_handover_state",
            HubMessage::Handover { .. } => "process_hub_handover",
            HubMessage::RetentionHandled { .. } => "process_hub_retention_handled",
            HubMessage::HandoverConfirmed { .. } => "process_hub_handover_confirmed",
            HubMessage::RetentionOver => "process_hub_retention_over",
        }
    }
}
