defmodule Erlnode.MigrationSupport do
  @moduledoc """
  Helpers for the migration tests: peer nodes (OTP `:peer`) that load this
  project's code and start the `:erlnode_ex` application (hence a
  migration manager), deposit senders, fault hooks, and migratable test
  modules. Compiled into the test build (not an .exs) so that peer nodes
  can load these modules from the code path.
  """
  import ExUnit.Callbacks, only: [on_exit: 1]

  alias Erlnode.TestSupport, as: TS

  ## ------------------------------------------------------------------
  ## distribution and peers

  @doc """
  Makes this VM distributed *and registered in the EPMD the given erlnode
  serves*. A VM made distributed by an earlier test module registered in
  an erlnode's EPMD that has been killed since: peers could not find it,
  so distribution is restarted under a new name.
  """
  def ensure_registered(erl) do
    TS.ensure_distributed(erl)

    unless registered?() do
      :ok = Node.stop()
      # is_alive() can still say true for a moment after Node.stop/0
      wait_not_alive(100)
      TS.ensure_distributed(erl)
    end

    true = registered?()
    :ok
  end

  defp wait_not_alive(0), do: :ok

  defp wait_not_alive(tries) do
    if Node.alive?(), do: Process.sleep(20) && wait_not_alive(tries - 1), else: :ok
  end

  defp registered? do
    [short, _] = node() |> Atom.to_string() |> String.split("@", parts: 2)

    case :erl_epmd.names({127, 0, 0, 1}) do
      {:ok, names} -> List.keymember?(names, String.to_charlist(short), 0)
      _ -> false
    end
  end

  @doc """
  Turns join placement off on this VM's manager (explicit hops must not
  race automatic moves) until the calling test module (or test) ends.
  """
  def no_placement_on_join do
    previous = Application.fetch_env(:erlnode_ex, :rebalance_on_join)
    Application.put_env(:erlnode_ex, :rebalance_on_join, false)

    on_exit(fn ->
      case previous do
        {:ok, value} -> Application.put_env(:erlnode_ex, :rebalance_on_join, value)
        :error -> Application.delete_env(:erlnode_ex, :rebalance_on_join)
      end
    end)
  end

  @doc """
  True once `peer_node` announced that it hosts `type` (membership comes
  in the managers' `members` messages), false after `timeout` ms.
  """
  def await_member(peer_node, type, timeout \\ 20_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn -> peer_node in Erlnode.Migration.members(type) end)
    |> Enum.find(fn member? ->
      member? or System.monotonic_time(:millisecond) > deadline or (Process.sleep(20) && false)
    end)
  end

  @doc """
  Starts a peer node `peer_<unique>@127.0.0.1` with this VM's cookie, code
  paths and EPMD port, starts `:erlnode_ex` there and registers its stop in
  `on_exit` (`:peer.stop` halts the node: no drain). Returns
  `%{pid: peer_pid, node: node}`.

  Options: `:log_level` (the peer's Logger level, default `:error`);
  `:app_env`, `:erlnode_ex` environment set before the application
  starts (default `[rebalance_on_join: false]`: a peer moves nothing by
  itself when another node joins, so tests doing explicit hops stay
  deterministic; placement tests pass `rebalance_on_join: true`).
  """
  def start_peer(opts \\ []) do
    root = :code.root_dir()
    paths = :code.get_path() |> Enum.reject(&List.starts_with?(&1, root))
    port = TS.epmd_port()

    {:ok, pid, node} =
      :peer.start(%{
        name: String.to_charlist(TS.unique("peer")),
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie()), ~c"-pa" | paths],
        env: [{~c"ERL_EPMD_PORT", Integer.to_charlist(port)}],
        wait_boot: 30_000
      })

    on_exit(fn -> stop_peer(pid) end)

    :ok = :erpc.call(node, Application, :load, [:erlnode_ex])

    for {key, value} <- Keyword.get(opts, :app_env, rebalance_on_join: false),
        do: :ok = :erpc.call(node, Application, :put_env, [:erlnode_ex, key, value])

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:erlnode_ex])
    :ok = :erpc.call(node, Logger, :configure, [[level: Keyword.get(opts, :log_level, :error)]])
    true = Node.connect(node)
    :ok = :global.sync()
    :ok = :erpc.call(node, :global, :sync, [])
    %{pid: pid, node: node}
  end

  @doc "Stops a peer; fine if it is already gone."
  def stop_peer(pid) do
    :peer.stop(pid)
  catch
    :exit, _ -> :ok
  end

  ## ------------------------------------------------------------------
  ## hooks (run by the source process)

  @doc """
  MFA hook for `start_process(..., hook: {__MODULE__, :fault_hook, [spec]})`.
  `spec` maps a phase to a list of actions: `{:inject, sender, first, n}`
  sends the source itself `n` plain deposits numbered from `first` (so they
  sit in its mailbox: drained into Q before `handover`, left after it
  otherwise); `:halt` halts this node at once.
  """
  def fault_hook(phase, _info, spec) do
    for action <- Map.get(spec, phase, []) do
      case action do
        {:inject, sender, first, n} -> inject(self(), sender, first, n)
        :halt -> :erlang.halt(0, flush: false)
      end
    end

    :ok
  end

  @doc "Sends `pid` `n` plain deposits of amount = seq, numbered from `first`."
  def inject(pid, sender, first, n) do
    for seq <- first..(first + n - 1), do: send(pid, {:deposit, sender, seq, seq})
    :ok
  end

  ## ------------------------------------------------------------------
  ## senders

  @doc """
  Spawns a deposit sender (on this node; call through `:erpc` to place one
  on a peer). `kind` is how it reaches the account:

    * `:global_cast`, `:global_send`, `:global_call` - through
      `{:global, name}` (casts and sends add a `:get` call every 50 for
      flow control);
    * `:pid_cast`, `:pid_send`, `:pid_call` - to a pid it caches; every
      20th deposit is a call to that same pid and, once it has returned,
      the pid is looked up again. The call is a barrier: everything sent to
      the old pid has been handled when it returns, so switching to the new
      pid cannot reorder the sender's deposits.

  Runs until it gets `:stop`, then sends `report_to`
  `{:sender_done, id, %{sent: n, sum: s, failures: [reason], calls: c}}`.
  """
  def spawn_sender(id, kind, name, report_to) do
    spawn(fn ->
      :rand.seed(:exsss, {System.unique_integer(), 7, 11})
      pid = :global.whereis_name(name)

      sender_loop(%{
        id: id,
        kind: kind,
        name: name,
        report_to: report_to,
        pid: pid,
        seq: 0,
        sum: 0,
        failures: [],
        calls: 0
      })
    end)
  end

  defp sender_loop(st) do
    receive do
      :stop ->
        send(
          st.report_to,
          {:sender_done, st.id,
           %{sent: st.seq, sum: st.sum, failures: Enum.reverse(st.failures), calls: st.calls}}
        )
    after
      0 ->
        seq = st.seq + 1
        amount = :rand.uniform(100)
        st = send_one(st, {:deposit, st.id, seq, amount})
        sender_loop(%{st | seq: seq, sum: st.sum + amount})
    end
  end

  defp send_one(%{kind: :global_cast} = st, dep) do
    GenServer.cast({:global, st.name}, dep)
    flow_control(st)
  end

  defp send_one(%{kind: :global_send} = st, dep) do
    try do
      :global.send(st.name, dep)
      flow_control(st)
    catch
      :exit, reason -> failed(st, reason)
    end
  end

  defp send_one(%{kind: :global_call} = st, dep), do: call(st, {:global, st.name}, dep)

  defp send_one(%{kind: kind} = st, dep) when kind in [:pid_cast, :pid_send, :pid_call] do
    if rem(st.seq + 1, 20) == 0 or kind == :pid_call do
      st = call(st, st.pid, dep)
      if rem(st.seq + 1, 20) == 0, do: %{st | pid: :global.whereis_name(st.name)}, else: st
    else
      if kind == :pid_cast, do: GenServer.cast(st.pid, dep), else: send(st.pid, dep)
      st
    end
  end

  defp flow_control(st) do
    if rem(st.seq + 1, 50) == 0 do
      try do
        %{balance: _} = GenServer.call({:global, st.name}, :get)
        %{st | calls: st.calls + 1}
      catch
        :exit, reason -> failed(st, reason)
      end
    else
      st
    end
  end

  defp call(st, dest, dep) do
    case GenServer.call(dest, dep) do
      {:ok, _balance} -> %{st | calls: st.calls + 1}
      other -> failed(st, {:bad_reply, other})
    end
  catch
    :exit, reason -> failed(st, reason)
  end

  defp failed(st, reason), do: %{st | failures: [{st.seq + 1, reason} | st.failures]}

  ## ------------------------------------------------------------------
  ## migratable test modules

  defmodule RejectingAccount do
    @moduledoc "An account whose targets always refuse the handover state."
    use Erlnode.Migratable, type: "rejecting_account"
    alias Erlnode.Examples.Account

    @impl true
    def init(args), do: {:ok, Account.new(args)}

    @impl true
    def alter_handover_state(_init_state, _handover_state),
      do: raise(ArgumentError, "this target refuses every handover")

    @impl true
    def handle_call(:get, _from, state), do: {:reply, state, state}

    def handle_call({:deposit, s, q, a}, _from, state) do
      state = Account.deposit(state, s, q, a)
      {:reply, {:ok, state.balance}, state}
    end

    @impl true
    def handle_cast({:deposit, s, q, a}, state), do: {:noreply, Account.deposit(state, s, q, a)}

    @impl true
    def handle_info({:deposit, s, q, a}, state), do: {:noreply, Account.deposit(state, s, q, a)}
  end

  defmodule CatchAllAccount do
    @moduledoc """
    An account with a catch-all `handle_info/2` (which must not shadow the
    migration messages), an `init/1` that continues, and handover callbacks
    that count hops and record that the target's continue ran before
    `alter_handover_state/2`.
    """
    use Erlnode.Migratable, type: "catch_all_account", retention: 1_000
    alias Erlnode.Examples.Account

    @impl true
    def init(args), do: {:ok, Map.put(Account.new(args), :continued, false), {:continue, :load}}

    @impl true
    def handle_continue(:load, state), do: {:noreply, %{state | continued: true}}

    @impl true
    def prepare_handover_state(state), do: Map.put(state, :hops, Map.get(state, :hops, 0) + 1)

    @impl true
    def alter_handover_state(init_state, hs), do: %{hs | continued: init_state.continued}

    @impl true
    def handle_call(:get, _from, state), do: {:reply, state, state}

    @impl true
    def handle_info({:deposit, s, q, a}, state), do: {:noreply, Account.deposit(state, s, q, a)}
    def handle_info(_anything, state), do: {:noreply, Map.update(state, :swallowed, 1, &(&1 + 1))}
  end

  defmodule PeerOnly do
    @moduledoc "A type only the peers of the placement test register (never this VM)."
    use Erlnode.Migratable, type: "peer_only", host: false

    @impl true
    def init(_), do: {:ok, 0}

    @impl true
    def handle_call(:get, _from, n), do: {:reply, n, n}
  end

  defmodule LocalOnly do
    @moduledoc "A type no peer registers."
    use Erlnode.Migratable, type: "local_only", host: false

    @impl true
    def init(_), do: {:ok, 0}

    @impl true
    def handle_call(:get, _from, n), do: {:reply, n, n}
    @impl true
    def handle_cast(:inc, n), do: {:noreply, n + 1}
  end
end
