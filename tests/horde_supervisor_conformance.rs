//! erlnode's `Horde.DynamicSupervisor` member against a run of the real
//! Horde 0.10.0 (tests/traces/horde-0.10.0/supervisor.trace, recorded by
//! `record_supervisor.exs` there): members SupA and SupB on one node
//! (UniformDistribution, `process_redistribution: :active`), fourteen
//! children started through both, calls, a third member SupC joining,
//! SupA marked `:shutting_down`.
//!
//! Without a node:
//! - every `%Horde.DynamicSupervisor.Member{}` the members wrote reads
//!   back through [`Member`] and writes out as the same term;
//! - every child in every recorded state runs on the member erlnode's
//!   `UniformDistribution` chooses, and the children Horde relinquished
//!   on the join and the shutdown are exactly those whose member the ring
//!   changed;
//! - the members' recorded writes make the recorded states (what the
//!   replay expects before each call).
//!
//! With a node (in-process, no BEAM), an erlnode member plays SupB and
//! the test replays everything else from the trace: the recorder's calls
//! in order, each made once SupA's CRDT and the Rust SupB hold the state
//! every member held when it was made; and SupA and SupC as puppets that
//! do what the real ones did, in the recorded order, each dispatch once
//! what caused it happened here (the recorder's call, the proxied
//! operation SupB must send, the CRDT changes it read). Their CRDT writes
//! go through DeltaCrdt peers (erlnode's own [`Crdt`], registered as
//! `SupA.Crdt`, `SupC.Crdt`), so the Rust SupB syncs with them as with
//! Horde. Checked:
//! - each reply of the Rust SupB (`start_child` here or proxied to it,
//!   `which_children`, `count_children`, `terminate_child`: local,
//!   proxied, `:not_found`, `{:node_dead_or_shutting_down, _}`) is
//!   Horde's;
//! - each `{:proxy_operation, ...}` Horde's SupB sent SupA, the Rust one
//!   sends (and no other), and SupB's `ProcessesSupervisor` answers
//!   SupA's calls as Horde's did;
//! - at the end of each step the CRDT holds exactly Horde's entries
//!   (members, `%Member{}` structs, `{:process, id} => {member, spec,
//!   pid}`), so does the Rust SupB's own view (children, members'
//!   statuses), and the entries it wrote in the step are the ones Horde's
//!   SupB wrote: its starts, deletes and relinquishes (`{nil, spec}`),
//!   and the relinquished children it starts exactly when the ring gives
//!   them to SupB.
//!
//! Terms compare after canonicalising what differs between runs: pids
//! (a child's pid is named by its child, `c3`), references, Horde's
//! random child ids (named by their child too) and map order.
//! `which_children` lists compare as multisets (their order follows pid
//! order on the BEAM).

mod common;

use common::b64;
use erlnode::examples::account::Account;
use erlnode::horde::crdt::{Crdt, Effects};
use erlnode::horde::store::{Change, Store};
use erlnode::horde::supervisor::{Distribution, Member, Status};
use erlnode::horde::{HordeSupervisor, Redistribution};
use erlnode::term::serde::render::elixir;
use erlnode::term::{decode, encode};
use erlnode::{Dest, Mailbox, Node, Pid, Reference, Term};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The same scenario recorded on OTP 25 / Elixir 1.14 and on OTP 27 /
/// Elixir 1.18.
const TRACES: [(&str, &str); 2] =
    [("otp25", include_str!("traces/horde-0.10.0/supervisor.trace")), ("otp27", include_str!("traces/horde-0.10.0/otp27/supervisor.trace"))];
/// The recording node: member names are hashed into the ring.
const NODE: &str = "rec@127.0.0.1";
/// How long a step may take before the test says what it waits for.
const STEP_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- trace

/// A strict monotonic timestamp (nanoseconds, unique integer).
type Ts = (i64, i64);

#[derive(Clone, Debug)]
enum Act {
    Call { k: usize, target: String, req: Term },
    Reply { k: usize, reply: Term },
    Wait { member: String, status: String },
}

#[derive(Clone, Debug)]
enum What {
    Recv(Term),
    Send(Term, Term),
    /// An Impl began handling a message (and the caller's from, or nil).
    Disp(Term, Term),
}

#[derive(Clone, Debug)]
struct Ev {
    ts: Ts,
    who: String,
    what: What,
}

#[derive(Default)]
struct Step {
    name: String,
    inits: Vec<(String, Term)>,
    acts: Vec<(Ts, Act)>,
    evs: Vec<Ev>,
    state: Option<Term>,
}

struct Trace {
    procs: Vec<(String, Pid)>,
    steps: Vec<Step>,
}

/// A write a member's Impl sent its CRDT: `{:add, k, v}` / `{:remove, k}`.
struct Write {
    ts: Ts,
    step: usize,
    who: String,
    op: Term,
}

fn term(s: &str) -> Term {
    decode(&b64(s)).unwrap_or_else(|e| panic!("undecodable term {}...: {e}", &s[..s.len().min(30)]))
}

fn ts(s: &str) -> Ts {
    let (a, b) = s.split_once('.').expect("timestamp");
    (a.parse().expect("timestamp"), b.parse().expect("timestamp"))
}

fn load(text: &str) -> Trace {
    fn last(t: &mut Trace) -> &mut Step {
        t.steps.last_mut().expect("a line before the first step")
    }
    let mut t = Trace { procs: vec![], steps: vec![] };
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["otp", ..] => {}
            ["proc", label, pid] => match term(pid) {
                Term::Pid(p) => t.procs.push((label.to_string(), p)),
                other => panic!("proc {label}: {other:?}"),
            },
            ["step", name] => t.steps.push(Step { name: name.to_string(), ..Step::default() }),
            ["init", label, map] => last(&mut t).inits.push((label.to_string(), term(map))),
            ["state", map] => last(&mut t).state = Some(term(map)),
            ["act", at, "call", k, target, req] => last(&mut t).acts.push((ts(at), Act::Call { k: k.parse().unwrap(), target: target.into(), req: term(req) })),
            ["act", at, "reply", k, reply] => last(&mut t).acts.push((ts(at), Act::Reply { k: k.parse().unwrap(), reply: term(reply) })),
            ["act", at, "wait", "B", member, status] => last(&mut t).acts.push((ts(at), Act::Wait { member: member.into(), status: status.into() })),
            ["ev", at, who, kind, ref rest @ ..] => {
                let what = match (kind, rest) {
                    ("recv", [m]) => What::Recv(term(m)),
                    ("send", [to, m]) => What::Send(term(to), term(m)),
                    ("disp", [m, from]) => What::Disp(term(m), term(from)),
                    _ => panic!("event {line}"),
                };
                last(&mut t).evs.push(Ev { ts: ts(at), who: who.to_string(), what })
            }
            _ => panic!("line {}", &line[..line.len().min(60)]),
        }
    }
    t
}

impl Trace {
    fn pid(&self, label: &str) -> Option<&Pid> {
        self.procs.iter().find(|(l, _)| l == label).map(|(_, p)| p)
    }

    fn events(&self) -> impl Iterator<Item = &Ev> {
        self.steps.iter().flat_map(|s| &s.evs)
    }
}

fn member(label: &str) -> Term {
    Term::tuple([Term::atom(&format!("Elixir.Sup{label}")), Term::atom(NODE)])
}

fn field<'a>(t: &'a Term, k: &str) -> Option<&'a Term> {
    match t {
        Term::Map(m) => m.iter().find(|(key, _)| key.is_atom(k)).map(|(_, v)| v),
        _ => None,
    }
}

/// The child a spec starts: the `name` of its start argument (`c3`).
fn child_name(spec: &Term) -> Option<String> {
    let [_, _, Term::List(args)] = field(spec, "start")?.as_tuple()? else { return None };
    match field(args.first()?, "name")? {
        Term::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// The elements after the tag of a tuple tagged `tag`.
fn tagged<'a>(t: &'a Term, tag: &str) -> Option<&'a [Term]> {
    t.as_tuple().filter(|v| v.first().is_some_and(|x| x.is_atom(tag))).map(|v| &v[1..])
}

fn is_member_key(k: &Term) -> bool {
    tagged(k, "member").is_some()
}

/// A `$gen_call`'s from and request.
fn gen_call(msg: &Term) -> Option<(&Term, &Term)> {
    match tagged(msg, "$gen_call")? {
        [from, req] => Some((from, req)),
        _ => None,
    }
}

fn boolean(b: bool) -> Term {
    Term::atom(if b { "true" } else { "false" })
}

fn show(t: &Term) -> String {
    elixir(t, 400)
}

/// A `{:process, id} => {member, spec, pid}` (running) or `{nil, spec}`
/// (relinquished) entry.
struct Entry<'a> {
    id: &'a Term,
    child: String,
    running: Option<(&'a Term, &'a Pid)>,
}

fn entry<'a>(k: &'a Term, v: &'a Term) -> Option<Entry<'a>> {
    let [id] = tagged(k, "process")? else { return None };
    let (spec, running) = match v.as_tuple()? {
        [m, spec, Term::Pid(p)] => (spec, Some((m, p))),
        [_, spec] => (spec, None),
        _ => return None,
    };
    Some(Entry { id, child: child_name(spec)?, running })
}

/// Every `{:process, id}` key and its value in a term (a diff, a write,
/// a state map, a reply).
fn entries_in(t: &Term) -> Vec<(Term, Term)> {
    fn walk(t: &Term, out: &mut Vec<(Term, Term)>) {
        match t {
            Term::Tuple(v) | Term::List(v) => {
                out.extend(v.windows(2).filter(|w| tagged(&w[0], "process").is_some()).map(|w| (w[0].clone(), w[1].clone())));
                v.iter().for_each(|x| walk(x, out));
            }
            Term::Map(m) => {
                for (k, v) in m {
                    if tagged(k, "process").is_some() {
                        out.push((k.clone(), v.clone()));
                    }
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = vec![];
    walk(t, &mut out);
    out
}

fn state_entries(state: &Term) -> Vec<(&Term, &Term)> {
    match state {
        Term::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        other => panic!("state is not a map: {}", show(other)),
    }
}

/// The DeltaCrdt writes (`{:operation, ...}`, `{:bulk_operation, ...}`
/// calls) as `{:add, k, v}` / `{:remove, k}`.
fn crdt_ops(call: &Term) -> Vec<Term> {
    let op = |o: &Term| -> Option<Term> {
        match o.as_tuple()? {
            [t, Term::List(a)] if t.is_atom("add") && a.len() == 2 => Some(Term::tuple([Term::atom("add"), a[0].clone(), a[1].clone()])),
            [t, Term::List(a)] if t.is_atom("remove") && a.len() == 1 => Some(Term::tuple([Term::atom("remove"), a[0].clone()])),
            _ => None,
        }
    };
    match call.as_tuple() {
        Some([t, o]) if t.is_atom("operation") => op(o).into_iter().collect(),
        Some([t, Term::List(os)]) if t.is_atom("bulk_operation") => os.iter().filter_map(op).collect(),
        _ => vec![],
    }
}

fn change_term(c: &Change) -> Term {
    match c {
        Change::Add(k, v) => Term::tuple([Term::atom("add"), k.clone(), v.clone()]),
        Change::Remove(k) => Term::tuple([Term::atom("remove"), k.clone()]),
    }
}

/// Every write a member's Impl sent its CRDT, in order.
fn recorded_writes(t: &Trace) -> Vec<Write> {
    let mut out = vec![];
    for (si, s) in t.steps.iter().enumerate() {
        for e in s.evs.iter().filter(|e| ["A", "B", "C"].contains(&e.who.as_str())) {
            let What::Send(to, msg) = &e.what else { continue };
            let to_crdt = t.pid(&format!("{}.Crdt", e.who)).is_some_and(|p| *to == Term::Pid(p.clone())) || *to == Term::atom(&format!("Elixir.Sup{}.Crdt", e.who));
            if let (true, Some((_, req))) = (to_crdt, gen_call(msg)) {
                out.extend(crdt_ops(req).into_iter().map(|op| Write { ts: e.ts, step: si, who: e.who.clone(), op }));
            }
        }
    }
    out.sort_by_key(|w| w.ts);
    out
}

/// The CRDT content once every write recorded in `step` before `upto`
/// (all of it: `None`) and in the steps before reached every member: the
/// setup state, each step's `init` entries (those of `step` only at its
/// end: they are a joining member's, which the others learn when it
/// joins), then the writes in order (DeltaCrdt's last writer wins, by the
/// monotonic clock the trace is stamped with).
fn state_at(t: &Trace, writes: &[Write], step: usize, upto: Option<Ts>) -> Term {
    let mut m: Vec<(Term, Term)> = vec![];
    let put = |m: &mut Vec<(Term, Term)>, k: &Term, v: Option<&Term>| {
        m.retain(|(x, _)| x != k);
        m.extend(v.map(|v| (k.clone(), v.clone())));
    };
    for (k, v) in state_entries(t.steps[0].state.as_ref().expect("the setup state")) {
        put(&mut m, k, Some(v));
    }
    for (si, s) in t.steps.iter().enumerate().take(step + 1) {
        let inits = if si < step || upto.is_none() { &s.inits[..] } else { &[] };
        for (k, v) in inits.iter().flat_map(|(_, init)| state_entries(init)) {
            put(&mut m, k, Some(v));
        }
        for w in writes.iter().filter(|w| w.step == si && (si < step || upto.is_none_or(|u| w.ts < u))) {
            match w.op.as_tuple() {
                Some([_, k, v]) => put(&mut m, k, Some(v)),
                Some([_, k]) => put(&mut m, k, None),
                _ => unreachable!("a write"),
            }
        }
    }
    Term::Map(m)
}

/// The members (`{:member, m}`) with their `%Member{}` (uninitialized
/// when none was written), as Horde's `members(state)`.
fn members_of(state: &Term) -> Vec<Member> {
    let entries = state_entries(state);
    let info = |m: &Term| {
        entries
            .iter()
            .find(|(k, _)| tagged(k, "member_node_info") == Some(std::slice::from_ref(m)))
            .map(|(_, v)| Member::from_term(v).unwrap_or_else(|| panic!("not a member struct: {}", show(v))))
            .unwrap_or_else(|| Member::new(m.clone(), Status::Uninitialized))
    };
    entries.iter().filter_map(|(k, _)| tagged(k, "member").map(|x| info(&x[0]))).collect()
}

/// `(id, member, spec)` of each running child in a state.
fn placements(state: &Term) -> Vec<(Term, Term, Term)> {
    state_entries(state)
        .into_iter()
        .filter_map(|(k, v)| match (tagged(k, "process"), v.as_tuple()) {
            (Some([id]), Some([m, spec, Term::Pid(_)])) => Some((id.clone(), m.clone(), spec.clone())),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------- canonical terms

/// Names what differs between runs: pids (a process by its label, a
/// child by its name), references, child ids (by child name).
#[derive(Default)]
struct Canon {
    pids: HashMap<Pid, String>,
    ids: HashMap<String, String>,
}

fn id_key(t: &Term) -> Option<String> {
    match t {
        Term::Int(i) => Some(i.to_string()),
        Term::Big(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Canon {
    /// Learns the ids and pids of the `{:process, id}` entries in `t`.
    fn scan(&mut self, t: &Term) {
        for (k, v) in entries_in(t) {
            let Some(e) = entry(&k, &v) else { continue };
            self.ids.extend(id_key(e.id).map(|id| (id, e.child.clone())));
            if let Some((_, p)) = e.running {
                self.pids.insert(p.clone(), e.child);
            }
        }
    }

    fn canon(&self, t: &Term) -> Term {
        match t {
            Term::Pid(p) => Term::atom(&format!("pid:{}", self.pids.get(p).map(String::as_str).unwrap_or("?"))),
            Term::Ref(_) => Term::atom("ref"),
            Term::ImproperList(h, tail) if h.len() == 1 && h[0].is_atom("alias") => self.canon(tail),
            Term::Int(_) | Term::Big(_) => match id_key(t).and_then(|k| self.ids.get(&k)) {
                Some(n) => Term::atom(&format!("id:{n}")),
                None => t.clone(),
            },
            Term::Map(m) => Term::Map(self.canon_entries(m.iter().map(|(k, v)| (k, v)))),
            Term::Tuple(v) => Term::Tuple(v.iter().map(|x| self.canon(x)).collect()),
            Term::List(v) => Term::List(v.iter().map(|x| self.canon(x)).collect()),
            Term::ImproperList(h, tail) => Term::ImproperList(h.iter().map(|x| self.canon(x)).collect(), Box::new(self.canon(tail))),
            other => other.clone(),
        }
    }

    fn key(&self, t: &Term) -> Vec<u8> {
        encode(&self.canon(t))
    }

    /// A reply to `req`: `which_children` lists compare as multisets.
    fn reply(&self, req: &Term, t: &Term) -> Term {
        match self.canon(t) {
            Term::List(mut v) if req.is_atom("which_children") => {
                v.sort_by_key(encode);
                Term::List(v)
            }
            other => other,
        }
    }

    /// A map's entries, canonical and sorted.
    fn canon_entries<'a>(&self, entries: impl Iterator<Item = (&'a Term, &'a Term)>) -> Vec<(Term, Term)> {
        let mut v: Vec<(Term, Term)> = entries.map(|(k, v)| (self.canon(k), self.canon(v))).collect();
        v.sort_by_key(|(k, _)| encode(k));
        v
    }
}

// ------------------------------------------------- without a node

#[test]
fn member_structs_are_hordes() {
    for (name, text) in TRACES {
        member_structs_in(name, &load(text));
    }
}

fn member_structs_in(name: &str, t: &Trace) {
    let canon = Canon::default();
    let mut statuses = HashSet::new();
    for s in &t.steps {
        for (k, v) in s.state.iter().chain(s.inits.iter().map(|(_, m)| m)).flat_map(state_entries) {
            if is_member_key(k) {
                assert_eq!(v, &Term::Int(1), "{name} {}: {}", s.name, show(k));
            }
            let Some([m_name]) = tagged(k, "member_node_info") else { continue };
            let m = Member::from_term(v).unwrap_or_else(|| panic!("{name} {}: not read as a member: {}", s.name, show(v)));
            assert_eq!(m_name, &m.name, "{name} {}: key and name", s.name);
            assert_eq!(canon.canon(&m.to_term()), canon.canon(v), "{name} {}: {m:?} written back differs", s.name);
            statuses.insert(m.status.as_str());
        }
    }
    let mut statuses: Vec<&str> = statuses.into_iter().collect();
    statuses.sort();
    assert_eq!(statuses, ["alive", "shutting_down"], "{name}: statuses recorded");
}

#[test]
fn children_run_where_the_ring_puts_them() {
    for (name, text) in TRACES {
        let t = load(text);
        let mut checked = 0;
        for s in &t.steps {
            let Some(state) = &s.state else { continue };
            let members = members_of(state);
            for (id, m, spec) in placements(state) {
                let chosen = Distribution::Uniform.choose(&spec, &members).unwrap_or_else(|e| panic!("{name} {}: {e:?}", s.name));
                assert_eq!(chosen, m, "{name} {}: child {} ({}) runs on {}, erlnode's ring says {}", s.name, show(&id), show(&spec), show(&m), show(&chosen));
                checked += 1;
            }
        }
        assert!(checked >= 50, "{name}: {checked} placements checked");
    }
}

/// On the join and the shutdown, Horde relinquishes (`{nil, spec}`)
/// exactly the children whose member the ring changed.
#[test]
fn relinquished_children_are_those_the_ring_moves() {
    for (name, text) in TRACES {
        relinquished_in(name, &load(text));
    }
}

fn relinquished_in(name: &str, t: &Trace) {
    let writes = recorded_writes(t);
    let canon = Canon::default();
    let mut moved = 0;
    for (si, w) in t.steps.windows(2).enumerate() {
        let (before, step) = (&w[0], &w[1]);
        if !["join", "shutdown"].contains(&step.name.as_str()) {
            continue;
        }
        let after = members_of(step.state.as_ref().unwrap());
        let mut expected: Vec<Term> = placements(before.state.as_ref().unwrap())
            .into_iter()
            .filter(|(_, m, spec)| Distribution::Uniform.choose(spec, &after).as_ref() != Ok(m))
            .map(|(id, _, _)| canon.canon(&id))
            .collect();
        let mut relinquished: Vec<Term> = writes
            .iter()
            .filter(|w| w.step == si + 1)
            .filter_map(|w| match w.op.as_tuple() {
                Some([_, k, v]) if tagged(v, "nil").is_some() => Some(canon.canon(&tagged(k, "process").expect("a process key")[0])),
                _ => None,
            })
            .collect();
        expected.sort_by_key(encode);
        relinquished.sort_by_key(encode);
        assert!(!expected.is_empty(), "{name} {}: nothing moves", step.name);
        assert_eq!(relinquished, expected, "{name} {}: relinquished children", step.name);
        moved += expected.len();
    }
    assert!(moved >= 5, "{name}: {moved} moves checked");
}

/// The writes each member's Impl sent its CRDT make the state recorded
/// at the end of each step.
#[test]
fn the_recorded_writes_make_the_recorded_states() {
    for (name, text) in TRACES {
        let t = load(text);
        let writes = recorded_writes(&t);
        let canon = Canon::default();
        for (si, s) in t.steps.iter().enumerate().skip(1) {
            let want = canon.canon(s.state.as_ref().unwrap());
            assert_eq!(canon.canon(&state_at(&t, &writes, si, None)), want, "{name} {}", s.name);
        }
        assert!(writes.iter().filter(|w| w.who == "B").count() >= 15, "{name}: SupB's writes");
    }
}

// ---------------------------------------------------- the replay

/// Why a puppet's dispatch may run.
#[derive(Debug)]
enum Trigger {
    Now,
    /// The recorder's call `k` was made.
    Call(usize),
    /// SupB sent this message (a proxied operation).
    FromB(Term),
    /// The CRDT changes the dispatch read (`{:crdt_update, diffs}`).
    Seen(Vec<Term>),
}

/// What a puppet's dispatch did.
#[derive(Debug)]
enum Effect {
    Write(Term),
    Neighbours(Vec<Term>),
    ToB(Term),
    /// A call to SupB's ProcessesSupervisor, and Horde's reply.
    CallBp(Term, Term),
    /// The reply to the recorder's call `k`.
    Reply(usize, Term),
}

#[derive(Debug)]
struct Dispatch {
    ts: Ts,
    msg: Term,
    trigger: Trigger,
    effects: Vec<Effect>,
}

struct Puppet {
    label: String,
    sup: Mailbox,
    crdt_mb: Mailbox,
    crdt: Crdt,
    active: bool,
    /// Every change its CRDT made (`{:add, k, v}` / `{:remove, k}`).
    seen: Vec<Term>,
    /// The changes that came from a peer.
    incoming: Vec<Term>,
    /// What reached its `Sup` and no dispatch took yet.
    arrived: Vec<Term>,
    /// Its call to SupB's ProcessesSupervisor under way: tag, request,
    /// Horde's reply.
    calling: Option<(Reference, Term, Term)>,
}

/// Where an item of the timeline stands.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Progress {
    Todo,
    Effect(usize),
    Done,
}

enum Item {
    /// One of the recorder's actions; a call with the state every member
    /// held when it was made.
    Act(Act, Option<Term>),
    /// A dispatch of puppet `0` (SupA) or `1` (SupC).
    Disp(usize, Dispatch),
}

struct Replay {
    node: Node,
    sup: HordeSupervisor,
    canon: Canon,
    puppets: Vec<Puppet>,
    driver: Mailbox,
    /// The recorder's pid and the tags of its calls (encoded) -> k.
    r_pid: Pid,
    r_tags: HashMap<Vec<u8>, usize>,
    /// Horde's pids of processes -> label, and the same processes here.
    horde_procs: HashMap<Pid, String>,
    here_procs: HashMap<String, Pid>,
    /// Horde's pids of children that ran on SupB.
    horde_b_pids: HashSet<Pid>,
    /// A child's pid and id here, where the Rust SupB made them.
    here_pid: HashMap<String, Pid>,
    here_id: HashMap<String, Term>,
    /// The driver's call `k`: its tag and request.
    calls: HashMap<usize, (Reference, Term)>,
    replies: HashMap<Vec<u8>, Term>,
    /// What the puppets wrote (here), to tell SupB's writes apart.
    written: Vec<Term>,
    /// Per CRDT key (canonical), its values in the order Horde's members
    /// wrote them: a change a puppet never saw because a later value of
    /// the key reached it first counts as seen.
    history: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

fn call_msg(from: Term, req: Term) -> Term {
    Term::tuple([Term::atom("$gen_call"), from, req])
}

fn send_fx(mb: &Mailbox, fx: Effects) -> Vec<Change> {
    for (to, msg) in fx.sends {
        match (&to, to.as_tuple()) {
            (Term::Pid(p), _) => mb.send(p, msg),
            (_, Some([Term::Atom(name), Term::Atom(node)])) => mb.send_to(&Dest::local(name.as_str(), node.as_str()), msg),
            _ => panic!("crdt send to {}", show(&to)),
        }
    }
    fx.changes
}

impl Replay {
    /// Horde's term as it is here: the recorder's call tags, Horde's pids
    /// of processes and of SupB's children, and SupB's child ids replaced
    /// by their counterparts here.
    fn xlate(&self, t: &Term) -> Term {
        match t {
            Term::Tuple(v) if v.len() == 2 && v[0] == Term::Pid(self.r_pid.clone()) && self.r_tags.contains_key(&encode(&v[1])) => self.caller_of(self.r_tags[&encode(&v[1])]),
            Term::Pid(p) => {
                let here = match self.horde_procs.get(p) {
                    Some(l) => self.here_procs.get(l),
                    None => self.canon.pids.get(p).filter(|_| self.horde_b_pids.contains(p)).and_then(|n| self.here_pid.get(n)),
                };
                Term::Pid(here.unwrap_or(p).clone())
            }
            Term::Int(_) | Term::Big(_) => id_key(t).and_then(|k| self.canon.ids.get(&k)).and_then(|n| self.here_id.get(n)).unwrap_or(t).clone(),
            Term::Map(m) => Term::Map(m.iter().map(|(k, v)| (self.xlate(k), self.xlate(v))).collect()),
            Term::Tuple(v) => Term::Tuple(v.iter().map(|x| self.xlate(x)).collect()),
            Term::List(v) => Term::List(v.iter().map(|x| self.xlate(x)).collect()),
            other => other.clone(),
        }
    }

    fn caller_of(&self, k: usize) -> Term {
        let (r, _) = self.calls.get(&k).unwrap_or_else(|| panic!("call {k} not made yet"));
        Term::tuple([Term::Pid(self.driver.pid().clone()), Term::Ref(r.clone())])
    }

    /// Learns the pids and ids of what the Rust SupB runs from a term
    /// made here.
    fn learn_here(&mut self, t: &Term) {
        self.canon.scan(t);
        for (k, v) in entries_in(t) {
            let Some(e) = entry(&k, &v) else { continue };
            self.here_id.insert(e.child.clone(), e.id.clone());
            if let Some((_, p)) = e.running.filter(|(m, _)| **m == member("B")) {
                self.here_pid.insert(e.child, p.clone());
            }
        }
    }

    /// The first change puppet `p` has not seen (nor a later value of
    /// its key, in Horde's order).
    fn unseen(&self, p: usize, changes: &[Term]) -> Option<Term> {
        let seen: HashSet<Vec<u8>> = self.puppets[p].seen.iter().map(|c| self.canon.key(c)).collect();
        changes
            .iter()
            .find(|c| {
                let me = self.canon.key(c);
                let key = self.canon.key(&c.as_tuple().expect("a change")[1]);
                let later = self.history.get(&key).and_then(|h| h.iter().position(|x| *x == me).map(|i| &h[i + 1..]));
                !seen.contains(&me) && !later.is_some_and(|l| l.iter().any(|x| seen.contains(x)))
            })
            .map(|c| self.canon.canon(c))
    }

    /// Takes in what reached the driver and the puppets.
    fn drain(&mut self) {
        for m in self.driver.drain() {
            match m.as_tuple() {
                Some([tag @ Term::Ref(_), reply]) => {
                    self.replies.insert(encode(tag), reply.clone());
                }
                _ => panic!("the recorder got {}", show(&m)),
            }
        }
        for i in 0..self.puppets.len() {
            for m in self.puppets[i].crdt_mb.drain() {
                let p = &mut self.puppets[i];
                let fx = p.crdt.handle(&m).unwrap_or_else(|e| panic!("{}.Crdt: {e}: {}", p.label, show(&m)));
                let changes: Vec<Term> = send_fx(&p.crdt_mb, fx).iter().map(change_term).collect();
                p.seen.extend(changes.iter().cloned());
                p.incoming.extend(changes.iter().cloned());
                changes.iter().for_each(|c| self.learn_here(c));
            }
            for m in self.puppets[i].sup.drain() {
                let answer = match (&self.puppets[i].calling, m.as_tuple()) {
                    (Some((r, _, _)), Some([Term::Ref(tag), reply])) if tag == r => Some(reply.clone()),
                    _ => None,
                };
                let Some(reply) = answer else {
                    self.puppets[i].arrived.push(m);
                    continue;
                };
                let (_, req, expected) = self.puppets[i].calling.take().unwrap();
                self.learn_here(&reply);
                let label = &self.puppets[i].label;
                assert_eq!(
                    self.canon.reply(&req, &reply),
                    self.canon.reply(&req, &expected),
                    "SupB.ProcessesSupervisor's reply to {label}'s {}: got {}, Horde's {}",
                    show(&req),
                    show(&reply),
                    show(&expected)
                );
            }
        }
    }

    /// The puppets' DeltaCrdt tick.
    fn tick(&mut self) {
        for p in self.puppets.iter_mut().filter(|p| p.active) {
            let fx = p.crdt.sync();
            assert!(send_fx(&p.crdt_mb, fx).is_empty());
        }
    }

    fn write(&mut self, p: usize, op: &Term) {
        let op = self.xlate(op);
        let pp = &mut self.puppets[p];
        let changes = match op.as_tuple() {
            Some([t, k, v]) if t.is_atom("add") => pp.crdt.put(k.clone(), v.clone()),
            Some([t, k]) if t.is_atom("remove") => pp.crdt.delete(k),
            _ => panic!("write {}", show(&op)),
        };
        pp.seen.extend(changes.iter().map(change_term));
        self.written.push(op);
    }

    /// Runs what it can of a puppet's dispatch; `false` while it waits.
    fn run_dispatch(&mut self, p: usize, d: &Dispatch, at: &mut Progress) -> bool {
        if *at == Progress::Todo {
            let ready = match &d.trigger {
                Trigger::Now => true,
                Trigger::Call(k) => self.calls.contains_key(k),
                Trigger::FromB(msg) => {
                    let want = self.canon.canon(msg);
                    let pos = self.puppets[p].arrived.iter().position(|m| self.canon.canon(m) == want);
                    pos.map(|i| self.puppets[p].arrived.remove(i)).is_some()
                }
                Trigger::Seen(changes) => self.unseen(p, changes).is_none(),
            };
            if !ready {
                return false;
            }
            *at = Progress::Effect(0);
        }
        while let Progress::Effect(i) = *at {
            if self.puppets[p].calling.is_some() {
                return false;
            }
            let Some(e) = d.effects.get(i) else {
                *at = Progress::Done;
                break;
            };
            match e {
                Effect::Write(op) => self.write(p, op),
                Effect::Neighbours(n) => {
                    let n: Vec<Term> = n.iter().map(|x| self.xlate(x)).collect();
                    let pp = &mut self.puppets[p];
                    let fx = pp.crdt.set_neighbours(n);
                    assert!(send_fx(&pp.crdt_mb, fx).is_empty());
                }
                Effect::ToB(msg) => {
                    self.node.send_to(Dest::local("Elixir.SupB", NODE), self.xlate(msg));
                }
                Effect::CallBp(req, expected) => {
                    let r = self.node.make_ref();
                    let pp = &mut self.puppets[p];
                    let from = Term::tuple([Term::Pid(pp.sup.pid().clone()), Term::Ref(r.clone())]);
                    pp.sup.send_to(&Dest::local("Elixir.SupB.ProcessesSupervisor", NODE), call_msg(from, req.clone()));
                    pp.calling = Some((r, req.clone(), expected.clone()));
                }
                Effect::Reply(k, payload) => self.node.reply(&self.caller_of(*k), self.xlate(payload)),
            }
            *at = Progress::Effect(i + 1);
        }
        true
    }

    /// Runs what it can of one of the recorder's actions; `false` while
    /// it waits. A call waits until the members hold the state they held
    /// when it was made (`before`).
    async fn run_act(&mut self, a: &Act, before: Option<&Term>, at: &mut Progress) -> bool {
        match a {
            Act::Call { k, target, req } => {
                if let Some(state) = before {
                    if self.converged(state).await.is_err() {
                        return false;
                    }
                }
                self.calls.insert(*k, (self.node.make_ref(), req.clone()));
                if target == "B" {
                    self.driver.send_to(&Dest::local("Elixir.SupB", NODE), call_msg(self.caller_of(*k), self.xlate(req)));
                }
            }
            Act::Reply { k, reply } => {
                let (r, req) = self.calls[k].clone();
                let Some(got) = self.replies.remove(&encode(&Term::Ref(r))) else { return false };
                if let (Some([spec]), Some([Term::Pid(p)])) = (tagged(&req, "start_child"), tagged(&got, "ok")) {
                    let n = child_name(spec).expect("a named child");
                    self.canon.pids.insert(p.clone(), n.clone());
                    // Started by the Rust SupB (the puppets reply with
                    // Horde's pids).
                    if p.creation == self.node.creation() {
                        self.here_pid.insert(n, p.clone());
                    }
                }
                assert_eq!(self.canon.reply(&req, &got), self.canon.reply(&req, reply), "call {k} {}: got {}, Horde replied {}", show(&req), show(&got), show(reply));
            }
            Act::Wait { member: m, status } => {
                let members = self.sup.members().await.expect("SupB runs");
                if !members.iter().any(|x| x.name == member(m) && x.status.as_str() == status) {
                    return false;
                }
            }
        }
        *at = Progress::Done;
        true
    }

    /// SupA's CRDT holds `state` and so does the Rust SupB's view.
    async fn converged(&self, state: &Term) -> Result<(), String> {
        self.crdt_holds(&self.puppets[0], state)?;
        self.b_view(state).await
    }

    fn crdt_holds(&self, p: &Puppet, state: &Term) -> Result<(), String> {
        let want = self.canon.canon_entries(state_entries(state).into_iter());
        let got = self.canon.canon_entries(p.crdt.store.read_all());
        if got == want {
            return Ok(());
        }
        let line = |(k, v): &(Term, Term)| format!("\n  {} => {}", show(k), show(v));
        let extra: String = got.iter().filter(|e| !want.contains(e)).map(line).collect();
        let missing: String = want.iter().filter(|e| !got.contains(e)).map(line).collect();
        Err(format!("{}'s CRDT differs from Horde's; extra:{extra}\nmissing:{missing}", p.label))
    }

    /// The Rust SupB's own view is Horde's `state`: its children (id,
    /// pid, whether local) and its members' statuses.
    async fn b_view(&self, state: &Term) -> Result<(), String> {
        let c = &self.canon;
        let sorted = |mut v: Vec<Term>| {
            v.sort_by_key(encode);
            Term::List(v)
        };
        let children = self.sup.children().await.map_err(|e| e.to_string())?;
        let got = sorted(children.iter().map(|x| Term::tuple([c.canon(&x.id), c.canon(&Term::Pid(x.pid.clone())), boolean(x.local)])).collect());
        let want = sorted(
            placements(state)
                .iter()
                .map(|(id, m, spec)| Term::tuple([c.canon(id), Term::atom(&format!("pid:{}", child_name(spec).unwrap())), boolean(*m == member("B"))]))
                .collect(),
        );
        if got != want {
            return Err(format!("SupB's children: {}, Horde's {}", show(&got), show(&want)));
        }
        let status = |ms: Vec<Member>| sorted(ms.into_iter().map(|m| Term::tuple([m.name, Term::atom(m.status.as_str())])).collect());
        let (got, want) = (status(self.sup.members().await.map_err(|e| e.to_string())?), status(members_of(state)));
        if got != want {
            return Err(format!("SupB's members: {}, Horde's {}", show(&got), show(&want)));
        }
        Ok(())
    }

    /// The end of a step: the puppets' CRDTs hold Horde's state and the
    /// Rust SupB wrote what Horde's SupB wrote. `marks`: how many changes
    /// each puppet had seen and taken from a peer when the step began.
    fn step_done(&self, step: &Step, b_writes: Option<&[Term]>, marks: &[(usize, usize)]) -> Result<(), String> {
        for p in self.puppets.iter().filter(|p| p.active) {
            self.crdt_holds(p, step.state.as_ref().expect("a state"))?;
        }
        let Some(b_writes) = b_writes else { return Ok(()) };
        // SupB's writes: the changes that reached the puppets from a
        // peer, less the puppets' own writes and what was known before (a
        // joining puppet is sent everything).
        let mut known: HashSet<Vec<u8>> = self.written.iter().map(|w| self.canon.key(w)).collect();
        for (p, (seen, _)) in self.puppets.iter().zip(marks) {
            known.extend(p.seen[..*seen].iter().map(|c| self.canon.key(c)));
        }
        let new = |changes: &mut dyn Iterator<Item = &Term>| -> Vec<Term> {
            let mut v: Vec<Term> = vec![];
            for c in changes {
                let cc = self.canon.canon(c);
                if !is_member_key(&c.as_tuple().expect("a change")[1]) && !known.contains(&encode(&cc)) && !v.contains(&cc) {
                    v.push(cc);
                }
            }
            v.sort_by_key(encode);
            v
        };
        let got = new(&mut self.puppets.iter().zip(marks).flat_map(|(p, (_, incoming))| &p.incoming[*incoming..]));
        let want = new(&mut b_writes.iter());
        if got != want {
            let extra: Vec<String> = got.iter().filter(|x| !want.contains(x)).map(show).collect();
            let missing: Vec<String> = want.iter().filter(|x| !got.contains(x)).map(show).collect();
            return Err(format!("SupB's writes: extra {extra:#?}, missing {missing:#?}"));
        }
        Ok(())
    }

    fn unexpected(&self) -> Vec<String> {
        self.puppets.iter().flat_map(|p| p.arrived.iter().map(|m| format!("{}: {}", p.label, show(&self.canon.canon(m))))).collect()
    }

    /// What the item a step waits on waits for.
    async fn waiting_for(&self, item: &Item) -> String {
        match item {
            Item::Act(Act::Reply { k, reply }, _) => format!("the reply to call {k} ({}), Horde's {}", show(&self.calls[k].1), show(reply)),
            Item::Act(a, Some(state)) => format!("{a:?}: the members to hold the state it was made in: {:?}", self.converged(state).await.err()),
            Item::Act(a, None) => format!("{a:?}"),
            Item::Disp(p, d) => {
                let why = match &d.trigger {
                    Trigger::FromB(m) => format!("SupB to send {}", show(&self.canon.canon(m))),
                    Trigger::Seen(c) => format!("its CRDT to see {}", self.unseen(*p, c).map(|x| show(&x)).unwrap_or_default()),
                    Trigger::Call(k) => format!("call {k}"),
                    Trigger::Now => "nothing".into(),
                };
                let calling = self.puppets[*p].calling.as_ref().map(|(_, req, _)| format!(" (its {} to SupB.ProcessesSupervisor unanswered)", show(req))).unwrap_or_default();
                format!("{}'s dispatch of {} waits for {why}{calling}", self.puppets[*p].label, show(&d.msg))
            }
        }
    }
}

/// The tags of the recorder's calls (as the callee received them) -> k.
fn recorder_tags(t: &Trace) -> HashMap<Vec<u8>, usize> {
    let r_pid = Term::Pid(t.pid("R").expect("the recorder's pid").clone());
    let mut tags = HashMap::new();
    for s in &t.steps {
        let mut timeline: Vec<(Ts, Option<&Act>, Option<&Ev>)> = s.acts.iter().map(|(ts, a)| (*ts, Some(a), None)).collect();
        timeline.extend(s.evs.iter().map(|e| (e.ts, None, Some(e))));
        timeline.sort_by_key(|x| x.0);
        let mut pending: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (_, a, e) in timeline {
            if let Some(Act::Call { k, target, .. }) = a {
                pending.entry(target.as_str()).or_default().push_back(*k);
            }
            let Some(Ev { who, what: What::Recv(m), .. }) = e else { continue };
            if let Some([p, tag]) = gen_call(m).and_then(|(from, _)| from.as_tuple()) {
                if *p == r_pid {
                    let k = pending.get_mut(who.as_str()).and_then(|q| q.pop_front()).expect("a pending call");
                    tags.insert(encode(tag), k);
                }
            }
        }
    }
    tags
}

/// The dispatches of puppet `label` (A or C) that did something, each
/// with what caused it and what it did, and the step of each.
fn dispatches(t: &Trace, label: &str, r_tags: &HashMap<Vec<u8>, usize>) -> Vec<(usize, Dispatch)> {
    let pid = |l: &str| t.pid(l).map(|p| Term::Pid(p.clone()));
    let is = |to: &Term, l: &str, name: Term| pid(l).as_ref() == Some(to) || *to == name;
    let sent_by = |who: &str| -> Vec<&Term> {
        t.events()
            .filter(|e| e.who == who)
            .filter_map(|e| match &e.what {
                What::Send(_, m) => Some(m),
                _ => None,
            })
            .collect()
    };
    let (b_sent, bp_replies) = (sent_by("B"), sent_by("B.P"));
    let r_pid = pid("R").expect("the recorder's pid");
    let own_crdt = format!("{label}.Crdt");
    let mut out: Vec<(usize, Dispatch)> = vec![];
    for (si, s) in t.steps.iter().enumerate() {
        for e in s.evs.iter().filter(|e| e.who == label) {
            match &e.what {
                What::Disp(msg, from) => {
                    // The proxied operation's second dispatch (with a TTL)
                    // is Horde calling itself.
                    if tagged(msg, "proxy_operation").is_some_and(|v| v.len() == 3) {
                        continue;
                    }
                    let trigger = match (from.as_tuple(), tagged(msg, "proxy_operation"), tagged(msg, "crdt_update")) {
                        (Some([p, tag]), _, _) if *p == r_pid => Trigger::Call(r_tags[&encode(tag)]),
                        (_, Some(_), _) if b_sent.contains(&msg) => Trigger::FromB(msg.clone()),
                        (_, _, Some([Term::List(diffs)])) => Trigger::Seen(diffs.clone()),
                        _ => Trigger::Now,
                    };
                    out.push((si, Dispatch { ts: e.ts, msg: msg.clone(), trigger, effects: vec![] }));
                }
                What::Send(to, msg) => {
                    let Some((_, d)) = out.last_mut() else { continue };
                    if is(to, &own_crdt, Term::atom(&format!("Elixir.Sup{own_crdt}"))) {
                        match (tagged(msg, "set_neighbours"), gen_call(msg)) {
                            (Some([Term::List(n)]), _) => d.effects.push(Effect::Neighbours(n.clone())),
                            (_, Some((_, req))) => d.effects.extend(crdt_ops(req).into_iter().map(Effect::Write)),
                            _ => {}
                        }
                    } else if is(to, "B", member("B")) {
                        d.effects.push(Effect::ToB(msg.clone()));
                    } else if let (true, Some((from, req))) = (is(to, "B.P", member("B.ProcessesSupervisor")), gen_call(msg)) {
                        let tag = &from.as_tuple().expect("a from")[1];
                        let reply = bp_replies
                            .iter()
                            .find_map(|m| match m.as_tuple() {
                                Some([t, r]) if t == tag => Some(r.clone()),
                                _ => None,
                            })
                            .expect("SupB.ProcessesSupervisor's reply");
                        d.effects.push(Effect::CallBp(req.clone(), reply));
                    } else if let Some(k) = msg.as_tuple().filter(|v| v.len() == 2).and_then(|v| r_tags.get(&encode(&v[0]))) {
                        d.effects.push(Effect::Reply(*k, msg.as_tuple().unwrap()[1].clone()));
                    }
                }
                What::Recv(_) => {}
            }
        }
    }
    out.retain(|(_, d)| !d.effects.is_empty());
    out
}

/// Horde's names: the ids and pids of the children in the trace, the
/// recorded processes; and the pids of the children that ran on SupB.
fn horde_names(t: &Trace) -> (Canon, HashSet<Pid>) {
    let mut canon = Canon::default();
    let mut b_pids = HashSet::new();
    let mut terms: Vec<&Term> = vec![];
    for s in &t.steps {
        for e in &s.evs {
            let (What::Recv(m) | What::Send(_, m) | What::Disp(m, _)) = &e.what;
            terms.push(m);
        }
        terms.extend(s.state.iter().chain(s.inits.iter().map(|(_, m)| m)));
        // A reply to start_child names the child's pid.
        let mut reqs: HashMap<usize, &Term> = HashMap::new();
        for (_, a) in &s.acts {
            match a {
                Act::Call { k, req, .. } => {
                    reqs.insert(*k, req);
                }
                Act::Reply { k, reply } => {
                    if let (Some([_, spec]), Some([_, Term::Pid(p)])) = (reqs[k].as_tuple(), reply.as_tuple()) {
                        canon.pids.extend(child_name(spec).map(|n| (p.clone(), n)));
                    }
                }
                Act::Wait { .. } => {}
            }
        }
    }
    for m in terms {
        canon.scan(m);
        for (k, v) in entries_in(m) {
            if let Some((_, p)) = entry(&k, &v).and_then(|e| e.running).filter(|(m, _)| **m == member("B")) {
                b_pids.insert(p.clone());
            }
        }
    }
    for (l, p) in &t.procs {
        canon.pids.insert(p.clone(), l.clone());
    }
    (canon, b_pids)
}

/// The node, the Rust SupB, the puppets SupA (with the setup state's
/// entries but SupB's status) and SupC (idle until its step).
async fn start(t: &Trace, writes: &[Write]) -> Replay {
    let node = Node::builder(NODE)
        .cookie("horde-sup-conformance")
        .publish(false)
        .embedded_epmd(false)
        .listen("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("node");
    let (mut canon, horde_b_pids) = horde_names(t);
    let mut puppets = vec![];
    for (label, replica) in [("A", 101), ("C", 103)] {
        let (sup, crdt_mb) = (node.spawn_mailbox(), node.spawn_mailbox());
        node.register(&format!("Elixir.Sup{label}"), sup.pid()).unwrap();
        node.register(&format!("Elixir.Sup{label}.Crdt"), crdt_mb.pid()).unwrap();
        let crdt = Crdt::new(Store::new(replica), Term::Pid(crdt_mb.pid().clone()));
        puppets.push(Puppet { label: label.into(), sup, crdt_mb, crdt, active: false, seen: vec![], incoming: vec![], arrived: vec![], calling: None });
    }
    let driver = node.spawn_mailbox();
    let sup = HordeSupervisor::builder("SupB")
        .members(&[NODE])
        .redistribution(Redistribution::Active)
        .sync_interval(Duration::from_millis(20))
        .child::<Account>("Rec.Worker")
        .start(&node)
        .expect("SupB starts");
    let mut here_procs: HashMap<String, Pid> = HashMap::new();
    here_procs.insert("R".into(), driver.pid().clone());
    here_procs.insert("B".into(), sup.pid().clone());
    for (l, name) in [("B.P", "Elixir.SupB.ProcessesSupervisor"), ("B.Crdt", "Elixir.SupB.Crdt")] {
        here_procs.insert(l.into(), node.whereis(name).expect(name));
    }
    for p in &puppets {
        here_procs.insert(p.label.clone(), p.sup.pid().clone());
        here_procs.insert(format!("{}.Crdt", p.label), p.crdt_mb.pid().clone());
    }
    for (l, p) in &here_procs {
        canon.pids.insert(p.clone(), l.clone());
    }
    let mut history: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    for w in writes {
        history.entry(canon.key(&w.op.as_tuple().unwrap()[1])).or_default().push(canon.key(&w.op));
    }
    let mut rp = Replay {
        node,
        sup,
        canon,
        puppets,
        driver,
        r_pid: t.pid("R").expect("the recorder's pid").clone(),
        r_tags: recorder_tags(t),
        horde_procs: t.procs.iter().map(|(l, p)| (p.clone(), l.clone())).collect(),
        here_procs,
        horde_b_pids,
        here_pid: HashMap::new(),
        here_id: HashMap::new(),
        calls: HashMap::new(),
        replies: HashMap::new(),
        written: vec![],
        history,
    };
    let setup = t.steps.first().filter(|s| s.name == "setup").expect("a setup step");
    for (k, v) in state_entries(setup.state.as_ref().unwrap()) {
        if tagged(k, "member_node_info") != Some(&[member("B")][..]) {
            rp.write(0, &Term::tuple([Term::atom("add"), k.clone(), v.clone()]));
        }
    }
    rp.puppets[0].active = true;
    let fx = rp.puppets[0].crdt.set_neighbours(vec![member("B.Crdt")]);
    send_fx(&rp.puppets[0].crdt_mb, fx);
    // Horde's SupB was started with both members.
    let mut mb = rp.node.spawn_mailbox();
    let ok = mb.call(Dest::local("Elixir.SupB", NODE), Term::tuple([Term::atom("set_members"), Term::list([member("A"), member("B")])]), Duration::from_secs(5)).await;
    assert_eq!(ok.expect("set_members"), Term::atom("ok"));
    rp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_member_replays_hordes_supervisor_trace() {
    replay(TRACES[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_member_replays_the_otp27_trace() {
    replay(TRACES[1]).await;
}

async fn replay((name, text): (&str, &str)) {
    let t = load(text);
    let writes = recorded_writes(&t);
    let mut rp = start(&t, &writes).await;
    // Each step's timeline: the recorder's actions and the puppets'
    // dispatches, in the recorded order.
    let mut items: Vec<Vec<(Ts, Item)>> = t.steps.iter().map(|_| vec![]).collect();
    for (pi, label) in ["A", "C"].into_iter().enumerate() {
        for (si, d) in dispatches(&t, label, &rp.r_tags) {
            items[si].push((d.ts, Item::Disp(pi, d)));
        }
    }
    for (si, s) in t.steps.iter().enumerate() {
        items[si].extend(s.acts.iter().map(|(ts, a)| (*ts, Item::Act(a.clone(), matches!(a, Act::Call { .. }).then(|| state_at(&t, &writes, si, Some(*ts)))))));
        items[si].sort_by_key(|x| x.0);
    }

    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut summary = vec![];
    for (si, step) in t.steps.iter().enumerate() {
        let started = Instant::now();
        for (label, map) in &step.inits {
            let p = rp.puppets.iter().position(|p| p.label == *label).expect("a puppet");
            for (k, v) in state_entries(map) {
                rp.write(p, &Term::tuple([Term::atom("add"), k.clone(), v.clone()]));
            }
            rp.puppets[p].active = true;
        }
        let marks: Vec<(usize, usize)> = rp.puppets.iter().map(|p| (p.seen.len(), p.incoming.len())).collect();
        let b_writes: Option<Vec<Term>> = (si > 0).then(|| writes.iter().filter(|w| w.step == si && w.who == "B" && !is_member_key(&w.op.as_tuple().unwrap()[1])).map(|w| w.op.clone()).collect());
        let mut progress = vec![Progress::Todo; items[si].len()];
        for n in 0u64.. {
            tick.tick().await;
            if n % 4 == 0 {
                rp.tick();
            }
            rp.drain();
            // An item runs once every item before it ran.
            let mut i = progress.iter().position(|x| *x != Progress::Done).unwrap_or(progress.len());
            while i < items[si].len() {
                let ran = match &items[si][i].1 {
                    Item::Act(a, before) => rp.run_act(a, before.as_ref(), &mut progress[i]).await,
                    Item::Disp(p, d) => rp.run_dispatch(*p, d, &mut progress[i]),
                };
                if !ran || progress[i] != Progress::Done {
                    break;
                }
                i += 1;
            }
            let done = match items[si].get(i) {
                Some((_, item)) => Err(Err(item)),
                None => match rp.step_done(step, b_writes.as_deref(), &marks) {
                    Ok(()) => rp.b_view(step.state.as_ref().expect("a state")).await.map_err(Ok),
                    Err(e) => Err(Ok(e)),
                },
            };
            match done {
                Ok(()) => break,
                Err(e) if started.elapsed() > STEP_DEADLINE => {
                    let e = match e {
                        Ok(e) => e,
                        Err(item) => rp.waiting_for(item).await,
                    };
                    let replies: Vec<String> = rp.replies.values().map(|r| show(&rp.canon.canon(r))).collect();
                    panic!("{name} step {}: {e}\nunexpected at the puppets: {:#?}\nunexpected replies: {replies:#?}", step.name, rp.unexpected());
                }
                Err(_) => {}
            }
        }
        assert!(rp.unexpected().is_empty(), "{name} step {}: the Rust SupB sent the puppets what Horde's SupB did not: {:#?}", step.name, rp.unexpected());
        summary.push(format!("{} ({} items, {:?})", step.name, items[si].len(), started.elapsed()));
    }
    eprintln!("{name} replayed: {}", summary.join(", "));
    rp.node.shutdown().await;
}
