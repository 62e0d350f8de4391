defmodule Erlnode.MergeSupport.GCounter do
  @moduledoc """
  A grow-only counter (type `gcounter`) that merges on netsplit heal:
  `%{counts: %{key => n}}`, merged by the largest count per key. The
  Rust twin is in interop-tests/merge.rs.
  """
  use Erlnode.Migratable, type: "gcounter"

  @impl true
  def init(_args), do: {:ok, %{counts: %{}}}

  @impl true
  def handle_call({:incr, k, n}, _from, st) when is_binary(k) and is_integer(n) do
    st = %{st | counts: Map.update(st.counts, k, n, &(&1 + n))}
    {:reply, {:ok, st.counts |> Map.values() |> Enum.sum()}, st}
  end

  def handle_call(:get, _from, st), do: {:reply, st, st}

  @impl true
  def merge_conflict(mine, theirs),
    do: %{mine | counts: Map.merge(mine.counts, theirs.counts, fn _k, a, b -> max(a, b) end)}
end
