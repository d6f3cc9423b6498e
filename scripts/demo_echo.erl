%% demo_echo.erl — the Erlang side of scripts/demo: a registered `echo`
%% process that speaks the protocol of girder's own echo service, so that
%% `girder bench --workload echo` drives the same round trip against a
%% girder node and against this OTP node:
%%
%%   {From, Term}                     -> From ! {echo_reply, Term}
%%   gen_server:call(echo, Term)      -> Term   (the `call` workload)
%%
%% One process, as on girder: the comparison is of the runtimes and their
%% distribution, not of how many echo processes each side runs.
-module(demo_echo).
-export([start/0, connect/1]).

%% Registers the echo process (not linked to the caller: the -eval process
%% that starts it ends at once).
start() ->
    Pid = spawn(fun loop/0),
    true = register(echo, Pid),
    ok.

loop() ->
    receive
        {'$gen_call', From, Request} ->
            gen_server:reply(From, Request);
        {From, Term} when is_pid(From) ->
            From ! {echo_reply, Term};
        _Other ->
            ok
    end,
    loop().

%% Pings every node of Nodes (atoms) and returns this node's view of the
%% cluster afterwards: [{Node, pong | pang}], and nodes() sorted.  The demo
%% calls it over rpc to show the cluster forming.
connect(Nodes) ->
    Answers = [{Node, net_adm:ping(Node)} || Node <- Nodes],
    {Answers, lists:sort(nodes())}.
