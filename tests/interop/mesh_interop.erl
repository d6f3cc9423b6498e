%% mesh_interop: three `girder node` OS processes and a real OTP node
%% (tests/interop/mesh_interop.sh): a full mesh among the girder nodes,
%% monitors and links across girder nodes, one node killed with kill -9
%% (noconnection DOWN/EXIT at the others, nodedown at OTP's monitor_node),
%% restarted with a new creation (reconnects, old pids never reach the new
%% node's processes).  main([Girder, Work, Cookie, Port]) starts the nodes
%% itself (their OS pids go to Work/pids for the script's cleanup) and halts
%% 0 when every check passed.
-module(mesh_interop).
-export([main/1]).

main([Girder, Work, Cookie, _Port]) ->
    Host = lists:last(string:split(atom_to_list(node()), "@")),
    Tag = os:getpid(),
    Names = ["gdm" ++ N ++ "_" ++ Tag || N <- ["a", "b", "c"]],
    Nodes = [list_to_atom(N ++ "@" ++ Host) || N <- Names],
    Env = #{girder => Girder, work => Work, cookie => Cookie},
    OsPids = [start_node(Env, N) || N <- Names],
    [wait_up(N, 100) || N <- Nodes],
    [A, B, C] = Nodes,
    [_, OsB, _] = OsPids,
    Checks = [{full_mesh, fun() -> mesh(Nodes) end},
              {kv_per_node, fun() -> kv_per_node(Nodes) end},
              {global_registry, fun() -> global(A, B, C) end},
              {kill9_noconnection, fun() -> kill9(A, B, C, OsB) end},
              {restart_new_creation, fun() -> restart(Env, A, B, C, hd(tl(Names))) end}],
    interop_check:run_all(mesh_interop, Checks).

%% Starts `girder node -sname Name` in the background; returns its OS pid.
start_node(#{girder := Girder, work := Work, cookie := Cookie}, Name) ->
    Log = filename:join(Work, Name ++ ".log"),
    Cmd = io_lib:format("~s node -sname ~s -setcookie ~s >>~s 2>&1 & echo $!",
                        [Girder, Name, Cookie, Log]),
    OsPid = string:trim(os:cmd(lists:flatten(Cmd))),
    ok = file:write_file(filename:join(Work, "pids"), [OsPid, "\n"], [append]),
    OsPid.

wait_up(N, 0) -> exit({not_up, N});
wait_up(N, I) ->
    case net_adm:ping(N) of
        pong -> ok;
        pang -> timer:sleep(100), wait_up(N, I - 1)
    end.

%% girder node X makes a call into Y (connecting if needed).
rpc_from(X, Y, M, F, A) ->
    P = rpc:call(X, girder, rpc_out, [self(), Y, M, F, A, 5000]),
    true = is_pid(P),
    receive {girder_out, R} -> R after 10000 -> exit({no_rpc_out, X, Y}) end.

girder_nodes(X) -> lists:sort([N || N <- rpc:call(X, erlang, nodes, []), N =/= node()]).

%% Every girder node reaches every other: after the pings each pair is
%% connected, and each sees the other two in nodes().
mesh(Nodes) ->
    [Y = rpc_from(X, Y, erlang, node, []) || X <- Nodes, Y <- Nodes, X =/= Y],
    [begin
         Want = lists:sort(Nodes -- [X]),
         Want = girder_nodes(X)
     end || X <- Nodes],
    ok.

%% Each node has its own girder_kv; one node calls another's.
kv_per_node([A, B, _]) ->
    ok = gen_server:call({girder_kv, A}, {put, where, A}),
    ok = gen_server:call({girder_kv, B}, {put, where, B}),
    {ok, A} = gen_server:call({girder_kv, A}, {get, where}),
    {ok, B} = gen_server:call({girder_kv, B}, {get, where}),
    P = rpc:call(A, girder, call_out, [self(), {girder_kv, B}, {get, where}, 5000]),
    true = is_pid(P),
    {ok, {ok, B}} = receive {girder_out, R} -> R after 10000 -> exit(no_call_out) end,
    ok.

%% Processes on A and C watch (link + monitor) a process on B, a process
%% on B links to one on A; OTP monitors node B.  kill -9 of B: the
%% watchers get noconnection for both, the process on A linked from B
%% dies with noconnection, OTP gets nodedown.
kill9(A, B, C, OsB) ->
    Self = self(),
    PB = rpc:call(B, girder, spawn_echo, []),
    true = is_pid(PB) andalso node(PB) =:= B,
    WA = rpc:call(A, girder, watch, [PB, Self]),
    WC = rpc:call(C, girder, watch, [PB, Self]),
    true = is_pid(WA) andalso is_pid(WC),
    PA = rpc:call(A, girder, spawn_echo, []),
    MonPA = monitor(process, PA),
    WB = rpc:call(B, girder, watch, [PA, Self]),   % links B's watcher to PA
    true = is_pid(WB),
    %% a monitor across girder nodes works before the kill, too
    PB2 = rpc:call(B, girder, spawn_echo, []),
    _ = rpc:call(C, girder, watch, [PB2, Self]),
    timer:sleep(300),
    PB2 ! {stop, before_kill},
    receive {watch_down, PB2, before_kill} -> ok after 5000 -> exit(no_cross_down) end,
    receive {watch_exit, PB2, before_kill} -> ok after 5000 -> exit(no_cross_exit) end,
    true = erlang:monitor_node(B, true),
    os:cmd("kill -9 " ++ OsB),
    receive {nodedown, B} -> ok after 10000 -> exit(otp_no_nodedown) end,
    Got = collect(4, []),
    Want = lists:sort([{watch_down, PB, noconnection}, {watch_exit, PB, noconnection},
                       {watch_down, PB, noconnection}, {watch_exit, PB, noconnection}]),
    case lists:sort(Got) of
        Want -> ok;
        _ -> exit({watch_reports, Got})
    end,
    receive {'DOWN', MonPA, process, PA, noconnection} -> ok
    after 10000 -> exit(linked_from_dead_node_not_killed)
    end,
    false = lists:member(B, girder_nodes(A)),
    false = lists:member(B, girder_nodes(C)),
    %% the global names B's processes held are gone on A and C
    [resolves(X, gname_b, undefined) || X <- [A, C]],
    put(old_pb, PB),
    ok.

collect(0, Acc) -> Acc;
collect(N, Acc) ->
    receive {watch_down, _, _} = M -> collect(N - 1, [M | Acc]);
            {watch_exit, _, _} = M -> collect(N - 1, [M | Acc])
    after 10000 -> Acc
    end.

%% B again, same name: a new creation.  A and C reconnect; B's old pid
%% stays dead even where the new node has a process in the same slot.
restart(Env, A, B, C, NameB) ->
    OldPB = get(old_pb),
    _ = start_node(Env, NameB),
    wait_up(B, 100),
    B = rpc_from(A, B, erlang, node, []),
    B = rpc_from(C, B, erlang, node, []),
    true = lists:member(B, girder_nodes(A)),
    %% spawn on the new node until a process takes the old one's slot
    %% (same number and serial, another creation): the case to get right
    NewPB = same_slot(B, OldPB, 200),
    true = is_pid(NewPB) andalso node(NewPB) =:= B,
    true = NewPB =/= OldPB,
    io:format("     new pid ~p, old ~p: same slot, new creation~n", [NewPB, OldPB]),
    %% a girder node sends to the old pid: nothing may answer
    ok = rpc:call(A, girder, send, [OldPB, {self(), to_old}]),
    NewPB ! {self(), to_new},
    receive {echo_reply, to_new} -> ok after 5000 -> exit(new_pid_silent) end,
    receive {echo_reply, to_old} -> exit(old_pid_aliased_new) after 500 -> ok end,
    %% monitors of the old pid from a girder node: noproc, not the new one
    _ = rpc:call(A, girder, watch, [OldPB, self()]),
    receive {watch_down, OldPB, R} when R =:= noproc; R =:= noconnection -> ok
    after 5000 -> exit(old_pid_monitor)
    end,
    NewPB ! {stop, bye},
    %% the new B learns the global names held on A (global's exchange)
    resolves(B, gname_keep, get(keep_pid)),
    ok.

slot(Pid) -> B = term_to_binary(Pid), binary:part(B, 0, byte_size(B) - 4).

pid_id(Pid) ->
    B = term_to_binary(Pid),
    <<Id:32, _Serial:32, _Creation:32>> = binary:part(B, byte_size(B) - 12, 12),
    Id.

%% Each rpc:call runs in a process of its own (erpc), so spawn_echo takes
%% every other number: an extra call shifts the parity when needed.
same_slot(_, OldPB, 0) -> exit({no_process_in_slot_of, OldPB});
same_slot(B, OldPB, N) ->
    P = rpc:call(B, girder, spawn_echo, []),
    case {slot(P) =:= slot(OldPB), pid_id(P) > pid_id(OldPB)} of
        {true, _} -> P;
        {false, true} -> exit({slot_passed, P, OldPB});
        {false, false} ->
            case (pid_id(OldPB) - pid_id(P)) rem 2 of
                1 -> B = rpc:call(B, erlang, node, []);
                0 -> ok
            end,
            same_slot(B, OldPB, N - 1)
    end.

%% ---- the global registry among girder nodes ----

%% Waits until Name resolves to Want on node X.
resolves(X, Name, Want) -> resolves(X, Name, Want, 50).
resolves(X, Name, Want, 0) ->
    exit({global_name, X, Name, rpc:call(X, girder, global_whereis, [Name]), want, Want});
resolves(X, Name, Want, N) ->
    case rpc:call(X, girder, global_whereis, [Name]) of
        Want -> ok;
        _ -> timer:sleep(100), resolves(X, Name, Want, N - 1)
    end.

global(A, B, C) ->
    All = [A, B, C],
    PA = rpc:call(A, girder, spawn_echo, []),
    yes = rpc:call(A, girder, global_register, [gname1, PA]),
    [resolves(X, gname1, PA) || X <- All],
    %% taken everywhere
    PB = rpc:call(B, girder, spawn_echo, []),
    no = rpc:call(B, girder, global_register, [gname1, PB]),
    no = rpc:call(C, girder, global_register, [gname1, PB]),
    %% a send to the name from any node reaches the holder
    PA = rpc:call(C, girder, global_send, [gname1, {self(), via_global}]),
    receive {echo_reply, via_global} -> ok after 5000 -> exit(no_global_send) end,
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(B, girder, global_send, [no_such_gname, x]),
    %% unregister: gone everywhere
    ok = rpc:call(B, girder, global_unregister, [gname1]),
    [resolves(X, gname1, undefined) || X <- All],
    %% a holder that dies takes its name with it
    PC = rpc:call(C, girder, spawn_echo, []),
    yes = rpc:call(C, girder, global_register, [gname_c, PC]),
    [resolves(X, gname_c, PC) || X <- All],
    PC ! {stop, bye},
    [resolves(X, gname_c, undefined) || X <- All],
    %% a name held by B's process (for the kill) and one by A's (for the
    %% restarted B to learn)
    yes = rpc:call(B, girder, global_register, [gname_b, PB]),
    [resolves(X, gname_b, PB) || X <- All],
    yes = rpc:call(C, girder, global_register, [gname_keep, PA]),
    [resolves(X, gname_keep, PA) || X <- All],
    put(keep_pid, PA),
    %% the same name registered on two nodes at once: all agree on one
    P1 = rpc:call(A, girder, spawn_echo, []),
    P2 = rpc:call(C, girder, spawn_echo, []),
    Self = self(),
    [spawn(fun() -> Self ! {raced, X, rpc:call(X, girder, global_register, [gname_race, P])} end)
     || {X, P} <- [{A, P1}, {C, P2}]],
    [receive {raced, X, R} when R =:= yes; R =:= no -> ok after 5000 -> exit(no_race_answer) end
     || X <- [A, C]],
    timer:sleep(500),
    Holders = lists:usort([rpc:call(X, girder, global_whereis, [gname_race]) || X <- All]),
    [W] = Holders,
    true = W =:= P1 orelse W =:= P2,
    ok.
