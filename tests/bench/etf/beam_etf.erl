%% beam_etf — BEAM's side of girder's ETF benchmark (tests/bench/etf/run.sh):
%% term_to_binary/1 and binary_to_term/1 throughput over a deterministic
%% corpus of ten kinds of terms, about 1 MiB of encoding each (10,976,322
%% bytes, 20,855 terms in all on OTP 25).
%%
%% Method (girder's bench_etf.c measures itself the same way):
%% - one call per term, default options (no compression);
%% - MiB/s = MiB (2^20 bytes) of the corpus's encodings / seconds of one
%%   repetition over all of its terms;
%% - each repetition runs in a fresh process, the inputs (terms, encodings)
%%   kept in persistent_term so that process's collections never copy them;
%% - the results are consumed (encode: sum of sizes; decode: a type check
%%   summed), so no call is dead code;
%% - whole corpus: 5 repetitions; each kind alone: 3; the value is the
%%   median (nearest rank), every repetition listed in "samples".
%% Results: etf_encode, etf_decode (whole corpus), etf_encode_kind and
%% etf_decode_kind (one line per kind, "kind" in params).
%%
%% With BENCH_DUMP_DIR set it also writes DIR/etf_corpus.etf =
%% term_to_binary([{Kind, [Term]}]) (kinds and terms in corpus order), which
%% girder and libei load so that all three work on the same bytes.
-module(beam_etf).
-export([main/0]).

-define(CORPUS_REPS, 5).
-define(KIND_REPS, 3).
-define(MIB, 1048576).

%% {Kind, number of terms}: sized so each kind encodes to about 1 MiB.
kinds() ->
    [{small_ints, 880}, {big_ints, 1050}, {floats, 900}, {atoms, 830}, {binaries, 460},
     {strings, 1930}, {tuples, 510}, {map10, 13800}, {map1000, 115}, {nested, 380}].

%% Term I (1-based) of a kind.
make(small_ints, I) ->
    [(I * 31 + J * 17) rem 2000 - 1000 || J <- lists:seq(0, 255)];
make(big_ints, I) ->
    [case J band 1 of 0 -> 1; 1 -> -1 end * ((1 bsl (64 + J)) + I * J) || J <- lists:seq(0, 63)];
make(floats, I) ->
    [I + J / 8 || J <- lists:seq(0, 127)];
make(atoms, I) ->
    [binary_to_atom(iolist_to_binary(["atom_", integer_to_list((I + J) rem 64)])) || J <- lists:seq(0, 127)];
make(binaries, I) ->
    [list_to_binary(lists:duplicate(16 * (J + 1), (I + J) rem 256)) || J <- lists:seq(0, 15)];
make(strings, I) ->
    [lists:duplicate(64, $a + (I + J) rem 26) || J <- lists:seq(0, 7)];
make(tuples, I) ->
    [{I, J, ok, <<"bin">>, 1.5, [J]} || J <- lists:seq(0, 63)];
make(map10, I) ->
    maps:from_list([{binary_to_atom(<<"k", (integer_to_binary(K))/binary>>), I + K}
                    || K <- lists:seq(0, 9)]);
make(map1000, I) ->
    maps:from_list([{K, K * I} || K <- lists:seq(1, 1000)]);
make(nested, I) ->
    tree(6, I).

tree(0, I) -> I;
tree(D, I) -> {node, D, [tree(D - 1, I), tree(D - 1, I + 1)], #{depth => D, tag => <<"n">>}}.

main() ->
    Corpus = [{Kind, [make(Kind, I) || I <- lists:seq(1, Count)]} || {Kind, Count} <- kinds()],
    case os:getenv("BENCH_DUMP_DIR") of
        false -> ok;
        Dir -> ok = file:write_file(filename:join(Dir, "etf_corpus.etf"), term_to_binary(Corpus))
    end,
    All = lists:append([Terms || {_, Terms} <- Corpus]),
    {Bytes, Enc, Dec} = rates(All, ?CORPUS_REPS),
    Params = #{corpus_terms => length(All), corpus_bytes => Bytes, reps => ?CORPUS_REPS,
               kinds => [Kind || {Kind, _} <- kinds()]},
    bench_beam:log("etf ~.2f MiB, encode ~p decode ~p MiB/s", [Bytes / ?MIB, Enc, Dec]),
    bench_beam:result(etf_encode, Params, bench_beam:median(Enc), <<"MiB/s">>, Enc),
    bench_beam:result(etf_decode, Params, bench_beam:median(Dec), <<"MiB/s">>, Dec),
    [begin
         {KBytes, KEnc, KDec} = rates(Terms, ?KIND_REPS),
         KParams = #{kind => Kind, terms => length(Terms), bytes => KBytes, reps => ?KIND_REPS},
         bench_beam:result(etf_encode_kind, KParams, bench_beam:median(KEnc), <<"MiB/s">>, KEnc),
         bench_beam:result(etf_decode_kind, KParams, bench_beam:median(KDec), <<"MiB/s">>, KDec)
     end || {Kind, Terms} <- Corpus],
    ok.

%% {Encoded bytes, encode rates, decode rates} of Reps repetitions each.
rates(Terms, Reps) ->
    Bins = [term_to_binary(T) || T <- Terms],
    Bytes = lists:foldl(fun(B, Acc) -> Acc + byte_size(B) end, 0, Bins),
    persistent_term:put({?MODULE, input}, {Terms, Bins}),
    MiB = Bytes / ?MIB,
    Enc = bench_beam:repeat(Reps, fun() -> MiB / timed(fun encode_all/0) end),
    Dec = bench_beam:repeat(Reps, fun() -> MiB / timed(fun decode_all/0) end),
    persistent_term:erase({?MODULE, input}),
    {Bytes, Enc, Dec}.

%% Plain loops (no fun call per term): the repetition times the BIFs.
encode_all() ->
    {Terms, _} = persistent_term:get({?MODULE, input}),
    encode_loop(Terms, 0).

encode_loop([T | Rest], Acc) -> encode_loop(Rest, Acc + byte_size(term_to_binary(T)));
encode_loop([], Acc) -> Acc.

decode_all() ->
    {_, Bins} = persistent_term:get({?MODULE, input}),
    decode_loop(Bins, 0).

decode_loop([B | Rest], Acc) -> decode_loop(Rest, Acc + shape(binary_to_term(B)));
decode_loop([], Acc) -> Acc.

shape(T) when is_list(T) -> 1;
shape(T) when is_map(T) -> 2;
shape(_) -> 3.

%% Seconds Work() takes in a process of its own, spawned for it.
timed(Work) ->
    Parent = self(),
    {Pid, Mon} = spawn_monitor(fun() ->
                                       T0 = bench_beam:now_ns(),
                                       Consumed = Work(),
                                       T1 = bench_beam:now_ns(),
                                       Parent ! {self(), (T1 - T0) / 1.0e9, Consumed}
                               end),
    receive
        {Pid, Secs, Consumed} when is_integer(Consumed) ->
            receive {'DOWN', Mon, process, Pid, _} -> Secs end;
        {'DOWN', Mon, process, Pid, Why} ->
            exit({repetition_failed, Why})
    after 60000 ->
        exit(timeout)
    end.
