//! The canonical migratable state machine: an account whose state
//! records, per sender, the last sequence number seen, so that loss,
//! duplication and reordering of messages are all detectable after any
//! number of migrations. The Elixir twin is `Erlnode.Examples.Account`
//! (same type name, same state shape, same messages).
//!
//! Messages, accepted as a cast, a call (reply `{:ok, balance}`) or a
//! plain message: `{:deposit, sender :: binary, seq :: integer, amount ::
//! integer}`. The call `:get` returns the state map. Every deposit is
//! applied whatever its number, so the balance exposes a loss or a
//! duplicate against the sum sent; with `expected = last_seq + 1`, a
//! deposit whose seq is greater is a `:gap`, equal to `last_seq` a
//! `:duplicate`, smaller a `:reorder`. `last_seq` keeps the maximum;
//! anomalies are newest first. Start arguments: `%{balance: n}` (or a
//! keyword list), default 0.

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
    /// A number was skipped: something before it is missing or late.
    Gap,
    /// The same number again.
    Duplicate,
    /// A number below the last one: it arrived after a later one.
    Reorder,
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
        let last = self.last_seq.get(sender).copied().unwrap_or(0);
        let expected = last + 1;
        let kind = if seq == expected {
            None
        } else if seq > expected {
            Some(AnomalyKind::Gap)
        } else if seq == last {
            Some(AnomalyKind::Duplicate)
        } else {
            Some(AnomalyKind::Reorder)
        };
        if let Some(kind) = kind {
            self.anomalies.insert(0, Anomaly { kind, sender: sender.into(), expected, got: seq });
        }
        self.last_seq.insert(sender.to_string(), last.max(seq));
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
    /// `%{balance: n}`, a keyword list, or anything else (balance 0): the
    /// Elixir twin accepts the same.
    type Args = Term;

    fn init_state(args: Term) -> Result<Self, Term> {
        Ok(Account { balance: initial_balance(&args), ..Account::default() })
    }

    /// Replicas get the fields a deposit changed, not the whole account
    /// (the Elixir twin makes and reads the same deltas).
    fn replica_delta(old: &Term, new: &Term) -> Option<Term> {
        crate::migration::replica::map_delta(old, new)
    }

    fn apply_replica_delta(held: &Term, delta: &Term) -> Result<Term, Term> {
        crate::migration::replica::apply_map_delta(held, delta)
    }
}

fn initial_balance(args: &Term) -> i64 {
    let pairs: Vec<(&Term, &Term)> = match args {
        Term::Map(entries) => entries.iter().map(|(k, v)| (k, v)).collect(),
        Term::List(items) => items
            .iter()
            .filter_map(|i| match i.as_tuple() {
                Some([k, v]) => Some((k, v)),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    pairs.into_iter().find(|(k, _)| k.is_atom("balance")).and_then(|(_, v)| v.as_int()).unwrap_or(0)
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
        a.deposit("s", 3, 10); // reorder
        a.deposit("t", 1, 5);
        assert_eq!(a.balance, 55, "every deposit is applied");
        assert_eq!(a.applied, 6);
        assert_eq!(a.last_seq["s"], 4);
        let kinds: Vec<_> = a.anomalies.iter().map(|x| x.kind).collect();
        assert_eq!(kinds, vec![AnomalyKind::Reorder, AnomalyKind::Gap, AnomalyKind::Duplicate], "newest first");
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
