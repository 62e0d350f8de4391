defmodule Erlnode do
  @moduledoc """
  Helpers to talk to an `erlnode` (Rust) node from Elixir.

  An `erlnode run` node registers a process `:erlnode_echo` that answers
  `GenServer.call({:erlnode_echo, node}, msg)` with `{:echo, msg}` and, for
  `send({:erlnode_echo, node}, {pid, msg})`, sends `msg` to `pid`.
  """

  @echo :erlnode_echo

  @doc "Name of the echo process registered on an erlnode node."
  def echo_name, do: @echo

  @doc "`Node.ping/1`: `:pong` or `:pang`."
  def ping(node), do: Node.ping(node)

  @doc """
  Pings `node` until `:pong` or until `timeout` ms have passed (the node
  may still be starting). Returns the last answer.
  """
  def wait_for_pong(node, timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    do_wait_for_pong(node, deadline)
  end

  defp do_wait_for_pong(node, deadline) do
    case Node.ping(node) do
      :pong ->
        :pong

      :pang ->
        if System.monotonic_time(:millisecond) >= deadline do
          :pang
        else
          Process.sleep(100)
          do_wait_for_pong(node, deadline)
        end
    end
  end

  @doc """
  `GenServer.call({:erlnode_echo, node}, term)`; expects `{:echo, reply}`
  and returns `reply` (which should equal `term`). Raises on any other
  answer; exits like `GenServer.call/3` on timeout or a dead node.
  """
  def echo(node, term, timeout \\ 5_000) do
    case GenServer.call({@echo, node}, term, timeout) do
      {:echo, reply} -> reply
      other -> raise "unexpected reply from #{@echo} on #{node}: #{inspect(other)}"
    end
  end

  @doc """
  `send({:erlnode_echo, node}, {self(), term})` and waits for the message
  erlnode sends back. Returns `{:ok, msg}` or `{:error, :timeout}`.
  """
  def echo_send(node, term, timeout \\ 5_000) do
    send({@echo, node}, {self(), term})

    receive do
      msg -> {:ok, msg}
    after
      timeout -> {:error, :timeout}
    end
  end

  @doc """
  A sample of terms of every kind that crosses the wire, for round-trip
  checks (used by the tests and the demo). Pids and refs are local to the
  calling process and node.
  """
  def sample_terms do
    [
      {"map", %{:a => 1, "b" => [1, 2], {:nested, :key} => %{}}},
      {"tuple", {:ok, 1, "two", {}}},
      {"list", [1, :two, "three", [4.0], []]},
      {"improper list", [1, 2 | :tail]},
      {"charlist", ~c"charlist"},
      {"binary", <<0, 1, 2, 255>>},
      {"utf-8 string", "héllo wörld ✓"},
      {"bitstring", <<1::size(3)>>},
      {"big int", 2 ** 100},
      {"negative big int", -(2 ** 70) - 12_345},
      {"int32 edge", -2_147_483_649},
      {"float", 3.141592653589793},
      {"negative float", -0.5e-300},
      {"atom", :hello},
      {"utf-8 atom", :ünïcødé},
      {"booleans and nil", {true, false, nil}},
      {"pid", self()},
      {"ref", make_ref()},
      {"external fun", &Enum.map/2}
    ]
  end
end
