defmodule Erlnode.TestSupport do
  @moduledoc """
  Starts the `erlnode` binary (path in `ERLNODE_BIN`) as an OS process for
  a test, and makes the test VM itself a distributed node.

  Every erlnode started with `start_erlnode/1` is killed by OS pid in
  `on_exit` (also when the test fails). Its stdout/stderr is collected and
  shown when an assertion helper here fails.
  """
  import ExUnit.Assertions
  import ExUnit.Callbacks, only: [on_exit: 1]

  @how_to "run `make test`, or `ERLNODE_BIN=/path/to/erlnode ERL_EPMD_PORT=<free port> mix test`"

  @doc "Fails early, with a clear message, if the environment is incomplete."
  def check_environment! do
    bin = System.get_env("ERLNODE_BIN")

    cond do
      bin in [nil, ""] ->
        raise "ERLNODE_BIN is not set: #{@how_to}"

      not File.regular?(bin) ->
        raise "ERLNODE_BIN=#{bin} does not exist (cargo build --bins?): #{@how_to}"

      epmd_port() == nil ->
        raise "ERL_EPMD_PORT was not set when this VM started: #{@how_to}"

      true ->
        :ok
    end
  end

  @doc "A name unique across runs and parallel OS processes."
  def unique(prefix) do
    rand = :crypto.strong_rand_bytes(4) |> Base.encode16(case: :lower)
    "#{prefix}_#{System.pid()}_#{System.unique_integer([:positive])}_#{rand}"
  end

  @doc "The EPMD port this VM uses (from ERL_EPMD_PORT at boot), or nil."
  def epmd_port do
    case :init.get_argument(:epmd_port) do
      {:ok, [[port | _] | _]} -> List.to_integer(port)
      :error -> nil
    end
  end

  def erlnode_bin, do: System.fetch_env!("ERLNODE_BIN")

  @doc """
  Starts `erlnode run --name rust_<unique>@127.0.0.1 --cookie <c>
  --epmd-port <p>` and registers an `on_exit` that kills it by OS pid.

  Options: `:name`, `:cookie`, `:epmd_port`, `:args` (extra arguments).
  Returns `%{node: atom, cookie: atom, epmd_port: int, os_pid: int, collector: pid}`.
  """
  def start_erlnode(opts \\ []) do
    node = opts[:name] || :"#{unique("rust")}@127.0.0.1"
    cookie = opts[:cookie] || String.to_atom(unique("cookie"))
    port = opts[:epmd_port] || epmd_port()

    args =
      ["run", "--name", to_string(node), "--cookie", to_string(cookie)] ++
        ["--epmd-port", to_string(port), "--epmd-in-process"] ++ Keyword.get(opts, :args, [])

    bin = erlnode_bin()
    parent = self()
    collector = spawn(fn -> collect(bin, args, parent) end)

    os_pid =
      receive do
        {:erlnode_started, ^collector, os_pid} -> os_pid
        {:erlnode_failed, ^collector, reason} -> flunk("cannot start #{bin}: #{inspect(reason)}")
      after
        10_000 -> flunk("erlnode did not start")
      end

    on_exit(fn -> kill_os_pid(os_pid, collector) end)
    %{node: node, cookie: cookie, epmd_port: port, os_pid: os_pid, collector: collector}
  end

  # Owns the port (so the test process's mailbox stays clean) and keeps
  # the output lines.
  defp collect(bin, args, parent) do
    try do
      port =
        Port.open({:spawn_executable, bin}, [
          :binary,
          :exit_status,
          :stderr_to_stdout,
          {:line, 16_384},
          args: args,
          env: [{~c"NO_COLOR", ~c"1"}]
        ])

      {:os_pid, os_pid} = Port.info(port, :os_pid)
      send(parent, {:erlnode_started, self(), os_pid})
      collect_loop(port, [], "", nil)
    rescue
      e -> send(parent, {:erlnode_failed, self(), e})
    end
  end

  defp collect_loop(port, lines, partial, status) do
    receive do
      {^port, {:data, {:eol, chunk}}} ->
        collect_loop(port, [strip_ansi(partial <> chunk) | lines], "", status)

      {^port, {:data, {:noeol, chunk}}} ->
        collect_loop(port, lines, partial <> chunk, status)

      {^port, {:exit_status, code}} ->
        collect_loop(port, lines, partial, code)

      {:output, from} ->
        send(from, {:output, self(), Enum.reverse(lines), status})
        collect_loop(port, lines, partial, status)

      :stop ->
        :ok
    end
  end

  defp strip_ansi(s), do: String.replace(s, ~r/\e\[[0-9;?]*[ -\/]*[@-~]/, "")

  @doc "Output lines of an erlnode so far, and its exit status (nil while running)."
  def output(%{collector: c}) do
    if Process.alive?(c) do
      send(c, {:output, self()})

      receive do
        {:output, ^c, lines, status} -> {lines, status}
      after
        5_000 -> {[], nil}
      end
    else
      {[], nil}
    end
  end

  @doc "The output formatted for an assertion message."
  def describe(erl) do
    {lines, status} = output(erl)
    tail = lines |> Enum.take(-60) |> Enum.join("\n")
    "erlnode #{erl.node} (os pid #{erl.os_pid}, exit status #{inspect(status)}) output:\n#{tail}"
  end

  @doc """
  Is an OS process alive (and not a zombie)? Reads /proc; where /proc is
  not mounted (the OTP matrix runs this suite in a chroot) it asks
  `kill -0`, which cannot tell a zombie, but erlnode's parent (this VM's
  port program) reaps it at once.
  """
  def os_pid_alive?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        # "pid (comm) S ppid ...": comm may contain spaces and parens
        rest = stat |> String.split(")") |> List.last()
        state = rest |> String.trim_leading() |> String.first()
        state not in ["Z", "X"]

      {:error, _} ->
        not File.dir?("/proc/self") and
          match?({_, 0}, System.cmd("kill", ["-0", to_string(os_pid)], stderr_to_stdout: true))
    end
  end

  @doc "SIGTERM, wait up to 3 s, then SIGKILL; waits until the pid is gone."
  def kill_os_pid(os_pid, collector \\ nil) do
    if os_pid_alive?(os_pid) do
      System.cmd("kill", ["-TERM", to_string(os_pid)], stderr_to_stdout: true)

      unless wait_gone(os_pid, 3_000) do
        System.cmd("kill", ["-KILL", to_string(os_pid)], stderr_to_stdout: true)
        wait_gone(os_pid, 5_000)
      end
    end

    if collector, do: send(collector, :stop)
    :ok
  end

  @doc "Waits (bounded) until an OS pid is gone; true if it is."
  def wait_gone(os_pid, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    wait_gone_loop(os_pid, deadline)
  end

  defp wait_gone_loop(os_pid, deadline) do
    cond do
      not os_pid_alive?(os_pid) -> true
      System.monotonic_time(:millisecond) >= deadline -> false
      true -> Process.sleep(20) && wait_gone_loop(os_pid, deadline)
    end
  end

  @doc """
  Makes this VM a distributed node `ex_<unique>@127.0.0.1` (once; it
  registers with the EPMD on ERL_EPMD_PORT, i.e. the erlnode's embedded
  one, so wait for it to accept connections first) and sets its cookie.
  """
  def ensure_distributed(erl) do
    unless Node.alive?() do
      wait_for_tcp(erl, erl.epmd_port)
      start_distribution(erl, 50)
    end

    Node.set_cookie(erl.cookie)
    :ok
  end

  defp start_distribution(erl, tries) do
    case Node.start(:"#{unique("ex")}@127.0.0.1", :longnames) do
      {:ok, _} ->
        :ok

      {:error, reason} when tries > 0 ->
        _ = reason
        Process.sleep(100)
        start_distribution(erl, tries - 1)

      {:error, reason} ->
        flunk("Node.start failed: #{inspect(reason)}\n#{describe(erl)}")
    end
  end

  @doc """
  Calls `fun` every 50 ms until it returns a truthy value (returned), or
  flunks, with the erlnode's output, when `timeout` ms have passed or the
  erlnode process has exited. `what` describes the awaited condition.
  """
  def poll_until(erl, what, timeout, fun) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll_loop(erl, what, timeout, deadline, fun)
  end

  defp poll_loop(erl, what, timeout, deadline, fun) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        cond do
          not os_pid_alive?(erl.os_pid) ->
            # one last try: it may have just succeeded before exiting
            fun.() || flunk("erlnode exited while waiting for #{what}\n#{describe(erl)}")

          System.monotonic_time(:millisecond) >= deadline ->
            flunk("timed out after #{timeout} ms waiting for #{what}\n#{describe(erl)}")

          true ->
            Process.sleep(50)
            poll_loop(erl, what, timeout, deadline, fun)
        end
    end
  end

  @doc "Waits until something accepts TCP connections on 127.0.0.1:port."
  def wait_for_tcp(erl, port, timeout \\ 15_000) do
    poll_until(erl, "a listener on EPMD port #{port}", timeout, fn ->
      case :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 1_000) do
        {:ok, sock} -> :gen_tcp.close(sock) || true
        {:error, _} -> false
      end
    end)
  end

  @doc "Pings until :pong (bounded, no fixed sleep); flunks with the erlnode output otherwise."
  def assert_pong(erl, timeout \\ 15_000) do
    poll_until(erl, ":pong from #{erl.node}", timeout, fn -> Node.ping(erl.node) == :pong end)
    :pong
  end

  @doc "Waits until the erlnode is registered in EPMD (so it is listening)."
  def wait_until_registered(erl, timeout \\ 15_000) do
    [short, _host] = erl.node |> Atom.to_string() |> String.split("@", parts: 2)
    short = String.to_charlist(short)

    poll_until(erl, "#{erl.node} in EPMD's names", timeout, fn ->
      case :erl_epmd.names({127, 0, 0, 1}) do
        {:ok, names} -> List.keymember?(names, short, 0)
        _ -> false
      end
    end)

    :ok
  end
end
