%% interop_check: the check runner and polling helpers the OTP-driven
%% interop suites share.  girder_epmd.sh's interop_suite_setup compiles
%% this module with erlc next to each suite's own, so a change to how
%% checks are timed, reported or turned into the exit status is made once
%% for all of them.
-module(interop_check).
-export([run_all/2, run_all/3, echo/3, echo_terms/3, echo_replies_in_order/2,
         wait_member/3, wait_for/3, wait_for/5]).

%% Runs every {Name, Fun} check in order, prints one ok/FAIL line each and
%% a summary under Label, and halts 0 when all passed, 1 otherwise.
run_all(Label, Checks) -> run_all(Label, Checks, -1).

%% Depth bounds how deep a failure's reason and stack are printed (-1: in
%% full): frag_interop's reasons can hold 20 MB terms that would flood the
%% log.  The stack is printed twice as deep as the reason.
run_all(Label, Checks, Depth) ->
    Results = [run(Name, F, Depth) || {Name, F} <- Checks],
    Failed = [N || {N, fail} <- Results],
    io:format("~p: ~p checks, failed: ~p~n", [Label, length(Results), Failed]),
    halt(case Failed of [] -> 0; _ -> 1 end).

run(Name, F, Depth) ->
    T0 = erlang:monotonic_time(millisecond),
    try F() of
        _ ->
            io:format("ok   ~p (~p ms)~n", [Name, erlang:monotonic_time(millisecond) - T0]),
            {Name, ok}
    catch C:R:S ->
            io:format("FAIL ~p: ~P:~P~n  ~P~n", [Name, C, Depth, R, Depth, S, stack_depth(Depth)]),
            {Name, fail}
    end.

stack_depth(-1) -> -1;
stack_depth(Depth) -> 2 * Depth.

%% Sends T to the girder node G's registered echo process and returns the
%% reply (exits after TimeoutMs without one).
echo(G, T, TimeoutMs) ->
    {echo, G} ! {self(), T},
    receive {echo_reply, R} -> R after TimeoutMs -> exit({no_echo_reply, T}) end.

%% Every term of Terms comes back from G's echo =:= what was sent.
echo_terms(G, Terms, TimeoutMs) ->
    [case echo(G, T, TimeoutMs) of
         R when R =:= T -> ok;
         R -> exit({mismatch, T, R})
     end || T <- Terms],
    ok.

%% Collected is what a collector got from G's echo after {echo, G} !
%% {Collector, I} for I in 1..N: every reply, in order.
echo_replies_in_order(Collected, N) ->
    case [{echo_reply, I} || I <- lists:seq(1, N)] of
        Collected -> ok;
        _ -> exit({collected, Collected})
    end.

%% Polls F() every 100 ms, up to N times, until X is in the list it returns.
wait_member(X, F, 0) -> exit({not_connected, X, F()});
wait_member(X, F, N) ->
    case lists:member(X, F()) of
        true -> ok;
        false -> timer:sleep(100), wait_member(X, F, N - 1)
    end.

%% Polls F() every SleepMs, up to Tries times (wait_for/3: 50 ms, 100
%% times), until it returns Want; exits with What, Want and the last value
%% otherwise.
wait_for(What, Want, F) -> wait_for(What, Want, F, 100, 50).
wait_for(What, Want, F, 0, _) -> exit({timeout, What, want, Want, got, F()});
wait_for(What, Want, F, Tries, SleepMs) ->
    case F() of
        Want -> ok;
        _ -> timer:sleep(SleepMs), wait_for(What, Want, F, Tries - 1, SleepMs)
    end.
