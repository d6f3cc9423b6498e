%% contract_interop: every row of the node contract (design.md, "The node
%% contract") and its corners, checked from a real OTP node the way an
%% Erlang user would poke a girder node: exact values and OTP's own error
%% shapes, each compared, where OTP has one, with what an OTP peer node
%% answers to the same request.  tests/interop/contract_interop.sh starts
%% the girder nodes (one with the cookie from a fresh ~/.erlang.cookie).
%% main([G, Victim, VictimOsPid]) halts 0 when every check passed: G is
%% the girder node every check uses, Victim a second one this suite kills
%% with kill -9.
-module(contract_interop).
-export([main/1, hold/0]).
-import(interop_check, [wait_for/3]).

main([GStr, VStr, VOs]) ->
    G = list_to_atom(GStr),
    V = list_to_atom(VStr),
    pong = net_adm:ping(G),
    {ok, Peer, O} = peer:start_link(#{name => peer:random_name(contract_otp),
                                      args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                                               "-pa", filename:dirname(code:which(?MODULE))]}),
    Checks =
        [{ping_and_builtins, fun() -> builtins(G) end},
         {system_info_keys, fun() -> system_info(G, O) end},
         {echo_odd_terms_rpc_and_erpc, fun() -> echo_terms(G) end},
         {undef_shapes_like_otp, fun() -> undef(G, O) end},
         {wrong_arity_and_bad_args, fun() -> arity(G, O) end},
         {rex_features_and_block_call, fun() -> rex_forms(G, O) end},
         {multicall_girder_and_otp, fun() -> multicall(G, O) end},
         {rpc_cast_and_erpc_cast, fun() -> casts(G) end},
         {erpc_send_request, fun() -> send_request(G) end},
         {erpc_timeouts, fun() -> erpc_timeouts(G) end},
         {echo_registered_and_spawned, fun() -> echo(G) end},
         {echo_stop_reasons, fun() -> stop_reasons(G) end},
         {exit_signals_from_erlang, fun() -> exit_signals(G) end},
         {kv_rows, fun() -> kv_rows(G) end},
         {kv_timeouts_and_junk, fun() -> kv_corners(G) end},
         {kv_sys_calls, fun() -> kv_sys(G) end},
         {kv_restarted_after_kill, fun() -> kv_restart(G) end},
         {kv_1000_callers, fun() -> kv_concurrent(G) end},
         {links_monitors_both_ways, fun() -> links_monitors(G) end},
         {demonitor_flush_unlink, fun() -> demonitor_unlink(G) end},
         {monitor_node_disconnect, fun() -> disconnect(G) end},
         {global_both_ways, fun() -> global_rows(G, O) end},
         {global_non_atom_names, fun() -> global_terms(G, O) end},
         {hidden_connection, fun() -> hidden(G) end},
         {wrong_cookie_refused, fun() -> wrong_cookie(G) end},
         {raw_tcp_garbage, fun() -> raw_tcp(G) end},
         {big_64mb_echo, fun() -> big(G) end},
         {ordered_100k, fun() -> ordered(G, 100000) end},
         {kill9_noconnection, fun() -> kill9(V, VOs) end}],
    try interop_check:run_all(contract_interop, Checks)
    after peer:stop(Peer)
    end.

%% ---- helpers ----

%% erpc:call's raise, as {Class, Reason}, or {return, V}.
erpc_outcome(F) ->
    try F() of V -> {return, V}
    catch C:R -> {C, R}
    end.

%% Replaces node O by G inside a term (OTP's answers name their node).
swap(T, O, G) when T =:= O -> G;
swap(T, O, G) when is_tuple(T) -> list_to_tuple(swap(tuple_to_list(T), O, G));
swap([H | T], O, G) -> [swap(H, O, G) | swap(T, O, G)];
swap(T, _, _) -> T.

%% OTP's stacks carry error_info and the rpc frames; what must agree is
%% the reason and the top frame's {M, F, Args}.
top({badrpc, {'EXIT', {R, [{M, F, A, _} | _]}}}) -> {badrpc, 'EXIT', R, {M, F, A}};
top({error, {exception, R, [{M, F, A, _} | _]}}) -> {error, exception, R, {M, F, A}};
top(X) -> X.


no_msg(Ms) -> receive M -> exit({unexpected, M}) after Ms -> ok end.

hold() -> receive {die, R} -> exit(R); stop -> ok end.

%% ---- built-ins ----

builtins(G) ->
    pong = net_adm:ping(G),
    G = rpc:call(G, erlang, node, []),
    G = erpc:call(G, erlang, node, []),
    true = lists:member(node(), rpc:call(G, erlang, nodes, [])),
    true = lists:member(node(), erpc:call(G, erlang, nodes, [])),
    false = lists:member(G, rpc:call(G, erlang, nodes, [])),
    %% the list forms OTP users pass to nodes/1
    true = lists:member(node(), rpc:call(G, erlang, nodes, [visible])),
    true = lists:member(node(), rpc:call(G, erlang, nodes, [connected])),
    [G] = rpc:call(G, erlang, nodes, [this]),
    [] = rpc:call(G, erlang, nodes, [hidden]),
    true = lists:member(node(), rpc:call(G, erlang, nodes, [[visible, hidden]])),
    [G | Vis] = rpc:call(G, erlang, nodes, [[this, visible]]),
    true = lists:member(node(), Vis),
    [] = rpc:call(G, erlang, nodes, [[]]),
    [G | _] = rpc:call(G, erlang, nodes, [known]),
    #{node := G, processes := P, nodes := Ns} = Info = rpc:call(G, girder, info, []),
    true = is_map(Info) andalso is_integer(P) andalso P > 0 andalso lists:member(node(), Ns),
    Info2 = erpc:call(G, girder, info, []),
    true = is_map(Info2),
    Pid = rpc:call(G, girder, spawn_echo, []),
    true = is_pid(Pid) andalso node(Pid) =:= G,
    Pid2 = erpc:call(G, girder, spawn_echo, []),
    true = is_pid(Pid2) andalso node(Pid2) =:= G andalso Pid2 =/= Pid,
    [begin P0 ! {self(), x}, receive {echo_reply, x} -> ok after 5000 -> exit(no_reply) end,
           P0 ! {stop, normal} end || P0 <- [Pid, Pid2]],
    ok.

system_info(G, O) ->
    N = rpc:call(G, erlang, system_info, [process_count]),
    true = is_integer(N) andalso N >= 3,
    N2 = erpc:call(G, erlang, system_info, [process_count]),
    true = is_integer(N2),
    S = rpc:call(G, erlang, system_info, [schedulers_online]),
    true = is_integer(S) andalso S >= 1,
    S = rpc:call(G, erlang, system_info, [schedulers]),
    %% otp_release: the same shape as OTP's (a string of digits)
    Rel = rpc:call(G, erlang, system_info, [otp_release]),
    true = is_list(Rel) andalso Rel =/= [] andalso lists:all(fun(C) -> C >= $0 andalso C =< $9 end, Rel),
    true = list_to_integer(Rel) >= 25,
    AC = rpc:call(G, erlang, system_info, [atom_count]),
    AL = rpc:call(G, erlang, system_info, [atom_limit]),
    true = is_integer(AC) andalso is_integer(AL) andalso AC < AL,
    %% an unknown key: badarg, as on OTP
    Want = top(swap(rpc:call(O, erlang, system_info, [no_such_key]), O, G)),
    Want = top(rpc:call(G, erlang, system_info, [no_such_key])),
    {error, {exception, badarg, _}} = erpc_outcome(fun() -> erpc:call(G, erlang, system_info, [nokey]) end),
    ok.

odd_terms() ->
    [0, -1, 1 bsl 64, -(1 bsl 300), 3.5, -0.0, '', 'λx', [], "", [a | b], <<>>, <<1:1>>,
     <<7:13>>, {}, #{}, #{{k, 1} => [v], <<"b">> => #{}}, self(), make_ref(),
     fun erlang:node/0, fun(X) -> {X, self()} end, list_to_tuple(lists:seq(1, 256)),
     lists:duplicate(1000, {}), binary:copy(<<"z">>, 100000), [G || G <- ["λ", 'ö']],
     {node(), nonode@nohost, 'x@y'}, erlang:make_tuple(3, [])].

echo_terms(G) ->
    [begin
         case rpc:call(G, girder, echo, [T]) of R when R =:= T -> ok; R -> exit({rpc, T, R}) end,
         case erpc:call(G, girder, echo, [T]) of E when E =:= T -> ok; E -> exit({erpc, T, E}) end
     end || T <- odd_terms()],
    interop_check:echo_terms(G, odd_terms(), 5000).

%% Unknown module, unknown function of a known module: OTP's shapes.
undef(G, O) ->
    Calls = [{nomod, nofun, []}, {nomod, nofun, [1, "a"]}, {girder, nofun, [x]},
             {erlang, no_such_bif, []}, {'', '', []}],
    [begin
         R = rpc:call(G, M, F, A),
         {badrpc, {'EXIT', {undef, [{M, F, A, []}]}}} = R,
         Want = top(swap(rpc:call(O, M, F, A), O, G)),
         Want = top(R),
         {error, {exception, undef, [{M, F, A, []}]}} =
             erpc_outcome(fun() -> erpc:call(G, M, F, A) end),
         EWant = erpc_outcome(fun() -> erpc:call(O, M, F, A) end),
         {error, {exception, undef, [{M, F, A, _} | _]}} = EWant
     end || {M, F, A} <- Calls],
    ok.

%% The other forms rex answers (protocol.md 5.1, 5.4): OTP's own
%% features_request, as an OTP peer answers it, and rpc:block_call (rex's
%% gen_server call form), results and errors as OTP's.
rex_forms(G, O) ->
    [begin
         {rex, N} ! {self(), features_request},
         receive {features_reply, N, Features} -> true = lists:member(erpc, Features)
         after 5000 -> exit({no_features_reply, N})
         end
     end || N <- [G, O]],
    {rex, G} ! {self(), features_request},
    {features_reply, G, [erpc]} = receive {features_reply, G, _} = R -> R after 5000 -> none end,
    x = rpc:block_call(G, girder, echo, [x]),
    {a, [1]} = rpc:block_call(G, girder, echo, [{a, [1]}], 5000),
    G = rpc:block_call(G, erlang, node, []),
    [begin
         Got = rpc:block_call(G, M, F, A),
         {badrpc, {'EXIT', {undef, [{M, F, A, []}]}}} = Got,
         Want = top(swap(rpc:block_call(O, M, F, A), O, G)),
         Want = top(Got)
     end || {M, F, A} <- [{nomod, nofun, [1]}, {girder, echo, []}]],
    ok.

%% A function with the wrong number of arguments is undef, with the
%% arguments given; bad arguments to a built-in are badarg.
arity(G, O) ->
    {badrpc, {'EXIT', {undef, [{girder, echo, [], []}]}}} = rpc:call(G, girder, echo, []),
    {badrpc, {'EXIT', {undef, [{girder, echo, [a, b], []}]}}} = rpc:call(G, girder, echo, [a, b]),
    {badrpc, {'EXIT', {undef, [{erlang, node, [a, b], []}]}}} = rpc:call(G, erlang, node, [a, b]),
    {badrpc, {'EXIT', {undef, [{girder, spawn_echo, [x], []}]}}} =
        rpc:call(G, girder, spawn_echo, [x]),
    {error, {exception, undef, [{girder, info, [1], []}]}} =
        erpc_outcome(fun() -> erpc:call(G, girder, info, [1]) end),
    %% nodes/1 with a bad argument: badarg on both
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(O, erlang, nodes, [bogus]),
    [{badrpc, {'EXIT', {badarg, _}}} = rpc:call(N, erlang, nodes, [A])
     || N <- [G, O], A <- [bogus, [visible | hidden], [visible, 1], 42]],
    %% the node keeps serving
    G = rpc:call(G, erlang, node, []),
    ok.

multicall(G, O) ->
    Nodes = [G, O, node()],
    {Res, []} = rpc:multicall(Nodes, erlang, node, []),
    true = lists:sort(Res) =:= lists:sort(Nodes),
    {Res2, []} = rpc:multicall([G, O], erlang, nodes, []),
    true = lists:all(fun(L) -> lists:member(node(), L) end, Res2),
    Bad = 'nonode_contract@nohost',
    {[G], [Bad]} = rpc:multicall([G, Bad], erlang, node, [], 5000),
    %% an unknown function: each node's badrpc in the results
    {[R1, R2], []} = rpc:multicall([G, O], nomod, nofun, []),
    [{badrpc, {'EXIT', {undef, _}}}, {badrpc, {'EXIT', {undef, _}}}] = [R1, R2],
    %% erpc:multicall
    [{ok, G}, {ok, O}] = erpc:multicall([G, O], erlang, node, []),
    [{error, {exception, undef, _}}, {error, {exception, undef, _}}] =
        [{C, R} || {C, R} <- [case X of {error, E} -> {error, E}; Y -> Y end
                             || X <- erpc:multicall([G, O], nomod, nofun, [])]] ,
    ok.

%% rpc:cast and erpc:cast run the function; girder:send/2 shows it ran.
casts(G) ->
    Name = list_to_atom("contract_cast_" ++ os:getpid()),
    register(Name, self()),
    true = rpc:cast(G, girder, send, [{Name, node()}, {cast, 1}]),
    receive {cast, 1} -> ok after 5000 -> exit(no_rpc_cast) end,
    ok = erpc:cast(G, girder, send, [self(), {cast, 2}]),
    receive {cast, 2} -> ok after 5000 -> exit(no_erpc_cast) end,
    %% a cast of something unknown: nothing comes back, the node lives
    ok = erpc:cast(G, nomod, nofun, []),
    true = rpc:cast(G, nomod, nofun, []),
    no_msg(300),
    unregister(Name),
    G = rpc:call(G, erlang, node, []),
    ok.

send_request(G) ->
    R1 = erpc:send_request(G, girder, echo, [{req, 1}]),
    R2 = erpc:send_request(G, erlang, node, []),
    R3 = erpc:send_request(G, nomod, nofun, [z]),
    G = erpc:receive_response(R2, 5000),
    {req, 1} = erpc:receive_response(R1, 5000),
    {error, {exception, undef, [{nomod, nofun, [z], []}]}} =
        erpc_outcome(fun() -> erpc:receive_response(R3, 5000) end),
    %% wait_response / check_response
    R4 = erpc:send_request(G, girder, echo, [four]),
    {response, four} = wait_resp(R4, 50),
    R5 = erpc:send_request(G, girder, echo, [five]),
    receive Msg -> {response, five} = erpc:check_response(Msg, R5)
    after 5000 -> exit(no_response_message) end,
    no_msg(100).

wait_resp(_, 0) -> exit(no_response);
wait_resp(R, N) ->
    case erpc:wait_response(R, 100) of
        no_response -> wait_resp(R, N - 1);
        Res -> Res
    end.

%% Timeouts: a call whose answer cannot be there in time is
%% {erpc, timeout} / {badrpc, timeout}, the late answer never lands in
%% the mailbox, and the node answers the next call at once.  (girder's
%% built-ins answer at once, so a 0 ms timeout is the call that cannot
%% finish.)
erpc_timeouts(G) ->
    [{error, {erpc, timeout}} = erpc_outcome(fun() -> erpc:call(G, girder, echo, [I], 0) end)
     || I <- lists:seq(1, 20)],
    [{badrpc, timeout} = rpc:call(G, girder, echo, [I], 0) || I <- lists:seq(1, 20)],
    [begin
         R = erpc:send_request(G, girder, echo, [I]),
         {error, {erpc, timeout}} = erpc_outcome(fun() -> erpc:receive_response(R, 0) end)
     end || I <- lists:seq(1, 20)],
    no_msg(500),
    G = erpc:call(G, erlang, node, [], 2000),
    %% a node that is not there: noconnection, quickly
    Bad = 'nonode_contract@nohost',
    {error, {erpc, noconnection}} = erpc_outcome(fun() -> erpc:call(Bad, erlang, node, [], 2000) end),
    ok.

%% ---- echo ----

echo(G) ->
    {echo, G} ! {self(), hi},
    receive {echo_reply, hi} -> ok after 5000 -> exit(no_echo) end,
    %% From can be any pid: a reply to another process of ours
    Self = self(),
    C = spawn(fun() -> receive {echo_reply, X} -> Self ! {via, X} end end),
    {echo, G} ! {C, other},
    receive {via, other} -> ok after 5000 -> exit(no_via) end,
    %% messages of other shapes are ignored, the process lives
    [{echo, G} ! M || M <- [junk, {}, {a, b, c}, {notapid, x}, [self(), x]]],
    {echo, G} ! {self(), still_here},
    receive {echo_reply, still_here} -> ok after 5000 -> exit(echo_died) end,
    Echo = rpc:call(G, erlang, whereis, [echo]),
    true = is_pid(Echo),
    Echo ! {self(), by_pid},
    receive {echo_reply, by_pid} -> ok after 5000 -> exit(no_echo_by_pid) end,
    %% the registered echo stopped by a peer is started again (the
    %% contract promises it to the next caller)
    Ref = monitor(process, {echo, G}),
    {echo, G} ! {stop, {restart, me}},
    receive {'DOWN', Ref, process, {echo, G}, {restart, me}} -> ok
    after 5000 -> exit(echo_did_not_stop) end,
    wait_for(echo_back, true,
             fun() -> case rpc:call(G, erlang, whereis, [echo]) of
                          E2 when is_pid(E2) -> E2 =/= Echo;
                          _ -> false
                      end end),
    {echo, G} ! {self(), back},
    receive {echo_reply, back} -> ok after 5000 -> exit(no_echo_after_restart) end,
    P = rpc:call(G, girder, spawn_echo, []),
    [P ! {self(), I} || I <- lists:seq(1, 100)],
    [receive {echo_reply, I} -> ok after 5000 -> exit({no_reply, I}) end || I <- lists:seq(1, 100)],
    P ! {stop, normal},
    no_msg(100).

%% {stop, R} exits with R, any term: seen through a monitor, and through
%% a link with trap_exit; normal does not kill a linked process that
%% does not trap exits.
stop_reasons(G) ->
    Reasons = [normal, shutdown, {shutdown, x}, because, {a, [1, 2], <<"b">>}, 42, self()],
    [begin
         P = rpc:call(G, girder, spawn_echo, []),
         Ref = monitor(process, P),
         P ! {stop, R},
         receive {'DOWN', Ref, process, P, R2} when R2 =:= R -> ok
         after 5000 -> exit({no_down, R}) end
     end || R <- Reasons],
    process_flag(trap_exit, true),
    [begin
         P = rpc:call(G, girder, spawn_echo, []),
         link(P),
         P ! {stop, R},
         receive {'EXIT', P, R2} when R2 =:= R -> ok after 5000 -> exit({no_exit, R}) end
     end || R <- Reasons],
    process_flag(trap_exit, false),
    %% not trapping: normal leaves the linked process alive, other
    %% reasons kill it
    Me = self(),
    W = spawn(fun() ->
                  P = rpc:call(G, girder, spawn_echo, []),
                  link(P),
                  P ! {stop, normal},
                  timer:sleep(300),
                  Me ! {survived, self()},
                  Q = rpc:call(G, girder, spawn_echo, []),
                  link(Q),
                  Q ! {stop, fatal},
                  timer:sleep(5000),
                  Me ! {survived_fatal, self()}
              end),
    WRef = monitor(process, W),
    receive {survived, W} -> ok after 5000 -> exit(normal_killed_linked) end,
    receive {'DOWN', WRef, process, W, fatal} -> ok after 5000 -> exit(fatal_not_propagated) end,
    %% the registered echo survives all this
    {echo, G} ! {self(), alive},
    receive {echo_reply, alive} -> ok after 5000 -> exit(echo_gone) end.

%% exit/2 from Erlang at girder processes: kill is untrappable (killed),
%% normal is ignored, another reason kills (they do not trap exits).
exit_signals(G) ->
    P1 = rpc:call(G, girder, spawn_echo, []),
    R1 = monitor(process, P1),
    exit(P1, kill),
    receive {'DOWN', R1, process, P1, killed} -> ok after 5000 -> exit(no_killed) end,
    P2 = rpc:call(G, girder, spawn_echo, []),
    R2 = monitor(process, P2),
    exit(P2, normal),
    P2 ! {self(), after_normal},
    receive {echo_reply, after_normal} -> ok after 5000 -> exit(normal_killed) end,
    exit(P2, {custom, reason}),
    receive {'DOWN', R2, process, P2, {custom, reason}} -> ok after 5000 -> exit(no_custom) end,
    %% linked, trapping: exit(P, kill) -> {'EXIT', P, killed}
    process_flag(trap_exit, true),
    P3 = rpc:call(G, girder, spawn_echo, []),
    link(P3),
    exit(P3, kill),
    receive {'EXIT', P3, killed} -> ok after 5000 -> exit(no_linked_killed) end,
    %% a dead pid: monitor gives noproc, link gives noproc
    R4 = monitor(process, P3),
    receive {'DOWN', R4, process, P3, noproc} -> ok after 5000 -> exit(no_noproc) end,
    link(P3),
    receive {'EXIT', P3, noproc} -> ok after 5000 -> exit(no_link_noproc) end,
    process_flag(trap_exit, false),
    %% sending to a dead girder pid is silent
    P3 ! {self(), nobody},
    no_msg(200).

%% ---- girder_kv ----

kv(G, Req) -> gen_server:call({girder_kv, G}, Req, 10000).

kv_rows(G) ->
    K0 = {contract, make_ref()},
    error = kv(G, {get, K0}),
    ok = kv(G, {put, K0, v}),
    {ok, v} = kv(G, {get, K0}),
    ok = kv(G, {delete, K0}),
    error = kv(G, {get, K0}),
    ok = kv(G, {delete, K0}),
    Keys = odd_terms(),
    [ok = kv(G, {put, {ct, K}, {val, K}}) || K <- Keys],
    [{ok, {val, K}} = kv(G, {get, {ct, K}}) || K <- Keys],
    [ok = kv(G, {delete, {ct, K}}) || K <- Keys],
    [error = kv(G, {get, {ct, K}}) || K <- Keys],
    %% 1 and 1.0 are different keys, as =:= says
    ok = kv(G, {put, 1, int}),
    ok = kv(G, {put, 1.0, float}),
    {ok, int} = kv(G, {get, 1}),
    {ok, float} = kv(G, {get, 1.0}),
    ok = kv(G, {delete, 1}), ok = kv(G, {delete, 1.0}),
    %% through the pid, and through the name with a default timeout
    KvPid = rpc:call(G, erlang, whereis, [girder_kv]),
    true = is_pid(KvPid),
    ok = gen_server:call(KvPid, {put, via_pid, 1}),
    {ok, 1} = gen_server:call({girder_kv, G}, {get, via_pid}),
    ok = gen_server:call(KvPid, {delete, via_pid}),
    %% a 1 MB value
    Big = binary:copy(<<"kv">>, 512 * 1024),
    ok = kv(G, {put, big, Big}),
    {ok, Big} = kv(G, {get, big}),
    ok = kv(G, {delete, big}).

catch_exit(F) ->
    try F() of V -> exit({no_exit, V})
    catch exit:R -> R
    end.

%% gen_server:call timeouts, calls to a name that is not there, requests
%% it does not know, casts and plain messages: sane answers, the server
%% alive afterwards.
kv_corners(G) ->
    {timeout, {gen_server, call, [{girder_kv, G}, {get, x}, 0]}} =
        catch_exit(fun() -> gen_server:call({girder_kv, G}, {get, x}, 0) end),
    {noproc, {gen_server, call, [{no_kv_here, G}, {get, x}, 1000]}} =
        catch_exit(fun() -> gen_server:call({no_kv_here, G}, {get, x}, 1000) end),
    {error, {badrequest, frob}} = kv(G, frob),
    {error, {badrequest, {put, onlykey}}} = kv(G, {put, onlykey}),
    ok = gen_server:cast({girder_kv, G}, {put, cast_key, v}),
    {girder_kv, G} ! {some, plain, message},
    {girder_kv, G} ! junk,
    %% a late reply after a timeout does not land in the mailbox
    no_msg(300),
    ok = kv(G, {put, alive, yes}),
    {ok, yes} = kv(G, {get, alive}),
    ok = kv(G, {delete, alive}).

%% Every girder node serves girder_kv: killed, it is started again (by its
%% supervisor, girder_kv_sup), empty, under its name.
kv_restart(G) ->
    ok = kv(G, {put, before_kill, 1}),
    Old = rpc:call(G, erlang, whereis, [girder_kv]),
    true = is_pid(Old),
    Ref = monitor(process, Old),
    exit(Old, kill),
    receive {'DOWN', Ref, process, Old, killed} -> ok after 5000 -> exit(no_down) end,
    wait_for(girder_kv_back, true,
             fun() ->
                     P = rpc:call(G, erlang, whereis, [girder_kv]),
                     is_pid(P) andalso P =/= Old
             end),
    error = kv(G, {get, before_kill}),
    ok = kv(G, {put, after_restart, 1}),
    {ok, 1} = kv(G, {get, after_restart}),
    ok = kv(G, {delete, after_restart}),
    true = is_pid(rpc:call(G, erlang, whereis, [girder_kv_sup])),
    ok.

%% What OTP users try on a gen_server: the sys calls answer as on an OTP
%% gen_server (get_status in gen_server's shape), suspend holds the calls
%% back until resume, an unknown system request is an error, not a crash.
kv_sys(G) ->
    Kv = {girder_kv, G},
    ok = kv(G, {put, sys_key, 1}),
    State = sys:get_state(Kv, 5000),
    true = State =/= undefined,
    {status, Pid, {module, gen_server},
     [_PDict, running, _Parent, [],
      [{header, "Status for generic server girder_kv"},
       {data, [{"Status", running}, {"Parent", _}, {"Logged events", []}]},
       {data, [{"State", State2}]}]]} = sys:get_status(Kv, 5000),
    true = is_pid(Pid) andalso node(Pid) =:= G andalso State2 =:= sys:get_state(Kv, 5000),
    ok = sys:suspend(Kv, 5000),
    Self = self(),
    Caller = spawn(fun() -> Self ! {called, self(), kv(G, {put, while_suspended, 1})} end),
    receive {called, Caller, R} -> exit({answered_while_suspended, R}) after 500 -> ok end,
    {status, Pid, _, [_, suspended | _]} = sys:get_status(Kv, 5000),
    _ = sys:get_state(Kv, 5000),
    ok = sys:resume(Kv, 5000),
    receive {called, Caller, ok} -> ok after 5000 -> exit(no_answer_after_resume) end,
    {ok, 1} = kv(G, {get, while_suspended}),
    {ok, 1} = kv(G, {get, sys_key}),
    [ok = kv(G, {delete, K}) || K <- [sys_key, while_suspended]],
    {ok, {error, {unknown_system_msg, {no_such_sys_request, x}}}} =
        gen:call(Kv, system, {no_such_sys_request, x}, 5000),
    ok = kv(G, {put, after_sys, 2}),
    ok = kv(G, {delete, after_sys}).

%% 1000 OTP processes at once, each with keys of its own.
kv_concurrent(G) ->
    Self = self(),
    Pids = [spawn(fun() -> Self ! {done, self(), kv_worker(G, I)} end) || I <- lists:seq(1, 1000)],
    [] = [R || P <- Pids, R <- [receive {done, P, X} -> X after 60000 -> timeout end], R =/= ok],
    ok.

kv_worker(G, I) ->
    try
        K = {worker, I},
        ok = kv(G, {put, K, I}),
        {ok, I} = kv(G, {get, K}),
        ok = kv(G, {put, K, [I]}),
        {ok, [I]} = kv(G, {get, K}),
        ok = kv(G, {delete, K}),
        error = kv(G, {get, K}),
        ok
    catch C:E -> {I, C, E}
    end.

%% ---- links and monitors ----

%% OTP -> girder (monitor, link) and girder -> OTP (girder:watch/2: a
%% girder process that links to and monitors a pid and reports).
links_monitors(G) ->
    P = rpc:call(G, girder, spawn_echo, []),
    Ref = monitor(process, P),
    Ref2 = monitor(process, P),
    true = Ref =/= Ref2,
    P ! {stop, twice},
    receive {'DOWN', Ref, process, P, twice} -> ok after 5000 -> exit(no_down1) end,
    receive {'DOWN', Ref2, process, P, twice} -> ok after 5000 -> exit(no_down2) end,
    %% a monitor by registered name: the DOWN names {echo, G}... only
    %% when it dies, so a spawned one checks the form with noproc
    NRef = monitor(process, {no_such_reg, G}),
    receive {'DOWN', NRef, process, {no_such_reg, G}, noproc} -> ok after 5000 -> exit(no_noproc) end,
    Self = self(),
    Q = spawn(fun() -> hold() end),
    _ = rpc:call(G, girder, watch, [Q, Self]),
    timer:sleep(200),
    Q ! {die, {otp, reason}},
    receive {watch_exit, Q, {otp, reason}} -> ok after 5000 -> exit(no_watch_exit) end,
    receive {watch_down, Q, {otp, reason}} -> ok after 5000 -> exit(no_watch_down) end,
    %% girder watching a pid that is already dead: noproc both ways
    _ = rpc:call(G, girder, watch, [Q, Self]),
    receive {watch_exit, Q, noproc} -> ok after 5000 -> exit(no_watch_noproc_exit) end,
    receive {watch_down, Q, noproc} -> ok after 5000 -> exit(no_watch_noproc_down) end,
    ok.

demonitor_unlink(G) ->
    P = rpc:call(G, girder, spawn_echo, []),
    Ref = monitor(process, P),
    P ! {stop, gone},
    timer:sleep(300),
    %% the DOWN is in our queue: demonitor with flush removes it
    true = demonitor(Ref, [flush]),
    receive {'DOWN', Ref, _, _, _} -> exit(down_after_flush) after 200 -> ok end,
    P2 = rpc:call(G, girder, spawn_echo, []),
    Ref2 = monitor(process, P2),
    true = demonitor(Ref2, [flush]),
    false = demonitor(Ref2, [info]),
    P2 ! {stop, quiet},
    receive {'DOWN', Ref2, _, _, _} -> exit(down_after_demonitor) after 300 -> ok end,
    process_flag(trap_exit, true),
    P3 = rpc:call(G, girder, spawn_echo, []),
    link(P3), unlink(P3), link(P3), unlink(P3),
    P3 ! {stop, unlinked},
    receive {'EXIT', P3, _} -> exit(exit_after_unlink) after 300 -> ok end,
    process_flag(trap_exit, false),
    ok.

%% erlang:disconnect_node: links and monitors across fire with
%% noconnection, monitor_node gets nodedown; the next send reconnects.
disconnect(G) ->
    process_flag(trap_exit, true),
    P = rpc:call(G, girder, spawn_echo, []),
    Ref = monitor(process, P),
    L = rpc:call(G, girder, spawn_echo, []),
    link(L),
    true = monitor_node(G, true),
    true = monitor_node(G, true),
    Self = self(),
    %% a girder process monitoring one of ours sees noconnection too
    Q = spawn(fun() -> hold() end),
    _ = rpc:call(G, girder, watch, [Q, Self]),
    timer:sleep(200),
    true = erlang:disconnect_node(G),
    receive {'DOWN', Ref, process, P, noconnection} -> ok after 5000 -> exit(no_down) end,
    receive {'EXIT', L, noconnection} -> ok after 5000 -> exit(no_exit) end,
    receive {nodedown, G} -> ok after 5000 -> exit(no_nodedown1) end,
    receive {nodedown, G} -> ok after 5000 -> exit(no_nodedown2) end,
    process_flag(trap_exit, false),
    pong = net_adm:ping(G),
    %% the watcher's reports went to us on the old connection: it saw
    %% noconnection, and the new connection serves
    wait_for(reconnected, true, fun() -> lists:member(node(), rpc:call(G, erlang, nodes, [])) end),
    true = monitor_node(G, true),
    true = monitor_node(G, false),
    Q ! stop,
    {echo, G} ! {self(), again},
    receive {echo_reply, again} -> ok after 5000 -> exit(no_echo_after_reconnect) end,
    receive {watch_exit, Q, noconnection} -> ok after 0 -> ok end,
    receive {watch_down, Q, noconnection} -> ok after 0 -> ok end,
    no_msg(200).

%% ---- global ----

gwhere(Node, Name) -> rpc:call(Node, global, whereis_name, [Name], 5000).

global_rows(G, O) ->
    ok = global:sync(),
    %% registered on girder (through rpc), seen here and on O
    N1 = list_to_atom("ct_g_" ++ os:getpid()),
    P1 = rpc:call(G, girder, spawn_echo, []),
    yes = rpc:call(G, global, register_name, [N1, P1]),
    wait_for({here, N1}, P1, fun() -> global:whereis_name(N1) end),
    wait_for({on_o, N1}, P1, fun() -> gwhere(O, N1) end),
    %% global:send from OTP reaches it
    P1 = global:send(N1, {self(), via_global}),
    receive {echo_reply, via_global} -> ok after 5000 -> exit(no_global_send) end,
    %% a clash: the name is taken, from either side
    Other = spawn(fun() -> hold() end),
    no = global:register_name(N1, Other),
    no = rpc:call(G, global, register_name, [N1, rpc:call(G, girder, spawn_echo, [])]),
    %% registered here, seen on girder; send from girder
    N2 = list_to_atom("ct_o_" ++ os:getpid()),
    yes = global:register_name(N2, self()),
    wait_for({on_g, N2}, self(), fun() -> gwhere(G, N2) end),
    true = lists:member(N2, rpc:call(G, global, registered_names, [])),
    _ = rpc:call(G, global, send, [N2, from_girder]),
    receive from_girder -> ok after 5000 -> exit(no_send_from_girder) end,
    %% unregister from here: gone on girder
    _ = global:unregister_name(N2),
    wait_for({g_unreg, N2}, undefined, fun() -> gwhere(G, N2) end),
    %% the owner dies: gone everywhere
    P1 ! {stop, bye},
    wait_for({here_dead, N1}, undefined, fun() -> global:whereis_name(N1) end),
    wait_for({g_dead, N1}, undefined, fun() -> gwhere(G, N1) end),
    wait_for({o_dead, N1}, undefined, fun() -> gwhere(O, N1) end),
    %% unregister on girder
    N3 = list_to_atom("ct_u_" ++ os:getpid()),
    yes = global:register_name(N3, Other),
    wait_for({g3, N3}, Other, fun() -> gwhere(G, N3) end),
    _ = rpc:call(G, global, unregister_name, [N3]),
    wait_for({here_unreg, N3}, undefined, fun() -> global:whereis_name(N3) end),
    %% a send to an unknown name from girder: badarg, as global:send/2
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(G, global, send, [N3, x]),
    exit(Other, kill),
    ok.

%% OTP accepts any term as a global name: so does girder, both ways.
global_terms(G, O) ->
    Names = [{ct_tuple, os:getpid()}, "ct string " ++ os:getpid(),
             <<"ct bin ", (list_to_binary(os:getpid()))/binary>>, {via, [1, 2], #{k => v}}],
    [begin
         P = rpc:call(G, girder, spawn_echo, []),
         yes = rpc:call(G, global, register_name, [Name, P]),
         wait_for({here, Name}, P, fun() -> global:whereis_name(Name) end),
         wait_for({on_o, Name}, P, fun() -> gwhere(O, Name) end),
         P = gwhere(G, Name),
         global:send(Name, {self(), Name}),
         receive {echo_reply, N} when N =:= Name -> ok after 5000 -> exit({no_send, Name}) end,
         no = global:register_name(Name, self()),
         P ! {stop, done},
         wait_for({gone, Name}, undefined, fun() -> gwhere(G, Name) end),
         wait_for({gone_here, Name}, undefined, fun() -> global:whereis_name(Name) end),
         %% registered here, seen on girder
         yes = global:register_name(Name, self()),
         wait_for({on_g, Name}, self(), fun() -> gwhere(G, Name) end),
         true = lists:member(Name, rpc:call(G, global, registered_names, [])),
         _ = rpc:call(G, global, send, [Name, {got, Name}]),
         receive {got, N2} when N2 =:= Name -> ok after 5000 -> exit({no_send_g, Name}) end,
         _ = global:unregister_name(Name),
         wait_for({g_unreg, Name}, undefined, fun() -> gwhere(G, Name) end)
     end || Name <- Names],
    ok.

%% ---- connections ----

%% A hidden OTP node: ping and rpc work; it is hidden on both sides.
hidden(G) ->
    {ok, Peer, H} = peer:start(#{name => peer:random_name(contract_hidden),
                                 args => ["-hidden", "-setcookie",
                                          atom_to_list(erlang:get_cookie())]}),
    try
        pong = erpc:call(H, net_adm, ping, [G]),
        G = erpc:call(H, rpc, call, [G, erlang, node, []]),
        false = lists:member(H, rpc:call(G, erlang, nodes, [])),
        true = lists:member(H, rpc:call(G, erlang, nodes, [hidden])),
        true = lists:member(H, rpc:call(G, erlang, nodes, [connected])),
        true = lists:member(G, erpc:call(H, erlang, nodes, [hidden])),
        error = erpc:call(H, gen_server, call, [{girder_kv, G}, {get, {hidden, nokey}}]),
        [] = rpc:call(G, erlang, nodes, [this]) -- [G],
        ok
    after peer:stop(Peer)
    end.

%% A node whose cookie for G is wrong: pang, and G keeps serving it and
%% everyone else once the cookie is right.
wrong_cookie(G) ->
    {ok, Peer, W} = peer:start(#{name => peer:random_name(contract_wrong),
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie())]}),
    try
        true = erpc:call(W, erlang, set_cookie, [G, wrong_cookie_for_contract]),
        pang = erpc:call(W, net_adm, ping, [G]),
        false = lists:member(W, rpc:call(G, erlang, nodes, [connected])),
        G = rpc:call(G, erlang, node, []),
        true = erpc:call(W, erlang, set_cookie, [G, erlang:get_cookie()]),
        pong = erpc:call(W, net_adm, ping, [G]),
        ok
    after peer:stop(Peer)
    end.

%% ---- raw TCP at the distribution port ----

-define(FLAGS, (16#4 bor 16#10 bor 16#80 bor 16#100 bor 16#200 bor 16#400 bor 16#800
                bor 16#10000 bor 16#20000 bor 16#40000 bor 16#1000000 bor 16#2000000
                bor 16#400000000)).

dist_port(G) ->
    [Name, Host] = string:split(atom_to_list(G), "@"),
    {port, Port, _} = erl_epmd:port_please(Name, Host),
    Port.

raw_connect(G) ->
    {ok, S} = gen_tcp:connect("localhost", dist_port(G), [binary, {active, false}]),
    S.

%% The socket is closed by the peer within 10 s (reads until then).
closed(S) ->
    case gen_tcp:recv(S, 0, 10000) of
        {error, closed} -> ok;
        {ok, _} -> closed(S);
        Other -> exit({not_closed, Other})
    end.

%% send_name (v6) for RawName, then the status and the challenge.
raw_name(S, RawName) ->
    N = list_to_binary(RawName),
    Msg = <<$N, ?FLAGS:64, 1:32, (byte_size(N)):16, N/binary>>,
    ok = gen_tcp:send(S, <<(byte_size(Msg)):16, Msg/binary>>),
    {ok, <<L:16>>} = gen_tcp:recv(S, 2, 5000),
    {ok, <<"sok">>} = gen_tcp:recv(S, L, 5000),
    {ok, <<L2:16>>} = gen_tcp:recv(S, 2, 5000),
    {ok, <<$N, _Flags:64, Challenge:32, _Cr:32, NL:16, _:NL/binary>>} = gen_tcp:recv(S, L2, 5000),
    Challenge.

digest(Challenge) ->
    erlang:md5([atom_to_list(erlang:get_cookie()), integer_to_list(Challenge)]).

raw_tcp(G) ->
    [_, Host] = string:split(atom_to_list(G), "@"),
    %% an idle connection that never says anything stays beside the others
    Idle = raw_connect(G),
    %% garbage instead of a handshake
    [begin S = raw_connect(G), ok = gen_tcp:send(S, Bytes), closed(S) end
     || Bytes <- [<<"GET / HTTP/1.0\r\n\r\n">>, <<0, 0>>, <<255, 255, 1, 2, 3>>,
                  <<0, 5, $N, 1, 2, 3, 4>>, <<0, 3, $n, 0, 5>>, crypto:strong_rand_bytes(4000)]],
    %% a bad digest
    Raw1 = "contract_raw1_" ++ os:getpid() ++ "@" ++ Host,
    S1 = raw_connect(G),
    C1 = raw_name(S1, Raw1),
    <<D1:128>> = digest(C1),
    ok = gen_tcp:send(S1, <<0, 21, $r, 12345:32, (D1 bxor 1):128>>),
    closed(S1),
    false = lists:member(list_to_atom(Raw1), rpc:call(G, erlang, nodes, [connected])),
    %% a replayed digest (right for the first challenge, not this one)
    S2 = raw_connect(G),
    C2 = raw_name(S2, Raw1),
    true = C2 =/= C1,
    ok = gen_tcp:send(S2, <<0, 21, $r, 12345:32, (digest(C1))/binary>>),
    closed(S2),
    %% the right digest, then garbage in the connected phase
    Raw3 = "contract_raw3_" ++ os:getpid() ++ "@" ++ Host,
    S3 = raw_connect(G),
    C3 = raw_name(S3, Raw3),
    ok = gen_tcp:send(S3, <<0, 21, $r, 12345:32, (digest(C3))/binary>>),
    {ok, <<0, 17, $a, _:16/binary>>} = gen_tcp:recv(S3, 19, 5000),
    ok = gen_tcp:send(S3, <<0, 0, 0, 5, 131, 68, 255, 1, 2>>),
    closed(S3),
    %% a frame claiming 4 GB
    S4 = raw_connect(G),
    C4 = raw_name(S4, Raw3),
    ok = gen_tcp:send(S4, <<0, 21, $r, 777:32, (digest(C4))/binary>>),
    {ok, <<0, 17, $a, _:16/binary>>} = gen_tcp:recv(S4, 19, 5000),
    ok = gen_tcp:send(S4, <<255, 255, 255, 255, 131, 68>>),
    closed(S4),
    %% everyone else unharmed: this connection, a new one, the idle one
    %% is still open (closed only after the setup time)
    {echo, G} ! {self(), unharmed},
    receive {echo_reply, unharmed} -> ok after 5000 -> exit(connection_harmed) end,
    {ok, Peer, P} = peer:start(#{name => peer:random_name(contract_after_raw),
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie())]}),
    try pong = erpc:call(P, net_adm, ping, [G])
    after peer:stop(Peer)
    end,
    gen_tcp:close(Idle),
    ok.

%% ---- volume ----

big(G) ->
    Big = binary:copy(list_to_binary(lists:seq(0, 255)), 64 * 1024 * 1024 div 256),
    {echo, G} ! {self(), Big},
    receive {echo_reply, B} -> true = B =:= Big after 120000 -> exit(no_64mb_echo) end,
    %% and through rpc
    true = rpc:call(G, girder, echo, [Big], 120000) =:= Big,
    ok.

ordered(G, N) ->
    Self = self(),
    [{echo, G} ! {Self, I} || I <- lists:seq(1, N)],
    recv_in_order(1, N).

recv_in_order(I, N) when I > N -> ok;
recv_in_order(I, N) ->
    receive
        {echo_reply, I} -> recv_in_order(I + 1, N);
        {echo_reply, J} -> exit({out_of_order, expected, I, got, J})
    after 20000 -> exit({missing, I})
    end.

%% ---- kill -9 of a girder node ----

kill9(V, VOs) ->
    pong = net_adm:ping(V),
    process_flag(trap_exit, true),
    P = rpc:call(V, girder, spawn_echo, []),
    Ref = monitor(process, P),
    L = rpc:call(V, girder, spawn_echo, []),
    link(L),
    true = monitor_node(V, true),
    ok = net_kernel:monitor_nodes(true, [{node_type, visible}, nodedown_reason]),
    [] = os:cmd("kill -9 " ++ VOs),
    receive {'DOWN', Ref, process, P, noconnection} -> ok after 5000 -> exit(no_down) end,
    receive {'EXIT', L, noconnection} -> ok after 5000 -> exit(no_exit) end,
    receive {nodedown, V} -> ok after 5000 -> exit(no_nodedown) end,
    receive {nodedown, V, _} -> ok after 5000 -> exit(no_monitor_nodes_down) end,
    ok = net_kernel:monitor_nodes(false, [{node_type, visible}, nodedown_reason]),
    process_flag(trap_exit, false),
    {badrpc, nodedown} = rpc:call(V, erlang, node, []),
    {error, {erpc, noconnection}} = erpc_outcome(fun() -> erpc:call(V, erlang, node, []) end),
    pang = net_adm:ping(V),
    ok.
