defmodule Erlnode.Replica.Placed do
  @moduledoc false
  # docs/replicas.md, "Processes Horde or ProcessHub places": replicas
  # of a `use Erlnode.Horde` or `use Erlnode.ProcessHub` child. The
  # library places the child and restarts it when its node dies; erlnode
  # only keeps its state. The replica name is built exactly as the Rust
  # side builds it (src/migration/replica/placed.rs): "erlnode_horde:" <>
  # supervisor <> ":" <> kind <> key, or "erlnode_processhub:" <> hub <>
  # ":" <> kind <> child id, kind `b` (UTF-8 binary), `a` (atom) or `i`
  # (integer); other keys get no replicas. Stores never fail these names
  # over; the process the library starts in its place fetches the latest
  # state from them.

  alias Erlnode.Replica

  @horde "erlnode_horde:"
  @processhub "erlnode_processhub:"
  @fetch_timeout 2_000
  @holders :"$erlnode_placed_holders"

  def horde_name(sup, key) when is_atom(sup), do: name(@horde, sup, key)

  def processhub_name(hub, cid) when is_atom(hub), do: name(@processhub, hub, cid)

  defp name(prefix, owner, key) do
    case kind(key) do
      nil ->
        nil

      k ->
        name = prefix <> Atom.to_string(owner) <> ":" <> k
        if String.length(name) <= 255, do: String.to_atom(name), else: nil
    end
  end

  defp kind(key) when is_binary(key), do: if(String.valid?(key), do: "b" <> key, else: nil)
  defp kind(key) when is_atom(key), do: "a" <> Atom.to_string(key)
  defp kind(key) when is_integer(key), do: "i" <> Integer.to_string(key)
  defp kind(_), do: nil

  def placed?(name) when is_atom(name), do: String.starts_with?(Atom.to_string(name), [@horde, @processhub])
  def placed?(_), do: false

  # The latest replica of `name` on any connected node's store:
  # `{seq, versioned_state}` or nil. The nodes that held one are kept
  # (process dictionary) so `forget_dead_owner/1` can clear them once
  # the process runs. With `:dead_owner`, only entries whose owner's node
  # is down count (a ProcessHub child also starts on moves and crash
  # restarts, when its previous owner's node is up).
  def fetch(name, which \\ :any) do
    up = [node() | Node.list(:connected)]

    found =
      for {_, _, owner, _} = e <- entries([node() | Node.list()], name, @fetch_timeout),
          which == :any or node(owner) not in up,
          do: e

    case Enum.max_by(found, fn {_, seq, _, _} -> seq end, fn -> nil end) do
      nil ->
        nil

      {_, seq, _, state} ->
        Process.put(@holders, {name, for({n, _, owner, _} <- found, do: {n, owner})})
        {seq, state}
    end
  end

  # What the stores of `nodes` hold for `name`, each given `timeout`:
  # `[{node, seq, owner, versioned_state}]` (a store that does not answer,
  # or of a release without `fetch`, holds nothing).
  def entries(nodes, name, timeout) do
    {replies, _bad} =
      :gen_server.multi_call(nodes, Replica.store_name(), {Replica.tag(), Replica.vsn(), :fetch, name}, timeout)

    for {n, {:ok, seq, owner, state}} <- replies, is_integer(seq) and is_pid(owner), do: {n, seq, owner, state}
  catch
    :exit, _ -> []
  end

  # After a restored process's init succeeded: the dead owner's entries
  # go (a store this process replicates to has already replaced it; the
  # owner check makes the drop a no-op there).
  def forget_dead_owner do
    case Process.delete(@holders) do
      {name, holders} ->
        for {n, owner} <- holders,
            do: send({Replica.store_name(), n}, {Replica.tag(), Replica.vsn(), :drop, name, owner})

        :ok

      nil ->
        :ok
    end
  end
end
