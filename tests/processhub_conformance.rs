//! The ProcessHub 0.4.1 dialect against messages recorded from real
//! ProcessHub 0.4.1-beta nodes (tests/traces/processhub-0.4.1/, see its
//! README.md): every recorded term parses to the variant its `kind` names,
//! and builds back to an equal term whose `term_to_binary` encoding (of
//! the release that recorded it: OTP 25, or OTP 27 with UTF-8 atoms) is
//! byte-identical to the recorded one.

use erlnode::processhub::{
    Dialect, ExecCast, HubEvent, HubMessage, ParseError, PgScopeMessage, StartOutcome,
};
use erlnode::term::{decode, encode_latin1_atoms, encode_otp26, Term};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Kinds in the traces that are not hub-member protocol: local
/// notifications (net_kernel, pg monitors) and ProcessHub's Future
/// internals. The dialect must refuse them as `Unknown`.
const LOCAL_KINDS: &[&str] = &[
    "nodeup",
    "nodedown",
    "pg_monitor_join",
    "pg_monitor_leave",
    "process_hub_collect_results",
    "process_hub_async_results",
];

/// Kinds every complete recording must contain at least once.
const REQUIRED_KINDS: &[&str] = &[
    "pg_discover",
    "pg_sync",
    "pg_join",
    "pg_leave",
    "cluster_join_event",
    "cluster_leave_event",
    "distribute_children_event",
    "sync_remote_children_event",
    "children_registration_event",
    "children_unregistration_event",
    "migration_add_event",
    "child_process_pid_update_event",
    "cast_start_children",
    "cast_stop_children",
    "cast_exec_cast",
    "collect_start_results",
    "collect_stop_results",
    "process_hub_send_handover_state",
    "process_hub_handover",
    "process_hub_retention_handled",
    "process_hub_handover_confirmed",
];

struct Event {
    file: String,
    seq: String,
    kind: String,
    bytes: Vec<u8>,
}

/// The value of a string field of a flat JSON object (escapes undone).
fn string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn number_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    Some(
        line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect(),
    )
}

fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = vec![];
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|c| *c != b'=') {
        buf = (buf << 6) | T.iter().position(|x| *x == c).expect("base64 digit") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

fn jsonl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            jsonl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            out.push(path);
        }
    }
}

fn load(dir: &str) -> Vec<Event> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = vec![];
    jsonl_files(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no traces under {}", root.display());
    let mut events = vec![];
    for path in files {
        let file = path.strip_prefix(&root).unwrap().display().to_string();
        for line in std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let seq = number_field(line, "seq").unwrap_or_default();
            let kind =
                string_field(line, "kind").unwrap_or_else(|| panic!("{file}:{seq}: no kind"));
            let b64_text =
                string_field(line, "term_b64").unwrap_or_else(|| panic!("{file}:{seq}: no term"));
            events.push(Event {
                file: file.clone(),
                seq,
                kind,
                bytes: b64(&b64_text),
            });
        }
    }
    events
}

/// Replays every event; returns the count per kind.
/// How exactly a built term must match the recorded one.
#[derive(Clone, Copy)]
enum Exactness {
    /// `==` and byte-identical under this encoder (OTP 25: small maps
    /// hold their keys in term order, which the builder reproduces).
    Bytes(fn(&Term) -> Vec<u8>),
    /// `==` up to the order of map entries, and the same encoded size
    /// (OTP 26 and later keep atom keys of small maps in atom-table order,
    /// an accident of the sending node that no other node can reproduce;
    /// receivers never depend on it).
    MapOrderFree(fn(&Term) -> Vec<u8>),
}

/// `t` with every map's entries sorted by their encoding.
fn canonical(t: &Term) -> Term {
    match t {
        Term::Map(entries) => {
            let mut e: Vec<(Term, Term)> = entries
                .iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect();
            e.sort_by_key(|(k, _)| encode_latin1_atoms(k));
            Term::Map(e)
        }
        Term::Tuple(items) => Term::Tuple(items.iter().map(canonical).collect()),
        Term::List(items) => Term::List(items.iter().map(canonical).collect()),
        Term::ImproperList(items, tail) => Term::ImproperList(
            items.iter().map(canonical).collect(),
            Box::new(canonical(tail)),
        ),
        other => other.clone(),
    }
}

fn replay(events: &[Event], exactness: Exactness) -> BTreeMap<String, usize> {
    let d = Dialect::V0_4_1;
    let mut counts = BTreeMap::new();
    for ev in events {
        let at = format!("{}:{} ({})", ev.file, ev.seq, ev.kind);
        let term = decode(&ev.bytes)
            .unwrap_or_else(|e| panic!("{at}: recorded term does not decode: {e}"));
        *counts.entry(ev.kind.clone()).or_insert(0) += 1;
        assert_ne!(
            ev.kind, "other",
            "{at}: the recorder could not classify this message"
        );
        if LOCAL_KINDS.contains(&ev.kind.as_str()) {
            match d.parse(&term) {
                Err(ParseError::Unknown { .. }) => continue,
                other => panic!("{at}: a local message must parse as Unknown, got {other:?}"),
            }
        }
        let msg = d.parse(&term).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(
            msg.kind(),
            ev.kind,
            "{at}: parsed to the wrong variant: {msg:?}"
        );
        check_semantics(&at, &msg);
        let built = d.build(&msg).unwrap_or_else(|e| panic!("{at}: {e}"));
        match exactness {
            Exactness::Bytes(encode) => {
                assert_eq!(
                    built, term,
                    "{at}: built term differs from the recorded one"
                );
                assert!(
                    encode(&built) == ev.bytes,
                    "{at}: re-encoding is not byte-exact"
                );
            }
            Exactness::MapOrderFree(encode) => {
                assert_eq!(
                    canonical(&built),
                    canonical(&term),
                    "{at}: built term differs from the recorded one"
                );
                assert_eq!(
                    encode(&built).len(),
                    ev.bytes.len(),
                    "{at}: re-encoding differs in size"
                );
            }
        }
    }
    counts
}

/// Field-level facts the recordings show (docs/processhub-protocol.md).
fn check_semantics(at: &str, msg: &HubMessage) {
    match msg {
        HubMessage::ChildrenRegistration { children, node, .. } => {
            assert!(!children.is_empty(), "{at}");
            for c in children {
                assert_eq!(&c.for_node.0, node, "{at}: for_node is the starting node");
                assert!(
                    c.for_node.1.get("migration").is_some(),
                    "{at}: for_node carries [migration: bool]"
                );
                assert!(
                    matches!(c.result, StartOutcome::Ok(ref p) if Some(p) == c.pid.as_ref()),
                    "{at}"
                );
                assert!(!c.has_errors, "{at}");
                assert_eq!(c.nodes, vec![node.clone()], "{at}: singularity: one node");
            }
        }
        HubMessage::MigrationAdd { children, opts } => {
            assert!(opts.flag("migration_add"), "{at}");
            for c in children {
                assert_eq!(c.migration_add, Some(true), "{at}");
                assert_eq!(
                    c.reply_to.clone().unwrap_or_default(),
                    opts.reply_to(),
                    "{at}"
                );
            }
        }
        HubMessage::StartChildren { children, opts } => {
            assert!(
                !opts.reply_to().is_empty(),
                "{at}: awaitable starts carry reply_to"
            );
            for c in children {
                assert_eq!(c.nodes.len(), 1, "{at}");
                assert!(c.migration_add.is_none() && c.reply_to.is_none(), "{at}");
            }
        }
        HubMessage::ExecCast(ec) => {
            assert!(
                matches!(ec, ExecCast::HotSwapStorageUpdate { states } if !states.is_empty()),
                "{at}"
            );
        }
        HubMessage::Pg(PgScopeMessage::Join { group, .. }) => {
            assert!(
                matches!(group, erlnode::processhub::Group::Event(_)),
                "{at}: joins are to hub groups"
            );
        }
        HubMessage::Pg(PgScopeMessage::Sync { groups, .. }) => {
            // A scope's sync lists either nothing or all eight groups.
            assert!(
                groups.is_empty() || groups.len() == HubEvent::ALL.len(),
                "{at}"
            );
        }
        _ => {}
    }
}

#[test]
fn processhub_0_4_1_otp25_traces_replay() {
    let events = load("tests/traces/processhub-0.4.1/otp25");
    let counts = replay(&events, Exactness::Bytes(encode_latin1_atoms));
    for kind in REQUIRED_KINDS {
        assert!(
            counts.contains_key(*kind),
            "no {kind} event recorded: {counts:?}"
        );
    }
    assert!(events.len() > 400, "only {} events", events.len());
}

/// The same hubs on OTP 27.3 / Elixir 1.18.3 (ProcessHub built there):
/// same shapes; `term_to_binary` writes atoms as UTF-8 and small-map keys
/// in the sending node's atom-table order.
#[test]
fn processhub_0_4_1_otp27_traces_replay() {
    let events = load("tests/traces/processhub-0.4.1/otp27");
    let counts = replay(&events, Exactness::MapOrderFree(encode_otp26));
    // No confirm_handover run on OTP 27.
    let required = REQUIRED_KINDS
        .iter()
        .filter(|k| **k != "process_hub_handover_confirmed");
    for kind in required {
        assert!(
            counts.contains_key(*kind),
            "no {kind} event recorded: {counts:?}"
        );
    }
    assert!(events.len() > 300, "only {} events", events.len());
}

// ------------------------------------------- the member against the traces

/// Recorded requests replayed against erlnode's hub member (a local
/// node, no BEAM): what real ProcessHub 0.4.1 coordinators sent is
/// answered as a ProcessHub member answers it, with `reply_to` pids
/// rewritten to a probe. The recorded child (`PhTrace.Counter`, state
/// `%{id:, count:}`) runs as the Rust type below.
mod member {
    use super::*;
    use erlnode::prelude::*;
    use erlnode::processhub::{ChildStart, Keyword};
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    const T: Duration = Duration::from_secs(10);

    /// The Rust twin of the traces' `PhTrace.Counter`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct TraceCounter {
        id: String,
        count: i64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Args {
        id: String,
    }

    impl GenServer for TraceCounter {
        type Call = Term;
        type Cast = Term;
        type Reply = i64;
        async fn handle_call(&mut self, _req: Term, _from: &Term, _ctx: &mut Ctx) -> Reply<i64> {
            Reply::Reply(self.count)
        }
    }

    impl Migratable for TraceCounter {
        const TYPE: &'static str = "trace_counter";
        type Args = Args;
        fn init_state(a: Args) -> Result<Self, Term> {
            Ok(TraceCounter { id: a.id, count: 0 })
        }
    }

    fn recorded(file: &str, kind: &str) -> Term {
        let events = load("tests/traces/processhub-0.4.1/otp25");
        let e = events.iter().find(|e| e.file.starts_with(file) && e.kind == kind).unwrap_or_else(|| panic!("{file}: no {kind}"));
        decode(&e.bytes).unwrap()
    }

    fn d() -> Dialect {
        Dialect::V0_4_1
    }

    /// `msg` with every `reply_to` (options and children) set to `probe`.
    fn reply_to(msg: HubMessage, probe: &Pid) -> HubMessage {
        let fix_opts = |mut o: Keyword| {
            o.0.retain(|(k, _)| k.as_str() != "reply_to");
            o.push("reply_to", Term::list([Term::Pid(probe.clone())]));
            o
        };
        let fix_children = |cs: Vec<ChildStart>| -> Vec<ChildStart> {
            cs.into_iter().map(|c| ChildStart { reply_to: c.reply_to.map(|_| vec![probe.clone()]), ..c }).collect()
        };
        match msg {
            HubMessage::StartChildren { children, opts } => HubMessage::StartChildren { children: fix_children(children), opts: fix_opts(opts) },
            HubMessage::MigrationAdd { children, opts } => HubMessage::MigrationAdd { children: fix_children(children), opts: fix_opts(opts) },
            HubMessage::StopChildren { children, opts } => HubMessage::StopChildren { children, opts: fix_opts(opts) },
            other => other,
        }
    }

    async fn results(mb: &mut Mailbox) -> HubMessage {
        mb.recv_match(T, |m| match d().parse(m) {
            Ok(r @ (HubMessage::CollectStartResults { .. } | HubMessage::CollectStopResults { .. })) => Some(r),
            _ => None,
        })
        .await
        .expect("results to reply_to")
    }

    fn ok_pid(r: &HubMessage, cid: &str) -> Pid {
        match r {
            HubMessage::CollectStartResults { results, .. } => match results.iter().find(|(c, _)| *c == Term::from(cid)) {
                Some((_, StartOutcome::Ok(p))) => p.clone(),
                other => panic!("{cid}: {other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    /// A child's pid in the results: started, or already running (c1
    /// came first by migration).
    fn started_pid(r: &HubMessage, cid: &str) -> Pid {
        match r {
            HubMessage::CollectStartResults { results, .. } => match results.iter().find(|(c, _)| *c == Term::from(cid)) {
                Some((_, StartOutcome::Ok(p))) => p.clone(),
                Some((_, StartOutcome::Error(e))) if e.as_tuple().is_some_and(|t| t[0].is_atom("already_started")) => e.as_tuple().unwrap()[1].as_pid().unwrap().clone(),
                other => panic!("{cid}: {other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn member_answers_recorded_requests() {
        let node = Node::builder(format!("phmember{}@127.0.0.1", std::process::id()))
            .cookie("c")
            .publish(false)
            .embedded_epmd(false)
            .listen(([127, 0, 0, 1], 0).into())
            .start()
            .await
            .unwrap();
        let hub = node.processhub("my_hub").child::<TraceCounter>("PhTrace.Counter").join().await.unwrap();
        assert_eq!(node.whereis("my_hub").as_ref(), Some(hub.coordinator()), "registered as the hub id");
        let scope = node.pg_scope("hub.my_hub.event_queue_pg").unwrap();
        for ev in HubEvent::ALL {
            assert_eq!(scope.get_local_members(&Term::atom(ev.atom_name())), vec![hub.coordinator().clone()], "joined {ev:?}");
        }
        let mut probe = node.spawn_mailbox();
        let mut notices = hub.subscribe();
        let coord = hub.coordinator().clone();

        // migration_add_event (05) then the recorded handover: the Rust
        // child adopts the Elixir child's state (count 10).
        let add = d().parse(&recorded("hotswap-05", "migration_add_event")).unwrap();
        node.send(&coord, d().build(&reply_to(add, probe.pid())).unwrap());
        let c1 = ok_pid(&results(&mut probe).await, "c1");
        node.send(&c1, recorded("hotswap-05", "process_hub_handover"));
        assert_eq!(probe.call(&c1, Term::atom("get"), T).await.unwrap(), Term::Int(10), "state handed over");

        // A state that does not decode is rejected; the child keeps its own.
        let bad = HubMessage::Handover { child_id: Term::from("c1"), state: Term::atom("not_a_counter"), opts: Keyword::new() };
        node.send(&c1, d().build(&bad).unwrap());
        assert_eq!(probe.call(&c1, Term::atom("get"), T).await.unwrap(), Term::Int(10), "bad state rejected");

        // start_children (02): started, answered, registered.
        let start = d().parse(&recorded("hotswap-02", "cast_start_children")).unwrap();
        let HubMessage::StartChildren { children, .. } = &start else { panic!() };
        let cids: Vec<Term> = children.iter().map(|c| c.child_id.clone()).collect();
        node.send(&coord, d().build(&reply_to(start.clone(), probe.pid())).unwrap());
        let r = results(&mut probe).await;
        for cid in &cids {
            let HubMessage::CollectStartResults { node: from, .. } = &r else { panic!() };
            assert_eq!(from, node.name());
            let Term::Binary(b) = cid else { panic!() };
            let pid = started_pid(&r, std::str::from_utf8(b).unwrap());
            assert_eq!(hub.get_pid(cid), Some(pid), "in the registry");
        }
        // The same cast again: already started, as ProcessHub answers.
        node.send(&coord, d().build(&reply_to(start, probe.pid())).unwrap());
        let HubMessage::CollectStartResults { results: again, .. } = results(&mut probe).await else { panic!() };
        assert!(again.iter().all(|(_, r)| matches!(r, StartOutcome::Error(e) if e.as_tuple().is_some_and(|t| t[0].is_atom("already_started")))));

        // Registration from another member (02): kept in the registry.
        let reg = d().parse(&recorded("hotswap-02", "children_registration_event")).unwrap();
        let HubMessage::ChildrenRegistration { children, .. } = &reg else { panic!() };
        node.send(&coord, d().build(&reg).unwrap());
        let (cid, pid) = (children[0].cid.clone(), children[0].pid.clone().unwrap());
        let deadline = tokio::time::Instant::now() + T;
        while hub.get_pid(&cid) != Some(pid.clone()) {
            assert!(tokio::time::Instant::now() < deadline, "registration not applied");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // exec_cast storage update (08), then the child starts: it gets its state.
        let store = recorded("hotswap-08", "cast_exec_cast");
        let HubMessage::ExecCast(ExecCast::HotSwapStorageUpdate { states }) = d().parse(&store).unwrap() else { panic!() };
        node.send(&coord, store);
        let cid = states[0].child_id.clone();
        let Term::Binary(b) = &cid else { panic!() };
        let id = std::str::from_utf8(b).unwrap().to_string();
        let spec = Term::Map(vec![
            (Term::atom("id"), cid.clone()),
            (Term::atom("start"), Term::tuple([Term::atom("Elixir.PhTrace.Counter"), Term::atom("start_link"), Term::list([Term::Map(vec![(Term::atom("id"), cid.clone())])])])),
        ]);
        let start = HubMessage::StartChildren {
            children: vec![ChildStart { child_id: cid.clone(), child_spec: spec, hub_id: Atom::new("my_hub"), metadata: Term::Map(vec![]), nodes: vec![node.name().clone()], migration_add: None, reply_to: None, extra: vec![] }],
            opts: Keyword::new(),
        };
        node.send(&coord, d().build(&reply_to(start, probe.pid())).unwrap());
        let p = ok_pid(&results(&mut probe).await, &id);
        let want = match &states[0].state { Term::Map(e) => e.iter().find(|(k, _)| k.is_atom("count")).map(|(_, v)| v.clone()), _ => None };
        assert_eq!(Some(probe.call(&p, Term::atom("get"), T).await.unwrap()), want, "stored state delivered at start");

        // Malformed and foreign input: logged and dropped; the member still serves.
        for junk in [
            Term::tuple([Term::atom("migration_add_event"), Term::atom("garbage")]),
            Term::tuple([Term::atom("children_registration_event"), Term::tuple([Term::list([Term::Map(vec![])]), Term::atom("x"), Term::nil()])]),
            Term::tuple([Term::atom("$gen_cast"), Term::tuple([Term::atom("start_children"), Term::atom("x"), Term::atom("y")])]),
            Term::tuple([Term::atom("$gen_cast"), Term::tuple([Term::atom("exec_cast"), Term::tuple([Term::atom("os"), Term::atom("cmd"), Term::list([Term::from("true")])])])]),
            Term::tuple([Term::atom("sync_remote_children_event"), Term::Int(1)]),
            Term::atom("hello"),
        ] {
            node.send(&coord, junk);
        }
        // stop_children (04, rewritten to a child that runs here).
        let HubMessage::StopChildren { opts, .. } = d().parse(&recorded("hotswap-04", "cast_stop_children")).unwrap() else { panic!() };
        let stop = HubMessage::StopChildren {
            children: vec![erlnode::processhub::ChildStop { child_id: Term::from("c1"), nodes: vec![node.name().clone()], extra: vec![] }],
            opts,
        };
        node.send(&coord, d().build(&reply_to(stop, probe.pid())).unwrap());
        match results(&mut probe).await {
            HubMessage::CollectStopResults { results, .. } => assert_eq!(results, vec![(Term::from("c1"), Term::atom("ok"))]),
            other => panic!("{other:?}"),
        }
        assert!(!node.is_alive(&c1), "stopped");
        assert!(node.is_alive(&coord), "the coordinator survived the junk");
        let mut seen = vec![];
        while let Ok(n) = notices.try_recv() {
            seen.push(n);
        }
        use erlnode::processhub::HubNotice;
        assert!(seen.iter().any(|n| matches!(n, HubNotice::ChildrenStarted(c) if c.contains(&Term::from("c1")))), "{seen:?}");
        assert!(seen.contains(&HubNotice::ChildrenStopped(vec![Term::from("c1")])), "{seen:?}");
        node.shutdown().await;
    }

    fn spec_of(id: &str) -> Term {
        let cid = Term::from(id);
        Term::Map(vec![
            (Term::atom("id"), cid.clone()),
            (Term::atom("start"), Term::tuple([Term::atom("Elixir.PhTrace.Counter"), Term::atom("start_link"), Term::list([Term::Map(vec![(Term::atom("id"), cid)])])])),
        ])
    }

    fn spec_id(spec: &Term) -> Term {
        match spec {
            Term::Map(e) => e.iter().find(|(k, _)| k.is_atom("id")).map(|(_, v)| v.clone()).expect("spec id"),
            other => panic!("not a spec: {other:?}"),
        }
    }

    /// A member joins a ColdSwap hub: the host stops the children the
    /// ring now gives to the joiner, unregisters them, asks the joiner to
    /// start them, and sends it the list of the children that stay only
    /// after the unregistration, as a ProcessHub host does (recorded in
    /// coldswap-05: unregistration of c1, migration_add of c1, then the
    /// list with c3 alone). ProcessHub applies that list in a task of its
    /// own and merges it into its registry: a list sent first that named
    /// the moved children could be applied after their unregistration and
    /// leave the joiner pointing at the host's old pids (the opt-in
    /// ColdSwap test caught the Rust member doing so). The joiner here is
    /// a stand-in: a mailbox in every group of the hub's pg scope on a
    /// second node.
    #[tokio::test]
    async fn a_joiner_gets_the_list_of_what_stays_after_the_unregistration() {
        // The joiner dials the host through the host's embedded EPMD.
        let epmd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let start = |name: String| Node::builder(name).cookie("c").epmd_port(epmd).start();
        let host = start(format!("phhost{}@127.0.0.1", std::process::id())).await.unwrap();
        let joiner_node = start(format!("phjoiner{}@127.0.0.1", std::process::id())).await.unwrap();
        let cfg = erlnode::processhub::HubConfig {
            handover: false,
            ring_encoding: Some(erlnode::migration::RingEncoding::Otp25),
            ..Default::default()
        };
        let hub = host.processhub("my_hub").child::<TraceCounter>("PhTrace.Counter").config(cfg).join().await.unwrap();
        let mut probe = host.spawn_mailbox();
        const N: usize = 40;
        let ids: Vec<String> = (1..=N).map(|i| format!("c{i}")).collect();
        let children = ids
            .iter()
            .map(|id| ChildStart {
                child_id: Term::from(id.as_str()),
                child_spec: spec_of(id),
                hub_id: Atom::new("my_hub"),
                metadata: Term::Map(vec![]),
                nodes: vec![host.name().clone()],
                migration_add: None,
                reply_to: None,
                extra: vec![],
            })
            .collect();
        let mut opts = Keyword::new();
        opts.push("reply_to", Term::list([Term::Pid(probe.pid().clone())]));
        host.send(hub.coordinator(), d().build(&HubMessage::StartChildren { children, opts }).unwrap());
        let r = results(&mut probe).await;
        for id in &ids {
            ok_pid(&r, id);
        }

        // The joiner: connected, then its coordinator in every group,
        // `cluster_join_event` (by which members count each other) last.
        joiner_node.connect(host.name().as_str()).await.unwrap();
        let scope = joiner_node.pg_scope("hub.my_hub.event_queue_pg").unwrap();
        let mut joiner = joiner_node.spawn_mailbox();
        let mut groups: Vec<HubEvent> = HubEvent::ALL.into_iter().filter(|e| *e != HubEvent::ClusterJoin).collect();
        groups.push(HubEvent::ClusterJoin);
        for ev in groups {
            scope.join(Term::atom(ev.atom_name()), joiner.pid()).await.unwrap();
        }
        // What the host sends the joiner, in order, up to the list.
        let mut unregistered: Vec<Term> = vec![];
        let mut kinds = vec![];
        let stays: Vec<Term> = loop {
            let m = joiner.recv_timeout(T).await.expect("the host's sync_remote_children_event");
            let Ok(msg) = d().parse(&m) else { continue };
            kinds.push(msg.kind().to_string());
            match msg {
                HubMessage::ChildrenUnregistration { children, node, .. } => {
                    assert_eq!(&node, host.name());
                    unregistered.extend(children.into_iter().map(|c| c.child_id));
                }
                HubMessage::SyncRemoteChildren { children, from_node } => {
                    assert_eq!(&from_node, host.name());
                    break children.iter().map(|c| spec_id(&c.child_spec)).collect();
                }
                _ => {}
            }
        };
        println!("the host sent the joiner: {kinds:?}");
        // The ring gives the joiner about half of the 40 (none: 2^-40).
        assert!(!unregistered.is_empty(), "no unregistration before the list of what stays: {kinds:?}");
        let moved_listed: Vec<&Term> = stays.iter().filter(|c| unregistered.contains(c)).collect();
        assert!(moved_listed.is_empty(), "the list names children already unregistered (moved): {moved_listed:?}; order {kinds:?}");
        assert_eq!(unregistered.len() + stays.len(), N, "every child either moved or is listed");
        // The start request for the moved ones (ColdSwap: no reply_to, no state).
        let add = joiner
            .recv_match(T, |m| match d().parse(m) {
                Ok(HubMessage::MigrationAdd { children, .. }) => Some(children),
                _ => None,
            })
            .await
            .expect("migration_add_event");
        let key = |t: &Term| format!("{t:?}");
        let mut asked: Vec<Term> = add.into_iter().map(|c| c.child_id).collect();
        asked.sort_by_key(key);
        unregistered.sort_by_key(key);
        assert_eq!(asked, unregistered, "the joiner is asked to start exactly the children unregistered");
        assert_eq!(hub.local_children().len(), stays.len(), "the others run on the host");
        host.shutdown().await;
        joiner_node.shutdown().await;
    }
}
