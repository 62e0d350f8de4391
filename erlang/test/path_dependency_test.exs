defmodule Erlnode.PathDependencyTest do
  # docs/guide.md, section 1: another Mix project uses erlnode_ex as a
  # path dependency. A throwaway project in a temp dir declares a
  # migratable type, compiles offline (no Hex) and runs: the type is
  # registered at start and a process of it answers.
  use ExUnit.Case, async: true

  @moduletag timeout: 180_000

  @erlang_dir Path.expand("..", __DIR__)

  setup do
    # outside the repository, removed afterwards whatever happens
    dir = Path.join(System.tmp_dir!(), "erlnode_path_dep_#{System.unique_integer([:positive])}")
    File.mkdir_p!(Path.join(dir, "lib"))
    on_exit(fn -> File.rm_rf!(dir) end)
    %{dir: dir}
  end

  test "a Mix project depending on erlang/ by path compiles and hosts its own type", %{dir: dir} do

    File.write!(Path.join(dir, "mix.exs"), """
    defmodule Shop.MixProject do
      use Mix.Project

      def project do
        [app: :shop, version: "0.1.0", elixir: "~> 1.14",
         deps: [{:erlnode_ex, path: #{inspect(@erlang_dir)}}]]
      end

      def application, do: [extra_applications: [:logger]]
    end
    """)

    File.write!(Path.join(dir, "lib/cart.ex"), """
    defmodule Shop.Cart do
      use Erlnode.Migratable, type: "shop_cart"

      @impl true
      def init(items), do: {:ok, %{items: items}}

      @impl true
      def handle_call(:items, _from, st), do: {:reply, st.items, st}
    end
    """)

    script = """
    {:ok, _} = Erlnode.Migration.start_process("shop_cart", [:apple], :shop_cart_1)
    IO.puts("types=" <> inspect(Map.keys(Erlnode.Migration.types()) |> Enum.sort()))
    IO.puts("items=" <> inspect(GenServer.call({:global, :shop_cart_1}, :items)))
    """

    env = [
      {"MIX_ENV", "dev"},
      {"HEX_OFFLINE", "1"},
      {"MIX_HOME", Path.join(dir, "mix_home")},
      {"HEX_HOME", Path.join(dir, "hex_home")},
      # the outer `mix test` sets these for itself
      {"MIX_EXS", nil},
      {"MIX_BUILD_PATH", nil},
      {"MIX_DEPS_PATH", nil}
    ]

    {out, status} = System.cmd("mix", ["run", "-e", script], cd: dir, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ ~s(items=[:apple]), out
    assert out =~ ~s("shop_cart"), out
  end
end
