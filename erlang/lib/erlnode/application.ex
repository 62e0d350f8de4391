defmodule Erlnode.Application do
  @moduledoc """
  Starts `Erlnode.ProcessSupervisor` (migratable processes run under it)
  and the migration manager (`Erlnode.Migration`, registered as
  `:erlnode_migration`) so that every node running the `:erlnode_ex`
  application can send, receive and host migratable processes.

  `config :erlnode_ex, migration_manager: false` leaves it out (then start
  `Erlnode.Migration` in your own supervision tree).
  """
  use Application

  @impl true
  def start(_type, _args) do
    # The process supervisor first: on shutdown the manager stops (and
    # drains) before the processes it would move are stopped.
    children =
      if Application.get_env(:erlnode_ex, :migration_manager, true),
        do: [Erlnode.ProcessSupervisor, Erlnode.Replica.Store, Erlnode.Migration],
        else: [Erlnode.ProcessSupervisor]

    Supervisor.start_link(children, strategy: :one_for_one, name: Erlnode.Supervisor)
  end
end
