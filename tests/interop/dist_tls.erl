%% dist_tls: drives `girder node -proto_dist inet_tls` from an OTP node
%% that runs -proto_dist inet_tls too (tests/interop/dist_tls.sh starts
%% both).  main([G, G2, OptFile]) halts 0 when every check passed.
-module(dist_tls).
-export([main/1, collector/2]).

main([GStr, G2Str, OptFile, RogueOptFile]) ->
    G = list_to_atom(GStr),
    G2 = list_to_atom(G2Str),
    Checks = [{ping, fun() -> pong = net_adm:ping(G) end},
              {tls_connection, fun() -> tls_connection(G) end},
              {echo_terms, fun() -> echo_terms(G) end},
              {rpc_echo, fun() -> rpc_echo(G) end},
              {binary_1mb, fun() -> binary_1mb(G) end},
              {ordered_10k, fun() -> ordered(G, 10000) end},
              {girder_connects_out, fun() -> connects_out(G, OptFile) end},
              {girder_to_girder, fun() -> girder_to_girder(G, G2) end},
              {girder_refuses_other_ca_server,
               fun() -> refuses_rogue_server(G, RogueOptFile) end}],
    interop_check:run_all(dist_tls, Checks).

%% The connection to G really is TLS: its distribution controller is the
%% ssl connection's process (a plain TCP connection's is a port).
tls_connection(G) ->
    case [C || {N, C} <- erlang:system_info(dist_ctrl), N =:= G] of
        [Ctrl] when is_pid(Ctrl) -> ok;
        Other -> exit({not_tls, Other})
    end.

echo(G, T) -> interop_check:echo(G, T, 20000).

terms() ->
    [0, -1, 1 bsl 64, 3.14, a, 'ö', [], "abc", [1, 2 | 3], <<"bin">>, <<1:3>>,
     {a, {b, {c}}}, #{a => 1, "b" => [2]}, self(), make_ref(), fun lists:map/2,
     list_to_tuple(lists:seq(1, 300)), [node(), 'x@y']].

echo_terms(G) -> interop_check:echo_terms(G, terms(), 20000).

rpc_echo(G) ->
    [case rpc:call(G, girder, echo, [T]) of
         R when R =:= T -> ok;
         R -> exit({rpc_mismatch, T, R})
     end || T <- terms()],
    {badrpc, {'EXIT', {undef, _}}} = rpc:call(G, nomod, nofun, []),
    ok.

%% 1 MB crosses in fragments both ways, through TLS records; rpc:call
%% carries 60 KB (one frame: a fragmented erpc result, girder's
%% PAYLOAD_MONITOR_P_EXIT, brings OTP 25.2.3 down over plain TCP as well,
%% which is the send path's business, not TLS's).
binary_1mb(G) ->
    B = crypto:strong_rand_bytes(1 bsl 20),
    B = echo(G, B),
    S = crypto:strong_rand_bytes(60000),
    S = rpc:call(G, girder, echo, [S]),
    ok.

ordered(G, N) ->
    Self = self(),
    [{echo, G} ! {Self, I} || I <- lists:seq(1, N)],
    [receive {echo_reply, I} -> ok after 20000 -> exit({lost, I}) end || I <- lists:seq(1, N)],
    ok.

%% girder as the TLS client: G's echo answers a process on a second OTP
%% TLS node that G has never seen, so G looks it up in EPMD, connects,
%% checks its certificate and sends first.  The replies arrive in order.
connects_out(G, OptFile) ->
    {ok, Peer, B} = peer:start(#{name => peer:random_name(),
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                          "-proto_dist", "inet_tls",
                                          "-ssl_dist_optfile", OptFile,
                                          "-pa", filename:dirname(code:which(?MODULE))]}),
    Self = self(),
    C = erpc:call(B, erlang, spawn, [?MODULE, collector, [Self, 100]]),
    false = lists:member(B, rpc:call(G, erlang, nodes, [])),
    [{echo, G} ! {C, I} || I <- lists:seq(1, 100)],
    R = receive {collected, L} -> L after 20000 -> timeout end,
    true = lists:member(B, rpc:call(G, erlang, nodes, [])),
    peer:stop(Peer),
    interop_check:echo_replies_in_order(R, 100).

%% Two girder nodes over TLS: G's echo answers a process on G2.
girder_to_girder(G, G2) ->
    P = rpc:call(G2, girder, spawn_echo, []),
    Ref = monitor(process, P),
    {echo, G} ! {P, hi},
    interop_check:wait_member(G2, fun() -> rpc:call(G, erlang, nodes, []) end, 100),
    interop_check:wait_member(G, fun() -> rpc:call(G2, erlang, nodes, []) end, 100),
    P = rpc:call(G, girder, echo, [P]),
    P ! {stop, done},
    receive {'DOWN', Ref, process, P, done} -> ok after 5000 -> exit(no_down) end.

%% girder as the TLS client refuses a server whose certificate the other
%% CA signed: G is made to send to a pid on an OTP TLS node with such a
%% certificate (the pid is only data here: this node never connects to
%% it, the peer runs over stdio), and G never gets that node up.  The
%% refusal line is checked by dist_tls.sh.
refuses_rogue_server(G, RogueOptFile) ->
    {ok, Peer, R} = peer:start(#{name => peer:random_name(), connection => standard_io,
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                          "-proto_dist", "inet_tls",
                                          "-ssl_dist_optfile", RogueOptFile]}),
    RB = atom_to_binary(R, utf8),
    Fake = binary_to_term(<<131, 88, 119, (byte_size(RB)), RB/binary, 1:32, 0:32, 1:32>>),
    {echo, G} ! {Fake, hello},
    timer:sleep(2000),
    Nodes = rpc:call(G, erlang, nodes, []),
    peer:stop(Peer),
    case lists:member(R, Nodes) of
        false -> ok;
        true -> exit({connected_to_rogue, R})
    end,
    refused = rpc:call(G, girder, echo, [refused]),
    io:format("rogue server: ~s~n", [R]).

collector(To, N) -> collector(To, N, []).
collector(To, N, Acc) when length(Acc) =:= N -> To ! {collected, lists:reverse(Acc)};
collector(To, N, Acc) ->
    receive M -> collector(To, N, [M | Acc]) after 19000 -> To ! {collected, lists:reverse(Acc)} end.
