defmodule Shop.Cart do
  @moduledoc """
  The Elixir twin of the cart in examples/cart.rs (type `"cart"`): state
  `%{items: %{item => qty}}`; calls and casts `{:add, item, qty}`,
  `{:remove, item}`, `:items`, `:total`; replies `:ok`, `{:items, map}`,
  `{:total, n}`, `{:error, reason}`. A bad request is answered with an
  error and the cart lives on, as in Rust.
  """
  use Erlnode.Migratable, type: "cart", host: false

  @impl true
  def init(_args), do: {:ok, %{items: %{}}}

  @impl true
  def handle_call(req, _from, st) do
    {reply, st} = apply_req(req, st)
    {:reply, reply, st}
  end

  @impl true
  def handle_cast(req, st), do: {:noreply, elem(apply_req(req, st), 1)}

  defp apply_req({:add, item, qty}, st),
    do: {:ok, %{st | items: Map.update(st.items, item, qty, &(&1 + qty))}}

  defp apply_req({:remove, item}, st) do
    if Map.has_key?(st.items, item),
      do: {:ok, %{st | items: Map.delete(st.items, item)}},
      else: {{:error, "no #{item} in the cart"}, st}
  end

  defp apply_req(:items, st), do: {{:items, st.items}, st}
  defp apply_req(:total, st), do: {{:total, st.items |> Map.values() |> Enum.sum()}, st}
end
