%% etf_diff: differential decode test, girder's etf_decode against OTP's
%% binary_to_term/1, on valid encodings and hostile mutations of them
%% (tests/interop/etf_diff.sh runs it; ctest: interop_etf_diff).
%%
%%   erl -noshell -pa EBIN -run etf_diff main SEED SEEDDIR FUZZDIR DRIVER WORKDIR NMUT
%%
%% Bases: every file of SEEDDIR (OTP-made encodings written by etf_gen.erl's
%% `seeds` step) and of FUZZDIR (the decoder's fuzz corpus: a control byte,
%% then the bytes; bit 2 of the control byte means "no version byte").
%% Inputs: every base, then NMUT mutations of random bases (byte and bit
%% flips, truncations, length-field changes, tag swaps, insertions,
%% deletions, trailing bytes), drawn from SEED.  All inputs go in one batch
%% to DRIVER (etf_diff.c: girder decodes and re-encodes each in-process);
%% this one erl process then decodes each with binary_to_term/1 and checks:
%%   - both accept or both reject;
%%   - for an accepted input: the same bytes consumed (binary_to_term/2's
%%     `used`), girder's re-encoding decodes to a term =:= OTP's (and equal
%%     under [deterministic] encoding, which tells 0.0 from -0.0), and that
%%     re-encoding is byte for byte term_to_binary/1 of OTP's term.
%% Every disagreement is classified (classify/1, deviations/0: the one list
%% of what is allowed, each with its reason).  The run fails when any
%% disagreement matches nothing in the list.
%% Prints one summary line with the count of every class.
-module(etf_diff).
-export([main/1]).

-define(IN_MAGIC, <<"GDDIFI01">>).
-define(OUT_MAGIC, <<"GDDIFO01">>).

%% girder's ETF_E* codes (etf/etf.h) that the classes below name.
-define(ETF_EUNKNOWN_TAG, -102).
-define(ETF_EDEPTH, -107).
-define(ETF_EFLOAT, -109).
-define(ETF_EFUN, -114).
-define(ETF_EEXPORT, -115).
-define(ETF_ENODE, -112).
%% How far after a compound's tag its atom slots can lie (NEW_FUN_EXT's
%% module at +30; EXPORT_EXT's function after a module of up to 1,023
%% bytes).
-define(ATOM_SLOT_REACH, 1100).

-define(EXAMPLES, 3).

%% ---------------------------------------------------------------------------
%% What may differ, in one place.
%%
%% deliberate: girder differs from binary_to_term/1 on purpose (documented
%%   in etf/etf.h); these never fail the run.
%%
%% Not classes, on purpose:
%% - trailing bytes after the term: girder decodes with no_trailing off, as
%%   binary_to_term/1 ignores them, so both must agree (and on `used`);
%% - the per-connection atom quota: the distribution layer's, not
%%   etf_decode's; nothing here can reach it (erl's atom table limit is not
%%   approached either).
deviations() ->
    [{depth_cap, deliberate,
      "nesting deeper than ETF_MAX_DEPTH_DEFAULT (100,000): girder refuses "
      "(ETF_EDEPTH, no unbounded work stack for peer data); OTP has no cap",
      fun(#{type := girder_rejects, code := C}) -> C =:= ?ETF_EDEPTH end},
     {export_arity, deliberate,
      "EXPORT_EXT with arity > 255: girder's export holds 0..255, the most a "
      "function can have; OTP accepts any non-negative small arity",
      fun(#{type := girder_rejects, code := C, view := V, offset := O}) ->
              %% erlang:fun_info/2 truncates such an arity: read the field.
              C =:= ?ETF_EEXPORT andalso byte_at(V, O) =:= 113 andalso
                  is_function(element(2, sub_decode(V, O))) andalso
                  begin
                      Fun = O + 1 + atom_size(V, O + 1),
                      {ok, Arity} = sub_decode(V, Fun + atom_size(V, Fun)),
                      Arity > 255
                  end
      end},
     {internal_atom_tags, deliberate,
      "tags 73 and 75 (OTP's internal atom-index references): accepting them "
      "would decode atoms by table index; girder refuses them as unknown tags "
      "(or, in an atom slot of an export, fun, pid, port or ref, as a malformed "
      "term of that kind, at its tag)",
      fun(#{type := girder_rejects, code := C, view := V, offset := O}) ->
              lists:member(byte_at(V, O), [73, 75]) orelse
                  (lists:member(C, [?ETF_EEXPORT, ?ETF_EFUN, ?ETF_ENODE]) andalso
                   lists:any(fun({T, P}) -> (T =:= 73 orelse T =:= 75) andalso P >= O andalso
                                                P =< O + ?ATOM_SLOT_REACH
                             end, walk(V)))
      end},
     {zero_word_ref, deliberate,
      "a reference whose length field is 0: OTP 25 reads one id word anyway, "
      "past the field and even past the end of the input (binary_to_term/2's "
      "`used` then exceeds the input's size); girder never reads outside the "
      "input: a reference of 0 words is refused "
      "(ETF_ETYPE / ETF_EREF_LEN). "
      "Reproducers: 835a000064000a6f7468657240686f737400000000 (OTP: used 25 of "
      "21 bytes), 837200006400016101000000030000000200000001",
      fun(#{view := V}) ->
              lists:any(fun({T, P}) -> (T =:= 90 orelse T =:= 114) andalso u16(V, P + 1) =:= 0 end,
                        walk(V))
      end},
     {vm_map_order, deliberate,
      "a map of more than 32 keys some of whose keys hold an atom, pid, port, "
      "reference, fun or export: OTP 25 orders its pairs by an internal hash "
      "of the atom's index in that VM's table and of identifiers' addresses, "
      "which no other VM can reproduce (etf.h, \"Map pair order\"); the terms "
      "are equal, only the pair order in the bytes differs",
      fun(#{type := encoding_differs, otp_term := T}) -> has_vm_ordered_map(T) end}].


%% ---------------------------------------------------------------------------

main([SeedS, SeedDir, FuzzDir, Driver, Work, NMutS]) ->
    Status = try run(list_to_integer(SeedS), SeedDir, FuzzDir, Driver, Work,
                     list_to_integer(NMutS)) of
                 ok -> 0;
                 _ -> 1
             catch C:R:S ->
                     io:format("etf_diff crashed: ~p:~p~n~p~n", [C, R, S]),
                     1
             end,
    halt(Status);
main(Args) ->
    io:format(standard_error, "etf_diff: bad arguments ~p~n", [Args]),
    halt(2).

run(Seed, SeedDir, FuzzDir, Driver, Work, NMut) ->
    T0 = erlang:monotonic_time(millisecond),
    rand:seed(exsss, {Seed, Seed bxor 16#5bd1e995, Seed + 12345}),
    Bases = bases(SeedDir, FuzzDir),
    BaseT = list_to_tuple(Bases),
    Mutated = [mutate(element(rand:uniform(tuple_size(BaseT)), BaseT)) || _ <- lists:seq(1, NMut)],
    Inputs = [{base, B} || B <- Bases] ++ Mutated,
    InFile = filename:join(Work, "etf_diff_inputs.bin"),
    OutFile = filename:join(Work, "etf_diff_results.bin"),
    ok = file:write_file(InFile, [?IN_MAGIC | [[<<(byte_size(B)):32>>, B] || {_, B} <- Inputs]]),
    ok = run_driver(Driver, InFile, OutFile),
    {ok, <<"GDDIFO01", Results/binary>>} = file:read_file(OutFile),
    Counts = compare(Inputs, Results, #{}),
    save_failures(Work, Counts),
    report(Seed, length(Bases), NMut, Counts, erlang:monotonic_time(millisecond) - T0).

%% Each failing example in full, WORKDIR/fail-<type>-<n>.etf, for replay.
save_failures(Work, Counts) ->
    [ok = file:write_file(filename:join(Work, io_lib:format("fail-~p-~p.etf", [T, I])), In)
     || {{fail, T}, {_, Ex}} <- maps:to_list(Counts),
        {I, {_, In, _}} <- lists:zip(lists:seq(1, length(Ex)), Ex)],
    ok.

%% The bases, deduplicated, in file-name order (deterministic).
bases(SeedDir, FuzzDir) ->
    Files = fun(Dir) ->
                    {ok, Names} = file:list_dir(Dir),
                    [filename:join(Dir, N) || N <- lists:sort(Names)]
            end,
    Seeds = [B || F <- Files(SeedDir), {ok, B} <- [file:read_file(F)]],
    Fuzz = [from_fuzz(B) || F <- Files(FuzzDir), {ok, B} <- [file:read_file(F)], byte_size(B) > 1],
    Bases = dedup(Seeds ++ Fuzz, #{}),
    true = length(Bases) >= 100,
    Bases.

%% fz_etf_decode's inputs: a control byte, then the bytes; bit 2 = a body
%% without the version byte.
from_fuzz(<<Ctl, Rest/binary>>) when Ctl band 4 =/= 0 -> <<131, Rest/binary>>;
from_fuzz(<<_, Rest/binary>>) -> Rest.

dedup([], _) -> [];
dedup([B | Bs], Seen) when is_map_key(B, Seen) -> dedup(Bs, Seen);
dedup([B | Bs], Seen) -> [B | dedup(Bs, Seen#{B => true})].

run_driver(Driver, InFile, OutFile) ->
    Port = open_port({spawn_executable, Driver},
                     [{args, [InFile, OutFile]}, exit_status, stderr_to_stdout, binary]),
    driver_wait(Port, []).

driver_wait(Port, Out) ->
    receive
        {Port, {data, D}} -> driver_wait(Port, [Out, D]);
        {Port, {exit_status, 0}} -> io:put_chars(Out), ok;
        {Port, {exit_status, N}} -> io:put_chars(Out), {driver_failed, N}
    after 600000 -> driver_timeout
    end.

%% ---------------------------------------------------------------------------
%% Mutations

%% {Kind, Bytes}.  A compressed base is mutated either in its raw bytes (the
%% envelope and zlib stream) or in its inflated form, compressed again.
mutate(Base) ->
    case view(Base) of
        {compressed, V} ->
            case rand:uniform(2) of
                1 -> raw_mutation(Base);
                2 -> {K, M} = view_mutation(V), {K, recompress(M)}
            end;
        {plain, V} ->
            view_mutation(V)
    end.

recompress(<<131, Body/binary>>) ->
    <<131, 80, (byte_size(Body)):32, (zlib:compress(Body))/binary>>;
recompress(Other) ->
    Other.

raw_mutation(B) ->
    case rand:uniform(3) of
        1 -> {flip_byte, flip_byte(B)};
        2 -> {truncate, truncate(B)};
        3 -> {length, set_field(B, 2, 32)}   % the inflated-size field
    end.

view_mutation(V) ->
    case rand:uniform(100) of
        N when N =< 18 -> {flip_byte, flip_byte(V)};
        N when N =< 26 -> {flip_bit, flip_bit(V)};
        N when N =< 36 -> {truncate, truncate(V)};
        N when N =< 58 -> {length, length_change(V)};
        N when N =< 76 -> {tag_swap, tag_swap(V)};
        N when N =< 86 -> {insert, insert(V)};
        N when N =< 92 -> {delete, delete(V)};
        _ -> {trailing, <<V/binary, (rand:bytes(rand:uniform(8)))/binary>>}
    end.

%% A position after the version byte (the version byte itself now and then).
position(B) when byte_size(B) =< 1 -> 0;
position(B) ->
    case rand:uniform(50) of
        1 -> 0;
        _ -> rand:uniform(byte_size(B) - 1)
    end.

flip_byte(B) ->
    P = position(B),
    case B of
        <<H:P/binary, X, T/binary>> -> <<H/binary, (X bxor rand:uniform(255)), T/binary>>;
        _ -> <<B/binary, 0>>
    end.

flip_bit(B) ->
    P = position(B),
    case B of
        <<H:P/binary, X, T/binary>> -> <<H/binary, (X bxor (1 bsl (rand:uniform(8) - 1))), T/binary>>;
        _ -> <<B/binary, 1>>
    end.

truncate(B) when byte_size(B) =< 1 -> <<>>;
truncate(B) -> binary:part(B, 0, rand:uniform(byte_size(B) - 1)).

insert(B) ->
    P = rand:uniform(byte_size(B) + 1) - 1,
    <<H:P/binary, T/binary>> = B,
    Ins = case rand:uniform(3) of
              1 -> rand:bytes(rand:uniform(8));
              2 -> <<97, (rand:uniform(256) - 1)>>;                  % a small integer
              3 -> binary:part(B, P, min(byte_size(T), rand:uniform(16)))  % a copy
          end,
    <<H/binary, Ins/binary, T/binary>>.

delete(B) when byte_size(B) =< 2 -> truncate(B);
delete(B) ->
    P = 1 + rand:uniform(byte_size(B) - 2),
    N = min(rand:uniform(4), byte_size(B) - P),
    <<H:P/binary, _:N/binary, T/binary>> = B,
    <<H/binary, T/binary>>.

%% Replaces the tag of a term (found by walking the encoding) with another
%% tag byte: any ETF tag, OTP's internal 73/75, or any byte.
tag_swap(V) ->
    case walk(V) of
        [] -> flip_byte(V);
        Tags ->
            {_, P} = lists:nth(rand:uniform(length(Tags)), Tags),
            New = case rand:uniform(10) of
                      1 -> 73;
                      2 -> 75;
                      3 -> rand:uniform(256) - 1;
                      _ -> lists:nth(rand:uniform(length(all_tags())), all_tags())
                  end,
            <<H:P/binary, _, T/binary>> = V,
            <<H/binary, New, T/binary>>
    end.

all_tags() ->
    [70, 77, 80, 82, 88, 89, 90, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107,
     108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121].

%% Changes a length (or arity, count, size) field of a term found by walking.
length_change(V) ->
    case [{P + Off, W} || {T, P} <- walk(V), {Off, W} <- len_fields(T)] of
        [] -> flip_byte(V);
        Fields ->
            {At, W} = lists:nth(rand:uniform(length(Fields)), Fields),
            set_field(V, At, W)
    end.

%% {Offset from the tag, width in bits} of each length-like field.
len_fields(T) when T =:= 100; T =:= 118; T =:= 107 -> [{1, 16}];
len_fields(T) when T =:= 115; T =:= 119; T =:= 110; T =:= 104 -> [{1, 8}];
len_fields(T) when T =:= 108; T =:= 109; T =:= 111; T =:= 105; T =:= 116 -> [{1, 32}];
len_fields(77) -> [{1, 32}, {5, 8}];
len_fields(T) when T =:= 90; T =:= 114 -> [{1, 16}];
len_fields(112) -> [{1, 32}, {5, 8}, {26, 32}];
len_fields(117) -> [{1, 32}];
len_fields(_) -> [].

set_field(B, At, W) when byte_size(B) >= At + W div 8 ->
    <<H:At/binary, Old:W, T/binary>> = B,
    Max = (1 bsl W) - 1,
    New = case rand:uniform(10) of
              1 -> 0;
              2 -> 1;
              3 -> Old - 1;
              4 -> Old + 1;
              5 -> Old * 2;
              6 -> Max;
              7 -> Max - 1;
              8 -> 255 + rand:uniform(2) - 1;
              9 -> 1 bsl (W - 1);
              10 -> rand:uniform(Max + 1) - 1
          end,
    <<H/binary, (max(0, min(Max, New))):W, T/binary>>;
set_field(B, _, _) ->
    flip_byte(B).

%% ---------------------------------------------------------------------------
%% The encoding's structure: [{Tag, Offset}] of every term in order, walked
%% without recursion (a count of the terms still to come) as far as the
%% bytes make sense.  Used to aim mutations and to classify disagreements.

walk(<<131, _/binary>> = V) -> walk(V, 1, 1, []);
walk(_) -> [].

walk(_, _, 0, Acc) -> lists:reverse(Acc);
walk(V, P, N, Acc) when P < byte_size(V) ->
    T = binary:at(V, P),
    case term_head(T, V, P) of
        {Skip, Kids} when P + Skip =< byte_size(V) -> walk(V, P + Skip, N - 1 + Kids, [{T, P} | Acc]);
        _ -> lists:reverse([{T, P} | Acc])
    end;
walk(_, _, _, Acc) -> lists:reverse(Acc).

%% {Bytes of the term before its first sub-term (all of it for a leaf),
%%  number of sub-terms}, or error.
term_head(T, V, P) ->
    try head(T, V, P)
    catch error:_ -> error
    end.

head(97, _, _) -> {2, 0};
head(98, _, _) -> {5, 0};
head(99, _, _) -> {32, 0};
head(70, _, _) -> {9, 0};
head(106, _, _) -> {1, 0};
head(82, _, _) -> {2, 0};
head(73, _, _) -> {3, 0};
head(75, _, _) -> {4, 0};
head(T, V, P) when T =:= 100; T =:= 118; T =:= 107 -> {3 + u16(V, P + 1), 0};
head(T, V, P) when T =:= 115; T =:= 119 -> {2 + binary:at(V, P + 1), 0};
head(109, V, P) -> {5 + u32(V, P + 1), 0};
head(77, V, P) -> {6 + u32(V, P + 1), 0};
head(110, V, P) -> {3 + binary:at(V, P + 1), 0};
head(111, V, P) -> {6 + u32(V, P + 1), 0};
head(104, V, P) -> {2, binary:at(V, P + 1)};
head(105, V, P) -> {5, u32(V, P + 1)};
head(108, V, P) -> {5, u32(V, P + 1) + 1};
head(116, V, P) -> {5, 2 * u32(V, P + 1)};
head(113, _, _) -> {1, 3};
head(112, V, P) -> {30, 4 + u32(V, P + 26)};
head(117, V, P) -> {5, 4 + u32(V, P + 1)};
head(T, V, P) when T =:= 88; T =:= 103; T =:= 89; T =:= 102; T =:= 120; T =:= 101 ->
    Fixed = #{88 => 12, 103 => 9, 89 => 8, 102 => 5, 120 => 12, 101 => 5},
    {1 + atom_size(V, P + 1) + maps:get(T, Fixed), 0};
head(90, V, P) -> {3 + atom_size(V, P + 3) + 4 + 4 * u16(V, P + 1), 0};
head(114, V, P) -> {3 + atom_size(V, P + 3) + 1 + 4 * u16(V, P + 1), 0};
head(_, _, _) -> error.

atom_size(V, P) ->
    case binary:at(V, P) of
        T when T =:= 100; T =:= 118 -> 3 + u16(V, P + 1);
        T when T =:= 115; T =:= 119 -> 2 + binary:at(V, P + 1);
        82 -> 2;
        73 -> 3;
        75 -> 4
    end.

u16(V, P) -> <<_:P/binary, X:16, _/binary>> = V, X.
u32(V, P) -> <<_:P/binary, X:32, _/binary>> = V, X.

byte_at(V, P) when P >= 0, P < byte_size(V) -> binary:at(V, P);
byte_at(_, _) -> none.

%% OTP's decoding of the term at offset P alone (binary_to_term/1 ignores
%% what follows it).
sub_decode(V, P) when P > 0, P < byte_size(V) ->
    try {ok, binary_to_term(<<131, (binary:part(V, P, byte_size(V) - P))/binary>>)}
    catch error:_ -> error
    end;
sub_decode(_, _) -> error.

%% True if T holds a fun whose creator slot (NEW_FUN_EXT's Pid) is not a
%% pid: OTP 25 decodes such a fun, but its term_to_binary crashes the VM on
%% it, so only term equality can be checked.
has_odd_fun(F) when is_function(F) ->
    case erlang:fun_info(F, type) of
        {type, local} ->
            not is_pid(element(2, erlang:fun_info(F, pid))) orelse
                lists:any(fun has_odd_fun/1, element(2, erlang:fun_info(F, env)));
        _ -> false
    end;
has_odd_fun(T) when is_map(T) ->
    lists:any(fun({K, X}) -> has_odd_fun(K) orelse has_odd_fun(X) end, maps:to_list(T));
has_odd_fun([H | R]) -> has_odd_fun(H) orelse has_odd_fun(R);
has_odd_fun(T) when is_tuple(T) -> lists:any(fun has_odd_fun/1, tuple_to_list(T));
has_odd_fun(_) -> false.

%% True if T holds a map of more than 32 keys whose keys hold something OTP
%% hashes by a VM-specific value (atom index, identifier address).
has_vm_ordered_map(T) when is_map(T) ->
    (map_size(T) > 32 andalso lists:any(fun vm_hashed/1, maps:keys(T))) orelse
        lists:any(fun({K, X}) -> has_vm_ordered_map(K) orelse has_vm_ordered_map(X) end,
                  maps:to_list(T));
has_vm_ordered_map([H | R]) -> has_vm_ordered_map(H) orelse has_vm_ordered_map(R);
has_vm_ordered_map(T) when is_tuple(T) -> lists:any(fun has_vm_ordered_map/1, tuple_to_list(T));
has_vm_ordered_map(F) when is_function(F) ->
    case erlang:fun_info(F, type) of
        {type, local} -> lists:any(fun has_vm_ordered_map/1, element(2, erlang:fun_info(F, env)));
        _ -> false
    end;
has_vm_ordered_map(_) -> false.

vm_hashed(K) when is_atom(K); is_pid(K); is_port(K); is_reference(K); is_function(K) -> true;
vm_hashed([H | R]) -> vm_hashed(H) orelse vm_hashed(R);
vm_hashed(K) when is_tuple(K) -> lists:any(fun vm_hashed/1, tuple_to_list(K));
vm_hashed(K) when is_map(K) -> lists:any(fun({A, B}) -> vm_hashed(A) orelse vm_hashed(B) end,
                                         maps:to_list(K));
vm_hashed(_) -> false.

%% The inflated form of a compressed input (errors inside it are reported at
%% offsets into 131 + the inflated bytes), or the input itself.
view(<<131, 80, _:32, Z/binary>> = B) ->
    try {compressed, <<131, (zlib:uncompress(Z))/binary>>}
    catch error:_ -> {compressed, B}
    end;
view(B) -> {plain, B}.

%% ---------------------------------------------------------------------------
%% Comparing

compare([], <<>>, Counts) -> Counts;
compare([{Kind, In} | Inputs],
        <<Code:32/signed, Off:32, Used:32, EncCode:32/signed, EncLen:32, Enc:EncLen/binary,
          Rest/binary>>,
        Counts) ->
    G = #{code => Code, offset => Off, used => Used, enc_code => EncCode, enc => Enc},
    Class = classify(In, G),
    compare(Inputs, Rest, note(Class, Kind, In, G, Counts)).

classify(In, G = #{code := Code}) ->
    Otp = try {ok, binary_to_term(In)} catch error:badarg -> error end,
    case {Code, Otp} of
        {0, error} -> explain(otp_rejects, In, G, undefined);
        {0, {ok, T}} -> both_accept(In, G, T);
        {_, error} -> agree_reject;
        {_, {ok, T}} -> explain(girder_rejects, In, G, T)
    end.

both_accept(In, G = #{enc_code := EncCode, enc := Enc, used := Used}, T) ->
    {_, OtpUsed} = binary_to_term(In, [used]),
    Back = try {ok, binary_to_term(Enc)} catch error:badarg -> error end,
    if
        EncCode =/= 0 -> explain(reencode_failed, In, G, T);
        Back =:= error -> explain(reencode_rejected, In, G, T);
        true ->
            {ok, GT} = Back,
            Odd = has_odd_fun(T),
            Same = GT =:= T andalso
                (Odd orelse
                 term_to_binary(GT, [deterministic]) =:= term_to_binary(T, [deterministic])),
            if
                not Same -> explain(term_differs, In, G, T);
                Used =/= OtpUsed -> explain(used_differs, In, G, T);
                Odd -> agree_accept_odd_fun;
                true ->
                    case term_to_binary(T) of
                        Enc -> agree_accept;
                        _ -> explain(encoding_differs, In, G, T)
                    end
            end
    end.

%% A disagreement: the class of the first deviation that matches, else
%% {fail, Type}.
explain(Type, In, G, OtpTerm) ->
    {_, V} = view(In),
    Ctx = G#{type => Type, view => V, otp_term => OtpTerm},
    Match = fun(F) -> try F(Ctx) =:= true catch error:_ -> false end end,
    case [Name || {Name, _, _, F} <- deviations(), Match(F)] of
        [Name | _] -> Name;
        [] -> {fail, Type}
    end.

note(Class, Kind, In, G, Counts) ->
    {N, Ex} = maps:get(Class, Counts, {0, []}),
    Ex1 = case length(Ex) < ?EXAMPLES andalso Class =/= agree_accept andalso Class =/= agree_reject of
              true -> Ex ++ [{Kind, In, G}];
              false -> Ex
          end,
    Counts#{Class => {N + 1, Ex1}}.

%% ---------------------------------------------------------------------------
%% Report

report(Seed, NBases, NMut, Counts, Ms) ->
    Count = fun(C) -> element(1, maps:get(C, Counts, {0, []})) end,
    Kind = fun(C) ->
                   case lists:keyfind(C, 1, deviations()) of
                       {_, K, _, _} -> K;
                       false -> fail
                   end
           end,
    Fails = lists:sort([C || {fail, _} = C <- maps:keys(Counts)]),
    Shown = fun(C) -> lists:flatten(io_lib:format("~p", [C])) end,
    lists:foreach(
      fun(C) ->
              {N, Ex} = maps:get(C, Counts),
              io:format("~s ~s: ~p input(s)~n", [case C of {fail, _} -> "FAIL"; _ -> Kind(C) end,
                                                 Shown(C), N]),
              case lists:keyfind(C, 1, deviations()) of
                  {_, _, Reason, _} -> io:format("  why: ~s~n", [Reason]);
                  false -> ok
              end,
              [io:format("  e.g. (~p) girder code ~p at ~p, used ~p: ~s~n",
                         [K, maps:get(code, G), maps:get(offset, G), maps:get(used, G), hex(In)])
               || {K, In, G} <- Ex]
      end, Fails ++ [C || C <- maps:keys(Counts), not is_tuple(C),
                          C =/= agree_accept, C =/= agree_accept_odd_fun,
                          C =/= agree_reject]),
    Classes = [agree_accept, agree_accept_odd_fun, agree_reject]
        ++ [Name || {Name, deliberate, _, _} <- deviations()],
    Failed = lists:sum([Count(C) || C <- Fails]),
    io:format("etf_diff: seed ~p (GD_TEST_SEED): ~p inputs (~p bases, ~p mutations) in ~.1f s: "
              "~s; FAIL ~p~s~n",
              [Seed, NBases + NMut, NBases, NMut, Ms / 1000,
               lists:join(", ", [io_lib:format("~p ~p~s", [C, Count(C), tag(C, Kind(C))])
                                 || C <- Classes]),
               Failed,
               case Fails of
                   [] -> "";
                   _ -> io_lib:format(" (~s)", [lists:join(", ", [io_lib:format("~p ~p", [T, Count(F)])
                                                                  || {fail, T} = F <- Fails])])
               end]),
    case Failed of
        0 -> ok;
        _ -> error
    end.

tag(_, deliberate) -> " (deliberate)";
tag(_, _) -> "".

hex(B) ->
    Shown = binary:part(B, 0, min(byte_size(B), 160)),
    [[io_lib:format("~2.16.0b", [X]) || <<X>> <= Shown],
     case byte_size(B) > 160 of true -> io_lib:format("... (~p bytes)", [byte_size(B)]); false -> "" end].
