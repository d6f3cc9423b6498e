%% cli_peer: what tests/cli/cli_test.sh's erl node serves to `girder ping|rpc|send|bench`.
%%   echo       registered process: {From, T} -> From ! {echo_reply, T} (girder's echo service, docs/protocol.md §5)
%%   girder_kv  gen_server: {put, K, V} -> ok, {get, K} -> {ok, V} | error, {delete, K} -> ok,
%%              and the cast {put, K, V} (the same contract as girder's girder_kv)
%%   sink       registered process keeping what it receives: {sink_get, From} -> From ! {sink, Msgs}
-module(cli_peer).
-behaviour(gen_server).
-export([start/0, echo_loop/0, sink_loop/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    register(echo, spawn(?MODULE, echo_loop, [])),
    register(sink, spawn(?MODULE, sink_loop, [[]])),
    {ok, _} = gen_server:start({local, girder_kv}, ?MODULE, [], []),
    ok.

echo_loop() ->
    receive
        {stop, _} -> ok;
        {From, T} when is_pid(From) -> From ! {echo_reply, T}, echo_loop();
        _ -> echo_loop()
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
