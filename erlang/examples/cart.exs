# The Elixir side of `cargo run --example cart` (examples/cart.rs): hosts
# "cart" (Shop.Cart, erlang/examples/cart.ex), adds apples by call while
# the cart moves, reports how many, stops when told to.
Code.require_file("cart.ex", __DIR__)
Code.require_file("twin.exs", __DIR__)
rust = ExampleTwin.join(fn -> Erlnode.Migration.register_type("cart", Shop.Cart) end)

receive do
  :go ->
    for _ <- 1..200, do: :ok = GenServer.call({:global, :example_cart}, {:add, "apple", 1})
    send({:example_driver, rust}, {:added, 200})
end

ExampleTwin.await_stop(60_000)
