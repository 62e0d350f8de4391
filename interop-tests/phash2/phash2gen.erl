%% Random terms and their ERTS phash2 values, for interop-tests/phash2.rs.
%% Compiled inside the test's BEAM node next to tests/term_vs_erl/termgen.erl
%% (both with export_all), whose leaf/0 and closure/2 it reuses.
%%
%% batch(Seed, N) returns N records {T, phash2(T), [{Range, phash2(T, Range)}]}
%% for the fixed ranges plus one random range per term.
-module(phash2gen).
-export([batch/2, fixed/0]).

-define(RANGES, [1, 2, 7, 1000, 65536, (1 bsl 27) - 1, 1 bsl 27, (1 bsl 31) + 11,
                 (1 bsl 32) - 1, 1 bsl 32]).

batch(Seed, N) ->
    rand:seed(exsss, {Seed, 271828, 314159}),
    Terms = case Seed of 0 -> fixed(); _ -> [] end
        ++ [t(rand:uniform(4) - 1) || _ <- lists:seq(1, N)],
    [record(T) || T <- Terms].

record(T) ->
    Ranges = [rand:uniform(1 bsl 32) | ?RANGES],
    {T, erlang:phash2(T), [{R, erlang:phash2(T, R)} || R <- Ranges]}.

t(0) -> leaf();
t(D) ->
    case rand:uniform(12) of
        1 -> list_to_tuple([t(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        2 -> [t(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        3 -> maps:from_list([{t(D - 1), t(D - 1)} || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        4 -> [t(D - 1) || _ <- lists:seq(1, rand:uniform(3))] ++ termgen:tail();
        5 -> bytes() ++ [t(D - 1)] ++ bytes();
        6 -> bytes() ++ [t(D - 1) | leaf()];
        7 -> termgen:closure(t(D - 1), leaf());
        8 -> fun() -> {t, D} end;
        9 when D > 1 -> big_map();
        _ -> leaf()
    end.

bytes() -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(9) - 1)].

big_map() -> maps:from_list([{leaf(), leaf()} || _ <- lists:seq(1, 33 + rand:uniform(30))]).

leaf() ->
    case rand:uniform(10) of
        1 -> int();
        2 -> float();
        3 -> bits();
        4 -> lists:nth(rand:uniform(6), [[], {}, #{}, <<>>, 0.0, -0.0]);
        _ -> small_leaf()
    end.

%% termgen's leaves without its 250-element tuples and 300-byte binaries.
small_leaf() ->
    case termgen:leaf() of
        B when is_binary(B), byte_size(B) > 40 -> binary:part(B, 0, rand:uniform(40));
        T -> T
    end.

%% Integers around the 28-bit small/big boundary, 32, 59, 60, 64 bits.
int() ->
    Edge = lists:nth(rand:uniform(7), [27, 28, 31, 32, 59, 60, 64]),
    Sign = case rand:uniform(2) of 1 -> 1; 2 -> -1 end,
    Sign * ((1 bsl Edge) + rand:uniform(5) - 3).

float() ->
    case rand:uniform(3) of
        1 -> float(rand:uniform(1000) - 500);
        2 -> rand:uniform() * math:pow(10, rand:uniform(40) - 20);
        3 -> -rand:uniform() * 1.0e300
    end.

%% Binaries and bitstrings, some of them sub-binaries at a bit offset
%% (ERTS copies those before hashing).
bits() ->
    Size = rand:uniform(60) - 1,
    Bin = rand:bytes(Size + 1),
    case rand:uniform(4) of
        1 -> Bin;
        2 -> Off = rand:uniform(7), <<_:Off, Rest/bitstring>> = Bin, Rest;
        3 -> Off = rand:uniform(7), Len = rand:uniform(Size * 8 + 8 - Off),
             <<_:Off, Sub:Len/bitstring, _/bitstring>> = Bin, Sub;
        4 -> binary:part(Bin, 1, Size)
    end.

fixed() ->
    Big = rand:bytes(100000),
    <<_:5, Unaligned:80000/binary, _/bitstring>> = Big,
    {ok, Toks, _} = erl_scan:string("fun(A) -> {A, B, C} end."),
    {ok, [Form]} = erl_parse:parse_exprs(Toks),
    {value, Interpreted, _} = erl_eval:expr(Form, [{'B', 5}, {'C', [x]}]),
    [a, '', 'é', 'ÿ', '日本語', 'a😀', 'Elixir.Reg.Crdt',
     0, 1, -1, 255, 256, (1 bsl 27) - 1, 1 bsl 27, -(1 bsl 27), -(1 bsl 27) - 1,
     (1 bsl 59) - 1, 1 bsl 59, -(1 bsl 59), (1 bsl 63), -(1 bsl 63), (1 bsl 64) - 1,
     1 bsl 64, -(1 bsl 64), 1 bsl 100, -(1 bsl 1000),
     0.0, -0.0, 1.0, -1.5, 5.0e-324, 1.7976931348623157e308,
     [], "", "abc", "abcd", "abcde", lists:seq(0, 255), [1 | 2], [a | b], [[] | []],
     "ab" ++ [300] ++ "cd", [256, 1, 2, 3, 4, 5],
     {}, {[]}, {a, []}, #{}, #{a => 1}, #{1 => a}, #{[] => []},
     maps:from_list([{I, I} || I <- lists:seq(1, 100)]),
     maps:from_list([{0.0, a}, {-0.0, b}]),
     #{#{} => #{}, {} => {}},
     <<>>, <<1:1>>, <<0:7>>, <<255, 1:2>>, Big, Unaligned,
     binary:copy(<<"0123456789ab">>, 1000),
     self(), make_ref(), alias(), hd(erlang:ports()),
     termgen:ext_pid(0), termgen:ext_pid(16#ffffffff), termgen:ext_ref(1), termgen:ext_ref(5),
     termgen:ext_port(7), termgen:ext_port(1 bsl 40),
     fun lists:map/2, fun erlang:self/0, fun ?MODULE:batch/2,
     termgen:closure(1, "two"), termgen:nested(termgen:closure(<<"b">>, #{k => v})),
     Interpreted, termgen:deep(900)].
