# The Elixir side of `cargo run --example counter` (examples/counter.rs):
# hosts the "counter" type (Erlnode.Examples.Counter, registered when
# :erlnode_ex starts), adds 10 by call when told to, stops when told to.
Code.require_file("twin.exs", __DIR__)
rust = ExampleTwin.join()

receive do
  :go ->
    for _ <- 1..10, do: GenServer.call({:global, :example_counter}, {:add, 1})
    send({:example_driver, rust}, {:added, 10})
end

ExampleTwin.await_stop(30_000)
