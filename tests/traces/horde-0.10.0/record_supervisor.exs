# Records what real Horde 0.10.0 DynamicSupervisor members do, as data
# for tests/horde_supervisor_conformance.rs. Needs the compiled libraries
# on the code path (elixir -pa DIR/<app>/ebin for horde, delta_crdt,
# merkle_map, libring, telemetry, telemetry_poller); builds nothing.
#
#   elixir --name rec@127.0.0.1 -pa ... record_supervisor.exs OUT_FILE
#
# The node must be rec@127.0.0.1: member names ({SupA, node}) are hashed
# into Horde's ring, and the test replays them on a node of that name.
#
# Two members on this node, SupA and SupB (members [{SupA, node()},
# {SupB, node()}], UniformDistribution, process_redistribution :active),
# later a third, SupC. Scenarios (steps):
#   start     14 children started, odd ones through SupA, even ones
#             through SupB (each member proxies some to the other);
#   calls     which_children/count_children on both, terminate_child of a
#             child on the other member both ways, of a local child, of a
#             stopped child and of an unknown pid;
#   join      SupC joins: children relinquished ({nil, spec}) and taken;
#   shutdown  SupA marked :shutting_down (:horde_shutting_down) while its
#             ProcessesSupervisor is suspended (its handoff, which asks it
#             to stop each child, waits: at most 5 s), so SupB answers
#             calls about SupA's children first; then its children move;
#   after     calls once they moved.
#
# After each call the script waits until the members' CRDTs agree, so
# every call starts from a state all members hold (the test makes each
# call once the Rust member holds that state too).
#
# Output, one line each; terms are base64 term_to_binary; TS is the
# strict monotonic timestamp "nanoseconds.unique" of the event:
#   otp RELEASE ELIXIR_VERSION
#   proc LABEL PID                   A, A.P (SupA.ProcessesSupervisor),
#                                    A.Crdt, B, B.P, B.Crdt, C, ..., R
#                                    (this script's process)
#   step NAME                        (all below until the next step)
#   init LABEL MAP                   a member's CRDT when its trace starts
#   act TS call K LABEL REQUEST      R calls LABEL (GenServer.call)
#   act TS reply K REPLY             ... and gets REPLY
#   act TS wait LABEL MEMBER STATUS  R waited until LABEL's CRDT held
#                                    MEMBER's status STATUS
#   ev TS LABEL recv MSG             a message arrived (A, A.P, B, ...)
#   ev TS LABEL send TO MSG          LABEL sent MSG to TO (pid or name)
#   ev TS LABEL disp MSG FROM        an Impl (A, B, C) began handling MSG
#                                    (handle_call/handle_info/handle_cast
#                                    called by gen_server); FROM is the
#                                    caller of a call, else nil
#   state MAP                        the CRDT content at the end of the
#                                    step (the same on every member)
Logger.configure(level: :warning)
{:ok, _} = Application.ensure_all_started(:horde)
[out] = System.argv()

defmodule Rec.Worker do
  use GenServer
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)
  def init(arg), do: {:ok, arg}
end

defmodule Rec.Collector do
  # The tracer: keeps every trace message, hands them over on request.
  def loop(acc) do
    receive do
      {:take, from} ->
        send(from, {:events, Enum.reverse(acc)})
        loop([])

      {:count, from} ->
        send(from, {:count, length(acc)})
        loop(acc)

      t when elem(t, 0) == :trace_ts ->
        loop([t | acc])
    end
  end
end

defmodule Rec do
  @impl_mod Horde.DynamicSupervisorImpl

  def enc(t), do: Base.encode64(:erlang.term_to_binary(t))
  def ts, do: "#{:erlang.monotonic_time(:nanosecond)}.#{:erlang.unique_integer([:monotonic])}"
  def member(s), do: {s, node()}

  def spec(i), do: %{id: "c#{i}", start: {Rec.Worker, :start_link, [%{name: "c#{i}"}]}}

  def opts(name, members),
    do: [
      name: name,
      strategy: :one_for_one,
      members: members,
      process_redistribution: :active,
      distribution_strategy: Horde.UniformDistribution
    ]

  def until(what, f, n \\ 500) do
    cond do
      f.() -> :ok
      n == 0 -> raise "not reached: #{what}"
      true -> Process.sleep(20) && until(what, f, n - 1)
    end
  end

  # A member's status as `sup`'s CRDT holds it. Its Impl is sent every
  # change before the CRDT answers this read, so a call made after it
  # reaches the Impl after the change.
  def status(sup, m), do: Map.get(DeltaCrdt.to_map(:"#{sup}.Crdt"), {:member_node_info, m}, %{status: nil}).status

  def trace_member(s, labels, coll) do
    impl = Process.whereis(s)
    procs = Process.whereis(:"#{s}.ProcessesSupervisor")
    crdt = Process.whereis(:"#{s}.Crdt")
    flags = [:send, :receive, :strict_monotonic_timestamp, {:tracer, coll}]
    1 = :erlang.trace(impl, true, [:call, :arity | flags])
    1 = :erlang.trace(procs, true, flags)
    l = labels[s]
    [{"#{l}", impl}, {"#{l}.P", procs}, {"#{l}.Crdt", crdt}]
  end

  def trace_dispatches do
    # The message an Impl's callback is called with (and the caller's
    # from, for handle_call), and the function calling it: callbacks
    # called by gen_server are dispatches; nested ones (a proxied
    # operation runs handle_call) are not.
    call = [{[:"$1", :"$2", :_], [], [{:message, {{:"$1", :"$2", {:caller}}}}]}]
    other = [{[:"$1", :_], [], [{:message, {{:"$1", nil, {:caller}}}}]}]
    :erlang.trace_pattern({@impl_mod, :handle_call, 3}, call, [:local])
    :erlang.trace_pattern({@impl_mod, :handle_info, 2}, other, [:local])
    :erlang.trace_pattern({@impl_mod, :handle_cast, 2}, other, [:local])
  end

  # Waits until no trace message came for a while and every member's
  # CRDT holds the same map; returns the events and that map.
  def settle(coll, sups) do
    count = fn ->
      send(coll, {:count, self()})
      receive do: ({:count, n} -> n)
    end

    wait = fn wait, last ->
      Process.sleep(700)
      n = count.()
      maps = Enum.map(sups, fn s -> DeltaCrdt.to_map(:"#{s}.Crdt") end)
      if n == last and Enum.uniq(maps) |> length() == 1, do: hd(maps), else: wait.(wait, n)
    end

    map = wait.(wait, -1)
    send(coll, {:take, self()})
    events = receive do: ({:events, e} -> e)
    {events, map}
  end
end

labels = %{SupA => "A", SupB => "B", SupC => "C"}
coll = spawn(fn -> Rec.Collector.loop([]) end)
lines = :ets.new(:lines, [:ordered_set, :public])
line = fn l -> :ets.insert(lines, {:ets.info(lines, :size), l}) end
enc = &Rec.enc/1
r = self()

line.("otp #{System.otp_release()} #{System.version()}")
two = [Rec.member(SupA), Rec.member(SupB)]
{:ok, _} = Horde.DynamicSupervisor.start_link(Rec.opts(SupA, two))
{:ok, _} = Horde.DynamicSupervisor.start_link(Rec.opts(SupB, two))
for s <- [SupA, SupB], m <- two, do: Rec.until("#{inspect(s)} sees #{inspect(m)} alive", fn -> Rec.status(s, m) == :alive end)
Rec.trace_dispatches()
pids = Map.new(Rec.trace_member(SupA, labels, coll) ++ Rec.trace_member(SupB, labels, coll) ++ [{"R", r}])
for {l, p} <- Enum.sort(pids), do: line.("proc #{l} #{enc.(p)}")
line.("step setup")
line.("state #{enc.(DeltaCrdt.to_map(SupA.Crdt))}")

# R's actions, stamped like the trace events.
calls = :counters.new(1, [])
acts = :ets.new(:acts, [:duplicate_bag, :public])
act = fn text -> :ets.insert(acts, {:act, Rec.ts(), text}) end

# A call, then a wait until the members' CRDTs agree again.
:persistent_term.put(:rec_sups, [SupA, SupB])

call = fn target, req ->
  k = :counters.get(calls, 1)
  :counters.add(calls, 1, 1)
  act.("call #{k} #{labels[target]} #{enc.(req)}")
  reply = GenServer.call(target, req, 30_000)
  act.("reply #{k} #{enc.(reply)}")
  sups = :persistent_term.get(:rec_sups)
  Rec.until("the CRDTs agree after call #{k}", fn -> Enum.map(sups, &DeltaCrdt.to_map(:"#{&1}.Crdt")) |> Enum.uniq() |> length() == 1 end)
  reply
end

label_of = fn pids, p -> Enum.find_value(pids, fn {l, q} -> if q == p, do: l end) end

# Writes one step: R's actions and the trace events in timestamp order,
# then the CRDT content.
write_step = fn name, pids, sups ->
  {events, map} = Rec.settle(coll, sups)
  # Left out: the telemetry poller's calls and their replies, and the
  # code server's messages (a module loaded on first use).
  keep = fn
    {:trace_ts, _, :receive, {:"$gen_call", _, :get_telemetry}, _} -> false
    {:trace_ts, _, :receive, {:code_server, _}, _} -> false
    {:trace_ts, _, :send, {_, %{global_supervised_process_count: _}}, _, _} -> false
    {:trace_ts, _, :send, _, :code_server, _} -> false
    {:trace_ts, _, :call, _, {:get_telemetry, _, _}, _} -> false
    {:trace_ts, _, :call, _, {_, _, caller}, _} -> match?({:gen_server, _, _}, caller)
    _ -> true
  end

  tsf = fn {m, u} -> "#{m}.#{u}" end

  evs =
    for e <- events, keep.(e) do
      case e do
        {:trace_ts, p, :receive, msg, t} -> {t, "#{label_of.(pids, p)} recv #{enc.(msg)}"}
        {:trace_ts, p, :send, msg, to, t} -> {t, "#{label_of.(pids, p)} send #{enc.(to)} #{enc.(msg)}"}
        {:trace_ts, p, :call, _, {msg, from, _}, t} -> {t, "#{label_of.(pids, p)} disp #{enc.(msg)} #{enc.(from)}"}
      end
    end
    |> Enum.map(fn {{m, u}, text} -> {{m, u}, "ev #{tsf.({m, u})} #{text}"} end)

  as =
    for {:act, t, text} <- :ets.lookup(acts, :act) do
      [m, u] = String.split(t, ".") |> Enum.map(&String.to_integer/1)
      {{m, u}, "act #{t} #{text}"}
    end

  :ets.delete(acts, :act)
  for {_, l} <- Enum.sort(as ++ evs), do: line.(l)
  line.("state #{enc.(map)}")
  IO.puts("#{name}: #{length(as)} actions, #{length(evs)} events, #{map_size(map)} CRDT entries")
end

on = fn map, member ->
  for {{:process, _}, {^member, %{start: {_, _, [%{name: n}]}}, pid}} <- map, do: {n, pid}
end

# start: c1..c14 through SupA (odd) and SupB (even).
line.("step start")

for i <- 1..14 do
  {:ok, _} = call.(if(rem(i, 2) == 1, do: SupA, else: SupB), {:start_child, Rec.spec(i)})
end

write_step.("start", pids, [SupA, SupB])

line.("step calls")
map = DeltaCrdt.to_map(SupA.Crdt)
[{_, a1}, {_, a2} | _] = Enum.sort(on.(map, Rec.member(SupA)))
[{_, b1}, {_, b2} | _] = Enum.sort(on.(map, Rec.member(SupB)))
call.(SupA, :which_children)
call.(SupB, :which_children)
call.(SupA, :count_children)
call.(SupB, :count_children)
:ok = call.(SupB, {:terminate_child, a1})
:ok = call.(SupA, {:terminate_child, b1})
:ok = call.(SupB, {:terminate_child, b2})
{:error, :not_found} = call.(SupB, {:terminate_child, a1})
{:error, :not_found} = call.(SupB, {:terminate_child, r})
call.(SupB, :count_children)
call.(SupA, :count_children)
:ok = call.(SupA, {:terminate_child, a2})
call.(SupA, :which_children)
write_step.("calls", pids, [SupA, SupB])

# join: SupC starts alone, is traced, then is given the three members;
# SupA and SupB learn of it through the CRDT.
three = two ++ [Rec.member(SupC)]
{:ok, _} = Horde.DynamicSupervisor.start_link(Rec.opts(SupC, [Rec.member(SupC)]))
Rec.until("SupC alive", fn -> Rec.status(SupC, Rec.member(SupC)) == :alive end)
line.("step join")
line.("init C #{enc.(DeltaCrdt.to_map(SupC.Crdt))}")
pc = Rec.trace_member(SupC, labels, coll)
for {l, p} <- pc, do: line.("proc #{l} #{enc.(p)}")
pids = Map.merge(pids, Map.new(pc))
:ok = call.(SupC, {:set_members, three})
:persistent_term.put(:rec_sups, [SupA, SupB, SupC])
for s <- [SupA, SupB, SupC], m <- three, do: Rec.until("#{inspect(s)} sees #{inspect(m)} alive", fn -> Rec.status(s, m) == :alive end)
write_step.("join", pids, [SupA, SupB, SupC])

# shutdown: SupA's ProcessesSupervisor is suspended, so SupA's handoff
# (which asks it to stop each child) waits while SupB answers calls.
line.("step shutdown")
map = DeltaCrdt.to_map(SupA.Crdt)
[{_, a3} | _] = Enum.sort(on.(map, Rec.member(SupA)))
:ok = :sys.suspend(SupA.ProcessesSupervisor)
:ok = call.(SupA, :horde_shutting_down)
Rec.until("SupB sees SupA shutting down", fn -> Rec.status(SupB, Rec.member(SupA)) == :shutting_down end)
act.("wait B A shutting_down")
{:error, {:node_dead_or_shutting_down, _}} = call.(SupB, {:terminate_child, a3})
{:ok, _} = call.(SupB, {:start_child, Rec.spec(15)})
:ok = :sys.resume(SupA.ProcessesSupervisor)
write_step.("shutdown", pids, [SupA, SupB, SupC])

line.("step after")
{:error, {:shutting_down, _}} = call.(SupA, {:start_child, Rec.spec(16)})
{:ok, _} = call.(SupB, {:start_child, Rec.spec(17)})
call.(SupB, :which_children)
call.(SupB, :count_children)
call.(SupA, :count_children)
write_step.("after", pids, [SupA, SupB, SupC])

text = :ets.tab2list(lines) |> Enum.map(fn {_, l} -> l end) |> Enum.join("\n")
File.write!(out, text <> "\n")
