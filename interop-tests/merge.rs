//! Issue 14, netsplit merges: a grow-only counter registered on both
//! sides of a real partition (the Elixir node drops the link and refuses
//! the Rust node's redial until the heal) merges on heal through
//! `merge_conflict(mine, theirs)`, whichever side resolves: the Rust
//! `global` (Rust node name sorts lower) or OTP's (Elixir node lower).

use crate::support::{self, BeamNode, Epmd};
use erlnode::gen_server::{Ctx, Flow, GenServer, Reply};
use erlnode::migration::{Migratable, Migration};
use erlnode::process::Dest;
use erlnode::term::serde::{from_term, to_term};
use erlnode::Term;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The Rust twin of `Erlnode.MergeSupport.GCounter` (type `gcounter`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct GCounter {
    counts: BTreeMap<String, i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum GcCall {
    Incr(String, i64),
    Get,
}

impl GenServer for GCounter {
    type Call = GcCall;
    type Cast = GcCall;
    type Reply = Term;
    async fn handle_call(&mut self, req: GcCall, _from: &Term, _ctx: &mut Ctx) -> Reply<Term> {
        match req {
            GcCall::Incr(k, n) => {
                *self.counts.entry(k).or_default() += n;
                Reply::Reply(Term::tuple([Term::atom("ok"), Term::Int(self.counts.values().sum())]))
            }
            GcCall::Get => Reply::Reply(to_term(&*self).unwrap()),
        }
    }
    async fn handle_cast(&mut self, _msg: GcCall, _ctx: &mut Ctx) -> Flow {
        Flow::Continue
    }
}

impl Migratable for GCounter {
    const TYPE: &'static str = "gcounter";
    type Args = Term;
    fn init_state(_args: Term) -> Result<Self, Term> {
        Ok(GCounter::default())
    }
    const MERGES: bool = true;
    fn merge_conflict(&mut self, theirs: Self) {
        for (k, n) in theirs.counts {
            let mine = self.counts.entry(k).or_default();
            *mine = (*mine).max(n);
        }
    }
}

async fn merge_after_heal(elixir_prefix: &str) {
    let epmd = Epmd::start().await;
    let cookie = support::unique("merge");
    let r = support::rust_node("rmerge", &cookie, epmd.port()).await;
    let m = Migration::builder(&r).rebalance_on_join(false).register::<GCounter>().start().unwrap();
    let e = BeamNode::builder().prefix(elixir_prefix).cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start().await;
    let ok = e.eval("application:load(erlnode_ex), application:set_env(erlnode_ex, rebalance_on_join, false), application:ensure_all_started(erlnode_ex)").await;
    assert!(matches!(ok.as_tuple(), Some([o, _]) if o.is_atom("ok")), "{ok:?}");
    r.connect(e.name()).await.unwrap();
    r.global().sync(T).await.unwrap();
    let rn = r.name().to_string();
    let name = support::unique("gc");
    let gc = m.start_process::<GCounter>(Term::nil(), &name).await.unwrap();
    let mut mb = r.spawn_mailbox();
    let incr = Term::tuple([Term::atom("incr"), Term::from("r"), Term::Int(5)]);
    assert!(mb.call(gc.pid(), incr, T).await.is_ok());

    // Partition: E drops the link and refuses R's redials (wrong cookie
    // for R) while it registers and counts its own gcounter.
    let split = e
        .eval(&format!(
            "net_kernel:monitor_nodes(true),
             erlang:set_cookie('{rn}', wrong_cookie),
             true = erlang:disconnect_node('{rn}'),
             receive {{nodedown, '{rn}'}} -> ok after 30000 -> exit(no_nodedown) end,
             W = fun W(0) -> exit(still_registered); W(N) -> case global:whereis_name('{name}') of undefined -> ok; _ -> timer:sleep(20), W(N - 1) end end,
             ok = W(500),
             {{ok, P}} = 'Elixir.Erlnode.Migration':start_process(<<\"gcounter\">>, #{{}}, '{name}'),
             {{ok, 3}} = gen_server:call(P, {{incr, <<\"e\">>, 3}}),
             ok"
        ))
        .await;
    assert!(split.is_atom("ok"), "{split:?}");

    // Heal.
    let healed = e.eval(&format!("erlang:set_cookie('{rn}', '{cookie}'), true = net_kernel:connect_node('{rn}'), global:sync()")).await;
    assert!(healed.is_atom("ok"), "{healed:?}");
    r.global().sync(T).await.unwrap();

    // One process, on the lower-named node (OTP's rule), with both sides' counts.
    let lower = if rn.as_str() < e.name() { rn.clone() } else { e.name().to_string() };
    let want: BTreeMap<String, i64> = [("r".to_string(), 5), ("e".to_string(), 3)].into();
    let deadline = tokio::time::Instant::now() + T;
    let state = loop {
        let st = match mb.call(Dest::Global(Term::atom(&name)), Term::atom("get"), Duration::from_secs(5)).await {
            Ok(t) => from_term::<GCounter>(t).ok(),
            Err(_) => None,
        };
        if st.as_ref().is_some_and(|s| s.counts == want) {
            break st.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "never merged: last state {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // bounded poll: the merge has no event here
    };
    assert_eq!(state.counts, want);
    let winner = r.global().whereis_name(&Term::atom(&name)).expect("registered");
    assert_eq!(winner.node.as_str(), lower, "OTP's rule picks the winner");
    let on_e = e.eval(&format!("global:whereis_name('{name}')")).await;
    assert_eq!(on_e, Term::Pid(winner.clone()), "both sides agree");
    // The loser is gone: exactly one gcounter of that name is hosted.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let here = m.hosted().iter().filter(|(n, _, _)| n.as_str() == name).count();
        let there = e.eval(&format!("length([N || {{N, _}} <- 'Elixir.Erlnode.Migration':hosted(), N =:= '{name}'])")).await;
        if here + matches!(there, Term::Int(1)) as usize == 1 && matches!(there, Term::Int(0 | 1)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "loser still hosted: rust {here}, elixir {there:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // bounded poll
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_conflict_after_heal_rust_resolves() {
    merge_after_heal("zmerge").await; // "rmerge..." < "zmerge...": the Rust global resolves
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_conflict_after_heal_elixir_resolves() {
    merge_after_heal("amerge").await; // "amerge..." < "rmerge...": OTP's global resolves
}
