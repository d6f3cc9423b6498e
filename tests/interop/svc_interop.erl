%% svc_interop: the services of a running `girder node` seen from a real
%% OTP node (tests/interop/svc_interop.sh starts both): girder_kv under
%% 1000 concurrent callers and gen_server:call's error shapes, girder
%% calling into OTP (REG_SEND, gen_server:call, rpc:call), node monitoring.
%% main([GirderNode]) halts 0 when every check passed, 1 otherwise.
-module(svc_interop).
-behaviour(gen_server).
-export([main/1, init/1, handle_call/3, handle_cast/2]).

-define(CALLERS, 1000).
-define(ROUNDS, 20).

main([GStr, KvV2]) ->
    G = list_to_atom(GStr),
    pong = net_adm:ping(G),
    Checks = [{kv_basic, fun() -> kv_basic(G) end},
              {kv_any_terms, fun() -> kv_any_terms(G) end},
              {kv_1000_callers, fun() -> kv_concurrent(G) end},
              {kv_delete_compaction, fun() -> kv_compaction(G) end},
              {call_error_shapes, fun() -> call_errors(G) end},
              {girder_reg_send, fun() -> reg_send(G) end},
              {girder_calls_gen_server, fun() -> calls_gen_server(G) end},
              {girder_rpc_into_otp, fun() -> rpc_into_otp(G) end},
              {girder_first_call_fresh_otp, fun() -> first_call_fresh(G) end},
              {girder_monitor_nodes, fun() -> monitor_nodes(G) end},
              {spawn_registered_bodies, fun() -> spawn_bodies(G) end},
              {girder_unlinks, fun() -> girder_unlinks(G) end},
              {girder_demonitor_no_late_down, fun() -> girder_demonitors(G) end},
              {kv_hot_reload_under_load, fun() -> kv_reload(G, KvV2) end}],
    interop_check:run_all(svc_interop, Checks).

kv(G, Req) -> gen_server:call({girder_kv, G}, Req, 10000).

kv_basic(G) ->
    error = kv(G, {get, nokey}),
    ok = kv(G, {put, k1, v1}),
    {ok, v1} = kv(G, {get, k1}),
    ok = kv(G, {put, k1, v2}),
    {ok, v2} = kv(G, {get, k1}),
    ok = kv(G, {delete, k1}),
    error = kv(G, {get, k1}),
    ok = kv(G, {delete, k1}),
    ok = kv(G, {put, k1, v3}),
    {ok, v3} = kv(G, {get, k1}),
    %% the tombstone's own atom as a value stays a value
    ok = kv(G, {put, k2, deleted}),
    {ok, deleted} = kv(G, {get, k2}),
    {error, {badrequest, {frobnicate, 1}}} = kv(G, {frobnicate, 1}),
    ok.

%% Keys are any terms, matched exactly (=:=): 1 and 1.0 are two keys.
kv_any_terms(G) ->
    Keys = [1, 1.0, -1, 1 bsl 100, <<"bin">>, <<0:800>>, "str", {t, [1, 2]}, #{a => 1},
            #{1 => 2, 3 => 4}, self(), make_ref(), [], 'λ', {}],
    [ok = kv(G, {put, K, {value_of, K}}) || K <- Keys],
    [{ok, {value_of, K}} = kv(G, {get, K}) || K <- Keys],
    ok = kv(G, {delete, 1}),
    error = kv(G, {get, 1}),
    {ok, {value_of, 1.0}} = kv(G, {get, 1.0}),
    [ok = kv(G, {delete, K}) || K <- Keys],
    [error = kv(G, {get, K}) || K <- Keys],
    ok.

%% 1000 OTP processes at once, each with its own keys (so every answer is
%% known), putting, reading back, overwriting, deleting.
kv_concurrent(G) ->
    Self = self(),
    Pids = [spawn(fun() -> Self ! {done, self(), worker(G, I)} end)
            || I <- lists:seq(1, ?CALLERS)],
    Bad = [R || P <- Pids, R <- [receive {done, P, X} -> X after 120000 -> timeout end],
                R =/= ok],
    [] = Bad,
    ok.

worker(G, I) ->
    try
        [begin
             K = {I, R},
             ok = kv(G, {put, K, {I, R, first}}),
             {ok, {I, R, first}} = kv(G, {get, K}),
             ok = kv(G, {put, K, [I, R]}),
             {ok, [I, R]} = kv(G, {get, K}),
             case R rem 2 of
                 0 -> ok = kv(G, {delete, K}), error = kv(G, {get, K});
                 1 -> ok
             end
         end || R <- lists:seq(1, ?ROUNDS)],
        %% the odd rounds are still there
        [{ok, [I, R]} = kv(G, {get, {I, R}}) || R <- lists:seq(1, ?ROUNDS, 2)],
        [ok = kv(G, {delete, {I, R}}) || R <- lists:seq(1, ?ROUNDS, 2)],
        ok
    catch C:E -> {I, C, E}
    end.

%% Many deletes (compaction of tombstones) leave exactly the live keys.
kv_compaction(G) ->
    N = 2000,
    [ok = kv(G, {put, {c, I}, I}) || I <- lists:seq(1, N)],
    [ok = kv(G, {delete, {c, I}}) || I <- lists:seq(1, N), I rem 10 =/= 0],
    [case kv(G, {get, {c, I}}) of
         {ok, I} when I rem 10 =:= 0 -> ok;
         error when I rem 10 =/= 0 -> ok;
         Other -> exit({compaction, I, Other})
     end || I <- lists:seq(1, N)],
    [ok = kv(G, {put, {c, I}, again}) || I <- lists:seq(1, N, 7)],
    [{ok, again} = kv(G, {get, {c, I}}) || I <- lists:seq(1, N, 7)],
    ok.

%% gen_server:call's exits against girder are OTP's own shapes.
call_errors(G) ->
    Req = {get, x},
    {noproc, {gen_server, call, [{no_such_server, G}, Req, 1000]}} =
        catch_exit(fun() -> gen_server:call({no_such_server, G}, Req, 1000) end),
    {timeout, {gen_server, call, [{girder_kv, G}, Req, 0]}} =
        catch_exit(fun() -> gen_server:call({girder_kv, G}, Req, 0) end),
    Bad = 'nonode_svc@nohost',
    {{nodedown, Bad}, {gen_server, call, [{girder_kv, Bad}, Req, 1000]}} =
        catch_exit(fun() -> gen_server:call({girder_kv, Bad}, Req, 1000) end),
    %% a late reply after the timeout is not left in the mailbox (alias)
    receive Stray -> exit({stray, Stray}) after 500 -> ok end.

catch_exit(F) ->
    try F() of V -> exit({no_exit, V})
    catch exit:R -> R
    end.

%% ---- girder -> OTP ----

%% girder sends to a name registered here: REG_SEND from girder.
reg_send(G) ->
    Name = list_to_atom("svc_reg_" ++ os:getpid()),
    register(Name, self()),
    Msg = {hello, [1, 2, 3], <<"from girder">>, self()},
    ok = rpc:call(G, girder, send, [{Name, node()}, Msg]),
    receive Msg -> ok after 5000 -> exit(no_reg_send) end,
    unregister(Name).

%% A gen_server of ours, called by girder (girder_call to {Name, Node}).
init(S) -> {ok, S}.
handle_call({add, A, B}, _From, S) -> {reply, {sum, A + B}, S};
handle_call({sleep, Ms}, _From, S) -> timer:sleep(Ms), {reply, slept, S};
handle_call(crash, _From, _S) -> exit(crashed_on_purpose);
handle_call(whoami, {Pid, _}, S) -> {reply, {caller_node, node(Pid)}, S};
handle_call(tag, {_, Tag}, S) -> {reply, Tag, S}.
handle_cast(_, S) -> {noreply, S}.

calls_gen_server(G) ->
    Name = list_to_atom("svc_gs_" ++ os:getpid()),
    {ok, S} = gen_server:start({local, Name}, ?MODULE, [], []),
    {ok, {sum, 5}} = call_out(G, {Name, node()}, {add, 2, 3}, 5000),
    {ok, {caller_node, G}} = call_out(G, {Name, node()}, whoami, 5000),
    %% girder's tag is OTP's [alias | Alias]: the reply came by ALIAS_SEND
    {ok, [alias | Alias]} = call_out(G, {Name, node()}, tag, 5000),
    true = is_reference(Alias) andalso node(Alias) =:= G,
    {ok, {sum, 7}} = call_out(G, S, {add, 3, 4}, 5000),
    {error, timeout} = call_out(G, {Name, node()}, {sleep, 1000}, 100),
    {error, noproc} = call_out(G, {no_such_server_here, node()}, x, 5000),
    {error, {exit, crashed_on_purpose}} = call_out(G, {Name, node()}, crash, 5000),
    ok.

call_out(G, Server, Req, Timeout) ->
    P = rpc:call(G, girder, call_out, [self(), Server, Req, Timeout]),
    true = is_pid(P),
    receive {girder_out, R} -> R after 10000 -> exit({no_call_out_result, Req}) end.

rpc_out(G, M, F, A, Timeout) ->
    P = rpc:call(G, girder, rpc_out, [self(), node(), M, F, A, Timeout]),
    true = is_pid(P),
    receive {girder_out, R} -> R after 10000 -> exit({no_rpc_out_result, M, F}) end.

rpc_into_otp(G) ->
    Me = node(),
    Me = rpc_out(G, erlang, node, [], 5000),
    [3, 2, 1] = rpc_out(G, lists, reverse, [[1, 2, 3]], 5000),
    {badrpc, {'EXIT', {undef, [{nomod, nofun, [], _} | _]}}} =
        rpc_out(G, nomod, nofun, [], 5000),
    {badrpc, {'EXIT', {badarith, _}}} = rpc_out(G, erlang, '/', [1, 0], 5000),
    {badrpc, timeout} = rpc_out(G, timer, sleep, [2000], 200),
    %% to a node that does not exist
    P = rpc:call(G, girder, rpc_out, [self(), 'nonode_svc@nohost', erlang, node, [], 5000]),
    true = is_pid(P),
    {badrpc, nodedown} = receive {girder_out, R} -> R after 10000 -> exit(no_nodedown) end,
    ok.

%% girder's very first call to an OTP node it has no connection to yet
%% (the peers mesh with nobody): the call's monitor and request wait with
%% the connection being set up and go out in that order; an rpc:call gets
%% its answer, a gen_server:call to a name nobody holds gets noproc (the
%% monitor's answer: it used to be lost while connecting).
first_call_fresh(G) ->
    Fresh = fun(Prefix) ->
                    {ok, Peer, B} = peer:start(#{name => peer:random_name(Prefix),
                                                 args => ["-setcookie",
                                                          atom_to_list(erlang:get_cookie()),
                                                          "-connect_all", "false"]}),
                    {Peer, B}
            end,
    {P1, B1} = Fresh(first_rpc),
    try
        P = rpc:call(G, girder, rpc_out, [self(), B1, erlang, node, [], 5000]),
        true = is_pid(P),
        B1 = receive {girder_out, R} -> R after 10000 -> exit(no_first_rpc_result) end
    after peer:stop(P1)
    end,
    {P2, B2} = Fresh(first_noproc),
    try
        {error, noproc} = call_out(G, {no_such_server_here, B2}, x, 5000)
    after peer:stop(P2)
    end,
    ok.

%% ---- node monitoring from girder processes ----

%% monitor_node on a node girder cannot reach: nodedown at once; on a node
%% it connects to: nodedown when that node stops; monitor_nodes: nodeup
%% then nodedown for a node that comes and goes.
monitor_nodes(G) ->
    Self = self(),
    _ = rpc:call(G, girder, watch_nodes, [Self, 'nonode_svc@nohost']),
    receive {watch_node, {nodedown, 'nonode_svc@nohost'}} -> ok
    after 10000 -> exit(no_nodedown_unreachable)
    end,
    All = rpc:call(G, girder, watch_nodes, [Self, all]),
    true = is_pid(All),
    timer:sleep(100),
    {ok, Peer, B} = peer:start(#{name => peer:random_name(),
                                 args => ["-setcookie", atom_to_list(erlang:get_cookie())]}),
    One = rpc:call(G, girder, watch_nodes, [Self, B]), % girder connects to B
    true = is_pid(One),
    receive {watch_node, {nodeup, B}} -> ok after 10000 -> exit(no_nodeup) end,
    true = lists:member(B, rpc:call(G, erlang, nodes, [])),
    peer:stop(Peer),
    %% two reports: the monitor_node one and the monitor_nodes one
    receive {watch_node, {nodedown, B}} -> ok after 10000 -> exit(no_nodedown_1) end,
    receive {watch_node, {nodedown, B}} -> ok after 10000 -> exit(no_nodedown_2) end,
    receive {watch_node, Extra} -> exit({extra, Extra}) after 300 -> ok end,
    ok.

%% spawn/4, spawn_monitor/4, spawn_link/4 of a C process body girder
%% registers (girder:echo_loop/0); anything else answers notsup.
spawn_bodies(G) ->
    P = spawn(G, girder, echo_loop, []),
    true = is_pid(P) andalso node(P) =:= G,
    P ! {self(), hi},
    receive {echo_reply, hi} -> ok after 5000 -> exit(no_echo_from_spawned) end,
    {P2, Ref} = spawn_monitor(G, girder, echo_loop, []),
    P2 ! {stop, bye},
    receive {'DOWN', Ref, process, P2, bye} -> ok after 5000 -> exit(no_spawn_monitor_down) end,
    Old = process_flag(trap_exit, true),
    P3 = spawn_link(G, girder, echo_loop, []),
    P3 ! {stop, linked_bye},
    receive {'EXIT', P3, linked_bye} -> ok after 5000 -> exit(no_spawn_link_exit) end,
    process_flag(trap_exit, Old),
    ReqId = erlang:spawn_request(G, nomod, nofun, []),
    receive {spawn_reply, ReqId, error, notsup} -> ok
    after 5000 -> exit(no_notsup)
    end,
    P ! {stop, normal},
    ok.

%% A girder process unlinks from an OTP one (UNLINK_ID, then the ack):
%% the OTP process's exit no longer reaches it, the monitor still does;
%% the OTP side's link is gone too.
girder_unlinks(G) ->
    Self = self(),
    E = spawn(fun() -> process_flag(trap_exit, true), receive {die, R} -> exit(R) end end),
    W = rpc:call(G, girder, watch, [E, Self]),
    timer:sleep(200),
    {links, [W]} = process_info(E, links),
    W ! unlink,
    receive {watch_unlinked, E} -> ok after 5000 -> exit(no_unlink) end,
    timer:sleep(200),
    {links, []} = process_info(E, links),
    E ! {die, after_unlink},
    receive {watch_down, E, after_unlink} -> ok after 5000 -> exit(no_down) end,
    receive {watch_exit, E, _} = X -> exit({exit_after_unlink, X}) after 500 -> ok end,
    ok.

%% A girder process demonitors an OTP process just as it dies, 100 times,
%% with flush (as demonitor(Ref, [flush])): a DOWN may come before the
%% demonitor, never after it.  (Without flush OTP too may deliver a DOWN
%% that was already in the queue when demonitor ran.)  Ten races at a
%% time, each in a process of its own: each waits 300 ms for a late DOWN,
%% and one after another they took 30 s.
girder_demonitors(G) ->
    Self = self(),
    Batch = fun(B) ->
                    Ps = [spawn(fun() ->
                                        Self ! {raced, self(), catch demonitor_race(G, I)}
                                end) || I <- lists:seq(B * 10 + 1, B * 10 + 10)],
                    [receive {raced, P, R} -> R after 20000 -> {race_timeout, P} end
                     || P <- Ps]
            end,
    Results = lists:append([Batch(B) || B <- lists:seq(0, 9)]),
    [] = [R || R <- Results, R =/= true],
    ok.

demonitor_race(G, I) ->
    Self = self(),
    E = spawn(fun() -> receive {die, R} -> exit(R) end end),
    W = rpc:call(G, girder, watch, [E, Self]),
    timer:sleep(5),
    E ! {die, {race, I}},
    W ! demonitor,
    Seq = race_reports(E, []),
    case lists:dropwhile(fun(X) -> X =/= demonitored end, Seq) of
        [demonitored | After] ->
            case lists:member(down, After) of
                false -> ok;
                true -> exit({down_after_demonitor, I, Seq})
            end;
        [] -> exit({no_demonitor_report, I, Seq})
    end,
    exit(W, kill).

race_reports(E, Acc) ->
    receive
        {watch_demonitored, E} -> race_reports(E, [demonitored | Acc]);
        {watch_down, E, _} -> race_reports(E, [down | Acc]);
        {watch_exit, E, _} -> race_reports(E, [exit | Acc])
    after 300 -> lists:reverse(Acc)
    end.

%% girder_kv v1 -> v2 (a shared object, state carried over as msgpack)
%% while 50 callers keep putting and reading back: every answer right,
%% nothing lost, the version changes.
kv_reload(G, KvV2) ->
    1 = kv(G, version),
    [ok = kv(G, {put, {before, I}, I}) || I <- lists:seq(1, 500)],
    Self = self(),
    Stop = make_ref(),
    Ws = [spawn(fun() -> Self ! {loaded, self(), load(G, I, 0, Stop)} end) || I <- lists:seq(1, 50)],
    timer:sleep(300),
    {ok, 2} = rpc:call(G, girder, reload, [girder_kv, KvV2]),
    timer:sleep(300),
    [W ! Stop || W <- Ws],
    Counts = [receive {loaded, W, R} -> R after 30000 -> exit(worker_stuck) end || W <- Ws],
    [] = [C || C <- Counts, not is_integer(C)],
    2 = kv(G, version),
    [{ok, I} = kv(G, {get, {before, I}}) || I <- lists:seq(1, 500)],
    {error, {badrequest, nope}} = kv(G, nope),
    %% killed after the reload, it comes back (empty) with the new code
    Old = rpc:call(G, erlang, whereis, [girder_kv]),
    exit(Old, kill),
    ok = interop_check:wait_for(girder_kv_back, true,
                                fun() ->
                                        P = rpc:call(G, erlang, whereis, [girder_kv]),
                                        is_pid(P) andalso P =/= Old
                                end),
    2 = kv(G, version),
    error = kv(G, {get, {before, 1}}),
    {rpc_calls_during_reload, lists:sum(Counts)}.

load(G, I, N, Stop) ->
    receive Stop -> N
    after 0 ->
        K = {load, I, N},
        try
            ok = kv(G, {put, K, N}),
            {ok, N} = kv(G, {get, K}),
            ok = kv(G, {delete, K}),
            error = kv(G, {get, K}),
            load(G, I, N + 1, Stop)
        catch C:E -> {I, N, C, E}
        end
    end.
