# Records a DeltaCrdt 0.6.4 sync between two real CRDT processes (one
# node, Horde's options: AWLWWMap, max_sync_size :infinite) as data for
# tests/horde_conformance.rs. Needs the compiled libraries on the code
# path (elixir -pa DIR/<app>/ebin ...); builds nothing.
#
#   elixir --sname rec -pa ... record.exs OUT_FILE SCENARIO
#
# Output, one line each, base64 of term_to_binary:
#   state A|B <node_id> <crdt_state>      before the sync
#   pid A|B <pid>
#   recv A|B <message>                    every message each CRDT received, in order
#   final A|B <crdt_state> <root hash>    after the sync
{:ok, _} = Application.ensure_all_started(:telemetry)
[out, scenario] = System.argv()
{:ok, a} = DeltaCrdt.start_link(DeltaCrdt.AWLWWMap, name: TA.Crdt, sync_interval: 3_600_000, max_sync_size: :infinite)
{:ok, b} = DeltaCrdt.start_link(DeltaCrdt.AWLWWMap, name: TB.Crdt, sync_interval: 3_600_000, max_sync_size: :infinite)
reg = fn n -> {TReg, :"#{n}@127.0.0.1"} end
me = self()
val = fn k, v -> {reg.(k), me, v} end
case scenario do
  "disjoint" ->
    for i <- 1..40, do: DeltaCrdt.put(a, {:key, "a#{i}"}, val.(:a, i))
    for i <- 1..25, do: DeltaCrdt.put(b, {:key, "b#{i}"}, val.(:b, i))
    DeltaCrdt.put(a, {:member, reg.(:a)}, 1)
    DeltaCrdt.put(b, {:member, reg.(:b)}, 1)
  "overlap" ->
    for i <- 1..300, do: DeltaCrdt.put(a, {:key, i}, val.(:a, {i, [1.5, <<1::3>>, %{x: i}]}))
    for i <- 150..400, do: DeltaCrdt.put(b, {:key, i}, val.(:b, i))
    for i <- 1..30, do: DeltaCrdt.delete(a, {:key, i})
    DeltaCrdt.put(b, {:registry, :meta}, %{"m" => -12345678901234567890})
  "deltas" ->
    # b has everything a has (a synced to b), then both change some keys.
    for i <- 1..120, do: DeltaCrdt.put(a, {:key, {:k, i}}, val.(:a, i))
    send(a, {:set_neighbours, [{TB.Crdt, node()}]})
    Process.sleep(500)
    send(a, {:set_neighbours, []})
    Process.sleep(100)
    for i <- 1..10, do: DeltaCrdt.put(a, {:key, {:k, i}}, val.(:a, -i))
    for i <- 100..110, do: DeltaCrdt.delete(b, {:key, {:k, i}})
    for i <- 50..55, do: DeltaCrdt.put(b, {:key, {:k, i}}, val.(:b, :b))
end
Process.sleep(100)
enc = fn t -> Base.encode64(:erlang.term_to_binary(t)) end
st = fn p -> :sys.get_state(p) end
lines =
  for {n, p} <- [{"A", a}, {"B", b}] do
    s = st.(p)
    ["state #{n} #{s.node_id} #{enc.(s.crdt_state)}", "pid #{n} #{enc.(p)}"]
  end
:erlang.trace(a, true, [:receive])
:erlang.trace(b, true, [:receive])
send(a, {:set_neighbours, [{TB.Crdt, node()}]})
send(b, {:set_neighbours, [{TA.Crdt, node()}]})
collect = fn collect, acc ->
  receive do
    {:trace, ^a, :receive, m} -> collect.(collect, ["recv A #{enc.(m)}" | acc])
    {:trace, ^b, :receive, m} -> collect.(collect, ["recv B #{enc.(m)}" | acc])
  after
    1000 -> Enum.reverse(acc)
  end
end
recvs = collect.(collect, [])
finals =
  for {n, p} <- [{"A", a}, {"B", b}] do
    s = st.(p)
    mm = MerkleMap.update_hashes(s.merkle_map)
    {_, {:continue, d}} = {:ok, MerkleMap.prepare_partial_diff(mm, 8)}
    [{_, %{tree: t}}] = d.trees
    h = case t do [] -> []; _ -> elem(t, 0) end
    "final #{n} #{enc.(s.crdt_state)} #{enc.(h)}"
  end
File.write!(out, Enum.join(List.flatten(lines) ++ recvs ++ finals, "\n") <> "\n")
IO.puts("#{scenario}: #{length(recvs)} messages; equal: #{inspect(DeltaCrdt.read(a) == DeltaCrdt.read(b))}")
