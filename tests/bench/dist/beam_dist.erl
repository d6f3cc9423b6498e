%% beam_dist — the Erlang side of the distribution benchmark
%% (tests/bench/dist/run.sh), written to the bench-beam spec of
%% bench_dist.erl (../shared/bench-beam/README.md, "dist") with one
%% difference: the peer node is not started by peer:start_link but by
%% run.sh, as an OS process of its own, so the same driver measures an
%% Erlang peer and a girder peer (which runs no Erlang code: remote
%% processes are asked for from the peer's registered bench_dist_spawner,
%% which both peers provide, instead of spawn/4).
%%
%%   driver: erl -sname D -setcookie C -noshell -pa DIR \
%%               -s bench_beam run beam_dist        (BENCH_DIST_PEER=Node)
%%   peer:   erl -sname P -setcookie C -noshell -pa DIR -s beam_dist peer
%%
%% Results (3 repetitions each, the median is the value):
%%   dist_pingpong_rate/_rtt_p50/_rtt_p99   1 pair, K = 10,000, every round trip timed
%%   dist_pingpong_100_rate/_rtt_p50/_rtt_p99   100 pairs, K = 500 each
%%   dist_oneway_small (msgs/s)   200,000 {msg, I} to one remote counter
%%   dist_oneway_1mib (MiB/s)     1000 {bin, I, Bin}, Bin a 1 MiB refc binary
%%   dist_rpc_call, dist_erpc_call (calls/s)  10,000 sequential calls of
%%                                erlang:node/0 on the peer
%% The 100-pair lines carry _100 in their names (as tests/bench/sched does)
%% so lib.sh tells the two sizes apart.
-module(beam_dist).
-export([main/0, peer/0, spawner/0, ponger/0, counter/2, pinger/3]).

-define(REPS, 3).
-define(SPAWNER, bench_dist_spawner).

%% ---- the peer side -------------------------------------------------------

%% Registers the spawner and waits forever (run.sh kills the node).
peer() ->
    Pid = spawn(?MODULE, spawner, []),
    true = register(?SPAWNER, Pid),
    ok.

%% {spawn, ponger, From} | {spawn, counter, From, N} -> From ! {spawned, Pid}
spawner() ->
    receive
        {spawn, ponger, From} -> From ! {spawned, spawn(?MODULE, ponger, [])};
        {spawn, counter, From, N} -> From ! {spawned, spawn(?MODULE, counter, [From, N])};
        _ -> ok
    end,
    spawner().

ponger() ->
    receive
        {From, ping} -> From ! pong, ponger();
        stop -> ok
    end.

counter(Parent, N) ->
    receive {From, ping} -> From ! pong end,
    count(Parent, N).

count(Parent, 0) -> Parent ! {counted, self()};
count(Parent, N) ->
    receive
        {msg, _} -> count(Parent, N - 1);
        {bin, _, _} -> count(Parent, N - 1)
    end.

%% ---- the driver ----------------------------------------------------------

main() ->
    true = is_alive(),
    Node = list_to_atom(os:getenv("BENCH_DIST_PEER")),
    wait_peer(Node, 100),
    bench_beam:log("peer ~p up", [Node]),
    [F() || {Names, F} <- [{["pingpong", "pingpong1"], fun() -> pingpong(Node, 1, 10000) end},
                           {["pingpong", "pingpong100"], fun() -> pingpong(Node, 100, 500) end},
                           {["small"], fun() -> oneway(Node, small, 200000) end},
                           {["1mib"], fun() -> oneway(Node, '1mib', 1000) end},
                           {["rpc"], fun() -> rpc(Node, rpc, 10000) end},
                           {["erpc"], fun() -> rpc(Node, erpc, 10000) end}],
            wanted(Names)],
    ok.

%% BENCH_DIST_ONLY as bench_dist.c reads it (pingpong,small,1mib,rpc,erpc,
%% or pingpong1/pingpong100; unset: all), for profiling one workload.
wanted(Names) ->
    case os:getenv("BENCH_DIST_ONLY") of
        false -> true;
        Only -> lists:any(fun(N) -> lists:member(N, string:split(Only, ",", all)) end, Names)
    end.

%% The peer is up once its spawner answers (it registers after the node
%% starts, so a ping alone is not enough).
wait_peer(Node, 0) -> error({peer_not_up, Node});
wait_peer(Node, Tries) ->
    case net_adm:ping(Node) of
        pong ->
            try remote_spawn(Node, ponger, 200) of
                P -> P ! stop, flush_spawned()
            catch
                error:timeout -> timer:sleep(100), wait_peer(Node, Tries - 1)
            end;
        pang -> timer:sleep(100), wait_peer(Node, Tries - 1)
    end.

%% Answers to attempts that timed out may still come: take them (and stop
%% their pongers) so no later request gets a stale one.
flush_spawned() ->
    receive {spawned, P} -> P ! stop, flush_spawned() after 500 -> ok end.

remote_spawn(Node, ponger, Timeout) ->
    {?SPAWNER, Node} ! {spawn, ponger, self()},
    await_spawned(Timeout);
remote_spawn(Node, {counter, N}, Timeout) ->
    {?SPAWNER, Node} ! {spawn, counter, self(), N},
    await_spawned(Timeout).

await_spawned(Timeout) ->
    receive {spawned, Pid} -> Pid after Timeout -> error(timeout) end.

emit(Name, Params, Values, Unit) ->
    bench_beam:result(Name, Params, bench_beam:median(Values), Unit, Values).

%% ---- ping-pong -----------------------------------------------------------
pingpong(Node, Pairs, K) ->
    Runs = bench_beam:repeat(?REPS, fun() -> pp_one(Node, Pairs, K) end),
    P = #{pairs => Pairs, round_trips_per_pair => K, reps => ?REPS, nodes => 2,
          msg => <<"{Pid, ping} -> pong">>},
    Sfx = case Pairs of 1 -> ""; _ -> "_100" end,
    Get = fun(Key) -> [maps:get(Key, R) || R <- Runs] end,
    emit(list_to_atom("dist_pingpong" ++ Sfx ++ "_rate"), P, Get(rate), <<"round_trips/s">>),
    emit(list_to_atom("dist_pingpong" ++ Sfx ++ "_rtt_p50"), P, Get(p50), <<"us">>),
    emit(list_to_atom("dist_pingpong" ++ Sfx ++ "_rtt_p99"), P, Get(p99), <<"us">>).

pp_one(Node, Pairs, K) ->
    Self = self(),
    Pairs1 = [begin
                  Pong = remote_spawn(Node, ponger, 5000),
                  {Pong, spawn(?MODULE, pinger, [Self, Pong, K])}
              end || _ <- lists:seq(1, Pairs)],
    %% one warm-up round trip per ponger (makes sure it exists and runs)
    [begin Pong ! {self(), ping}, receive pong -> ok end end || {Pong, _} <- Pairs1],
    wait_quiet(),
    T0 = bench_beam:now_ns(),
    [Ping ! go || {_, Ping} <- Pairs1],
    Rtts = lists:append([receive {done, Ping, L} -> L end || {_, Ping} <- Pairs1]),
    T1 = bench_beam:now_ns(),
    [Pong ! stop || {Pong, _} <- Pairs1],
    R = #{rate => Pairs * K / ((T1 - T0) / 1.0e9),
          p50 => bench_beam:pct(Rtts, 50) / 1000, p99 => bench_beam:pct(Rtts, 99) / 1000},
    bench_beam:log("dist pingpong pairs=~p ~p", [Pairs, R]),
    R.

wait_quiet() ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ -> timer:sleep(1), wait_quiet()
    end.

pinger(Parent, Pong, K) ->
    receive go -> ok end,
    Parent ! {done, self(), ping(Pong, K, [])}.

ping(_Pong, 0, Acc) -> Acc;
ping(Pong, K, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Pong ! {self(), ping},
    receive pong -> ok end,
    ping(Pong, K - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).

%% ---- one-way throughput --------------------------------------------------
oneway(Node, Kind, N) ->
    Bin = binary:copy(list_to_binary(lists:seq(0, 255)), 4096),
    Rates = bench_beam:repeat(?REPS, fun() -> ow_one(Node, Kind, N, Bin) end),
    {Name, Unit, Msg} =
        case Kind of
            small -> {dist_oneway_small, <<"msgs/s">>, <<"{msg, I}">>};
            '1mib' -> {dist_oneway_1mib, <<"MiB/s">>, <<"{bin, I, Bin1MiB}">>}
        end,
    emit(Name, #{msgs => N, reps => ?REPS, senders => 1, nodes => 2, msg => Msg}, Rates, Unit).

ow_one(Node, Kind, N, Bin) ->
    C = remote_spawn(Node, {counter, N}, 5000),
    C ! {self(), ping}, receive pong -> ok end,     % counter is up
    T0 = bench_beam:now_ns(),
    case Kind of
        small -> send_small(C, N);
        '1mib' -> send_bin(C, N, Bin)
    end,
    receive {counted, C} -> ok end,
    T1 = bench_beam:now_ns(),
    Rate = N / ((T1 - T0) / 1.0e9),          % msgs/s; for 1mib = MiB/s
    bench_beam:log("dist oneway ~p ~.1f /s", [Kind, Rate]),
    Rate.

send_small(_, 0) -> ok;
send_small(C, I) -> C ! {msg, I}, send_small(C, I - 1).

send_bin(_, 0, _) -> ok;
send_bin(C, I, Bin) -> C ! {bin, I, Bin}, send_bin(C, I - 1, Bin).

%% ---- rpc -----------------------------------------------------------------
rpc(Node, How, K) ->
    Rates = bench_beam:repeat(?REPS, fun() ->
                                             T0 = bench_beam:now_ns(),
                                             rpc_n(How, Node, K),
                                             K / ((bench_beam:now_ns() - T0) / 1.0e9)
                                     end),
    bench_beam:log("dist ~p ~p", [How, Rates]),
    P = #{calls => K, reps => ?REPS, callers => 1, nodes => 2,
          call => iolist_to_binary([atom_to_list(How), ":call(Peer, erlang, node, [])"])},
    emit(list_to_atom("dist_" ++ atom_to_list(How) ++ "_call"), P, Rates, <<"calls/s">>).

rpc_n(_, _, 0) -> ok;
rpc_n(rpc, Node, K) -> Node = rpc:call(Node, erlang, node, []), rpc_n(rpc, Node, K - 1);
rpc_n(erpc, Node, K) -> Node = erpc:call(Node, erlang, node, []), rpc_n(erpc, Node, K - 1).
