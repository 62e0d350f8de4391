defmodule Erlnode.ConnectTest do
  # One erlnode per test, all serving their embedded EPMD on ERL_EPMD_PORT
  # one after the other, so the tests must not run concurrently.
  use ExUnit.Case, async: false

  alias Erlnode.TestSupport, as: TS

  setup do
    erl = TS.start_erlnode()
    TS.ensure_distributed(erl)
    {:ok, erl: erl}
  end

  test "pinging the Rust node gives :pong", %{erl: erl} do
    assert TS.assert_pong(erl) == :pong
    assert Erlnode.ping(erl.node) == :pong
  end

  test "the Rust node is a visible node of this VM", %{erl: erl} do
    TS.assert_pong(erl)
    assert erl.node in Node.list(), "#{erl.node} not in Node.list(): #{inspect(Node.list())}"
    refute erl.node in Node.list(:hidden)
    assert erl.node in Node.list(:connected)
  end

  test "a wrong cookie gives :pang", %{erl: erl} do
    # Make sure the node is up, so that :pang is due to the cookie alone.
    TS.wait_until_registered(erl)
    Node.set_cookie(erl.node, :"wrong_#{TS.unique("cookie")}")
    assert Node.ping(erl.node) == :pang
    refute erl.node in Node.list()
    # ...and the right cookie then works.
    Node.set_cookie(erl.node, erl.cookie)
    assert TS.assert_pong(erl) == :pong
  end

  test "the Rust node survives a disconnect and accepts a new connection", %{erl: erl} do
    TS.assert_pong(erl)
    assert Node.disconnect(erl.node)
    refute erl.node in Node.list()
    assert TS.assert_pong(erl) == :pong
    assert erl.node in Node.list()
  end

  test "SIGTERM stops the Rust node", %{erl: erl} do
    TS.assert_pong(erl)
    System.cmd("kill", ["-TERM", to_string(erl.os_pid)])

    assert TS.wait_gone(erl.os_pid, 10_000),
           "erlnode still running 10 s after SIGTERM\n#{TS.describe(erl)}"
  end

  # The echo process is being implemented in erlnode; these run by default.
  @tag :echo
  test "erlnode_echo answers GenServer.call with {:echo, term}", %{erl: erl} do
    TS.assert_pong(erl)

    for {label, term} <- Erlnode.sample_terms() do
      reply = Erlnode.echo(erl.node, term)
      assert reply === term, "#{label}: sent #{inspect(term)}, got back #{inspect(reply)}"
    end
  end

  @tag :echo
  test "erlnode_echo sends msg to pid for {pid, msg}", %{erl: erl} do
    TS.assert_pong(erl)
    term = {:hello, self(), make_ref(), %{list: [1, 2.5, "three"]}}
    assert Erlnode.echo_send(erl.node, term) == {:ok, term}
  end

  @tag :echo
  test "erlnode_echo round-trips a large binary and a long list", %{erl: erl} do
    TS.assert_pong(erl)
    big = :crypto.strong_rand_bytes(1_000_000)
    assert Erlnode.echo(erl.node, big, 30_000) === big
    long = Enum.to_list(1..100_000)
    assert Erlnode.echo(erl.node, long, 30_000) === long
  end
end
