//! The canonical migratable state machine: an account whose state
//! records, per sender, the last sequence number seen, so that loss,
//! duplication and reordering of messages are all detectable after any
//! number of migrations. The Elixir twin is `Erlnode.Examples.Account`
//! (same type name, same state shape, same messages).
//!
//! Messages, accepted as a cast, a call or a plain message:
//! `{:deposit, sender :: binary, seq :: integer, amount :: integer}`.
//! Calls: `:get` returns the state map.

use crate::gen_server::{Ctx, Flow, GenServer, Reply};
use crate::migration::Migratable;
use crate::term::serde::{from_term, to_term};
use crate::term::Term;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
    /// sender -> last sequence number applied
    pub last_seq: BTreeMap<String, i64>,
    /// deposits applied
    pub applied: i64,
    pub anomalies: Vec<Anomaly>,
}

/// A deposit that did not carry the next sequence number of its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub sender: String,
    pub expected: i64,
    pub got: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A sequence number was skipped: a message was lost (or reordered).
    Gap,
    /// A sequence number at or below the last one: duplicated or late.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    Deposit(String, i64, i64),
    Get,
}

impl Account {
    /// Applies a deposit, recording any anomaly in its sequence.
    pub fn deposit(&mut self, sender: &str, seq: i64, amount: i64) {
        let expected = self.last_seq.get(sender).copied().unwrap_or(0) + 1;
        if seq < expected {
            self.anomalies.push(Anomaly { kind: AnomalyKind::Duplicate, sender: sender.into(), expected, got: seq });
            return; // never apply twice
        }
        if seq > expected {
            self.anomalies.push(Anomaly { kind: AnomalyKind::Gap, sender: sender.into(), expected, got: seq });
        }
        self.last_seq.insert(sender.to_string(), seq);
        self.balance += amount;
        self.applied += 1;
    }

    fn apply(&mut self, msg: Msg) {
        if let Msg::Deposit(sender, seq, amount) = msg {
            self.deposit(&sender, seq, amount);
        }
    }
}

impl GenServer for Account {
    type Call = Msg;
    type Cast = Msg;
    type Reply = Term;

    async fn handle_call(&mut self, request: Msg, _from: &Term, _ctx: &mut Ctx) -> Reply<Term> {
        match request {
            Msg::Get => Reply::Reply(to_term(&*self).unwrap_or_else(|_| Term::atom("error"))),
            deposit => {
                self.apply(deposit);
                Reply::Reply(Term::tuple([Term::atom("ok"), Term::Int(self.balance)]))
            }
        }
    }

    async fn handle_cast(&mut self, msg: Msg, _ctx: &mut Ctx) -> Flow {
        self.apply(msg);
        Flow::Continue
    }

    async fn handle_info(&mut self, msg: Term, _ctx: &mut Ctx) -> Flow {
        match from_term::<Msg>(msg) {
            Ok(m) => self.apply(m),
            Err(e) => tracing::debug!(error = %e, "account: unexpected message dropped"),
        }
        Flow::Continue
    }
}

impl Migratable for Account {
    const TYPE: &'static str = "account";
    type Args = ();

    fn init_state(_args: ()) -> Result<Self, Term> {
        Ok(Account::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_anomalies_are_detected() {
        let mut a = Account::default();
        a.deposit("s", 1, 10);
        a.deposit("s", 2, 10);
        a.deposit("s", 2, 10); // duplicate
        a.deposit("s", 4, 10); // gap
        a.deposit("t", 1, 5);
        assert_eq!(a.balance, 35);
        assert_eq!(a.applied, 4);
        assert_eq!(a.anomalies.iter().map(|x| x.kind).collect::<Vec<_>>(), vec![AnomalyKind::Duplicate, AnomalyKind::Gap]);
    }

    #[test]
    fn state_is_a_plain_map_with_atom_keys() {
        let mut a = Account::default();
        a.deposit("s", 1, 10);
        let t = to_term(&a).unwrap();
        let Term::Map(entries) = &t else { panic!("{t:?}") };
        assert!(entries.iter().any(|(k, v)| k.is_atom("balance") && *v == Term::Int(10)));
        assert_eq!(from_term::<Account>(t).unwrap(), a);
    }
}
