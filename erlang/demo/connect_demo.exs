# Demo: this Elixir node talks to an erlnode (Rust) node.
#
# Run by scripts/demo.sh (`make demo-connect`), which starts erlnode and then:
#   ERL_EPMD_PORT=<port> elixir --erl "-start_epmd false" \
#     --name ex_demo@127.0.0.1 --cookie <cookie> erlang/demo/connect_demo.exs [RUST_NODE]
#
# Exits 0 when every term came back equal, 1 otherwise.
Code.require_file("../lib/erlnode.ex", __DIR__)

rust =
  case System.argv() do
    [name | _] -> String.to_atom(name)
    [] -> :"rust_demo@127.0.0.1"
  end

IO.puts("This node:  #{node()}")
IO.puts("Rust node:  #{rust}")
IO.puts("")

pong = Erlnode.wait_for_pong(rust, 15_000)
IO.puts("Node.ping(#{inspect(rust)}) -> #{inspect(pong)}")
IO.puts("Node.list() -> #{inspect(Node.list())}")
IO.puts("")

if pong != :pong do
  IO.puts("VERDICT: FAIL - the Rust node did not answer the ping")
  System.halt(1)
end

IO.puts("GenServer.call({:erlnode_echo, #{inspect(rust)}}, term) for each term:")

results =
  for {label, term} <- Erlnode.sample_terms() do
    {status, shown} =
      try do
        reply = Erlnode.echo(rust, term)
        if reply === term, do: {:ok, inspect(reply)}, else: {:mismatch, inspect(reply)}
      catch
        kind, reason -> {:error, "#{kind}: #{inspect(reason) |> String.slice(0, 200)}"}
      end

    mark =
      case status do
        :ok -> "== original"
        :mismatch -> "MISMATCH"
        :error -> "MISMATCH (no reply)"
      end

    IO.puts("  #{String.pad_trailing(label, 17)} #{inspect(term)}")
    IO.puts("  #{String.pad_trailing("", 17)} -> #{shown}   #{mark}")
    status
  end

ok = Enum.count(results, &(&1 == :ok))
total = length(results)
IO.puts("")

if ok == total do
  IO.puts("VERDICT: OK - ping answered pong and all #{total} terms came back == the original")
  System.halt(0)
else
  IO.puts("VERDICT: FAIL - #{total - ok} of #{total} terms did not come back equal")
  System.halt(1)
end
