//! Replicas of processes a library places: children of a Horde
//! supervisor or of a ProcessHub hub (docs/replicas.md, "Processes Horde
//! or ProcessHub places").
//!
//! The library decides where such a child runs and restarts it on
//! another member when its node dies, and its name lives in the
//! library's registry, not in `global`. So erlnode's own failover must stay out of the way
//! (a second copy would fight Horde's), and only the *state* is erlnode's
//! business: the child replicates as any process with replicas does,
//! under a name made from its supervisor and key, and the process Horde
//! starts in its place asks the stores for the latest state
//! ([`fetch`]) before it serves. Stores never fail these entries over;
//! they keep one while its owner lives or its owner's node is down, and
//! the restarted process drops the dead owner's entries once it runs.
//!
//! Both languages build the name the same way: `erlnode_horde:` then the
//! supervisor's module atom, `:`, and the key with its kind (`b` a UTF-8
//! binary, `a` an atom, `i` an integer); `erlnode_processhub:` then the
//! hub id, `:`, and the child id the same way. Other keys get no
//! replicas.

use super::messages::Msg;
use super::STORE_NAME;
use crate::process::Mailbox;
use crate::term::{Atom, Pid, Term};
use crate::Node;
use std::time::Duration;

/// The prefix of the names of Horde children.
pub const HORDE_PREFIX: &str = "erlnode_horde:";

/// The prefix of the names of ProcessHub children.
pub const PROCESSHUB_PREFIX: &str = "erlnode_processhub:";

/// How long a restarted child waits for the stores' answers.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The replica name of the Horde child keyed `key` in supervisor `sup`
/// (`Elixir.MyApp.Sup`), or `None` for a key of another kind or a name
/// longer than an atom may be.
pub fn horde_name(sup: &Atom, key: &Term) -> Option<Atom> {
    placed_name(HORDE_PREFIX, sup, key)
}

/// The replica name of the ProcessHub child `cid` of hub `hub` (the hub
/// id atom, `my_hub`), or `None` as for [`horde_name`].
pub fn processhub_name(hub: &Atom, cid: &Term) -> Option<Atom> {
    placed_name(PROCESSHUB_PREFIX, hub, cid)
}

fn placed_name(prefix: &str, owner: &Atom, key: &Term) -> Option<Atom> {
    let key = match key {
        Term::Binary(b) => format!("b{}", std::str::from_utf8(b).ok()?),
        Term::Atom(a) => format!("a{a}"),
        Term::Int(i) => format!("i{i}"),
        _ => return None,
    };
    let name = format!("{prefix}{owner}:{key}");
    (name.chars().count() <= 255).then(|| Atom::new(&name))
}

/// Whether a library places the process of this replica name, so that
/// the stores must not fail it over.
pub fn is_placed_by_library(name: &Atom) -> bool {
    let n = name.as_str();
    n.starts_with(HORDE_PREFIX) || n.starts_with(PROCESSHUB_PREFIX)
}

/// The latest replica of a process, as a store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub seq: u64,
    pub owner: Pid,
    /// The versioned replica state (what a handover carries).
    pub state: Term,
    /// Every node whose store held an entry for the name, so the new
    /// owner can drop the dead owner's entries there.
    pub holders: Vec<(Atom, Pid)>,
}

/// Asks the store of every node in `nodes` for `name` at once; the
/// entry with the highest sequence wins (within one owner, a higher
/// sequence includes every update of a lower one). Stores that do not
/// answer in time, or of a release without `fetch`, count as holding
/// nothing.
pub async fn fetch(node: &Node, nodes: &[Atom], name: &Atom) -> Option<Fetched> {
    fetch_if(node, nodes, name, FETCH_TIMEOUT, |_| true).await
}

/// The newest entry for `name` in the stores of `nodes` whose owner lived
/// on `dead`, each store given `timeout`: what a failover compares its
/// own entry with (failover.rs).
pub(crate) async fn newest_of_dead_owner(node: &Node, nodes: &[Atom], name: &Atom, dead: &Atom, timeout: Duration) -> Option<Fetched> {
    fetch_if(node, nodes, name, timeout, |owner| &owner.node == dead).await
}

/// [`fetch`], counting only entries whose owner's node is down: the
/// replica of a process that died with its node. A ProcessHub child
/// starts here for other reasons too (a join moves it, a graceful leave
/// hands it over, a crash restarts it), and then its previous owner's
/// node is up and the state, if any, comes by the handover.
pub async fn fetch_of_dead_owner(node: &Node, nodes: &[Atom], name: &Atom) -> Option<Fetched> {
    let up: std::collections::HashSet<Atom> = node.connected_nodes().into_iter().chain([node.name().clone()]).collect();
    fetch_if(node, nodes, name, FETCH_TIMEOUT, |owner| !up.contains(&owner.node)).await
}

async fn fetch_if(node: &Node, nodes: &[Atom], name: &Atom, timeout: Duration, counts: impl Fn(&Pid) -> bool) -> Option<Fetched> {
    let req = Msg::Fetch { name: name.clone() }.to_term();
    let asks = nodes.iter().map(|n| {
        let (node, req, n) = (node.clone(), req.clone(), n.clone());
        async move {
            let mut mb = node.spawn_mailbox();
            let r = mb
                .call(
                    crate::process::Dest::local(STORE_NAME, n.as_str()),
                    req,
                    timeout,
                )
                .await;
            (n, r.ok().and_then(|t| parse_fetched(&t)))
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut best: Option<Fetched> = None;
    let mut holders = vec![];
    for (n, got) in answers {
        let Some((seq, owner, state)) = got.filter(|(_, owner, _)| counts(owner)) else {
            continue;
        };
        holders.push((n, owner.clone()));
        if best.as_ref().is_none_or(|b| seq > b.seq) {
            best = Some(Fetched {
                seq,
                owner,
                state,
                holders: vec![],
            });
        }
    }
    best.map(|b| Fetched { holders, ..b })
}

/// `{ok, Seq, Owner, State}` -> its parts; `none` and anything else ->
/// `None`.
pub fn parse_fetched(t: &Term) -> Option<(u64, Pid, Term)> {
    match t.as_tuple()? {
        [ok, Term::Int(seq), Term::Pid(owner), state] if ok.is_atom("ok") && *seq >= 0 => {
            Some((*seq as u64, owner.clone(), state.clone()))
        }
        _ => None,
    }
}

/// A store's answer to [`Msg::Fetch`].
pub(crate) fn fetched_reply(found: Option<(u64, &Pid, &Term)>) -> Term {
    match found {
        Some((seq, owner, state)) => Term::tuple([
            Term::atom("ok"),
            Term::Int(seq as i64),
            Term::Pid(owner.clone()),
            state.clone(),
        ]),
        None => Term::atom("none"),
    }
}

/// After the restarted process adopted `f`'s state: the stores that
/// held the dead owner's entry forget it (a store the new owner
/// replicates to already replaced it; the owner check makes the drop a
/// no-op there).
pub fn drop_dead_owner(mb: &Mailbox, name: &Atom, f: &Fetched) {
    for (n, owner) in &f.holders {
        let drop = Msg::Drop {
            name: name.clone(),
            owner: owner.clone(),
        };
        mb.send_to(
            &crate::process::Dest::local(STORE_NAME, n.as_str()),
            drop.to_term(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_key_kind() {
        let sup = Atom::new("Elixir.MyApp.Sup");
        assert_eq!(
            horde_name(&sup, &Term::binary(b"a1".to_vec()))
                .unwrap()
                .as_str(),
            "erlnode_horde:Elixir.MyApp.Sup:ba1"
        );
        assert_eq!(
            horde_name(&sup, &Term::atom("a1")).unwrap().as_str(),
            "erlnode_horde:Elixir.MyApp.Sup:aa1"
        );
        assert_eq!(
            horde_name(&sup, &Term::Int(-5)).unwrap().as_str(),
            "erlnode_horde:Elixir.MyApp.Sup:i-5"
        );
        assert_eq!(horde_name(&sup, &Term::tuple([Term::Int(1)])), None);
        assert_eq!(horde_name(&sup, &Term::binary(vec![0xff])), None);
        assert_eq!(horde_name(&sup, &Term::binary(vec![b'x'; 300])), None);
        assert!(is_placed_by_library(
            &horde_name(&sup, &Term::Int(1)).unwrap()
        ));
        assert!(!is_placed_by_library(&Atom::new("acc1")));
        let hub = Atom::new("my_hub");
        let ph = processhub_name(&hub, &Term::binary(b"c1".to_vec())).unwrap();
        assert_eq!(ph.as_str(), "erlnode_processhub:my_hub:bc1");
        assert!(is_placed_by_library(&ph));
        assert_eq!(processhub_name(&hub, &Term::tuple([])), None);
    }

    #[test]
    fn fetch_replies_round_trip() {
        let owner = Pid {
            node: Atom::new("a@h"),
            id: 9,
            serial: 0,
            creation: 1,
        };
        let state = Term::Int(42);
        assert_eq!(
            parse_fetched(&fetched_reply(Some((7, &owner, &state)))),
            Some((7, owner, state))
        );
        assert_eq!(parse_fetched(&fetched_reply(None)), None);
        assert_eq!(
            parse_fetched(&Term::tuple([
                Term::atom("error"),
                Term::atom("unknown_request")
            ])),
            None
        );
    }
}
