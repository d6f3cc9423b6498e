%% global_interop: OTP's global registry across OTP and girder nodes
%% (tests/interop/global_interop.sh starts the nodes).  The driver (this
%% node) is hidden, so it takes no part in global; it drives two visible
%% OTP nodes and two girder nodes into one full mesh and checks that both
%% kinds keep one registry: global:sync/0 returns, names registered on
%% either kind resolve and take sends on both, a taken name is refused
%% everywhere, unregister / pid death / kill -9 remove names everywhere,
%% and a clash between partitions joined later is resolved the same way
%% on every node (random_exit_name: the pid on the smaller node keeps the
%% name, the other is killed), once decided by girder, once by OTP.
%% main([O2, O3, G1, G2, G2OsPid, GA, OB, GD, OC]) halts 0 when all passed.
-module(global_interop).
-export([main/1, forwarder/1, holder/0]).

main(Args) ->
    [O2, O3, G1, G2, G2Os, GA, OB, GD, OC] = Args,
    [O2a, O3a, G1a, G2a, GAa, OBa, GDa, OCa] =
        [list_to_atom(A) || A <- [O2, O3, G1, G2, GA, OB, GD, OC]],
    Otp = [O2a, O3a],
    Girder = [G1a, G2a],
    All = Otp ++ Girder,
    Checks = [{mesh_and_sync, fun() -> mesh(Otp, Girder) end},
              {girder_name_everywhere, fun() -> girder_name(All, G1a) end},
              {otp_name_everywhere, fun() -> otp_name(All, O2a, G2a) end},
              {taken_name_refused, fun() -> taken(All) end},
              {unregister_everywhere, fun() -> unregister(All, G1a, O3a) end},
              {pid_death_everywhere, fun() -> pid_death(All, G2a) end},
              {kill9_removes_names, fun() -> kill9(All, G1a, G2a, G2Os) end},
              {clash_girder_decides, fun() -> clash(GAa, OBa, girder) end},
              {clash_otp_decides, fun() -> clash(GDa, OCa, otp) end}],
    interop_check:run_all(global_interop, Checks).

%% ---- helpers ----

%% Polls F() every 100 ms until it returns Want (exits after 10 s).
wait_for(What, Want, F) -> interop_check:wait_for(What, Want, F, 100, 100).

whereis_on(Node, Name) -> rpc:call(Node, global, whereis_name, [Name], 5000).

%% Every node of Nodes answers whereis_name(Name) with Want (polled:
%% registrations and removals travel asynchronously).
everywhere(Nodes, Name, Want) ->
    [wait_for({whereis, X, Name}, Want, fun() -> whereis_on(X, Name) end) || X <- Nodes],
    ok.

%% A process on Node that hands every message it gets to To.
forwarder(To) -> receive M -> To ! {forwarded, self(), M}, forwarder(To) end.
holder() -> receive stop -> ok end.

visible_nodes(X) -> lists:sort(rpc:call(X, erlang, nodes, [], 5000)).

%% ---- checks ----

%% O2 connects to the rest (visible connections); global's sync spreads
%% the mesh (new_nodes, in_sync, connect_all), and global:sync() returns
%% on both OTP nodes within 10 s.
mesh(Otp = [O2, O3], Girder) ->
    [pong = rpc:call(O2, net_adm, ping, [N]) || N <- [O3 | Girder]],
    All = Otp ++ Girder,
    [wait_for({mesh, X}, lists:sort(All -- [X]), fun() -> visible_nodes(X) end) || X <- All],
    [begin
         T0 = erlang:monotonic_time(millisecond),
         case rpc:call(X, global, sync, [], 10000) of
             ok -> ok;
             Bad -> print_global_state(All), exit({sync, X, Bad})
         end,
         io:format("  global:sync() on ~p: ~p ms~n",
                   [X, erlang:monotonic_time(millisecond) - T0])
     end || X <- Otp],
    ok.

%% What each node's global_name_server knows and is synced with (for a
%% failure's report).
print_global_state(All) ->
    [io:format("  ~p: known ~p~n    synced ~p~n",
               [X, catch gen_server:call({global_name_server, X}, get_known, 2000),
                catch gen_server:call({global_name_server, X}, get_synced, 2000)])
     || X <- All].

%% Names registered on a girder node (through the C API, girder:
%% global_register, and through global:register_name) resolve on every
%% node, and global:send/2 from an OTP node reaches the girder process.
girder_name(All, G1) ->
    E1 = rpc:call(G1, girder, spawn_echo, []),
    E2 = rpc:call(G1, girder, spawn_echo, []),
    yes = rpc:call(G1, girder, global_register, [gi_capi, E1]),
    yes = rpc:call(G1, global, register_name, [gi_rpc, E2]),
    everywhere(All, gi_capi, E1),
    everywhere(All, gi_rpc, E2),
    true = lists:member(gi_rpc, rpc:call(G1, global, registered_names, [])),
    Self = self(),
    [begin
         E2 = rpc:call(X, global, send, [gi_rpc, {Self, {via, X}}]),
         receive {echo_reply, {via, X}} -> ok after 5000 -> exit({no_echo_via, X}) end
     end || X <- All],
    ok.

%% A name registered on an OTP node resolves on the girder nodes, and a
%% girder node's send by name (girder:global_send) reaches it.
otp_name(All, O2, G2) ->
    F = spawn(O2, ?MODULE, forwarder, [self()]),
    yes = rpc:call(O2, global, register_name, [gi_otp, F]),
    everywhere(All, gi_otp, F),
    F = rpc:call(G2, girder, global_whereis, [gi_otp]),
    F = rpc:call(G2, girder, global_send, [gi_otp, from_girder]),
    receive {forwarded, F, from_girder} -> ok after 5000 -> exit(no_girder_send) end,
    ok.

%% Registering a taken name answers no on every node (girder: C API and
%% rpc; OTP: global:register_name), and the holder stays.
taken(All = [O2, O3, G1, G2]) ->
    P = spawn(O3, ?MODULE, holder, []),
    E = rpc:call(G2, girder, spawn_echo, []),
    [no = rpc:call(X, global, register_name, [gi_capi, P]) || X <- [O2, O3]],
    [no = rpc:call(X, global, register_name, [gi_otp, E]) || X <- [G1, G2]],
    no = rpc:call(G2, girder, global_register, [gi_rpc, E]),
    E1 = whereis_on(G1, gi_capi),
    everywhere(All, gi_capi, E1),
    P ! stop,
    ok.

%% Unregistering on a girder node and on an OTP node removes the name on
%% every node.
unregister(All, G1, O3) ->
    ok = rpc:call(G1, global, unregister_name, [gi_rpc]),
    everywhere(All, gi_rpc, undefined),
    ok = rpc:call(O3, global, unregister_name, [gi_otp]),
    everywhere(All, gi_otp, undefined),
    ok.

%% A girder process holding a name dies: the name goes everywhere.
pid_death(All, G2) ->
    E = rpc:call(G2, girder, spawn_echo, []),
    yes = rpc:call(G2, global, register_name, [gi_dies, E]),
    everywhere(All, gi_dies, E),
    exit(E, kill),
    everywhere(All, gi_dies, undefined),
    ok.

%% kill -9 of a girder node: the names its processes held go on the
%% nodes left, and registering still works there.
kill9(All, G1, G2, G2Os) ->
    E = rpc:call(G2, girder, spawn_echo, []),
    yes = rpc:call(G2, girder, global_register, [gi_kill9, E]),
    everywhere(All, gi_kill9, E),
    os:cmd("kill -9 " ++ G2Os),
    Left = All -- [G2],
    everywhere(Left, gi_kill9, undefined),
    %% the nodes left still register (no lock left behind by the dead one)
    E1 = rpc:call(G1, girder, spawn_echo, []),
    yes = rpc:call(G1, global, register_name, [gi_after_kill9, E1]),
    everywhere(Left, gi_after_kill9, E1),
    ok.

%% Two single-node partitions (girder node G, OTP node O, never connected
%% before) hold the same name; O connects to G.  The pid on the smaller
%% node keeps the name on both, the other process is killed.  Who decides
%% (the smaller node runs the resolver): Decider.
clash(G, O, Decider) ->
    Smaller = lists:min([G, O]),
    Decider = case Smaller of G -> girder; O -> otp end,
    E = rpc:call(G, girder, spawn_echo, []),
    P = spawn(O, ?MODULE, holder, []),
    yes = rpc:call(G, global, register_name, [gi_clash, E]),
    yes = rpc:call(O, global, register_name, [gi_clash, P]),
    pong = rpc:call(O, net_adm, ping, [G]),
    ok = rpc:call(O, global, sync, [], 10000),
    {Winner, Loser} = case Smaller of G -> {E, P}; O -> {P, E} end,
    everywhere([G, O], gi_clash, Winner),
    wait_for({loser_dead, Loser}, false, fun() -> alive(Loser) end),
    true = alive(Winner),
    ok.

%% A monitor answers for both kinds of node: DOWN (noproc) at once for a
%% dead pid.
alive(Pid) ->
    Ref = erlang:monitor(process, Pid),
    receive {'DOWN', Ref, process, _, _} -> false
    after 300 -> erlang:demonitor(Ref, [flush]), true
    end.
