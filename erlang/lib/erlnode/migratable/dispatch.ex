defmodule Erlnode.Migratable.Dispatch do
  @moduledoc """
  Applies raw mailbox messages to a migratable module's callbacks, the way
  `gen_server`'s loop would, outside that loop.

  A migration moves messages that were sitting in the source's mailbox
  (`Q`, `Q2`): the target must process them *before* anything else, in
  order, and a source that rolls back must process them before what
  arrived later. Both happen inside a callback, so this module re-creates
  gen_server's dispatch:

    * `{:"$gen_call", from, request}` -> `handle_call/3`, the reply (for
      every return shape) sent with `GenServer.reply/2` to the original
      caller, who thus gets exactly one answer from whichever process
      handled its call;
    * `{:"$gen_cast", msg}` -> `handle_cast/2`;
    * anything else -> `handle_info/2`;
    * `{:continue, c}` in a return value -> `handle_continue/2` right away,
      as gen_server does before the next message; timeouts and
      `:hibernate` are ignored (the batch continues immediately).

  A `'$erlnode_migrate'` `begin` found in a batch (a migration requested
  while another was running) is re-sent to `self()`, so it is handled as a
  new request once the current handoff is over; other protocol messages
  in a batch are logged and dropped.

  Exceptions raised by the callbacks propagate, as they would in
  gen_server: the process crashes at the same message it would have
  crashed at without the migration.
  """

  require Logger

  @typedoc "Result of applying messages: the new state, or a requested stop."
  @type result :: {:ok, term()} | {:stop, reason :: term(), state :: term()}

  @doc "Applies `msgs` in order; stops at the first `{:stop, ...}`."
  @spec apply_all(module(), [term()], term()) :: result()
  def apply_all(_module, [], state), do: {:ok, state}

  def apply_all(module, [msg | rest], state) do
    case apply_one(module, msg, state) do
      {:ok, state} -> apply_all(module, rest, state)
      {:stop, _reason, _state} = stop -> stop
    end
  end

  @doc "Applies one raw message."
  @spec apply_one(module(), term(), term()) :: result()
  def apply_one(module, {:"$gen_call", from, request}, state) do
    module.handle_call(request, from, state) |> call_result(module, from)
  end

  def apply_one(module, {:"$gen_cast", msg}, state) do
    module.handle_cast(msg, state) |> noreply_result(module)
  end

  def apply_one(_module, {:"$erlnode_migrate", :begin, _, _, _, _} = msg, state) do
    send(self(), msg)
    {:ok, state}
  end

  def apply_one(module, msg, state)
      when is_tuple(msg) and tuple_size(msg) > 0 and elem(msg, 0) == :"$erlnode_migrate" do
    Logger.warning(
      "#{inspect(module)} #{inspect(self())}: dropped a protocol message found among " <>
        "forwarded messages: #{inspect(msg, limit: 8)}"
    )

    {:ok, state}
  end

  def apply_one(module, msg, state) do
    module.handle_info(msg, state) |> noreply_result(module)
  end

  @doc "Runs `handle_continue/2` (and any continue it requests in turn)."
  @spec continue(module(), term(), term()) :: result()
  def continue(module, cont, state) do
    module.handle_continue(cont, state) |> noreply_result(module)
  end

  defp call_result({:reply, reply, state}, _module, from) do
    GenServer.reply(from, reply)
    {:ok, state}
  end

  defp call_result({:reply, reply, state, extra}, module, from) do
    GenServer.reply(from, reply)
    after_extra(module, state, extra)
  end

  defp call_result({:stop, reason, reply, state}, _module, from) do
    GenServer.reply(from, reply)
    {:stop, reason, state}
  end

  defp call_result(other, module, _from), do: noreply_result(other, module)

  defp noreply_result({:noreply, state}, _module), do: {:ok, state}
  defp noreply_result({:noreply, state, extra}, module), do: after_extra(module, state, extra)
  defp noreply_result({:stop, reason, state}, _module), do: {:stop, reason, state}
  defp noreply_result(other, _module), do: exit({:bad_return_value, other})

  defp after_extra(module, state, {:continue, cont}), do: continue(module, cont, state)
  defp after_extra(_module, state, _timeout_or_hibernate), do: {:ok, state}
end
