//! Every message a DeltaCrdt 0.6.4 process receives, as Rust values.
//!
//! DeltaCrdt's `handle_info` has these clauses and no catch-all: `{ack_diff,
//! To}`, `{diff, Diff}`, `{diff, Delta, Keys}`, `{get_diff, Diff, Keys}`,
//! `{'EXIT', _, normal}`, `{'DOWN', ...}`, `{set_neighbours, List}` and
//! `sync`. A BEAM CRDT crashes (and takes Horde's subtree with it) on
//! anything else, so erlnode only ever builds these shapes, and it reads
//! them strictly: anything else is a [`CrdtParseError`] that the peer
//! logs and drops.

use super::awlww::{mapset_shape_of, AwLwwMap, MapSetShape};
use super::merkle_diff::{field, Continuation};
use super::store::Store;
use crate::term::{Atom, Reference, Term};

/// `%DeltaCrdt.CausalCrdt.Diff{continuation, dots, originator, from, to}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncDiff {
    pub continuation: Continuation,
    /// The originator's causal context, passed through untouched.
    pub dots: Term,
    /// The pid that started the sync; it gets the `ack_diff`.
    pub originator: Term,
    pub from: Term,
    pub to: Term,
}

impl SyncDiff {
    /// DeltaCrdt's `reverse_diff/1`: the receiver answers from `to` to `from`.
    pub fn reversed(&self) -> SyncDiff {
        SyncDiff { from: self.to.clone(), to: self.from.clone(), ..self.clone() }
    }

    pub fn to_term(&self) -> Term {
        Term::Map(vec![
            (Term::atom("__struct__"), Term::Atom(Atom::new("Elixir.DeltaCrdt.CausalCrdt.Diff"))),
            (Term::atom("continuation"), self.continuation.to_term()),
            (Term::atom("dots"), self.dots.clone()),
            (Term::atom("from"), self.from.clone()),
            (Term::atom("originator"), self.originator.clone()),
            (Term::atom("to"), self.to.clone()),
        ])
    }

    pub fn from_term(t: &Term, max_items: usize) -> Result<SyncDiff, String> {
        if !field(t, "__struct__").is_some_and(|s| s.is_atom("Elixir.DeltaCrdt.CausalCrdt.Diff")) {
            return Err("not a %DeltaCrdt.CausalCrdt.Diff{}".into());
        }
        let get = |name: &str| field(t, name).cloned().ok_or_else(|| format!("no {name}"));
        let dots = get("dots")?;
        Store::dots_from_term(&dots).ok_or("dots are not %{NodeId => Counter}")?;
        let d = SyncDiff {
            continuation: Continuation::from_term(&get("continuation")?, max_items)?,
            dots,
            originator: get("originator")?,
            from: get("from")?,
            to: get("to")?,
        };
        for (name, t) in [("originator", &d.originator), ("from", &d.from), ("to", &d.to)] {
            if !is_address(t) {
                return Err(format!("{name} is neither a pid nor {{Name, Node}}"));
            }
        }
        Ok(d)
    }
}

/// Something a message can be sent to: a pid or `{Name, Node}`.
pub fn is_address(t: &Term) -> bool {
    match t {
        Term::Pid(_) => true,
        Term::Tuple(v) => matches!(v.as_slice(), [Term::Atom(_), Term::Atom(_)]),
        _ => false,
    }
}

/// A message to a CRDT process.
#[derive(Debug, Clone, PartialEq)]
pub enum CrdtMessage {
    /// `{diff, Diff}`: one round of the Merkle comparison.
    Diff(SyncDiff),
    /// `{diff, Delta, Keys}`: the originator's entries for `keys`, and
    /// how its Elixir spells `MapSet`, if the delta shows it.
    Data { delta: AwLwwMap, keys: Vec<Term>, shape: Option<MapSetShape> },
    /// `{get_diff, Diff, Keys}`: the comparison ended at the other side;
    /// send it the data.
    GetDiff { diff: SyncDiff, keys: Vec<Term> },
    /// `{ack_diff, Neighbour}`: a sync this process started is over.
    Ack(Term),
    /// `{set_neighbours, [Neighbour]}` (sent by the local registry).
    SetNeighbours(Vec<Term>),
    Down(Reference),
    ExitNormal,
    Sync,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrdtParseError {
    #[error("not a DeltaCrdt message")]
    Unknown,
    #[error("malformed {message}: {reason}")]
    Malformed { message: &'static str, reason: String },
}

fn malformed(message: &'static str) -> impl Fn(String) -> CrdtParseError {
    move |reason| CrdtParseError::Malformed { message, reason }
}

fn keys_list(t: &Term, max_items: usize, message: &'static str) -> Result<Vec<Term>, CrdtParseError> {
    match t {
        Term::List(k) if k.len() <= max_items => Ok(k.clone()),
        Term::List(k) => Err(malformed(message)(format!("{} keys: over the limit of {max_items}", k.len()))),
        _ => Err(malformed(message)("keys are not a list".into())),
    }
}

/// Reads a message; `max_items` bounds the keys and trees one may carry.
pub fn parse(t: &Term, max_items: usize) -> Result<CrdtMessage, CrdtParseError> {
    let Some(items) = t.as_tuple() else {
        return if t.is_atom("sync") { Ok(CrdtMessage::Sync) } else { Err(CrdtParseError::Unknown) };
    };
    match items {
        [tag, d] if tag.is_atom("diff") => SyncDiff::from_term(d, max_items).map(CrdtMessage::Diff).map_err(malformed("diff")),
        [tag, delta, keys] if tag.is_atom("diff") => {
            let keys = keys_list(keys, max_items, "diff data")?;
            let delta = AwLwwMap::from_term(delta).ok_or_else(|| malformed("diff data")("not an %AWLWWMap{}".into()))?;
            if delta.value.len() > max_items {
                return Err(malformed("diff data")(format!("{} values", delta.value.len())));
            }
            Ok(CrdtMessage::Data { delta, keys, shape: mapset_shape_of(&items[1]) })
        }
        [tag, d, keys] if tag.is_atom("get_diff") => {
            let keys = keys_list(keys, max_items, "get_diff")?;
            Ok(CrdtMessage::GetDiff { diff: SyncDiff::from_term(d, max_items).map_err(malformed("get_diff"))?, keys })
        }
        [tag, to] if tag.is_atom("ack_diff") => Ok(CrdtMessage::Ack(to.clone())),
        [tag, Term::List(n)] if tag.is_atom("set_neighbours") => {
            if n.iter().all(is_address) {
                Ok(CrdtMessage::SetNeighbours(n.clone()))
            } else {
                Err(malformed("set_neighbours")("a neighbour is neither a pid nor {Name, Node}".into()))
            }
        }
        [tag, Term::Ref(r), p, _, _] if tag.is_atom("DOWN") && p.is_atom("process") => Ok(CrdtMessage::Down(r.clone())),
        [tag, _, reason] if tag.is_atom("EXIT") && reason.is_atom("normal") => Ok(CrdtMessage::ExitNormal),
        _ => Err(CrdtParseError::Unknown),
    }
}

/// `{diff, Diff}`.
pub fn diff_message(d: &SyncDiff) -> Term {
    Term::tuple([Term::atom("diff"), d.to_term()])
}

/// `{get_diff, Diff, Keys}`.
pub fn get_diff_message(d: &SyncDiff, keys: &[Term]) -> Term {
    Term::tuple([Term::atom("get_diff"), d.to_term(), Term::List(keys.to_vec())])
}

/// `{diff, Delta, Keys}`.
pub fn data_message(delta: Term, keys: &[Term]) -> Term {
    Term::tuple([Term::atom("diff"), delta, Term::List(keys.to_vec())])
}

/// `{ack_diff, Neighbour}`.
pub fn ack_message(to: &Term) -> Term {
    Term::tuple([Term::atom("ack_diff"), to.clone()])
}
