defmodule Erlnode.Examples.Bench do
  @moduledoc """
  The bench type `"erlnode_bench"`: the throwaway process `erlnode bench`
  starts on the nodes it measures. The Elixir twin of the Rust
  `erlnode::examples::bench::Bench` (same messages, same state), hosted
  by every node running `:erlnode_ex` and by every `erlnode run` node.
  Pinned: placement never moves it, only the bench does. Start argument:
  the size of the state's binary, in bytes.

  State: `%{data: <<size bytes>>, received: n}`. Messages:

    * call `:ping` -> `{:pong, :elixir}` (`:rust` from the Rust twin);
    * call `{:calls, target, n}` -> `[us]`: `n` back-to-back calls `:ping`
      to the pid `target`, each one's round trip in microseconds;
    * call `{:send, target, n, size}` -> `{us, received}`: `n` casts
      `{:data, <<size bytes>>}` to `target`, then a call `:received` to
      it (answered after the last cast, messages between two processes
      keeping their order); `us` from the first cast to that answer;
    * call `:received` -> the casts handled since the last `:received`;
    * cast `:hold`: wait (at most 60 s) for the message
      `:erlnode_bench_go`, leaving everything else queued (the bench
      queues a migration's `begin` and the queue behind it);
    * cast `:bump`: one queued message (counted as received);
    * call `:stop` -> `:ok`, and the process ends (`:normal`).
  """

  use Erlnode.Migratable, type: "erlnode_bench", pinned: true, retention: 50

  @call_timeout 30_000

  @impl true
  def init(size) when is_integer(size) and size >= 0,
    do: {:ok, %{data: :binary.copy(<<7>>, size), received: 0}}

  @impl true
  def handle_call(:ping, _from, st), do: {:reply, {:pong, :elixir}, st}
  def handle_call(:received, _from, st), do: {:reply, st.received, %{st | received: 0}}
  def handle_call(:stop, _from, st), do: {:stop, :normal, :ok, st}

  def handle_call({:calls, target, n}, _from, st) when is_pid(target) and is_integer(n) do
    lat =
      for _ <- 1..n//1 do
        t0 = System.monotonic_time(:microsecond)
        {:pong, _} = GenServer.call(target, :ping, @call_timeout)
        System.monotonic_time(:microsecond) - t0
      end

    {:reply, lat, st}
  end

  def handle_call({:send, target, n, size}, _from, st)
      when is_pid(target) and is_integer(n) and is_integer(size) do
    msg = {:data, :binary.copy(<<7>>, size)}
    t0 = System.monotonic_time(:microsecond)
    for _ <- 1..n//1, do: GenServer.cast(target, msg)
    received = GenServer.call(target, :received, @call_timeout)
    {:reply, {System.monotonic_time(:microsecond) - t0, received}, st}
  end

  def handle_call(_other, _from, st), do: {:reply, {:error, "unknown request"}, st}

  @impl true
  def handle_cast(:hold, st) do
    receive do
      :erlnode_bench_go -> :ok
    after
      60_000 -> :ok
    end

    {:noreply, st}
  end

  def handle_cast(:bump, st), do: {:noreply, %{st | received: st.received + 1}}
  def handle_cast({:data, _}, st), do: {:noreply, %{st | received: st.received + 1}}
  def handle_cast(_other, st), do: {:noreply, st}
end
