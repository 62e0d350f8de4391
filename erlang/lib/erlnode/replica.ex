defmodule Erlnode.Replica do
  @moduledoc """
  Replicated state for migratable processes, the Elixir half of
  `docs/replicas.md` (the Rust half is `erlnode::migration::replica`;
  both speak the same wire protocol).

      use Erlnode.Migratable, type: "account", replicas: 1, replica_mode: :sync

  makes every process of the type keep its state on the next `replicas`
  nodes hosting the type on the placement ring (Rust or Elixir). With
  `:sync` (the default) a call's reply leaves only once those nodes hold
  a state that includes it; with `:async` updates go out at once and an
  owner never runs more than 32 state versions (callback results) ahead
  of a replica. When the
  owner's node goes down without a graceful leave, the best-ranked node
  holding a replica starts the process from it and takes the global name,
  exactly once cluster-wide (`:global` serialises the registrations).

  Per process: `Erlnode.Migration.start_process(type, args, name,
  replicas: 1, replica_mode: :async)`. Per node and type, overriding both:
  `config :erlnode_ex, :replicas, %{"account" => {1, :sync}}`.

  A replica never runs the process: `Erlnode.Replica.Store`
  (`:erlnode_replica`, one per node) only keeps the latest state.
  """

  @tag :"$erlnode_replica"
  @vsn 1

  @doc false
  def tag, do: @tag
  @doc false
  def vsn, do: @vsn

  @doc "The store's registered name on every node."
  def store_name, do: :erlnode_replica

  @doc """
  A cast answered `:ok` once `msg` has been handled (`handle_cast/2`)
  and, in `:sync` mode, every replica holds a state that includes it.
  """
  @spec cast_acked(GenServer.server(), term(), timeout()) :: :ok
  def cast_acked(server, msg, timeout \\ 5_000),
    do: GenServer.call(server, {@tag, @vsn, :cast, msg}, timeout)

  @doc "What a node's store holds: `[{name, seq, owner, state_bytes}]`."
  def held(node \\ node()), do: GenServer.call({store_name(), node}, {@tag, @vsn, :list})

  @doc """
  What a node's store took so far: `%{puts: n, deltas: n, need_whole: n}`
  (whole states, deltas applied, deltas that found no base and made it
  ask the owner for the whole state).
  """
  def stats(node \\ node()), do: GenServer.call({store_name(), node}, {@tag, @vsn, :stats})

  ## configuration -------------------------------------------------------

  @doc false
  # {replicas, mode} for a process of `type` with options `opts`.
  def config(type, opts) do
    case Application.get_env(:erlnode_ex, :replicas, %{}) do
      %{^type => {n, mode}} -> normalize({n, mode})
      _ -> normalize({Keyword.get(opts, :replicas, 0), Keyword.get(opts, :replica_mode, :sync)})
    end
  end

  defp normalize({n, mode}) when is_integer(n) and n >= 0 and n <= 16 and mode in [:sync, :async],
    do: {n, mode}

  defp normalize(other), do: raise(ArgumentError, "bad replica configuration: #{inspect(other)}")

  ## placement -----------------------------------------------------------

  @doc false
  # The `n` nodes that keep `name`'s replicas when `owner` runs it: the
  # next owners on the ring of the type's nodes. Rings are cached per
  # node set (a ring costs 256 md5s per node).
  def targets(_type, _name, 0, _owner), do: []

  def targets(type, name, n, owner) do
    ring(type, nil)
    |> Erlnode.Migration.Ring.owners(name, n + 1)
    |> Enum.reject(&(&1 == owner))
    |> Enum.take(n)
  end

  @doc false
  def ring(type, without) do
    key = {__MODULE__, :ring, type, without}
    cached = :persistent_term.get(key, nil)
    enc = Erlnode.Migration.Ring.encoding()

    # The manager may be busy (a graceful leave drains inside it): an
    # owner then keeps the last ring it knew rather than crash on a
    # call timeout.
    nodes =
      try do
        GenServer.call(Erlnode.Migration.name(), {:members, type}, 1_000) -- List.wrap(without)
      catch
        :exit, _ -> if cached, do: elem(cached, 0), else: []
      end

    case cached do
      {^nodes, ^enc, ring} ->
        ring

      _ ->
        ring = Erlnode.Migration.Ring.new(nodes, enc)
        :persistent_term.put(key, {nodes, enc, ring})
        ring
    end
  end
end
