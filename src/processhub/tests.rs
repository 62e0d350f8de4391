//! Unit tests of the 0.4.1 dialect: round trips of the messages the
//! recordings do not contain, and malformed or foreign input (always an
//! error, never a panic). Recorded messages: tests/processhub_conformance.rs.

use super::*;
use crate::term::{Atom, Pid};
use proptest::prelude::*;

const D: Dialect = Dialect::V0_4_1;

fn pid(id: u32) -> Pid {
    Pid {
        node: Atom::new("a@127.0.0.1"),
        id,
        serial: 0,
        creation: 1,
    }
}

fn t(items: Vec<Term>) -> Term {
    Term::Tuple(items)
}

fn a(s: &str) -> Term {
    Term::atom(s)
}

fn roundtrip(msg: HubMessage) -> Term {
    let term = D.build(&msg).unwrap();
    assert_eq!(D.parse(&term).unwrap(), msg, "{term:?}");
    term
}

fn malformed(term: Term, expected_message: &str) -> String {
    match D.parse(&term) {
        Err(ParseError::Malformed {
            message,
            reason,
            dialect,
        }) => {
            assert_eq!(message, expected_message, "{reason}");
            assert_eq!(dialect, D);
            reason
        }
        other => panic!("expected Malformed {expected_message}, got {other:?} for {term:?}"),
    }
}

fn unknown(term: Term) -> String {
    match D.parse(&term) {
        Err(e @ ParseError::Unknown { .. }) => e.to_string(),
        other => panic!("expected Unknown, got {other:?} for {term:?}"),
    }
}

fn child_start(cid: &str) -> ChildStart {
    ChildStart {
        child_id: cid.into(),
        child_spec: Term::Map(vec![
            (a("id"), cid.into()),
            (
                a("start"),
                t(vec![
                    a("Elixir.MyApp.Counter"),
                    a("start_link"),
                    Term::nil(),
                ]),
            ),
        ]),
        hub_id: Atom::new("my_hub"),
        metadata: Term::Map(vec![]),
        nodes: vec![Atom::new("b@127.0.0.1")],
        migration_add: Some(true),
        reply_to: Some(vec![pid(7)]),
        extra: vec![],
    }
}

#[test]
fn unrecorded_messages_round_trip() {
    roundtrip(HubMessage::RetentionOver);
    roundtrip(HubMessage::HandoverConfirmed {
        child_id: "c1".into(),
    });
    roundtrip(HubMessage::ExecCast(ExecCast::Other {
        module: Atom::new("Elixir.Foo"),
        function: Atom::new("bar"),
        args: vec![Term::Int(1)],
    }));
    roundtrip(HubMessage::CollectStartResults {
        results: vec![
            (
                "c1".into(),
                StartOutcome::Error(t(vec![a("already_started"), Term::Pid(pid(3))])),
            ),
            ("c2".into(), StartOutcome::Other(a("ignore"))),
        ],
        node: Atom::new("b@127.0.0.1"),
    });
    roundtrip(HubMessage::Pg(PgScopeMessage::Join {
        scope: pid(1),
        group: Group::Other(a("somebody_elses_group")),
        pids: PidOrPids::Many(vec![pid(2), pid(3)]),
    }));
    roundtrip(HubMessage::MigrationAdd {
        children: vec![child_start("c1")],
        opts: Keyword(vec![(Atom::new("migration_add"), a("true"))]),
    });
}

#[test]
fn unknown_map_keys_are_kept_and_rebuilt_in_beam_order() {
    let mut c = child_start("c1");
    // Given in BEAM order, as a parse of a received map leaves them.
    c.extra = vec![(Term::Int(5), Term::Int(2)), (a("zzz"), Term::Int(1))];
    let term = roundtrip(HubMessage::StartChildren {
        children: vec![c],
        opts: Keyword::new(),
    });
    // {:"$gen_cast", {:start_children, [map], []}}: the integer key sorts
    // first, then atoms alphabetically.
    let map = &term.as_tuple().unwrap()[1].as_tuple().unwrap()[1];
    let Term::List(maps) = map else { panic!() };
    let Term::Map(entries) = &maps[0] else {
        panic!()
    };
    let keys: Vec<String> = entries
        .iter()
        .map(|(k, _)| match k {
            Term::Atom(x) => x.as_str().to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            "Int(5)",
            "child_id",
            "child_spec",
            "hub_id",
            "metadata",
            "migration_add",
            "nodes",
            "reply_to",
            "zzz"
        ]
    );
}

#[test]
fn foreign_terms_are_unknown() {
    unknown(a("hello"));
    unknown(Term::Int(3));
    unknown(Term::nil());
    unknown(t(vec![]));
    unknown(t(vec![Term::Int(1), a("x")]));
    unknown(t(vec![a("nodeup"), a("b@h")]));
    unknown(t(vec![a("some_event"), a("b@h")]));
    unknown(t(vec![a("$gen_cast"), a("oops")]));
    unknown(t(vec![
        a("$gen_cast"),
        t(vec![a("start_children"), Term::nil()]),
    ]));
    unknown(t(vec![a("$gen_call"), Term::nil(), a("ping")]));
    unknown(t(vec![
        a("process_hub"),
        a("collect_results"),
        Term::Pid(pid(1)),
        Term::nil(),
    ]));
    unknown(t(vec![a("process_hub"), Term::Int(1)]));
    // A pg monitor notification starts with a reference, not an atom.
    unknown(t(vec![
        Term::Int(0),
        a("join"),
        a("cluster_join_event"),
        Term::nil(),
    ]));
    // cluster_join_event with the wrong arity is not the event.
    unknown(t(vec![a("cluster_join_event"), a("a@h"), a("extra")]));
    let msg = unknown(t(vec![
        a("hello"),
        Term::Int(1),
        Term::Int(2),
        Term::Int(3),
    ]));
    assert!(msg.contains(":hello") && msg.contains("4-tuple"), "{msg}");
}

#[test]
fn malformed_events() {
    malformed(
        t(vec![a("cluster_join_event"), "a@h".into()]),
        "cluster_join_event",
    );
    malformed(
        t(vec![a("cluster_leave_event"), Term::Int(1)]),
        "cluster_leave_event",
    );
    malformed(
        t(vec![a("sync_remote_children_event"), Term::nil()]),
        "sync_remote_children_event",
    );
    malformed(
        t(vec![
            a("sync_remote_children_event"),
            t(vec![Term::list([a("x")]), a("n@h")]),
        ]),
        "sync_remote_children_event",
    );
    let r = malformed(
        t(vec![
            a("sync_remote_children_event"),
            t(vec![
                Term::list([t(vec![Term::Map(vec![]), a("notapid"), Term::Map(vec![])])]),
                a("n@h"),
            ]),
        ]),
        "sync_remote_children_event",
    );
    assert!(r.contains("pid"), "{r}");
    malformed(
        t(vec![
            a("children_unregistration_event"),
            t(vec![Term::nil(), a("n@h"), a("notakeyword")]),
        ]),
        "children_unregistration_event",
    );
    malformed(
        t(vec![
            a("children_unregistration_event"),
            t(vec![
                Term::list([t(vec!["c1".into(), a("ok")])]),
                a("n@h"),
                Term::nil(),
            ]),
        ]),
        "children_unregistration_event",
    );
    malformed(
        t(vec![
            a("child_process_pid_update_event"),
            t(vec!["c1".into(), t(vec![a("n@h"), a("nil")])]),
        ]),
        "child_process_pid_update_event",
    );
    // A keyword list whose key is not an atom.
    malformed(
        t(vec![
            a("migration_add_event"),
            t(vec![
                Term::nil(),
                Term::list([t(vec![Term::Int(1), a("x")])]),
            ]),
        ]),
        "migration_add_event",
    );
    // An improper list where a list is expected.
    malformed(
        t(vec![
            a("migration_add_event"),
            t(vec![
                Term::ImproperList(vec![Term::Int(1)], Box::new(Term::Int(2))),
                Term::nil(),
            ]),
        ]),
        "migration_add_event",
    );
}

#[test]
fn malformed_children_maps() {
    let mut good = D
        .build(&HubMessage::MigrationAdd {
            children: vec![child_start("c1")],
            opts: Keyword::new(),
        })
        .unwrap();
    // Drop `hub_id` from the child map.
    if let Term::Tuple(items) = &mut good {
        if let Term::Tuple(payload) = &mut items[1] {
            if let Term::List(children) = &mut payload[0] {
                if let Term::Map(entries) = &mut children[0] {
                    entries.retain(|(k, _)| !k.is_atom("hub_id"));
                }
            }
        }
    }
    let r = malformed(good, "migration_add_event");
    assert!(r.contains("missing key hub_id"), "{r}");

    let bad_flag = Term::Map(vec![
        (a("child_id"), "c".into()),
        (a("child_spec"), Term::Map(vec![])),
        (a("hub_id"), a("h")),
        (a("metadata"), Term::Map(vec![])),
        (a("migration_add"), a("yes")),
        (a("nodes"), Term::nil()),
    ]);
    let r = malformed(
        t(vec![
            a("$gen_cast"),
            t(vec![
                a("start_children"),
                Term::list([bad_flag]),
                Term::nil(),
            ]),
        ]),
        "cast_start_children",
    );
    assert!(r.contains("boolean"), "{r}");
    malformed(
        t(vec![
            a("$gen_cast"),
            t(vec![a("stop_children"), Term::list([a("c1")]), Term::nil()]),
        ]),
        "cast_stop_children",
    );
}

#[test]
fn malformed_registration_struct() {
    let wrong_struct = Term::Map(vec![
        (a("__struct__"), a("Elixir.Other")),
        (a("cid"), "c".into()),
    ]);
    let r = malformed(
        t(vec![
            a("children_registration_event"),
            t(vec![Term::list([wrong_struct]), a("n@h"), Term::nil()]),
        ]),
        "children_registration_event",
    );
    assert!(r.contains("PostStartData"), "{r}");
    let no_struct = Term::Map(vec![(a("cid"), "c".into())]);
    malformed(
        t(vec![
            a("children_registration_event"),
            t(vec![Term::list([no_struct]), a("n@h"), Term::nil()]),
        ]),
        "children_registration_event",
    );
}

#[test]
fn malformed_exec_cast_and_handover() {
    let exec_cast = |mfa: Term| t(vec![a("$gen_cast"), t(vec![a("exec_cast"), mfa])]);
    let storage_update = |args: Term| t(vec![a(HOT_SWAP), a("handle_storage_update"), args]);
    malformed(exec_cast(a("x")), "cast_exec_cast");
    malformed(exec_cast(storage_update(Term::nil())), "cast_exec_cast");
    let state_without_opts = Term::list([Term::list([t(vec!["c".into(), a("s")])])]);
    malformed(
        exec_cast(storage_update(state_without_opts)),
        "cast_exec_cast",
    );
    malformed(
        t(vec![
            a("process_hub"),
            a("send_handover_state"),
            a("notapid"),
            "c".into(),
            Term::nil(),
        ]),
        "process_hub_send_handover_state",
    );
    malformed(
        t(vec![
            a("process_hub"),
            a("handover"),
            "c".into(),
            a("state"),
        ]),
        "process_hub_handover",
    );
    malformed(t(vec![a("discover"), a("x")]), "pg_discover");
    malformed(
        t(vec![a("join"), Term::Pid(pid(1)), a("g"), a("x")]),
        "pg_join",
    );
    malformed(
        t(vec![
            a("$gen_cast"),
            t(vec![a("sync"), Term::Pid(pid(1)), Term::list([a("g")])]),
        ]),
        "pg_sync",
    );
    malformed(
        t(vec![
            a("collect_start_results"),
            Term::list([a("x")]),
            a("n@h"),
        ]),
        "collect_start_results",
    );
    malformed(
        t(vec![a("collect_stop_results"), Term::nil(), Term::Int(1)]),
        "collect_stop_results",
    );
}

#[test]
fn dialect_names() {
    assert_eq!(D.pg_scope_name("my_hub"), "hub.my_hub.event_queue_pg");
    assert_eq!(D.event_queue_name("my_hub"), "hub.my_hub.event_queue");
    assert_eq!(D.groups().len(), 8);
    assert_eq!(D.to_string(), "ProcessHub 0.4.1-beta");
    for e in HubEvent::ALL {
        assert_eq!(HubEvent::from_atom_name(e.atom_name()), Some(e));
    }
}

fn arb_term() -> impl Strategy<Value = Term> {
    let leaf = prop_oneof![
        Just(a("cluster_join_event")),
        Just(a("process_hub")),
        Just(a("$gen_cast")),
        Just(a("handover")),
        Just(a("join")),
        Just(a("nil")),
        Just(a("true")),
        "[a-z_]{1,12}".prop_map(|s| Term::atom(&s)),
        any::<i64>().prop_map(Term::Int),
        Just(Term::Pid(pid(5))),
        Just(Term::nil()),
        "[a-z0-9]{0,4}".prop_map(|s| Term::from(s.as_str())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Term::Tuple),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Term::List),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Term::Map),
        ]
    })
}

proptest! {
    /// Any term: an error or a message that builds back to the same term.
    #[test]
    fn parse_never_panics_and_round_trips(term in arb_term()) {
        if let Ok(msg) = D.parse(&term) {
            let built = D.build(&msg).unwrap();
            // Maps are rebuilt in the BEAM's key order; compare re-parsed.
            prop_assert_eq!(D.parse(&built).unwrap(), msg);
        }
    }
}
