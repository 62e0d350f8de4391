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
  gone, as with any OTP restart. A process that crashes while it is
  still receiving a handover is restarted as a target while the source
  still holds the name (the source resumes; the restarted target gives
  up after `:handover_timeout`), and fresh otherwise.
  """
  use DynamicSupervisor

  @doc false
  def start_link(opts \\ []), do: DynamicSupervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts), do: DynamicSupervisor.init(strategy: :one_for_one)

  @doc "Starts `module` fresh with `args`, registered as `{:global, name}`."
  def start_fresh(module, args, name, opts) do
    start_child(module, name, {__MODULE__, :start_link_fresh, [module, args, name, opts]}, fn ->
      start_link_fresh(module, args, name, opts, :start)
    end)
  end

  @doc "Starts `module` as the target of a handover (`init_arg` from the manager)."
  def start_target(module, {:"$erlnode_handover", _ref, _src, _args, name} = init_arg) do
    start_child(module, name, {__MODULE__, :start_link_target, [module, init_arg]}, fn ->
      GenServer.start(module, init_arg)
    end)
  end

  defp start_child(module, name, mfa, unsupervised) do
    if Process.whereis(__MODULE__) do
      restart = module.child_spec(nil) |> Map.get(:restart, :permanent)
      spec = %{id: name, start: mfa, restart: restart, modules: [module]}
      DynamicSupervisor.start_child(__MODULE__, spec)
    else
      unsupervised.()
    end
  end

  @doc false
  def start_link_fresh(module, args, name, opts, how \\ :start_link) do
    apply(GenServer, how, [module, {:"$erlnode_start", args, name, opts}, [name: {:global, name}]])
  end

  @doc false
  # Called again on every restart: a handover only while the source still
  # holds the name, a fresh start from the start arguments afterwards.
  def start_link_target(module, {:"$erlnode_handover", _ref, src, args, name} = init_arg) do
    if :global.whereis_name(name) == src,
      do: GenServer.start_link(module, init_arg),
      else: start_link_fresh(module, args, name, [])
  end
end
