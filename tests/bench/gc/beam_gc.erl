%% beam_gc — BEAM's side of girder's GC benchmark (tests/bench/gc/run.sh).
%%
%% One worker process (default spawn options: min_heap_size 233 words,
%% fullsweep_after 65535) runs 200 rounds; a round builds
%% [{1,1}, {2,2}, ..., {N,N}] with N = 262,144 by plain tail recursion
%% (tuple 3 words + cons 2 words = 40 bytes per element: 10 MiB live at the
%% end of the round), walks it once summing the first tuple fields (the sum
%% is checked) and drops it.  Each of the worker's collections is timed from
%% garbage_collection trace events stamped with the monotonic clock: a pause
%% is a gc_*_end stamp minus the gc_*_start stamp before it.
%% 3 repetitions, a fresh worker each; every value is the median of the
%% per-repetition values (percentiles nearest-rank within a repetition):
%%   gc_pause_p50, gc_pause_p99, gc_pause_max (us), gc_count (gcs),
%%   gc_time_share (% of the worker's wall time spent in pauses),
%%   gc_round_time (ms per round: build + walk + collections).
-module(beam_gc).
-export([main/0]).

-define(ELEMS, 262144).
-define(ROUNDS, 200).
-define(REPS, 3).

main() ->
    Reps = bench_beam:repeat(?REPS, fun one_rep/0),
    Params = #{elems => ?ELEMS, live_bytes => ?ELEMS * 40, rounds => ?ROUNDS, reps => ?REPS,
               elem => <<"{I, I}">>},
    [begin
         Values = [maps:get(Key, R) || R <- Reps],
         bench_beam:result(Bench, Params, bench_beam:median(Values), Unit, Values)
     end || {Bench, Key, Unit} <- [{gc_pause_p50, p50, <<"us">>},
                                   {gc_pause_p99, p99, <<"us">>},
                                   {gc_pause_max, max, <<"us">>},
                                   {gc_count, count, <<"gcs">>},
                                   {gc_time_share, share, <<"%">>},
                                   {gc_round_time, round_ms, <<"ms">>}]],
    ok.

one_rep() ->
    Parent = self(),
    Tracer = spawn(fun() -> collect_pauses(none, []) end),
    Worker = spawn(fun() -> worker(Parent) end),
    1 = erlang:trace(Worker, true, [garbage_collection, monotonic_timestamp, {tracer, Tracer}]),
    Worker ! go,
    {WallNs, Sum} = receive {Worker, done, W, S} -> {W, S} end,
    Sum = ?ROUNDS * (?ELEMS * (?ELEMS + 1) div 2),
    Ref = erlang:trace_delivered(Worker),
    receive {trace_delivered, Worker, Ref} -> ok end,
    Tracer ! {pauses, self()},
    Native = receive {Tracer, Ps} -> Ps end,
    Worker ! stop,
    Us = [erlang:convert_time_unit(P, native, nanosecond) / 1000 || P <- Native],
    Rep = #{p50 => bench_beam:pct(Us, 50), p99 => bench_beam:pct(Us, 99), max => lists:max(Us),
            count => length(Us), share => 100 * lists:sum(Us) * 1000 / WallNs,
            round_ms => WallNs / 1.0e6 / ?ROUNDS},
    bench_beam:log("gc ~p", [Rep]),
    Rep.

worker(Parent) ->
    receive go -> ok end,
    T0 = bench_beam:now_ns(),
    Sum = rounds(?ROUNDS, 0),
    T1 = bench_beam:now_ns(),
    Parent ! {self(), done, T1 - T0, Sum},
    receive stop -> ok end.

rounds(0, Sum) -> Sum;
rounds(R, Sum) -> rounds(R - 1, Sum + walk(build(?ELEMS, []), 0)).

build(0, Acc) -> Acc;
build(N, Acc) -> build(N - 1, [{N, N} | Acc]).

walk([{A, _} | Rest], Sum) -> walk(Rest, Sum + A);
walk([], Sum) -> Sum.

%% Keeps the duration of every start/end pair, in native time units.
collect_pauses(Start, Acc) ->
    receive
        {trace_ts, _, Event, _, Ts} when Event =:= gc_minor_start; Event =:= gc_major_start ->
            collect_pauses(Ts, Acc);
        {trace_ts, _, Event, _, Ts} when (Event =:= gc_minor_end orelse Event =:= gc_major_end),
                                         Start =/= none ->
            collect_pauses(none, [Ts - Start | Acc]);
        {pauses, From} ->
            From ! {self(), Acc};
        _ ->
            collect_pauses(Start, Acc)
    end.
