defmodule Erlnode.Application do
  @moduledoc """
  Starts the migration manager (`Erlnode.Migration`, registered as
  `:erlnode_migration`) so that every node running the `:erlnode_ex`
  application can send, receive and host migratable processes.

  `config :erlnode_ex, migration_manager: false` leaves it out (then start
  `Erlnode.Migration` in your own supervision tree).
  """
  use Application

  @impl true
  def start(_type, _args) do
    children =
      if Application.get_env(:erlnode_ex, :migration_manager, true),
        do: [Erlnode.Migration],
        else: []

    Supervisor.start_link(children, strategy: :one_for_one, name: Erlnode.Supervisor)
  end
end
