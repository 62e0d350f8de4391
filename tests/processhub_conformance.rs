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
