defmodule Erlnode.PinnedCounter do
  @moduledoc "A type pinned in its `use` (test/pin_test.exs): placement never moves it."
  use Erlnode.Migratable, type: "pinned_counter", pinned: true

  @impl true
  def init(n), do: {:ok, n}
end
