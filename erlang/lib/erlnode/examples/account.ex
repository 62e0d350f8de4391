defmodule Erlnode.Examples.Account do
  @moduledoc """
  The canonical migratable process (type `"account"`): a balance fed by
  numbered deposits, which also *audits the delivery* of those deposits,
  so a test can tell whether a migration lost, duplicated or reordered a
  message.

  The Rust twin (`examples::Account`) has identical semantics, so either
  kind of node can host an account started by the other: the state is a
  plain map with atom keys and binary sender ids,

      %{balance: integer, applied: integer,
        last_seq: %{sender :: binary => integer},
        anomalies: [%{kind: :gap | :duplicate | :reorder,
                      sender: binary, expected: integer, got: integer}]}

  ## Messages

  `{:deposit, sender, seq, amount}` (binary `sender`, integers) is accepted
  as a cast, as a plain message and as a call (reply `{:ok, balance}`).
  Every deposit is applied (`balance += amount`, `applied += 1`), whatever
  its sequence number: the balance then exposes a loss or a duplicate
  against the sum of what was sent. Each sender numbers its deposits
  1, 2, 3...; with `expected = last_seq[sender] + 1` (`last_seq` starts at
  0), a deposit whose `seq`

    * equals `expected` is in order;
    * is greater is a `:gap` (something before it is missing or late);
    * equals `last_seq[sender]` is a `:duplicate`;
    * is smaller is a `:reorder` (it arrived after a later one).

  `last_seq[sender]` becomes `max(last_seq[sender], seq)`. Anomalies are
  prepended (newest first). The call `:get` returns the state.

  Start arguments: `%{balance: n}` (or `[balance: n]`), default 0.
  """

  use Erlnode.Migratable, type: "account"

  @typedoc "An anomaly record (see the module doc)."
  @type anomaly :: %{
          kind: :gap | :duplicate | :reorder,
          sender: binary(),
          expected: integer(),
          got: integer()
        }

  @typedoc "The account's state, identical in Elixir and Rust."
  @type t :: %{
          balance: integer(),
          applied: non_neg_integer(),
          last_seq: %{binary() => integer()},
          anomalies: [anomaly()]
        }

  @doc "The initial state for the given start arguments."
  @spec new(map() | keyword() | nil) :: t()
  def new(args) do
    balance =
      case args do
        %{balance: b} when is_integer(b) -> b
        args when is_list(args) -> Keyword.get(args, :balance, 0)
        _ -> 0
      end

    %{balance: balance, applied: 0, last_seq: %{}, anomalies: []}
  end

  @doc "Applies one deposit to a state (pure; shared with test variants)."
  @spec deposit(t(), binary(), integer(), integer()) :: t()
  def deposit(state, sender, seq, amount) do
    last = Map.get(state.last_seq, sender, 0)
    expected = last + 1

    anomalies =
      cond do
        seq == expected -> state.anomalies
        seq > expected -> [anomaly(:gap, sender, expected, seq) | state.anomalies]
        seq == last -> [anomaly(:duplicate, sender, expected, seq) | state.anomalies]
        true -> [anomaly(:reorder, sender, expected, seq) | state.anomalies]
      end

    %{
      state
      | balance: state.balance + amount,
        applied: state.applied + 1,
        last_seq: Map.put(state.last_seq, sender, max(last, seq)),
        anomalies: anomalies
    }
  end

  defp anomaly(kind, sender, expected, got),
    do: %{kind: kind, sender: sender, expected: expected, got: got}

  defguardp is_deposit(sender, seq, amount)
            when is_binary(sender) and is_integer(seq) and is_integer(amount)

  @impl true
  def init(args), do: {:ok, new(args)}

  # Replicas get the fields a deposit changed, not the whole account
  # (the Rust twin makes and reads the same deltas).
  @impl Erlnode.Migratable
  def replica_delta(old, new), do: Erlnode.Replica.Delta.map_delta(old, new)

  @impl Erlnode.Migratable
  def apply_replica_delta(held, delta), do: Erlnode.Replica.Delta.apply_map_delta(held, delta)

  @impl true
  def handle_call({:deposit, sender, seq, amount}, _from, state)
      when is_deposit(sender, seq, amount) do
    state = deposit(state, sender, seq, amount)
    {:reply, {:ok, state.balance}, state}
  end

  def handle_call(:get, _from, state), do: {:reply, state, state}

  @impl true
  def handle_cast({:deposit, sender, seq, amount}, state)
      when is_deposit(sender, seq, amount),
      do: {:noreply, deposit(state, sender, seq, amount)}

  @impl true
  def handle_info({:deposit, sender, seq, amount}, state)
      when is_deposit(sender, seq, amount),
      do: {:noreply, deposit(state, sender, seq, amount)}
end
