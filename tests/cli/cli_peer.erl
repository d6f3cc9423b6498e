%% cli_peer: what tests/cli/cli_test.sh's erl node serves to `girder ping|rpc|send|bench`.
%%   echo       registered process: {From, T} -> From ! {echo_reply, T} (girder's echo service, docs/protocol.md §5)
%%   girder_kv  gen_server: {put, K, V} -> ok, {get, K} -> {ok, V} | error, {delete, K} -> ok,
%%              and the cast {put, K, V} (the same contract as girder's girder_kv)
%%   lossy_echo, dup_echo, bad_echo  echo, except that every 50th request is dropped,
%%              answered twice, or answered with a changed payload (girder bench must
%%              count it lost, misordered, or as an error)
%%   sink       registered process keeping what it receives: {sink_get, From} -> From ! {sink, Msgs}
-module(cli_peer).
-behaviour(gen_server).
-export([start/0, echo_loop/0, faulty_loop/2, sink_loop/1, sink_msgs/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    register(echo, spawn(?MODULE, echo_loop, [])),
    register(sink, spawn(?MODULE, sink_loop, [[]])),
    [register(Name, spawn(?MODULE, faulty_loop, [Fault, 0]))
     || {Name, Fault} <- [{lossy_echo, drop}, {dup_echo, dup}, {bad_echo, bad}]],
    {ok, _} = gen_server:start({local, girder_kv}, ?MODULE, [], []),
    ok.

%% What sink received so far (for girder rpc NODE cli_peer sink_msgs).
sink_msgs() ->
    sink ! {sink_get, self()},
    receive {sink, Msgs} -> Msgs after 5000 -> timeout end.

echo_loop() ->
    receive
        {stop, _} -> ok;
        {From, T} when is_pid(From) -> From ! {echo_reply, T}, echo_loop();
        _ -> echo_loop()
    end.

faulty_loop(Fault, N) ->
    receive
        {From, T} when is_pid(From), N rem 50 =:= 49 ->
            case Fault of
                drop -> ok;
                dup -> From ! {echo_reply, T}, From ! {echo_reply, T};
                bad -> From ! {echo_reply, {element(1, T), changed}}
            end,
            faulty_loop(Fault, N + 1);
        {From, T} when is_pid(From) -> From ! {echo_reply, T}, faulty_loop(Fault, N + 1);
        _ -> faulty_loop(Fault, N)
    end.

sink_loop(Msgs) ->
    receive
        {sink_get, From} -> From ! {sink, lists:reverse(Msgs)}, sink_loop(Msgs);
        M -> sink_loop([M | Msgs])
    end.

init([]) -> {ok, #{}}.
handle_call({put, K, V}, _From, S) -> {reply, ok, S#{K => V}};
handle_call({get, K}, _From, S) ->
    case S of #{K := V} -> {reply, {ok, V}, S}; _ -> {reply, error, S} end;
handle_call({delete, K}, _From, S) -> {reply, ok, maps:remove(K, S)};
handle_call(_, _From, S) -> {reply, {error, unknown_request}, S}.
handle_cast({put, K, V}, S) -> {noreply, S#{K => V}};
handle_cast(_, S) -> {noreply, S}.
handle_info(_, S) -> {noreply, S}.
