%% frag_interop: rpc results, DOWN and link EXIT reasons big enough that
%% girder sends them fragmented (above 64 KiB) as PAYLOAD_MONITOR_P_EXIT
%% or PAYLOAD_EXIT, checked from a real OTP node
%% (tests/interop/frag_interop.sh starts both).  Each must come
%% back =:= what was sent, over one connection that never drops, and the
%% OTP VM must survive: OTP 25 took a fragment with sequence id 0 for a
%% whole message and crashed decoding the reason past its end.
%% main([GirderNode]) halts 0 when every check passed, 1 otherwise.
-module(frag_interop).
-export([main/1]).

-define(SIZES, [70000, 1024 * 1024, 20 * 1024 * 1024]).

main([GStr]) ->
    G = list_to_atom(GStr),
    pong = net_adm:ping(G),
    ok = net_kernel:monitor_nodes(true),
    Checks = [{{Kind, Bytes}, fun() -> check(Kind, G, Bytes) end}
              || Kind <- [rpc_call, erpc_call, monitor_down, link_exit], Bytes <- ?SIZES]
             ++ [{connection_kept, fun() -> connection_kept(G) end}],
    interop_check:run_all(frag_interop, Checks, 10).

%% Random bytes: no run girder or OTP could shorten; wrapped in a tuple
%% with an atom so the control and the payload both carry atoms.
big_term(Bytes) ->
    {big, Bytes, crypto:strong_rand_bytes(Bytes)}.

check(rpc_call, G, Bytes) ->
    T = big_term(Bytes),
    same(T, rpc:call(G, girder, echo, [T], 60000));
check(erpc_call, G, Bytes) ->
    T = big_term(Bytes),
    same(T, erpc:call(G, girder, echo, [T], 60000));
check(monitor_down, G, Bytes) ->
    %% A girder process that ends with the big reason: its DOWN crosses
    %% the connection as PAYLOAD_MONITOR_P_EXIT with the reason as payload.
    T = big_term(Bytes),
    P = rpc:call(G, girder, spawn_echo, []),
    true = is_pid(P) andalso node(P) =:= G,
    Ref = monitor(process, P),
    P ! {stop, T},
    receive
        {'DOWN', Ref, process, P, R} -> same(T, R)
    after 60000 -> exit(no_down)
    end;
check(link_exit, G, Bytes) ->
    %% The same through a link: PAYLOAD_EXIT with the reason as payload.
    T = big_term(Bytes),
    P = rpc:call(G, girder, spawn_echo, []),
    true = is_pid(P) andalso node(P) =:= G,
    Old = process_flag(trap_exit, true),
    try
        link(P),
        P ! {stop, T},
        receive
            {'EXIT', P, R} -> same(T, R)
        after 60000 -> exit(no_exit)
        end
    after
        process_flag(trap_exit, Old)
    end.

same(T, T) -> ok;
same(T, Other) when is_tuple(Other), tuple_size(Other) =:= 3 ->
    exit({differs, element(2, T), byte_size(element(3, Other))});
same(_, Other) ->
    exit({differs, Other}).

%% The node stayed connected the whole time (a bad frame would have made
%% either side drop the connection: nodedown, then a reconnect).
connection_kept(G) ->
    receive {nodedown, G} -> exit(connection_dropped) after 0 -> ok end,
    true = lists:member(G, nodes()),
    G = rpc:call(G, erlang, node, []).
