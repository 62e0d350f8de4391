//! OTP 29 native records (RECORD_EXT, tag 67) crossing erlnode.
//!
//! An OTP 29 node sends RECORD_EXT to every peer, whether or not it
//! advertised DFLAG_NATIVE_RECORDS (erlnode does: see
//! `erlnode::handshake::flags::NATIVE_RECORDS`), with the record's atoms as
//! atom-cache refs of the distribution header. Native records exist only
//! on OTP 29+, so the full check runs under `make test-otp OTP=29`; on
//! older releases this suite checks that the release really has none and
//! that erlnode refuses to send one there (those releases drop the whole
//! link on a record), the link and the messages after it unaffected.

use crate::support::{self, otp, BeamNode, Epmd};
use erlnode::term::{Atom, NativeRecord};
use erlnode::{Node, Term};
use std::time::Duration;

/// `#mymod:pt{x = 1, y = two}`, exported: what
/// `records:create(mymod, pt, [{x,1},{y,two}], #{is_exported => true})`
/// builds on OTP 29.
fn pt() -> Term {
    let fields = vec![(Atom::new("x"), Term::Int(1)), (Atom::new("y"), Term::atom("two"))];
    NativeRecord::new(Atom::new("mymod"), Atom::new("pt"), true, fields).unwrap().into()
}

/// `rec_probe`: `{From, make}` gets a record built in Rust (or
/// `record_refused` when the link cannot carry one), then `{after_rec, 2}`; `{From, inspect, Rec}` gets what Rust code reads from
/// the record: `{inspected, Module, Name, Exported, FieldNames, X}`.
fn spawn_probe(node: &Node) {
    let mut mb = node.spawn_mailbox();
    node.register("rec_probe", mb.pid()).unwrap();
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(msg) = mb.recv().await {
            let Some([Term::Pid(from), rest @ ..]) = msg.as_tuple() else { continue };
            match rest {
                [op] if op.is_atom("make") => {
                    match node.try_send(from, pt()) {
                        Ok(()) => {}
                        Err(erlnode::SendError::Unencodable { .. }) => node.send_from(mb.pid(), from, Term::atom("record_refused")),
                        Err(e) => node.send_from(mb.pid(), from, Term::tuple([Term::atom("send_failed"), Term::binary(e.to_string())])),
                    }
                    node.send_from(mb.pid(), from, Term::tuple([Term::atom("after_rec"), Term::Int(2)]));
                }
                [op] if op.is_atom("exit_with_record") => {
                    // A process linked to the caller that dies with a
                    // record in its exit reason.
                    let from = from.clone();
                    node.spawn(move |mb| async move {
                        mb.link(&from);
                        Term::tuple([Term::atom("bad"), pt()])
                    });
                }
                [op, Term::Record(r)] if op.is_atom("inspect") => {
                    let names = r.field_names().cloned().map(Term::Atom).collect::<Vec<_>>();
                    let reply = Term::tuple([
                        Term::atom("inspected"),
                        Term::Atom(r.module().clone()),
                        Term::Atom(r.name().clone()),
                        Term::atom(if r.is_exported() { "true" } else { "false" }),
                        Term::List(names),
                        r.get("x").cloned().unwrap_or(Term::atom("no_x")),
                    ]);
                    node.send_from(mb.pid(), from, reply);
                }
                _ => node.send_from(mb.pid(), from, Term::atom("probe_bad_request")),
            }
        }
    });
}

async fn start() -> (Epmd, Node, BeamNode) {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("cookie");
    let rust = support::rust_node("rust", &cookie, epmd.port()).await;
    erlnode::services::echo::spawn(&rust, "erlnode_echo").unwrap();
    spawn_probe(&rust);
    let beam = BeamNode::builder().prefix("rec").cookie(&cookie).epmd_port(epmd.port()).start().await;
    (epmd, rust, beam)
}

/// An exit signal whose reason holds a record reaches a linked BEAM
/// process on every release: as the record on OTP 29, as the classic
/// record tuple `{pt, 1, two}` before (those releases drop the link on
/// a native record, and a dropped signal would leave the BEAM process
/// linked to a dead one), the link itself staying up.
#[tokio::test(flavor = "multi_thread")]
async fn exit_reason_with_a_record_reaches_every_release() {
    let (_epmd, rust, beam) = start().await;
    let release = otp::release();
    let r = beam
        .eval(&format!(
            "Rust = '{}',
             process_flag(trap_exit, true),
             {{rec_probe, Rust}} ! {{self(), ping}},
             receive probe_bad_request -> ok after 10000 -> exit(probe_silent) end,
             erlang:monitor_node(Rust, true),
             {{rec_probe, Rust}} ! {{self(), exit_with_record}},
             Exit = receive {{'EXIT', P, Reason}} when node(P) =:= Rust -> Reason after 10000 -> no_exit end,
             Down = receive {{nodedown, Rust}} -> nodedown after 0 -> up end,
             process_flag(trap_exit, false),
             {{Exit, Down}}",
            rust.name()
        ))
        .await;
    let items = r.as_tuple().unwrap_or_else(|| panic!("{r:?}"));
    let want = if release >= 29 { pt() } else { Term::tuple([Term::atom("pt"), Term::Int(1), Term::atom("two")]) };
    assert_eq!(items[0], Term::tuple([Term::atom("bad"), want]), "OTP {release}: {r:?}");
    assert!(items[1].is_atom("up"), "the link went down: {r:?}");
}

/// The records the BEAM sends, bound as `Terms` (OTP 29 only). Nested in
/// tuples, lists, maps (as keys and values), improper tails, a closure's
/// environment; 300 fields; 50 deep; one over 64 KiB so it travels in
/// fragments.
const RECORDS: &str = r#"
R = fun(M, N, F, E) -> records:create(M, N, F, #{is_exported => E}) end,
Pt = R(mymod, pt, [{x, 1}, {y, two}], true),
PtYx = R(mymod, pt, [{y, two}, {x, 1}], false),
Empty = R(mymod, e, [], false),
Uni = R('møde', 'ñame', [{'ü', 1.5}, {'日本', "ab"}], true),
Wide = R(wide, w, [{list_to_atom("f" ++ integer_to_list(I)), I} || I <- lists:seq(1, 300)], true),
Big = R(mymod, big, [{bin, binary:copy(<<"x">>, 200000)}, {inner, Pt}], true),
Deep = lists:foldl(fun(I, Acc) -> R(mymod, d, [{v, Acc}, {i, I}], false) end, Pt, lists:seq(1, 50)),
Clo = fun() -> {Pt, Empty} end,
Terms = [Pt, PtYx, Empty, Uni, Wide, Big, Deep,
         {Pt, [Empty, #{k => Pt, Pt => PtYx}], <<"b">>},
         [1 | Empty], #{Pt => [Uni], a => {Empty}}, Clo, {Clo, [Pt]}, [Pt, Pt, Pt],
         {self(), make_ref(), R(mymod, pt, [{x, self()}, {y, make_ref()}], true)}],
ok
"#;

#[tokio::test(flavor = "multi_thread")]
async fn native_records_round_trip_through_echo() {
    let (_epmd, rust, beam) = start().await;
    let release = otp::release();
    if release < 29 {
        // Something real on this release: it has no native records.
        let r = beam.eval("{code:ensure_loaded(records), erlang:function_exported(records, create, 4)}").await;
        assert_eq!(
            r,
            Term::tuple([Term::tuple([Term::atom("error"), Term::atom("nofile")]), Term::atom("false")]),
            "OTP {release} has a records module: run this suite against it as OTP 29"
        );
        eprintln!(
            "OTP {release} has no native records (records:create/4 absent): \
             the native-record round trip is checked by `make test-otp OTP=29`"
        );
        return;
    }
    beam.eval(RECORDS).await;
    beam.eval(crate::connect::GEN).await;
    // The BEAM's own record decodes to the one Rust builds (through
    // term_to_binary here, not distribution).
    assert_eq!(beam.eval("Pt").await, pt());
    let r = beam
        .eval_raw_timeout(
            &format!(
                "{}
                 Wrap = fun(T) -> R(mymod, pt, [{{x, T}}, {{y, Gen(1)}}], rand:uniform(2) =:= 1) end,
                 Random = [Wrap(Gen(rand:uniform(3))) || _ <- lists:seq(1, 300)],
                 %% Every term twice: the first send puts its atoms in the
                 %% connection's atom cache, the second only refers to them.
                 Bad = [T || T <- Terms ++ Random, _ <- [1, 2], Check(T) =/= true],
                 {{length(Bad), lists:sublist(Bad, 2), lists:member(Rust, nodes())}}",
                crate::connect::echo_check(rust.name().as_str())
            ),
            Duration::from_secs(180),
        )
        .await
        .expect("eval");
    let t = erlnode::term::decode(&r).unwrap();
    let items = t.as_tuple().unwrap();
    assert_eq!(items[0], Term::Int(0), "records that did not survive the round trip: {t:?}");
    assert!(items[2].is_atom("true"), "the link to erlnode went down");

    // Bit-exact: the same records re-encoded by Rust are OTP 29's own
    // term_to_binary/1 bytes.
    let raw = beam.eval_raw_timeout("{Terms, Random}", Duration::from_secs(60)).await.expect("eval");
    let decoded = erlnode::term::decode(&raw).unwrap();
    assert!(erlnode::term::encode_otp26(&decoded) == raw, "re-encoding differs from term_to_binary");

    // Rust code reads a record that came over distribution.
    let r = beam
        .eval(&format!(
            "{{rec_probe, '{}'}} ! {{self(), inspect, Pt}}, receive I -> I after 10000 -> timeout end",
            rust.name()
        ))
        .await;
    let want = Term::tuple([
        Term::atom("inspected"),
        Term::atom("mymod"),
        Term::atom("pt"),
        Term::atom("true"),
        Term::list([Term::atom("x"), Term::atom("y")]),
        Term::Int(1),
    ]);
    assert_eq!(r, want);
}

/// A record erlnode builds reaches an OTP 29 node `=:=` to the BEAM's own.
/// Older releases cannot decode one and drop the whole link on it, so
/// erlnode refuses it there (`SendError::Unencodable`): the message after
/// it arrives and the link stays up, watched with a node monitor (a
/// reconnecting ping would hide a drop).
#[tokio::test(flavor = "multi_thread")]
async fn record_sent_by_erlnode() {
    let (_epmd, rust, beam) = start().await;
    let release = otp::release();
    let r = beam
        .eval(&format!(
            "Rust = '{}',
             {{rec_probe, Rust}} ! {{self(), ping}},
             receive probe_bad_request -> ok after 10000 -> exit(probe_silent) end,
             erlang:monitor_node(Rust, true),
             {{rec_probe, Rust}} ! {{self(), make}},
             Got = fun G(Acc) -> receive {{after_rec, 2}} -> lists:reverse(Acc); {{nodedown, _}} = D -> [D | Acc]; M -> G([M | Acc]) after 30000 -> timeout end end,
             Msgs = Got([]),
             Same = case erlang:function_exported(records, create, 4) orelse code:ensure_loaded(records) =:= {{module, records}} of
                 true -> Msgs =:= [records:create(mymod, pt, [{{x, 1}}, {{y, two}}], #{{is_exported => true}})];
                 false -> no_records
             end,
             Down = receive {{nodedown, Rust}} -> nodedown after 0 -> up end,
             {{Msgs, Same, Down, lists:member(Rust, nodes())}}",
            rust.name()
        ))
        .await;
    let items = r.as_tuple().unwrap_or_else(|| panic!("{r:?}"));
    if release >= 29 {
        assert_eq!(items[0], Term::list([pt()]), "OTP {release} got {r:?}");
        assert!(items[1].is_atom("true"), "not =:= to records:create/4: {r:?}");
    } else {
        assert_eq!(items[0], Term::list([Term::atom("record_refused")]), "OTP {release}: {r:?}");
        assert!(items[1].is_atom("no_records"), "{r:?}");
    }
    assert!(items[2].is_atom("up"), "the link went down: {r:?}");
    assert!(items[3].is_atom("true"), "the link went down: {r:?}");
}
