defmodule Erlnode.Migration.Ring do
  @moduledoc """
  Consistent-hash placement, bit-exact with ProcessHub's ring (sile/hash_ring
  0.4.2 defaults: md5, 256 virtual nodes per node, 4-byte hashes) and with
  the Rust side (`src/migration/ring.rs`), so that every node of a mixed
  cluster computes the same owner for every process.

    * `hash(x)` is the low 32 bits, read big-endian, of
      `md5(term_to_binary(x))`;
    * each node has 256 points `{hash({seq, node}), seq, node}` (`seq` in
      `0..255`), all sorted;
    * a key's owners are the first distinct nodes met clockwise from the
      first point whose hash is `>= hash(key)` (wrapping around).

  The key of a migratable process is its global name (an atom).

  `term_to_binary/2` is called with `minor_version: 1`: latin-1 atoms are
  encoded as `ATOM_EXT`, as OTP 25 does by default and as the Rust node
  does; OTP 26 changed the default to UTF-8 atoms, which would change
  every hash.
  """

  @vnodes 256

  @enforce_keys [:points, :nodes]
  defstruct points: {}, nodes: []

  @typedoc "A ring: `points` is a tuple of sorted `{hash, seq, node}`."
  @type t :: %__MODULE__{points: tuple(), nodes: [node()]}

  @doc "The 32-bit ring hash of a term."
  @spec hash(term()) :: non_neg_integer()
  def hash(term) do
    <<_::binary-size(12), h::unsigned-big-32>> =
      :erlang.md5(:erlang.term_to_binary(term, minor_version: 1))

    h
  end

  @doc "A ring over `nodes` (duplicates ignored, order irrelevant)."
  @spec new([node()]) :: t()
  def new(nodes) do
    nodes = nodes |> Enum.uniq() |> Enum.sort()

    points =
      for node <- nodes, seq <- 0..(@vnodes - 1) do
        {hash({seq, node}), seq, node}
      end
      |> Enum.sort()
      |> List.to_tuple()

    %__MODULE__{points: points, nodes: nodes}
  end

  @doc "The nodes of the ring, sorted."
  @spec nodes(t()) :: [node()]
  def nodes(%__MODULE__{nodes: nodes}), do: nodes

  @doc "The primary owner of `key`, or `nil` on an empty ring."
  @spec owner(t(), term()) :: node() | nil
  def owner(ring, key) do
    case owners(ring, key, 1) do
      [node] -> node
      [] -> nil
    end
  end

  @doc "The first `n` distinct owners of `key`, primary first."
  @spec owners(t(), term(), non_neg_integer()) :: [node()]
  def owners(%__MODULE__{points: points, nodes: nodes}, key, n) when is_integer(n) and n >= 0 do
    size = tuple_size(points)
    want = min(n, length(nodes))

    if size == 0 or want == 0 do
      []
    else
      start = first_at_least(points, hash(key), 0, size)
      collect(points, size, start, 0, want, [])
    end
  end

  # Index of the first point whose hash is >= h (size if none: wraps to 0).
  defp first_at_least(_points, _h, lo, hi) when lo >= hi, do: lo

  defp first_at_least(points, h, lo, hi) do
    mid = div(lo + hi, 2)

    if elem(elem(points, mid), 0) < h,
      do: first_at_least(points, h, mid + 1, hi),
      else: first_at_least(points, h, lo, mid)
  end

  defp collect(_points, size, _start, i, _want, acc) when i >= size, do: Enum.reverse(acc)

  defp collect(points, size, start, i, want, acc) do
    {_, _, node} = elem(points, rem(start + i, size))

    cond do
      node in acc ->
        collect(points, size, start, i + 1, want, acc)

      length(acc) + 1 == want ->
        Enum.reverse([node | acc])

      true ->
        collect(points, size, start, i + 1, want, [node | acc])
    end
  end
end
