%% ticktime_interop: net_ticktime between girder and real OTP nodes, all
%% at net_ticktime 4 (tests/interop/ticktime_interop.sh).  An idle
%% connection stays up on ticks alone; a girder node that stops answering
%% (SIGSTOP) is reported down by OTP with reason net_tick_timeout within
%% about the tick time, and is reached again once it runs; an OTP node that
%% stops answering is reported down to girder processes (monitor_node) and
%% logged by girder as not responding.
%% main([G, GirderOsPid]) halts 0 when every check passed.
-module(ticktime_interop).
-export([main/1]).

main([GStr, OsPid]) ->
    G = list_to_atom(GStr),
    pong = net_adm:ping(G),
    4 = net_kernel:get_net_ticktime(),
    Checks = [{idle_connection_stays_up, fun() -> idle(G) end},
              {girder_silent_is_net_tick_timeout, fun() -> girder_silent(G, OsPid) end},
              {otp_silent_is_nodedown_in_girder, fun() -> otp_silent(G) end}],
    interop_check:run_all(ticktime_interop, Checks).

%% 10 s without a message: the ticks keep the connection.
idle(G) ->
    true = monitor_node(G, true),
    receive {nodedown, G} -> exit(nodedown_while_idle) after 10000 -> ok end,
    true = monitor_node(G, false),
    true = lists:member(G, nodes()),
    ok.

girder_silent(G, OsPid) ->
    ok = net_kernel:monitor_nodes(true, [nodedown_reason]),
    T0 = erlang:monotonic_time(millisecond),
    [] = os:cmd("kill -STOP " ++ OsPid),
    R = receive {nodedown, G, Info} -> proplists:get_value(nodedown_reason, Info)
        after 15000 -> no_nodedown
        end,
    Took = erlang:monotonic_time(millisecond) - T0,
    [] = os:cmd("kill -CONT " ++ OsPid),
    ok = net_kernel:monitor_nodes(false, [nodedown_reason]),
    net_tick_timeout = R,
    %% OTP drops a connection after 4 to 5 ticks of silence (of 1 s)
    true = Took >= 2500 andalso Took =< 8000 orelse exit({took, Took}),
    %% running again, it is reached on a new connection
    pong = net_adm:ping(G),
    {Took, ms}.

otp_silent(G) ->
    {ok, Peer, P} = peer:start(#{name => peer:random_name(tick_peer),
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                          "-kernel", "net_ticktime", "4"]}),
    PeerOs = rpc:call(P, os, getpid, []),
    try
        Self = self(),
        W = rpc:call(G, girder, watch_nodes, [Self, P]), % girder connects to P
        true = is_pid(W),
        ok = interop_check:wait_member(P, fun() -> rpc:call(G, erlang, nodes, []) end, 100),
        T0 = erlang:monotonic_time(millisecond),
        [] = os:cmd("kill -STOP " ++ PeerOs),
        receive {watch_node, {nodedown, P}} -> ok after 15000 -> exit(no_nodedown) end,
        Took = erlang:monotonic_time(millisecond) - T0,
        true = Took >= 2500 andalso Took =< 8000 orelse exit({took, Took}),
        false = lists:member(P, rpc:call(G, erlang, nodes, [])),
        {Took, ms}
    after
        os:cmd("kill -CONT " ++ PeerOs),
        catch peer:stop(Peer)
    end.
