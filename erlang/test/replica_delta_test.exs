defmodule Erlnode.ReplicaDeltaTest do
  # Erlnode.Replica.Delta, the map delta the example account uses (the
  # Rust twin's unit tests check the same cases, and the interop suite
  # applies deltas made in one language in the other).
  use ExUnit.Case, async: true

  alias Erlnode.Replica.Delta

  test "a map delta carries only what changed and rebuilds the new state" do
    history = :binary.copy("x", 10_000)
    old = %{balance: 10, history: history, gone: 1}
    new = %{balance: 15, history: history, added: :x}
    assert {:ok, d} = Delta.map_delta(old, new)
    assert byte_size(:erlang.term_to_binary(d)) < 100
    assert Delta.apply_map_delta(old, d) == {:ok, new}
  end

  test "versions wrap the delta; other versions, non-maps and total changes go whole" do
    w = fn v, m -> {:"$erlnode_vsn", v, m} end
    {a, b} = {%{n: 1, k: 0}, %{n: 2, k: 0}}
    assert {:ok, d} = Delta.map_delta(w.(2, a), w.(2, b))
    assert Delta.apply_map_delta(w.(2, a), d) == {:ok, w.(2, b)}
    assert Delta.map_delta(w.(2, a), w.(3, b)) == :whole
    assert Delta.map_delta(1, 2) == :whole
    assert Delta.map_delta(a, %{n: 5, k: 9}) == :whole
    assert {:error, _} = Delta.apply_map_delta(1, d)
    assert {:error, _} = Delta.apply_map_delta(a, :junk)
  end

  test "the example account makes and reads them" do
    a = Erlnode.Examples.Account.new(%{balance: 3})
    b = %{a | balance: 8, applied: 1, last_seq: %{"s" => 1}}
    assert {:ok, d} = Erlnode.Examples.Account.replica_delta(a, b)
    assert Erlnode.Examples.Account.apply_replica_delta(a, d) == {:ok, b}
  end
end
