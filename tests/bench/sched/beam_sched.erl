%% beam_sched — BEAM's side of girder's process benchmarks
%% (tests/bench/sched/run.sh), one workload per VM:
%%   erl -noshell +P 2000000 -pa DIR -s bench_beam run beam_sched -extra NAME
%% with NAME one of spawn, pingpong, ring, fanin, bigmsg.  The workloads are those of
%% the workload specification of docs/benchmarks.md (same result names, units and JSON shape);
%% every process runs at normal priority with default spawn options.
%%
%% spawn     1,000,000 x spawn of a process blocked in `receive stop`, pids
%%           consed into a list; spawn_rate (the spawn calls), spawn_ready_rate
%%           (until the run queues are empty), spawn_mem_per_proc (growth of
%%           erlang:memory(processes) less the spawner's own growth, / N),
%%           spawn_kill_rate (exit(P, kill) for all, until the process count
%%           is back).  3 repetitions.
%% pingpong  P pairs, K synchronous round trips each (P=1, K=500,000 and
%%           P=100, K=10,000); every 8th round trip timed for the RTT
%%           distribution.  pingpong_rate, pingpong_rtt_p50/p99 for one pair,
%%           pingpong_100_* for 100 pairs.  5 repetitions.
%% ring      1000 processes, a token of 10,000,000 counted down hop by hop:
%%           ring_rate.  3 repetitions.
%% fanin     1000 senders x 10,000 {msg, I} to one receiver, no flow control;
%%           fanin_rate, fanin_max_queue (its queue sampled every 10 ms).
%%           3 repetitions.
%% bigmsg    {self(), Payload} to a receiver that drops it and answers ack,
%%           one message in flight: bigmsg_list (lists:seq(1, 65536), 1 MiB
%%           copied per message, 2000 messages) and bigmsg_binary (a 1 MiB
%%           refc binary, shared, 200,000 messages); MiB/s counting 1 MiB
%%           per message.  5 repetitions (bench_bigmsg.erl).
%% fairness  2 x schedulers_online busy processes loop on an LCG forever
%%           while a probe (same priority) does `receive after 1` for 2 s,
%%           recording elapsed - 1 ms; fairness_lateness_p50/p99/max (ms)
%%           and fairness_wakeups, then the same with no busy processes
%%           (fairness_idle_*).  3 repetitions.  (girder's
%%           fairness_cloop_*, busy processes that are plain C loops, has
%%           no BEAM counterpart.)
-module(beam_sched).
-export([main/0, busy/1]).

main() ->
    case init:get_plain_arguments() of
        ["spawn"] -> spawn_bench();
        ["pingpong"] -> pingpong_bench();
        ["ring"] -> ring_bench();
        ["fanin"] -> fanin_bench();
        ["bigmsg"] -> bigmsg_bench();
        ["fairness"] -> fairness_bench();
        Other -> error({unknown_workload, Other})
    end.

%% Polls the run queues every millisecond until every queued process ran.
wait_quiet() ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ -> receive after 1 -> wait_quiet() end
    end.

%% One result line per {Bench, Key, Unit}: the median of the repetitions.
report(Reps, Params, Specs) ->
    [begin
         Values = [maps:get(Key, R) || R <- Reps],
         bench_beam:result(Bench, Params, bench_beam:median(Values), Unit, Values)
     end || {Bench, Key, Unit} <- Specs],
    ok.

%% ---- spawn ----

-define(SPAWN_N, 1000000).

spawn_bench() ->
    Reps = bench_beam:repeat(3, fun spawn_rep/0),
    report(Reps, #{procs => ?SPAWN_N},
           [{spawn_rate, rate, <<"procs/s">>}, {spawn_ready_rate, ready, <<"procs/s">>},
            {spawn_mem_per_proc, bytes, <<"bytes">>}, {spawn_kill_rate, kill, <<"procs/s">>}]).

spawn_rep() ->
    Parent = self(),
    %% A fresh spawner per repetition, so its heap growth is its own.
    Spawner = spawn(fun() -> spawner(Parent) end),
    receive {Spawner, R} -> R end.

spawner(Parent) ->
    erlang:garbage_collect(),
    wait_quiet(),
    Count0 = erlang:system_info(process_count),
    Mem0 = erlang:memory(processes),
    {memory, Own0} = process_info(self(), memory),
    T0 = bench_beam:now_ns(),
    Pids = spawn_n(?SPAWN_N, []),
    T1 = bench_beam:now_ns(),
    wait_quiet(),
    T2 = bench_beam:now_ns(),
    {memory, Own1} = process_info(self(), memory),
    Mem1 = erlang:memory(processes),
    Bytes = ((Mem1 - Mem0) - (Own1 - Own0)) / ?SPAWN_N,
    T3 = bench_beam:now_ns(),
    [exit(P, kill) || P <- Pids],
    wait_count(Count0),
    T4 = bench_beam:now_ns(),
    R = #{rate => ?SPAWN_N * 1.0e9 / (T1 - T0), ready => ?SPAWN_N * 1.0e9 / (T2 - T0),
          bytes => Bytes, kill => ?SPAWN_N * 1.0e9 / (T4 - T3)},
    bench_beam:log("spawn ~p", [R]),
    Parent ! {self(), R}.

spawn_n(0, Acc) -> Acc;
spawn_n(N, Acc) -> spawn_n(N - 1, [spawn(fun waiter/0) | Acc]).

waiter() ->
    receive stop -> ok end.

wait_count(Count) ->
    case erlang:system_info(process_count) =< Count of
        true -> ok;
        false -> receive after 1 -> wait_count(Count) end
    end.

%% ---- pingpong ----

pingpong_bench() ->
    [begin
         Reps = bench_beam:repeat(5, fun() -> pingpong_rep(Pairs, K) end),
         Prefix = case Pairs of 1 -> "pingpong_"; _ -> "pingpong_100_" end,
         Name = fun(S) -> list_to_atom(Prefix ++ S) end,
         report(Reps, #{pairs => Pairs, round_trips => K},
                [{Name("rate"), rate, <<"round_trips/s">>}, {Name("rtt_p50"), p50, <<"us">>},
                 {Name("rtt_p99"), p99, <<"us">>}])
     end || {Pairs, K} <- [{1, 500000}, {100, 10000}]],
    ok.

pingpong_rep(Pairs, K) ->
    Parent = self(),
    %% The parent spawns both of a pair (placement follows the spawner).
    Pingers = [begin
                   Pong = spawn(fun ponger/0),
                   spawn(fun() -> pinger(Parent, Pong, K) end)
               end || _ <- lists:seq(1, Pairs)],
    wait_quiet(),
    T0 = bench_beam:now_ns(),
    [P ! go || P <- Pingers],
    Rtts = lists:append([receive {P, done, Samples} -> Samples end || P <- Pingers]),
    T1 = bench_beam:now_ns(),
    R = #{rate => Pairs * K * 1.0e9 / (T1 - T0), p50 => bench_beam:pct(Rtts, 50) / 1000,
          p99 => bench_beam:pct(Rtts, 99) / 1000},
    bench_beam:log("pingpong pairs=~p ~p", [Pairs, R]),
    R.

pinger(Parent, Pong, K) ->
    receive go -> ok end,
    Samples = ping(Pong, K, []),
    Pong ! stop,
    Parent ! {self(), done, Samples}.

%% Every 8th round trip (K rem 8 =:= 0) is timed with two clock reads.
ping(_, 0, Acc) -> Acc;
ping(Pong, K, Acc) when K rem 8 =:= 0 ->
    T0 = bench_beam:now_ns(),
    Pong ! {self(), ping},
    receive pong -> ok end,
    ping(Pong, K - 1, [bench_beam:now_ns() - T0 | Acc]);
ping(Pong, K, Acc) ->
    Pong ! {self(), ping},
    receive pong -> ok end,
    ping(Pong, K - 1, Acc).

ponger() ->
    receive
        {From, ping} -> From ! pong, ponger();
        stop -> ok
    end.

%% ---- ring ----

-define(RING_SIZE, 1000).
-define(RING_HOPS, 10000000).

ring_bench() ->
    Reps = bench_beam:repeat(3, fun ring_rep/0),
    report(Reps, #{procs => ?RING_SIZE, hops => ?RING_HOPS}, [{ring_rate, rate, <<"hops/s">>}]).

ring_rep() ->
    Parent = self(),
    %% The last process is spawned first and learns the first at the end.
    Last = spawn(fun() -> receive {next, N} -> ring_node(N, Parent) end end),
    First = lists:foldl(fun(_, Next) -> spawn(fun() -> ring_node(Next, Parent) end) end, Last,
                        lists:seq(1, ?RING_SIZE - 1)),
    Last ! {next, First},
    wait_quiet(),
    T0 = bench_beam:now_ns(),
    First ! ?RING_HOPS,
    receive ring_done -> ok end,
    T1 = bench_beam:now_ns(),
    [exit(P, kill) || P <- ring_members(First, ?RING_SIZE)],
    Rate = ?RING_HOPS * 1.0e9 / (T1 - T0),
    bench_beam:log("ring ~.1f hops/s", [Rate]),
    #{rate => Rate}.

ring_node(Next, Parent) ->
    receive
        {members, From, Left, Acc} when Left > 0 ->
            Next ! {members, From, Left - 1, [self() | Acc]}, ring_node(Next, Parent);
        {members, From, 0, Acc} -> From ! {members, Acc}, ring_node(Next, Parent);
        H when is_integer(H), H > 0 -> Next ! H - 1, ring_node(Next, Parent);
        0 -> Parent ! ring_done, ring_node(Next, Parent)
    end.

ring_members(First, Size) ->
    First ! {members, self(), Size - 1, []},
    receive {members, Acc} -> Acc end.

%% ---- fanin ----

-define(FANIN_SENDERS, 1000).
-define(FANIN_EACH, 10000).

fanin_bench() ->
    Reps = bench_beam:repeat(3, fun fanin_rep/0),
    report(Reps, #{senders => ?FANIN_SENDERS, messages => ?FANIN_SENDERS * ?FANIN_EACH},
           [{fanin_rate, rate, <<"msgs/s">>}, {fanin_max_queue, max_queue, <<"msgs">>}]).

fanin_rep() ->
    Parent = self(),
    Total = ?FANIN_SENDERS * ?FANIN_EACH,
    Rx = spawn(fun() -> fanin_receive(Total), Parent ! fanin_done end),
    Senders = [spawn(fun() -> receive go -> fanin_send(Rx, ?FANIN_EACH) end end)
               || _ <- lists:seq(1, ?FANIN_SENDERS)],
    wait_quiet(),
    T0 = bench_beam:now_ns(),
    [S ! go || S <- Senders],
    MaxQ = fanin_sample(Rx, 0),
    T1 = bench_beam:now_ns(),
    R = #{rate => Total * 1.0e9 / (T1 - T0), max_queue => MaxQ},
    bench_beam:log("fanin ~p", [R]),
    R.

fanin_send(_, 0) -> ok;
fanin_send(Rx, I) -> Rx ! {msg, I}, fanin_send(Rx, I - 1).

fanin_receive(0) -> ok;
fanin_receive(N) -> receive {msg, _} -> fanin_receive(N - 1) end.

%% Samples the receiver's queue every 10 ms until it reports.
fanin_sample(Rx, Max) ->
    receive
        fanin_done -> Max
    after 10 ->
        case process_info(Rx, message_queue_len) of
            {message_queue_len, L} -> fanin_sample(Rx, max(Max, L));
            undefined -> fanin_sample(Rx, Max)
        end
    end.

%% ---- bigmsg ----

bigmsg_bench() ->
    List = lists:seq(1, 65536),
    1048576 = erts_debug:flat_size(List) * erlang:system_info(wordsize),
    Bin = binary:copy(list_to_binary(lists:seq(0, 255)), 4096),
    1048576 = byte_size(Bin),
    [begin
         Reps = bench_beam:repeat(5, fun() -> bigmsg_rep(Kind, Payload, K) end),
         report(Reps, #{payload => Kind, payload_bytes => 1048576, msgs => K, reps => 5},
                [{list_to_atom("bigmsg_" ++ atom_to_list(Kind)), rate, <<"MiB/s">>}])
     end || {Kind, Payload, K} <- [{list, List, 2000}, {binary, Bin, 200000}]],
    ok.

bigmsg_rep(Kind, Payload, K) ->
    Recv = spawn(fun bigmsg_receiver/0),
    wait_quiet(),
    T0 = bench_beam:now_ns(),
    bigmsg_send(Recv, Payload, K),
    T1 = bench_beam:now_ns(),
    Recv ! stop,
    R = #{rate => K * 1.0e9 / (T1 - T0)},
    bench_beam:log("bigmsg ~p ~p", [Kind, R]),
    R.

bigmsg_send(_, _, 0) -> ok;
bigmsg_send(Recv, Payload, K) ->
    Recv ! {self(), Payload},
    receive ack -> ok end,
    bigmsg_send(Recv, Payload, K - 1).

bigmsg_receiver() ->
    receive
        {From, _Payload} -> From ! ack, bigmsg_receiver();
        stop -> ok
    end.

%% ---- fairness ----

-define(FAIR_MS, 2000).

fairness_bench() ->
    Busy = 2 * erlang:system_info(schedulers_online),
    fairness(fairness_idle, 0),
    fairness(fairness, Busy).

fairness(Name, NBusy) ->
    Reps = bench_beam:repeat(3, fun() -> fairness_rep(NBusy) end),
    P = #{busy_procs => NBusy, schedulers => erlang:system_info(schedulers_online),
          sleep_ms => 1, duration_ms => ?FAIR_MS, reps => 3},
    N = atom_to_list(Name),
    report(Reps, P,
           [{list_to_atom(N ++ "_lateness_p50"), p50, <<"ms">>},
            {list_to_atom(N ++ "_lateness_p99"), p99, <<"ms">>},
            {list_to_atom(N ++ "_lateness_max"), max, <<"ms">>},
            {list_to_atom(N ++ "_wakeups"), n, <<"count">>}]).

fairness_rep(NBusy) ->
    Loopers = [spawn(?MODULE, busy, [I]) || I <- lists:seq(1, NBusy)],
    receive after 100 -> ok end,
    Parent = self(),
    End = bench_beam:now_ns() + ?FAIR_MS * 1000000,
    Probe = spawn(fun() -> Parent ! {lateness, self(), probe(End, [])} end),
    Late = receive {lateness, Probe, L} -> L end,
    [exit(P, kill) || P <- Loopers],
    Ms = [X / 1.0e6 || X <- Late],
    R = #{p50 => bench_beam:pct(Ms, 50), p99 => bench_beam:pct(Ms, 99), max => lists:max(Ms),
          n => length(Ms)},
    bench_beam:log("fairness busy=~p ~p", [NBusy, R]),
    R.

busy(X) -> busy((X * 1103515245 + 12345) band 16#7fffffff).

probe(End, Acc) ->
    T0 = bench_beam:now_ns(),
    receive after 1 -> ok end,
    T1 = bench_beam:now_ns(),
    Acc1 = [T1 - T0 - 1000000 | Acc],
    case T1 >= End of
        true -> Acc1;
        false -> probe(End, Acc1)
    end.
