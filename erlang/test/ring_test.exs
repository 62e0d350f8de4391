defmodule Erlnode.RingTest do
  # The placement ring is bit-exact with ProcessHub's (and so with the
  # Rust side, `src/migration/ring.rs`, checked against the same vectors
  # by `tests/ring_vectors.rs`).
  use ExUnit.Case, async: true

  alias Erlnode.Migration.Ring

  @vectors Path.expand("../../tests/vectors/processhub_ring_vectors.jsonl", __DIR__)
  @vectors27 Path.expand("../../tests/vectors/processhub_ring_vectors_otp27.jsonl", __DIR__)

  # The lines are flat JSON objects with known fields: no JSON library
  # needed.
  defp parse(line) do
    [_, nodes] = Regex.run(~r/"nodes":\[([^\]]*)\]/, line)
    [_, key_b64] = Regex.run(~r/"key_etf_b64":"([^"]*)"/, line)
    [_, replication] = Regex.run(~r/"replication":(\d+)/, line)
    [_, result] = Regex.run(~r/"result":\[([^\]]*)\]/, line)

    %{
      nodes: atoms(nodes),
      key: :erlang.binary_to_term(Base.decode64!(key_b64)),
      replication: String.to_integer(replication),
      result: atoms(result)
    }
  end

  defp atoms(list) do
    for s <- String.split(list, ",", trim: true),
        do: s |> String.trim() |> String.trim("\"") |> String.to_atom()
  end

  defp check_vectors(file, encoding, at_least) do
    vectors =
      file
      |> File.read!()
      |> String.split("\n", trim: true)
      |> Enum.map(&parse/1)

    assert length(vectors) > at_least

    # one ring per node set
    rings =
      vectors |> Enum.map(& &1.nodes) |> Enum.uniq() |> Map.new(&{&1, Ring.new(&1, encoding)})

    for v <- vectors do
      assert Ring.owners(rings[v.nodes], v.key, v.replication) == v.result,
             "key #{inspect(v.key)} on #{inspect(v.nodes)}, replication #{v.replication}"

      if v.replication == 1, do: assert(Ring.owner(rings[v.nodes], v.key) == hd(v.result))
    end
  end

  # sile/hash_ring 0.4.2 on OTP 25.2.3 and on OTP 27: whatever release
  # this test runs on, either encoding can be computed.
  test "every ProcessHub vector, OTP 25 encoding" do
    check_vectors(@vectors, :otp25, 800)
  end

  test "every ProcessHub vector, OTP 27 (26 and later) encoding" do
    check_vectors(@vectors27, :otp26, 1600)
  end

  test "the default encoding is this release's" do
    release = List.to_integer(:erlang.system_info(:otp_release))
    assert Ring.encoding() == if(release >= 26, do: :otp26, else: :otp25)
    # ProcessHub's rule: plain term_to_binary
    assert Ring.hash({0, :a@h}) ==
             (<<_::binary-size(12), h::32>> = :erlang.md5(:erlang.term_to_binary({0, :a@h})); h)
  end

  # Computed with the Rust ring (erlnode::migration::ring, OTP 25
  # encoding) at the commit this was written against.
  @rust [
    acct_1: {848_985_797, [:a@h, :b@h, :c@h]},
    acct_2: {2_544_685_381, [:b@h, :c@h, :a@h]},
    acct_3: {3_672_119_691, [:a@h, :b@h, :c@h]},
    acct_42: {945_908_856, [:a@h, :c@h, :b@h]},
    acct_100: {1_494_240_994, [:a@h, :c@h, :b@h]},
    account: {2_919_200_377, [:c@h, :b@h, :a@h]},
    x: {2_959_309_903, [:c@h, :a@h, :b@h]},
    place_7: {2_252_840_333, [:c@h, :a@h, :b@h]},
    erlnode_migration: {2_897_720_927, [:b@h, :a@h, :c@h]}
  ]

  test "same hashes and owners as the Rust ring for global names" do
    ring = Ring.new([:c@h, :a@h, :b@h, :a@h], :otp25)
    assert Ring.nodes(ring) == [:a@h, :b@h, :c@h]
    assert Ring.hash({0, :a@h}, :otp25) == 3_607_230_360

    for {name, {hash, owners}} <- @rust do
      assert Ring.hash(name, :otp25) == hash, "#{name}"
      assert Ring.owners(ring, name, 3) == owners, "#{name}"
      assert Ring.owner(ring, name) == hd(owners)
      assert Ring.owners(ring, name, 10) == owners
    end
  end

  test "edge cases" do
    assert Ring.owner(Ring.new([]), :a) == nil
    assert Ring.owners(Ring.new([]), :a, 2) == []
    assert Ring.owners(Ring.new([:a@h]), :a, 0) == []
    assert Ring.owners(Ring.new([:a@h]), :a, 3) == [:a@h]

    # removing a node moves only the keys it owned
    names = for i <- 1..500, do: :"k_#{i}"
    three = Ring.new([:a@h, :b@h, :c@h])
    two = Ring.new([:a@h, :b@h])

    for name <- names, Ring.owner(three, name) != :c@h do
      assert Ring.owner(two, name) == Ring.owner(three, name)
    end
  end
end
