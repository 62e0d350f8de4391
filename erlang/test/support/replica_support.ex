defmodule Erlnode.ReplicaSupport.RAccount do
  @moduledoc "The example account with one synchronous replica (type `raccount`), for the replica tests."
  use Erlnode.Migratable, type: "raccount", replicas: 1, replica_mode: :sync

  alias Erlnode.Examples.Account

  @impl true
  def init(args), do: {:ok, Account.new(args)}

  @impl true
  def handle_call(:get, _from, state), do: {:reply, state, state}

  def handle_call({:deposit, s, q, a}, _from, state) do
    state = Account.deposit(state, s, q, a)
    {:reply, {:ok, state.balance}, state}
  end

  @impl true
  def handle_cast({:deposit, s, q, a}, state), do: {:noreply, Account.deposit(state, s, q, a)}
end
