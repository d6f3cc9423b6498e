%% beam_node — BEAM's side of the gen_server call benchmark
%% (tests/bench/node/run.sh), the same workloads as bench_node.c:
%%   erl -noshell -pa DIR -s bench_beam run beam_node
%% gen_call      1 caller, 200,000 sequential gen_server:call(Server, inc)
%%               to a counter gen_server; every 8th timed: gen_call_rate,
%%               gen_call_rtt_p50/p99 (us).
%% gen_call_100  100 callers x 2,000 calls to one server: gen_call_100_rate.
%% 5 repetitions each; the median is the value.
-module(beam_node).
-behaviour(gen_server).
-export([main/0]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(K, 200000).
-define(K100, 2000).

init([]) -> {ok, 0}.
handle_call(inc, _From, N) -> {reply, N + 1, N + 1}.
handle_cast(_, N) -> {noreply, N}.

main() ->
    Reps = bench_beam:repeat(5, fun rep/0),
    Get = fun(Key) -> [maps:get(Key, R) || R <- Reps] end,
    Report = fun(Bench, Params, Key, Unit) ->
                     Values = Get(Key),
                     bench_beam:result(Bench, Params, bench_beam:median(Values), Unit, Values)
             end,
    Report(gen_call_rate, #{calls => ?K}, rate, <<"calls/s">>),
    Report(gen_call_rtt_p50, #{calls => ?K}, p50, <<"us">>),
    Report(gen_call_rtt_p99, #{calls => ?K}, p99, <<"us">>),
    Report(gen_call_100_rate, #{callers => 100, calls => ?K100}, rate100, <<"calls/s">>).

rep() ->
    {Rate, Rtts} = run_calls(1, ?K, true),
    {Rate100, _} = run_calls(100, ?K100, false),
    P50 = bench_beam:pct(Rtts, 50),
    P99 = bench_beam:pct(Rtts, 99),
    bench_beam:log("gen_call: ~.1f calls/s p50 ~.2f us p99 ~.2f us; 100 callers ~.1f calls/s",
                   [Rate, P50, P99, Rate100]),
    #{rate => Rate, p50 => P50, p99 => P99, rate100 => Rate100}.

%% Callers x Calls calls; the first caller's sampled round trips (us) when
%% Sample.  Returns {calls/s, Rtts}.
run_calls(Callers, Calls, Sample) ->
    {ok, Server} = gen_server:start(?MODULE, [], []),
    Self = self(),
    T0 = bench_beam:now_ns(),
    Pids = [spawn_link(fun() -> Self ! {done, self(), caller(Server, Calls, Sample andalso C =:= 1)} end)
            || C <- lists:seq(1, Callers)],
    Rtts = lists:append([receive {done, P, R} -> R end || P <- Pids]),
    Rate = Callers * Calls / ((bench_beam:now_ns() - T0) / 1.0e9),
    ok = gen_server:stop(Server),
    {Rate, Rtts}.

caller(Server, Calls, Sample) ->
    caller(Server, Calls, Sample, 0, []).

caller(_Server, Calls, _Sample, Calls, Acc) ->
    Acc;
caller(Server, Calls, true, I, Acc) when I rem 8 =:= 0 ->
    T0 = bench_beam:now_ns(),
    _ = gen_server:call(Server, inc, infinity),
    caller(Server, Calls, true, I + 1, [(bench_beam:now_ns() - T0) / 1000 | Acc]);
caller(Server, Calls, Sample, I, Acc) ->
    _ = gen_server:call(Server, inc, infinity),
    caller(Server, Calls, Sample, I + 1, Acc).
