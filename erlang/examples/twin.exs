# What the Elixir twins of the examples share (examples/common/mod.rs is
# the Rust side): join the Rust node named in RUST_NODE with nothing
# moving by itself, report ready to its `example_driver`, and stop when
# told to.
defmodule ExampleTwin do
  @doc "Starts :erlnode_ex, joins the Rust node, says ready; returns the Rust node."
  def join(register \\ fn -> :ok end) do
    rust = String.to_atom(System.fetch_env!("RUST_NODE"))
    Application.put_env(:erlnode_ex, :rebalance_on_join, false)
    {:ok, _} = Application.ensure_all_started(:erlnode_ex)
    :ok = register.()
    true = Node.connect(rust)
    :ok = :global.sync()
    Process.register(self(), :example_twin)
    send({:example_driver, rust}, {:ready, node()})
    rust
  end

  @doc "Waits for :stop (exit 0); exits 1 if it never comes."
  def await_stop(timeout) do
    receive do
      :stop -> System.halt(0)
    after
      timeout -> System.halt(1)
    end
  end
end
