%% beam_loadgen — the BEAM side of tests/bench/loadgen: an Erlang load
%% generator doing what `girder bench --workload echo` does, and the echo
%% server both drive.
%%
%% target(): run on the target node (erl -eval 'beam_loadgen:target()'):
%%   registers echo: {From, T} -> From ! {echo_reply, T} (design.md's node
%%   contract, the same as girder's echo service), and waits forever.
%%
%% main(): erl -noshell -sname N -setcookie C -pa DIR -s bench_beam run
%%   beam_loadgen -extra TARGET CLIENTS DURATION_MS WARMUP_MS PAYLOAD_BYTES
%%   Clients processes each keep one request outstanding (closed loop),
%%   with girder bench's payload (binary:PAYLOAD_BYTES, "abc...z" repeated):
%%   {echo, Target} ! {self(), {Seq, Payload}}, then receive
%%   {echo_reply, {Seq, Payload}} and check it (a wrong reply is an error).
%%   Round trips completed after the warm-up and before its end count; every
%%   8th is timed (two clock reads around send and receive) for p50/p99.
%%   Results: loadgen_echo (round_trips/s), loadgen_echo_p50 and _p99 (us),
%%   loadgen_echo_errors.
-module(beam_loadgen).
-export([main/0, target/0, echo/0, client/6]).

target() ->
    register(echo, spawn(?MODULE, echo, [])),
    receive never -> ok end.

echo() ->
    receive
        {From, T} when is_pid(From) -> From ! {echo_reply, T}, echo();
        _ -> echo()
    end.

main() ->
    [TargetS, ClientsS, DurS, WarmS, BytesS] = init:get_plain_arguments(),
    Target = list_to_atom(TargetS),
    [Clients, Dur, Warm, Bytes] = [list_to_integer(S) || S <- [ClientsS, DurS, WarmS, BytesS]],
    pong = net_adm:ping(Target),
    %% The bytes girder bench's binary:N payload has (lg_payload_build):
    %% "abc...z" repeated.
    Payload = << <<($a + I rem 26)>> || I <- lists:seq(0, Bytes - 1) >>,
    Start = bench_beam:now_ns(),
    Measure = Start + Warm * 1000000,
    End = Measure + Dur * 1000000,
    Self = self(),
    Pids = [spawn_link(?MODULE, client, [Self, {echo, Target}, Payload, Measure, End, 0])
            || _ <- lists:seq(1, Clients)],
    Results = [receive {done, P, R} -> R end || P <- Pids],
    Ops = lists:sum([O || {O, _, _} <- Results]),
    Errors = lists:sum([E || {_, E, _} <- Results]),
    Lat = lists:append([L || {_, _, L} <- Results]),
    Params = #{clients => Clients, duration_ms => Dur, warmup_ms => Warm,
               payload_bytes => Bytes, target => list_to_binary(TargetS)},
    Rate = Ops / (Dur / 1000),
    bench_beam:result(loadgen_echo, Params, round3(Rate), 'round_trips/s', [round3(Rate)]),
    case Lat of
        [] -> ok;
        _ ->
            bench_beam:result(loadgen_echo_p50, Params, round3(bench_beam:pct(Lat, 50) / 1000), us, []),
            bench_beam:result(loadgen_echo_p99, Params, round3(bench_beam:pct(Lat, 99) / 1000), us, [])
    end,
    bench_beam:result(loadgen_echo_errors, Params, Errors, errors, []),
    bench_beam:log("~p clients: ~.1f round trips/s, ~p errors", [Clients, Rate, Errors]),
    case Errors of 0 -> ok; _ -> error({errors, Errors}) end.

round3(X) -> round(X * 1000) / 1000.

%% One client: round trips until End; counts those completed in [Measure, End).
client(Parent, Dest, Payload, Measure, End, Seq0) ->
    client_loop(Parent, Dest, Payload, Measure, End, Seq0, 0, 0, []).

client_loop(Parent, Dest, Payload, Measure, End, Seq, Ops, Errors, Lat) ->
    T0 = bench_beam:now_ns(),
    case T0 >= End of
        true -> Parent ! {done, self(), {Ops, Errors, Lat}};
        false ->
            Dest ! {self(), {Seq, Payload}},
            Ok = receive
                     {echo_reply, {Seq, Payload}} -> true;
                     {echo_reply, _} -> false
                 end,
            T1 = bench_beam:now_ns(),
            In = T1 >= Measure andalso T1 < End,
            Lat1 = case In andalso Seq rem 8 =:= 0 of
                       true -> [T1 - T0 | Lat];
                       false -> Lat
                   end,
            {Ops1, Errors1} = case {In, Ok} of
                                  {true, true} -> {Ops + 1, Errors};
                                  {true, false} -> {Ops, Errors + 1};
                                  _ -> {Ops, Errors}
                              end,
            client_loop(Parent, Dest, Payload, Measure, End, Seq + 1, Ops1, Errors1, Lat1)
    end.
