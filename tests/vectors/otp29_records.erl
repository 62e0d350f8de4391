%% Generates the native-record vectors in src/term/record_tests.rs.
%% Run on OTP 29 (the sid root):
%%   erlc recgen.erl && erl -noshell -s recgen main -s init stop
-module(recgen).
-export([main/0, vectors/0]).

c(M, N, F, E) -> records:create(M, N, F, #{is_exported => E}).

vectors() ->
    Pt = c(mymod, pt, [{x, 1}, {y, two}], true),
    PtYx = c(mymod, pt, [{y, two}, {x, 1}], false),
    Empty = c(mymod, e, [], false),
    Pid = list_to_pid("<0.1.0>"),
    Nested = c(shapes, box,
               [{id, 1 bsl 70}, {tag, <<"lid">>}, {inner, Pt},
                {items, [Empty, {PtYx}, #{k => Pt}]}, {owner, Pid}, {ratio, -2.5}], true),
    Unicode = c('møde', 'ñame', [{'ü', 1.5}, {'日本', "ab"}], true),
    Tail = [1 | Empty],
    Key = #{Pt => v, a => Empty},
    Env = fun() -> {Pt, Empty} end,
    [{pt, Pt, []}, {pt_yx, PtYx, []}, {empty, Empty, []}, {nested, Nested, []},
     {unicode, Unicode, []}, {tail, Tail, []}, {key, Key, []}, {closure, Env, []},
     {pt_mv1, Pt, [{minor_version, 1}]}, {nested_mv1, Nested, [{minor_version, 1}]},
     {unicode_mv1, Unicode, [{minor_version, 1}]}].

main() ->
    [io:format("~p ~w~n", [Name, term_to_binary(T, Opts)]) || {Name, T, Opts} <- vectors()],
    ok.
