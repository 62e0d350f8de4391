//! State across hops and rolling deploys (docs/handoff.md, "State
//! versions and unknown fields"), between real Elixir and Rust nodes:
//! a field the Rust type does not know survives a Rust hop (or is
//! rejected, when configured), and old/new versions of a type hand state
//! to each other in both directions with `upgrade_state`.

use crate::support::{self, BeamNode, Epmd};
use erlnode::examples::counter::Counter;
use erlnode::migration::UnknownFields;
use erlnode::prelude::*;
use erlnode::term::serde::to_term;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// "vcounter", version 1 in Rust: `%{count: n}`; the Elixir twin is at 2.
#[derive(Debug, Default, Serialize, Deserialize)]
struct VCounter {
    count: i64,
}

/// "wcounter", version 2 in Rust: a `unit` was added; the Elixir twin is at 1.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct WCounter {
    count: i64,
    unit: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Get {
    Get,
}

/// Both test types answer `:get` with their count.
macro_rules! answers_count {
    ($t:ty) => {
        impl GenServer for $t {
            type Call = Get;
            type Cast = Get;
            type Reply = i64;
            async fn handle_call(&mut self, _: Get, _: &Term, _: &mut Ctx) -> Reply<i64> {
                Reply::Reply(self.count)
            }
        }
    };
}
answers_count!(VCounter);
answers_count!(WCounter);

impl Migratable for VCounter {
    const TYPE: &'static str = "vcounter";
    type Args = i64;
    fn init_state(count: i64) -> Result<Self, Term> {
        Ok(VCounter { count })
    }
}


impl Migratable for WCounter {
    const TYPE: &'static str = "wcounter";
    type Args = i64;
    const VERSION: u32 = 2;
    fn init_state(count: i64) -> Result<Self, Term> {
        Ok(WCounter { count, unit: "pcs".into() })
    }
    /// Version 1 had no unit.
    fn upgrade_state(from: u32, state: Term) -> Result<Term, Term> {
        match (from, state) {
            (1, Term::Map(mut m)) => {
                if !m.iter().any(|(k, _)| k.is_atom("unit")) {
                    m.push((Term::atom("unit"), Term::from("pcs")));
                }
                Ok(Term::Map(m))
            }
            (_, other) => Ok(other),
        }
    }
}

const ELIXIR_TWINS: &str = r#"
defmodule VCounterV2 do
  use Erlnode.Migratable, type: "vcounter", version: 2, host: false
  def init(n), do: {:ok, %{count: n, unit: "pcs"}}
  def upgrade_state(1, s), do: Map.put_new(s, :unit, "pcs")
  def handle_call(:get, _from, s), do: {:reply, s.count, s}
end
defmodule WCounterV1 do
  use Erlnode.Migratable, type: "wcounter", host: false
  def init(n), do: {:ok, %{count: n}}
  def handle_call(:get, _from, s), do: {:reply, s.count, s}
end
:ok = Erlnode.Migration.register_type("vcounter", VCounterV2)
:ok = Erlnode.Migration.register_type("wcounter", WCounterV1)
"#;

async fn rust_node(prefix: &str, cookie: &str, epmd: u16, unknown: UnknownFields) -> (Node, Migration) {
    let node = Node::builder(format!("{}@127.0.0.1", support::unique(prefix))).cookie(cookie).epmd_port(epmd).embedded_epmd(false).start().await.unwrap();
    let cfg = HandoffConfig { unknown_fields: unknown, ..Default::default() };
    let m = Migration::builder(&node)
        .config(cfg)
        .rebalance_on_join(false)
        .register::<Counter>()
        .register::<VCounter>()
        .register::<WCounter>()
        .start()
        .unwrap();
    (node, m)
}

fn ok_tag(t: &Term) -> bool {
    t.as_tuple().map(|x| x[0].is_atom("ok")).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_survive_a_rust_hop_and_versions_upgrade_both_ways() {
    support::require_erlang();
    let epmd = Epmd::start().await;
    let cookie = support::unique("vsn");
    let ex = BeamNode::builder().prefix("vsn_ex").cookie(&cookie).epmd_port(epmd.port()).erlnode_ex(true).start().await;
    assert!(ok_tag(&ex.eval("application:ensure_all_started(erlnode_ex)").await));
    let (carry, mc) = rust_node("vsn_carry", &cookie, epmd.port(), UnknownFields::Carry).await;
    let (strict, _ms) = rust_node("vsn_strict", &cookie, epmd.port(), UnknownFields::Reject).await;
    ex.eval_elixir(ELIXIR_TWINS).await;
    for n in [&carry, &strict] {
        n.connect(ex.name()).await.unwrap();
        n.global().sync(T).await.unwrap();
    }
    assert_eq!(ex.try_eval_timeout("global:sync()", T).await, Ok(Term::atom("ok")));
    let (cn, sn) = (carry.name().to_string(), strict.name().to_string());
    let migrate = |name: &str, to: &str| format!("Erlnode.Migration.migrate(:{name}, :\"{to}\")");
    let state = |name: &str| format!(":sys.get_state({{:global, :{name}}})");

    // 1. A field the Rust type does not know, through a Rust hop and back.
    let c = support::unique("note_counter");
    assert!(ok_tag(&ex.eval_elixir(&format!("Erlnode.Migration.start_process(\"counter\", 5, :{c})")).await));
    ex.eval_elixir(&format!(":sys.replace_state({{:global, :{c}}}, &Map.put(&1, :note, \"keep me\"))")).await;
    // The strict node refuses it and says why; the process stays, intact.
    let refused = ex.eval_elixir(&migrate(&c, &sn)).await;
    let expected = Term::tuple([Term::atom("error"), Term::tuple([Term::atom("rejected"), Term::tuple([Term::atom("unknown_fields"), Term::list([Term::atom("note")])])])]);
    assert_eq!(refused, expected);
    assert!(ok_tag(&ex.eval_elixir(&migrate(&c, &cn)).await));
    assert_eq!(gen_server::call::<i64>(&carry, c.as_str(), &Get::Get, T).await.unwrap(), 5, "served by Rust");
    assert_eq!(mc.hosted().len(), 1);
    assert!(ok_tag(&ex.eval_elixir(&migrate(&c, ex.name())).await));
    let back = ex.eval_elixir(&state(&c)).await;
    let want = ex.eval_elixir("%{count: 5, note: \"keep me\"}").await;
    assert_eq!(back, want, "the note went through the Rust hop");

    // 2. Rust at version 1, Elixir at version 2 (Elixir upgrades).
    let v = support::unique("vcounter");
    mc.start_process::<VCounter>(3, &v).await.unwrap();
    assert!(ok_tag(&ex.eval_elixir(&migrate(&v, ex.name())).await));
    assert_eq!(ex.eval_elixir(&state(&v)).await, ex.eval_elixir("%{count: 3, unit: \"pcs\"}").await, "upgraded from 1");
    ex.eval_elixir(&format!(":sys.replace_state({{:global, :{v}}}, &%{{&1 | unit: \"kg\"}})")).await;
    // New -> old: the version-1 Rust node carries `unit`; back at 2 it is kept.
    assert!(ok_tag(&ex.eval_elixir(&migrate(&v, &cn)).await));
    assert!(ok_tag(&ex.eval_elixir(&migrate(&v, ex.name())).await));
    assert_eq!(ex.eval_elixir(&state(&v)).await, ex.eval_elixir("%{count: 3, unit: \"kg\"}").await);

    // 3. Elixir at version 1, Rust at version 2 (Rust upgrades).
    let w = support::unique("wcounter");
    assert!(ok_tag(&ex.eval_elixir(&format!("Erlnode.Migration.start_process(\"wcounter\", 7, :{w})")).await));
    assert!(ok_tag(&ex.eval_elixir(&migrate(&w, &cn)).await));
    let mut mb = carry.spawn_mailbox();
    let req = mb.send_system_request(w.as_str(), Term::atom("get_state"));
    let on_rust = mb.receive_response(req, T).await.unwrap();
    assert_eq!(on_rust, to_term(&WCounter { count: 7, unit: "pcs".into() }).unwrap(), "upgraded from 1 by Rust");
    // Back to the version-1 Elixir twin: it gets the version-2 state.
    assert!(ok_tag(&ex.eval_elixir(&migrate(&w, ex.name())).await));
    assert_eq!(ex.eval_elixir(&state(&w)).await, ex.eval_elixir("%{count: 7, unit: \"pcs\"}").await);
    carry.shutdown().await;
    strict.shutdown().await;
}
