defmodule Erlnode.Replica.Delta do
  @moduledoc """
  Replica deltas (`docs/replicas.md`, "Deltas"): instead of the whole
  state after every change, an owner may send its replicas only what
  changed since the state they hold. A type opts in with two optional
  callbacks of `Erlnode.Migratable`, the same as the Rust trait's:

      @impl true
      def replica_delta(old, new), do: Erlnode.Replica.Delta.map_delta(old, new)

      @impl true
      def apply_replica_delta(held, delta), do: Erlnode.Replica.Delta.apply_map_delta(held, delta)

  Both work on the state as it travels (what `prepare_handover_state/1`
  returns, in its version wrapper), so a delta made on a Rust node is
  applied on an Elixir one and back; twin types must read the same
  deltas. `map_delta/2` and `apply_map_delta/2` are a ready pair for map
  states, the twins of the Rust `replica::map_delta` and
  `replica::apply_map_delta`: the top-level keys whose values changed and
  the keys removed, `{:"$erlnode_map_delta", changed, removed}`.
  """

  @tag :"$erlnode_map_delta"
  @vsn :"$erlnode_vsn"

  @doc """
  The change from `old` to `new` when both are maps (in the same version
  wrapper, if any): `{:ok, delta}`; `:whole` when they are not, or when
  every key changed (the delta would not be smaller).
  """
  @spec map_delta(term(), term()) :: {:ok, term()} | :whole
  def map_delta({@vsn, v, old}, {@vsn, v, new}), do: map_delta(old, new)

  def map_delta(old, new) when is_map(old) and is_map(new) do
    changed = for {k, v} <- new, Map.get(old, k, {@tag, :absent}) !== v, into: %{}, do: {k, v}
    removed = for k <- Map.keys(old), not Map.has_key?(new, k), do: k

    if map_size(changed) == map_size(new) and map_size(new) > 0,
      do: :whole,
      else: {:ok, {@tag, changed, removed}}
  end

  def map_delta(_old, _new), do: :whole

  @doc """
  Applies a `map_delta/2` delta to the held state (inside its version
  wrapper, if any): `{:ok, new}`, or `{:error, reason}` for anything else,
  so the replica asks the owner for the whole state.
  """
  @spec apply_map_delta(term(), term()) :: {:ok, term()} | {:error, term()}
  def apply_map_delta({@vsn, v, held}, delta) do
    with {:ok, new} <- apply_map_delta(held, delta), do: {:ok, {@vsn, v, new}}
  end

  def apply_map_delta(held, {@tag, changed, removed})
      when is_map(held) and is_map(changed) and is_list(removed),
      do: {:ok, held |> Map.drop(removed) |> Map.merge(changed)}

  def apply_map_delta(_held, _delta), do: {:error, :not_a_map_delta_for_a_map}
end
