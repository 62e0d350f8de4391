defmodule Erlnode.Examples.Counter do
  @moduledoc """
  The Elixir twin of the Rust `erlnode::examples::counter::Counter`
  (type `"counter"`), the state machine docs/guide.md builds: the state
  is `%{count: n}`, calls and casts are `:get` and `{:add, n}`, a call
  answers the count. Start argument: the initial count.
  """

  # guide:begin
  use Erlnode.Migratable, type: "counter"

  @impl true
  def init(start) when is_integer(start), do: {:ok, %{count: start}}

  @impl true
  def handle_call(:get, _from, st), do: {:reply, st.count, st}
  def handle_call({:add, n}, _from, st), do: {:reply, st.count + n, %{st | count: st.count + n}}

  @impl true
  def handle_cast({:add, n}, st), do: {:noreply, %{st | count: st.count + n}}
  # guide:end
end
