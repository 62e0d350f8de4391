%% Term generator and checker for tests/term_vs_erl.rs.
%%
%% generate/2 writes records <<Flavor:8, Len:32, TermToBinary:Len/binary>>,
%% where Flavor says which term_to_binary options were used:
%%   0 default (OTP 25: latin-1 atoms as ATOM_EXT), 1 {minor_version,2},
%%   2 compressed, 3 {minor_version,0} (FLOAT_EXT floats).
%% check/2 reads those records plus the Rust re-encodings (<<Len:32, Bytes>>)
%% and compares binary_to_term of each pair with =:=.
-module(termgen).
-export([generate/2, check/2, closure/2, nested/1]).

generate(Path, N) ->
    rand:seed(exsss, {17, 42, 4242}),
    Fixed = fixed(),
    Random = [gen(rand:uniform(4)) || _ <- lists:seq(1, max(0, N - length(Fixed)))],
    Terms = Fixed ++ Random,
    Recs = [record(I, T) || {I, T} <- lists:zip(lists:seq(0, length(Terms) - 1), Terms)],
    ok = file:write_file(Path, Recs),
    io:format("GENERATED ~p~n", [length(Terms)]).

record(I, T) ->
    Flavor = case I rem 8 of 6 -> 2; 7 -> 3; X when X >= 4 -> 1; _ -> 0 end,
    Opts = case Flavor of
               0 -> [];
               1 -> [{minor_version, 2}];
               2 -> [compressed];
               3 -> [{minor_version, 0}]
           end,
    B = term_to_binary(T, Opts),
    <<Flavor:8, (byte_size(B)):32, B/binary>>.

check(InPath, OutPath) ->
    {ok, In} = file:read_file(InPath),
    {ok, Out} = file:read_file(OutPath),
    Pairs = pair(In, Out, []),
    Bad = [{Orig, Rust} || {Orig, Rust} <- Pairs, not same(Orig, Rust)],
    [io:format("MISMATCH~n  erl:  ~w~n  rust: ~w~n", [O, R]) || {O, R} <- lists:sublist(Bad, 5)],
    io:format("CHECKED ~p MISMATCHES ~p~n", [length(Pairs), length(Bad)]).

pair(<<_F:8, L:32, B:L/binary, In/binary>>, <<L2:32, R:L2/binary, Out/binary>>, Acc) ->
    pair(In, Out, [{B, R} | Acc]);
pair(<<>>, <<>>, Acc) ->
    lists:reverse(Acc);
pair(_, _, _) ->
    io:format("RECORD COUNT MISMATCH~n"),
    [].

same(Orig, Rust) ->
    try binary_to_term(Rust) =:= binary_to_term(Orig)
    catch _:_ -> false
    end.

closure(X, Y) -> fun(Z) -> {X, Y, Z} end.
nested(F) -> fun() -> {F, F} end.

fixed() ->
    {ok, Toks, _} = erl_scan:string("fun(A) -> {A, B} end."),
    {ok, [Form]} = erl_parse:parse_exprs(Toks),
    {value, Interpreted, _} = erl_eval:expr(Form, [{'B', 5}]),
    [0, 255, 256, -1, 2147483647, -2147483648, 2147483648, -2147483649,
     1 bsl 63, -(1 bsl 63), (1 bsl 64) - 1, 1 bsl 2100, -(1 bsl 2100),
     0.0, -0.0, 5.0e-324, 1.7976931348623157e308, -1.5, 0.1,
     [], {}, #{}, <<>>, "", "hello", [0], lists:seq(0, 255),
     lists:duplicate(65535, $a), lists:duplicate(65536, $a), [256],
     [1 | 2], [a, b | c], [[] | []], [[] | x], [{} | <<>>],
     list_to_tuple(lists:seq(1, 300)),
     maps:from_list([{I, I * I} || I <- lists:seq(1, 100)]),
     #{#{a => 1} => [#{}], {1, 2} => "x", 1 => one, 1.0 => float_one},
     binary:copy(<<"0123456789abcdef">>, 6400), <<1:1>>, <<0:7>>, <<255, 1:2>>,
     'é', 'ÿ', '日本語', 'a😀', list_to_atom(lists:duplicate(255, $é)),
     list_to_atom(lists:duplicate(255, 16#65E5)), list_to_atom(""),
     self(), make_ref(), alias(), hd(erlang:ports()),
     ext_pid(0), ext_pid(16#7fffffff), ext_ref(1), ext_ref(5), ext_port(7), ext_port(1 bsl 40),
     fun lists:map/2, fun erlang:self/0, fun ?MODULE:closure/2,
     closure(1, "two"), closure(self(), closure(3, make_ref())),
     nested(closure(<<"bin">>, #{k => v})), Interpreted,
     deep(900)].

deep(0) -> leaf;
deep(N) -> case N rem 3 of 0 -> {deep(N - 1)}; 1 -> [deep(N - 1)]; _ -> #{k => deep(N - 1)} end.

gen(0) -> leaf();
gen(D) ->
    case rand:uniform(14) of
        1 -> list_to_tuple([gen(D - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        2 -> [gen(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        3 -> maps:from_list([{gen(D - 1), gen(D - 1)} || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        4 -> [gen(D - 1) || _ <- lists:seq(1, rand:uniform(3))] ++ tail();
        5 -> maps:from_list([{leaf(), leaf()} || _ <- lists:seq(1, 30 + rand:uniform(20))]);
        6 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(40))];
        7 -> closure(gen(D - 1), leaf());
        8 -> nested(closure(gen(D - 1), leaf()));
        9 -> list_to_tuple([leaf() || _ <- lists:seq(1, 250 + rand:uniform(20))]);
        _ -> leaf()
    end.

tail() ->
    case rand:uniform(4) of
        1 -> an_atom;
        2 -> rand:uniform(1000);
        3 -> <<"t">>;
        4 -> {tail}
    end.

leaf() ->
    case rand:uniform(24) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31);
        3 -> sign() * rand:uniform(1 bsl rand:uniform(300));
        4 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        5 -> list_to_atom([rand:uniform(255) || _ <- lists:seq(1, rand:uniform(20))]);
        6 -> list_to_atom([cp() || _ <- lists:seq(1, rand:uniform(20))]);
        7 -> rand:bytes(rand:uniform(300) - 1);
        8 -> Bits = rand:uniform(7),
             <<(rand:bytes(rand:uniform(20) - 1))/binary, (rand:uniform(1 bsl Bits) - 1):Bits>>;
        9 -> self();
        10 -> spawn(fun() -> ok end);
        11 -> make_ref();
        12 -> hd(erlang:ports());
        13 -> ext_pid(rand:uniform(1 bsl 32) - 1);
        %% OTP 25 quirk: a map over 32 keys holding a 1-id external ref
        %% as a key is not =:= to itself after binary_to_term, so random
        %% refs get 2..5 ids (the fixed list covers 1 id).
        14 -> ext_ref(1 + rand:uniform(4));
        15 -> ext_port(rand:uniform(1 bsl 50));
        16 -> lists:nth(rand:uniform(3), [fun lists:map/2, fun erlang:self/0, fun ?MODULE:gen/1]);
        17 -> closure(rand:uniform(100), make_ref());
        18 -> [];
        19 -> [cp() || _ <- lists:seq(1, rand:uniform(10))];
        20 -> rand:normal();
        21 -> sign() * (rand:uniform(1 bsl 63) - 1);
        22 -> lists:nth(rand:uniform(4), [true, false, undefined, nil]);
        23 -> <<(rand:uniform(1 bsl 64)):64>>;
        24 -> {}
    end.

sign() -> case rand:uniform(2) of 1 -> 1; 2 -> -1 end.

cp() ->
    case rand:uniform(4) of
        1 -> rand:uniform(16#7e - 16#20) + 16#20;
        2 -> rand:uniform(16#ff - 16#a0) + 16#a0;
        3 -> rand:uniform(16#9fff - 16#4e00) + 16#4e00;
        4 -> rand:uniform(16#1f64f - 16#1f600) + 16#1f600
    end.

node_atom() -> lists:nth(rand:uniform(3), ['other@host', 'ノード@host', 'n@h']).

ext_pid(Id) -> ext_bin(88, <<Id:32, (rand:uniform(1 bsl 13)):32, (creation()):32>>).

ext_ref(N) ->
    Node = atom_ext(node_atom()),
    Ids = << <<(rand:uniform(1 bsl 32) - 1):32>> || _ <- lists:seq(1, N) >>,
    binary_to_term(<<131, 90, N:16, Node/binary, (creation()):32, Ids/binary>>).

ext_port(Id) when Id > 16#ffffffff ->
    binary_to_term(<<131, 120, (atom_ext(node_atom()))/binary, Id:64, (creation()):32>>);
ext_port(Id) ->
    binary_to_term(<<131, 89, (atom_ext(node_atom()))/binary, Id:32, (creation()):32>>).

ext_bin(Tag, Rest) -> binary_to_term(<<131, Tag, (atom_ext(node_atom()))/binary, Rest/binary>>).

atom_ext(A) ->
    <<131, B/binary>> = term_to_binary(A, [{minor_version, 2}]),
    B.

creation() -> rand:uniform(1 bsl 32) - 1.
