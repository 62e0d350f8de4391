defmodule Erlnode.MigratableUseTest do
  # What `use Erlnode.Migratable` gives a module by itself: a default
  # init/1 without compiler warnings, and its type registered when the
  # application starts (unless `host: false`).
  use ExUnit.Case, async: true

  import ExUnit.CaptureIO

  test "without init/1: no warning, the start argument is the state" do
    code = """
    defmodule Erlnode.MigratableUseTest.NoInit do
      use Erlnode.Migratable, type: "use_test_no_init"
    end
    """

    assert capture_io(:stderr, fn -> Code.compile_string(code) end) == ""
    {:ok, pid} = GenServer.start(Erlnode.MigratableUseTest.NoInit, %{n: 5})
    assert :sys.get_state(pid) == %{n: 5}
    GenServer.stop(pid)
  end

  test "type: is registered when the application starts; host: false is not" do
    types = Erlnode.Migration.types()
    assert types["counter"] == Erlnode.Examples.Counter
    assert types["account"] == Erlnode.Examples.Account
    refute Map.has_key?(types, "peer_only"), "Erlnode.MigrationSupport.PeerOnly says host: false"
  end
end
