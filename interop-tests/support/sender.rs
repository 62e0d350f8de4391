//! The deposit senders the Horde and ProcessHub tests run on an Elixir
//! node: each is a process registered under a name that counts, per
//! account, the calls acknowledged, refused and in doubt until told to
//! stop.

use super::BeamNode;
use erlnode::Term;
use std::collections::BTreeMap;

/// Starts, on `ex`, a sender registered as `registered` that calls
/// `{:deposit, "s", seq, 1}` on each account `aI` of `ids` in turn until
/// told to stop. `call` is the Elixir expression making one call, with
/// `name` ("aI") and `msg` bound; it may exit. Counted per account:
/// acknowledged (`{:ok, _}`), refused (any other exit: not delivered, no
/// such name, the process gone), in doubt (timed out, or its node died
/// during the call: applied or not).
pub async fn start(ex: &BeamNode, registered: &str, ids: &[usize], call: &str) {
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let r = ex
        .eval_elixir(&format!(
            r#"loop = fn loop, ids, seq, acc ->
                 receive do
                   {{:stop, from}} -> send(from, {{:sent, acc}})
                 after 0 ->
                   acc = Enum.reduce(ids, acc, fn i, acc ->
                     name = "a#{{i}}"
                     msg = {{:deposit, "s", seq, 1}}
                     {{ok, refused, doubt}} = Map.get(acc, i, {{0, 0, 0}})
                     r = try do
                       {call}
                     catch
                       :exit, {{:timeout, _}} -> :doubt
                       :exit, {{{{:nodedown, _}}, _}} -> :doubt
                       :exit, {{:noconnection, _}} -> :doubt
                       :exit, _ -> :refused
                     end
                     case r do
                       {{:ok, _}} -> Map.put(acc, i, {{ok + 1, refused, doubt}})
                       :refused -> Map.put(acc, i, {{ok, refused + 1, doubt}})
                       _ -> Map.put(acc, i, {{ok, refused, doubt + 1}})
                     end
                   end)
                   loop.(loop, ids, seq + 1, acc)
                 end
               end
               pid = spawn(fn -> loop.(loop, [{list}], 1, %{{}}) end)
               Process.register(pid, :{registered})
               :ok"#
        ))
        .await;
    assert_eq!(r, Term::atom("ok"), "{}: the sender starts", ex.name());
}

/// Stops the sender registered as `registered` on `ex`: `{id =>
/// (acked, refused, in_doubt)}`.
pub async fn stop(ex: &BeamNode, registered: &str) -> BTreeMap<i64, (i64, i64, i64)> {
    let t = ex
        .eval_elixir(&format!(
            r#"send(:{registered}, {{:stop, self()}})
               receive do {{:sent, acc}} -> Enum.map(acc, fn {{i, {{a, r, d}}}} -> {{i, a, r, d}} end) after 30_000 -> :timeout end"#
        ))
        .await;
    let Term::List(v) = t else { panic!("sender: {t:?}") };
    v.iter()
        .map(|e| match e.as_tuple() {
            Some([i, a, r, d]) => (i.as_int().unwrap(), (a.as_int().unwrap(), r.as_int().unwrap(), d.as_int().unwrap())),
            _ => panic!("{e:?}"),
        })
        .collect()
}
