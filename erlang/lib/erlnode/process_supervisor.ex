defmodule Erlnode.ProcessSupervisor do
  @moduledoc """
  The supervisor of migratable processes on this node (a
  `DynamicSupervisor`, started by the `:erlnode_ex` application).
  `Erlnode.Migration.start_process/4` starts processes under it, and the
  migration manager starts the processes that move here under it too.

  Each child honours the `restart:` its module gives `use
  Erlnode.Migratable` (default `:transient`: restarted after a crash, not
  after a normal stop or a move, which ends the old process with
  `{:shutdown, {:migrated, node}}`). **A restarted process starts from
  its start arguments**: `init/1` runs again with the arguments the
  process was first started with (on whichever node that was), and it
  registers its global name again; the state it had when it crashed is
  gone, as with any OTP restart. If the name is held by another live
  process by then (a target that crashed during its handover: the source
  resumed and still holds it), the restart is skipped (`:ignore`).
  """
  use DynamicSupervisor

  @doc false
  def start_link(opts \\ []), do: DynamicSupervisor.start_link(__MODULE__, opts, name: __MODULE__)

  # Independent state machines, possibly thousands: a burst of crashes
  # must not take the supervisor (and every process under it) down, as
  # OTP's default of 3 restarts in 5 s would.
  @impl true
  def init(opts) do
    DynamicSupervisor.init(
      strategy: :one_for_one,
      max_restarts: Keyword.get(opts, :max_restarts, 1_000),
      max_seconds: Keyword.get(opts, :max_seconds, 5)
    )
  end

  @doc "Starts `module` fresh with `args`, registered as `{:global, name}`."
  def start_fresh(module, args, name, opts) do
    first = {:"$erlnode_start", args, name, opts}
    start_child(module, name, first, fn -> GenServer.start(module, first, name: Erlnode.Replica.Merge.name(module, name)) end)
  end

  @doc "Starts `module` as the target of a handover (`init_arg` from the manager)."
  def start_target(module, init_arg) when elem(init_arg, 0) == :"$erlnode_handover" do
    name = elem(init_arg, 4)
    start_child(module, name, init_arg, fn -> GenServer.start(module, init_arg) end)
  end

  @doc "Starts `module` from a replica's state (failover), registered as `{:global, name}`."
  def start_restored(module, args, name, replica, seq, cfg) do
    first = {:"$erlnode_restore", args, name, replica, seq, cfg}
    start_child(module, name, first, fn -> GenServer.start(module, first, name: Erlnode.Replica.Merge.name(module, name)) end)
  end

  defp start_child(module, name, first, unsupervised) do
    if Process.whereis(__MODULE__) do
      restart = module.child_spec(nil) |> Map.get(:restart, :permanent)
      # Tells the first start (the supervisor runs the same MFA again on
      # every restart) from the restarts.
      started = :atomics.new(1, [])
      mfa = {__MODULE__, :start_link_child, [module, first, started]}
      spec = %{id: name, start: mfa, restart: restart, modules: [module]}
      DynamicSupervisor.start_child(__MODULE__, spec)
    else
      unsupervised.()
    end
  end

  @doc false
  def start_link_child(module, first, started) do
    case {:atomics.exchange(started, 1, 1), first} do
      {0, first} when elem(first, 0) == :"$erlnode_handover" ->
        GenServer.start_link(module, first)

      {0, {:"$erlnode_restore", _, name, _, _, _}} ->
        GenServer.start_link(module, first, name: Erlnode.Replica.Merge.name(module, name))

      {0, {:"$erlnode_start", _, name, _}} ->
        GenServer.start_link(module, first, name: Erlnode.Replica.Merge.name(module, name))

      {_restart, first} ->
        # a restart keeps the process's own options (its replica setting)
        {args, name, opts} = args_name_opts(first)

        case GenServer.start_link(module, {:"$erlnode_start", args, name, opts}, name: Erlnode.Replica.Merge.name(module, name)) do
          {:error, {:already_started, _}} -> :ignore
          other -> other
        end
    end
  end

  defp args_name_opts({:"$erlnode_handover", _ref, _src, args, name}), do: {args, name, []}
  defp args_name_opts({:"$erlnode_handover", _ref, _src, args, name, replica_opts}), do: {args, name, replica_opts}
  defp args_name_opts({:"$erlnode_start", args, name, opts}), do: {args, name, opts}

  defp args_name_opts({:"$erlnode_restore", args, name, _, _, {n, mode}}),
    do: {args, name, [replicas: n, replica_mode: mode]}
end
