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

  ## Encoding

  OTP 26 changed how `term_to_binary/1` writes atoms (UTF-8 everywhere,
  where OTP 25 wrote latin-1 atoms as `ATOM_EXT`), which changes every
  hash. ProcessHub hashes with the default of the release it runs on; so
  does this ring by default (`:auto`). Set one encoding on every node of
  a cluster that mixes releases (a rolling OTP upgrade), so that every
  node computes the same owners:

      config :erlnode_ex, ring_encoding: :otp25   # or :otp26, or :auto

  and `erlnode run --ring-encoding otp25` on the Rust nodes. The Rust
  nodes follow the Elixir nodes when nothing is set there
  (docs/otp-releases.md).
  """

  @vnodes 256

  @enforce_keys [:points, :nodes, :encoding]
  defstruct points: {}, nodes: [], encoding: :otp26

  @typedoc "A ring: `points` is a tuple of sorted `{hash, seq, node}`."
  @type t :: %__MODULE__{points: tuple(), nodes: [node()], encoding: :otp25 | :otp26}

  @typedoc "`:otp25`: latin-1 atoms as `ATOM_EXT`; `:otp26`: UTF-8 atoms."
  @type encoding :: :otp25 | :otp26

  @doc """
  The encoding this node hashes with: `config :erlnode_ex, :ring_encoding`
  (`:otp25`, `:otp26`, or `:auto`, the default: this node's release's).
  """
  @spec encoding() :: encoding()
  def encoding do
    case Application.get_env(:erlnode_ex, :ring_encoding, :auto) do
      :auto -> release_encoding()
      enc when enc in [:otp25, :otp26] -> enc
    end
  end

  @doc "The default `term_to_binary` encoding of the release this node runs."
  @spec release_encoding() :: encoding()
  def release_encoding do
    if List.to_integer(:erlang.system_info(:otp_release)) >= 26, do: :otp26, else: :otp25
  end

  @doc "The 32-bit ring hash of a term."
  @spec hash(term(), encoding()) :: non_neg_integer()
  def hash(term, encoding \\ encoding()) do
    <<_::binary-size(12), h::unsigned-big-32>> =
      :erlang.md5(:erlang.term_to_binary(term, minor_version: minor_version(encoding)))

    h
  end

  defp minor_version(:otp25), do: 1
  defp minor_version(:otp26), do: 2

  @doc "A ring over `nodes` (duplicates ignored, order irrelevant)."
  @spec new([node()], encoding()) :: t()
  def new(nodes, encoding \\ encoding()) do
    nodes = nodes |> Enum.uniq() |> Enum.sort()

    points =
      for node <- nodes, seq <- 0..(@vnodes - 1) do
        {hash({seq, node}, encoding), seq, node}
      end
      |> Enum.sort()
      |> List.to_tuple()

    %__MODULE__{points: points, nodes: nodes, encoding: encoding}
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
  def owners(%__MODULE__{points: points, nodes: nodes, encoding: enc}, key, n)
      when is_integer(n) and n >= 0 do
    size = tuple_size(points)
    want = min(n, length(nodes))

    if size == 0 or want == 0 do
      []
    else
      start = first_at_least(points, hash(key, enc), 0, size)
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
