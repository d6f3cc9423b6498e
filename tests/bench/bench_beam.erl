%% bench_beam — what the BEAM sides of girder's benchmarks share
%% (tests/bench/<name>/beam_<name>.erl): the entry point, the clock,
%% nearest-rank order statistics and the JSON result lines that
%% tests/bench/lib.sh reads next to girder's.
%%
%% Entry point: erl -noshell -pa DIR -s bench_beam run beam_etf
%% runs beam_etf:main() and halts 0, or 1 after printing why it failed.
%%
%% A result line: {"bench":B,"params":{...},"value":V,"unit":U,
%% "samples":[...],"run":N}; params keys sorted; numbers rounded to three
%% decimals; "run" is $BENCH_RUN when set (the round of an interleaved run).
-module(bench_beam).
-export([run/1, now_ns/0, repeat/2, pct/2, median/1, result/5, log/2]).

run([Mod]) ->
    Start = now_ns(),
    Status =
        try
            Mod:main(),
            0
        catch
            Class:Reason:Stack ->
                io:format(standard_error, "~p failed: ~p:~p~n~p~n", [Mod, Class, Reason, Stack]),
                1
        end,
    log("~p took ~.1f s", [Mod, (now_ns() - Start) / 1.0e9]),
    erlang:halt(Status).

%% CLOCK_MONOTONIC in nanoseconds (what girder's C side reads too).
now_ns() ->
    erlang:monotonic_time(nanosecond).

%% The results of N calls of F, first call first.
repeat(N, F) when N >= 1 ->
    [F() || _ <- lists:seq(1, N)].

%% Nearest rank: the element at max(1, ceil(P * N / 100)) of the sorted list.
pct(Values, P) ->
    Sorted = lists:sort(Values),
    N = length(Sorted),
    Rank = min(N, max(1, ceil(P * N / 100))),
    lists:nth(Rank, Sorted).

median(Values) ->
    pct(Values, 50).

%% Prints one result line on stdout.
result(Bench, Params, Value, Unit, Samples) ->
    Head = [{bench, Bench}, {params, {obj, lists:sort(maps:to_list(Params))}},
            {value, Value}, {unit, Unit}, {samples, Samples}],
    Run = case os:getenv("BENCH_RUN") of
              false -> [];
              "" -> [];
              Text -> [{run, list_to_integer(Text)}]
          end,
    io:put_chars([encode({obj, Head ++ Run}), $\n]).

log(Format, Args) ->
    io:format(standard_error, "  " ++ Format ++ "~n", Args).

%% JSON for the few shapes the results use: {obj, [{Key, Value}]} in the
%% given order, lists, atoms and binaries (strings), integers, floats.
encode({obj, Members}) ->
    [${, lists:join($,, [[encode(atom_to_binary(K)), $:, encode(V)] || {K, V} <- Members]), $}];
encode(List) when is_list(List) ->
    [$[, lists:join($,, [encode(E) || E <- List]), $]];
encode(Atom) when is_atom(Atom) ->
    encode(atom_to_binary(Atom));
encode(Bin) when is_binary(Bin) ->
    [$", [quote(C) || <<C/utf8>> <= Bin], $"];
encode(Int) when is_integer(Int) ->
    integer_to_binary(Int);
encode(Float) when is_float(Float) ->
    float_to_binary(round(Float * 1000) / 1000, [{decimals, 3}, compact]).

quote($") -> <<"\\\"">>;
quote($\\) -> <<"\\\\">>;
quote(C) when C < 32 -> io_lib:format("\\u~4.16.0b", [C]);
quote(C) -> <<C/utf8>>.
