//! The smallest migratable state machine, the one docs/guide.md builds:
//! a counter (type `"counter"`). The Elixir twin is
//! `Erlnode.Examples.Counter` (erlang/lib/erlnode/examples/counter.ex).
//! The guide shows this file's code between the `guide:begin` and
//! `guide:end` markers verbatim; a test checks that they agree.

// guide:begin
use crate::prelude::*;
use serde::{Deserialize, Serialize};

/// The state: what travels between nodes, as `%{count: n}`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub count: i64,
}

/// Requests: `:get` and `{:add, n}`, as calls (reply: the count) or
/// casts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Req {
    Get,
    Add(i64),
}

impl GenServer for Counter {
    type Call = Req;
    type Cast = Req;
    type Reply = i64;

    async fn handle_call(&mut self, req: Req, _from: &Term, _ctx: &mut Ctx) -> Reply<i64> {
        if let Req::Add(n) = req {
            self.count += n;
        }
        Reply::Reply(self.count)
    }

    async fn handle_cast(&mut self, req: Req, _ctx: &mut Ctx) -> Flow {
        if let Req::Add(n) = req {
            self.count += n;
        }
        Flow::Continue
    }
}

impl Migratable for Counter {
    const TYPE: &'static str = "counter";
    /// The initial count.
    type Args = i64;

    fn init_state(start: i64) -> Result<Self, Term> {
        Ok(Counter { count: start })
    }
}
// guide:end
