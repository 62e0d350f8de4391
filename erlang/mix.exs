defmodule ErlnodeEx.MixProject do
  use Mix.Project

  # Elixir side of erlnode: helpers, ExUnit tests that drive the `erlnode`
  # binary (path in ERLNODE_BIN) from a real distributed Elixir VM, and the
  # demo script. No Hex dependencies on purpose: it must build offline.
  def project do
    [
      app: :erlnode_ex,
      version: "0.1.0",
      elixir: "~> 1.14",
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: false,
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto], mod: {Erlnode.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
