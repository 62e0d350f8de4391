//! The bench type `"erlnode_bench"`: the throwaway process `erlnode
//! bench` starts on the nodes it measures. Every `erlnode run` node hosts
//! it, and so does every Elixir node running the `erlnode_ex` application
//! (its twin, `Erlnode.Examples.Bench`, same messages, same state). Its
//! type is pinned: placement never moves it, only the bench does.
//!
//! State: `%{data: <<Size bytes>>, received: n}` (start argument: Size).
//! Messages (Elixir syntax):
//!
//! - call `:ping` -> `{:pong, :rust | :elixir}`: a round trip, and what
//!   runs the node;
//! - call `{:calls, target, n}` -> `[us]`: `n` back-to-back calls `:ping`
//!   to `target` (a pid), each one's round trip in microseconds;
//! - call `{:send, target, n, size}` -> `{us, received}`: `n` casts
//!   `{:data, <<size bytes>>}` to `target`, then a call `:received` to it
//!   (which, messages between two processes keeping their order, answers
//!   after the last cast was handled); `us` is from the first cast to that
//!   answer, `received` what the target counted;
//! - call `:received` -> the casts `{:data, _}` and `:bump` handled since
//!   the last `:received` (the count restarts at 0);
//! - cast `:hold`: wait (at most 60 s) for the message `erlnode_bench_go`,
//!   leaving everything else queued: the bench queues a migration's
//!   `begin` and the queue behind it, then releases the process;
//! - cast `:bump`: one queued message (counted as received);
//! - call `:stop` -> `:ok`, and the process ends (`normal`).

use crate::gen_server::{Ctx, Flow, GenServer, Reply};
use crate::migration::Migratable;
use crate::term::{Binary, Term};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

pub const TYPE: &str = "erlnode_bench";
/// The message that releases a held bench process.
pub const GO: &str = "erlnode_bench_go";
const HOLD_LIMIT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bench {
    /// Shared, not copied, when the process moves (`Binary`).
    pub data: Binary,
    pub received: i64,
}

fn int(t: &Term) -> Option<usize> {
    t.as_int().and_then(|n| usize::try_from(n).ok())
}

fn error(what: &str) -> Term {
    Term::tuple([Term::atom("error"), Term::from(what)])
}

impl Bench {
    async fn calls(target: &crate::Pid, n: usize, ctx: &mut Ctx) -> Term {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            if let Err(e) = ctx.call(target.clone(), Term::atom("ping"), CALL_TIMEOUT).await {
                return error(&e.to_string());
            }
            out.push(Term::Int(t0.elapsed().as_micros() as i64));
        }
        Term::List(out)
    }

    async fn send(target: &crate::Pid, n: usize, size: usize, ctx: &mut Ctx) -> Term {
        let msg = Term::tuple([Term::atom("$gen_cast"), Term::tuple([Term::atom("data"), Term::binary(vec![7u8; size])])]);
        let t0 = Instant::now();
        for _ in 0..n {
            if let Err(e) = ctx.send_async(target, msg.clone()).await {
                return error(&e.to_string());
            }
        }
        match ctx.call(target.clone(), Term::atom("received"), CALL_TIMEOUT).await {
            Ok(received) => Term::tuple([Term::Int(t0.elapsed().as_micros() as i64), received]),
            Err(e) => error(&e.to_string()),
        }
    }
}

impl GenServer for Bench {
    type Call = Term;
    type Cast = Term;
    type Reply = Term;

    async fn handle_call(&mut self, request: Term, _from: &Term, ctx: &mut Ctx) -> Reply<Term> {
        if request.is_atom("ping") {
            return Reply::Reply(Term::tuple([Term::atom("pong"), Term::atom("rust")]));
        }
        if request.is_atom("received") {
            return Reply::Reply(Term::Int(std::mem::take(&mut self.received)));
        }
        if request.is_atom("stop") {
            return Reply::Stop { reason: Term::atom("normal"), reply: Some(Term::atom("ok")) };
        }
        Reply::Reply(match request.as_tuple() {
            Some([op, Term::Pid(target), n]) if op.is_atom("calls") && int(n).is_some() => Self::calls(target, int(n).unwrap_or(0), ctx).await,
            Some([op, Term::Pid(target), n, size]) if op.is_atom("send") && int(n).is_some() && int(size).is_some() => {
                Self::send(target, int(n).unwrap_or(0), int(size).unwrap_or(0), ctx).await
            }
            _ => error("unknown request"),
        })
    }

    async fn handle_cast(&mut self, msg: Term, ctx: &mut Ctx) -> Flow {
        if msg.is_atom("hold") {
            let _ = ctx.recv_match(HOLD_LIMIT, |t| t.is_atom(GO).then_some(())).await;
        } else if msg.is_atom("bump") || matches!(msg.as_tuple(), Some([tag, _]) if tag.is_atom("data")) {
            self.received += 1;
        }
        Flow::Continue
    }
}

impl Migratable for Bench {
    const TYPE: &'static str = TYPE;
    /// The size of the state's binary, in bytes.
    type Args = usize;

    fn init_state(size: usize) -> Result<Self, Term> {
        Ok(Bench { data: Binary::from(vec![7; size]), received: 0 })
    }
}
