#!/usr/bin/env escript
%% -*- erlang -*-
%%
%% term_text_interop.escript GIRDER [SEED [COUNT]]
%%
%% Checks `girder term encode` / `girder term decode` against the real
%% Erlang/OTP this runs on.  For edge values of every type plus COUNT random
%% nested terms (from SEED):
%%
%%   text -> bytes: erl's single-line ~p text of T (io_lib:print/4 with an
%%     unlimited line, latin1 printable range, as UTF-8) through
%%     `girder term encode` equals term_to_binary(T); also --otp 26 against
%%     {minor_version, 2} and --compressed against [compressed];
%%   bytes -> text: term_to_binary(T) through `girder term decode` prints
%%     exactly erl's text.
%%
%% Where OTP's text cannot be matched or read back by design, the check is
%% done through bytes instead: maps of more than 32 keys (OTP prints them in
%% hash order, girder in key order) and identifiers of other nodes (OTP
%% prints <9911.42.0>) are checked by decode -> encode --deterministic
%% against term_to_binary(T, [deterministic]).
%%
%% Terms go through girder in batches (--lines: one term per line), so the
%% whole run is a handful of processes.  Exit status 0 only if every check
%% passes; mismatches are printed (the first few in full).

main([Girder]) -> main([Girder, "1"]);
main([Girder, Seed]) -> main([Girder, Seed, "400"]);
main([Girder, SeedS, CountS]) ->
    Seed = list_to_integer(SeedS),
    Count = list_to_integer(CountS),
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}),
    Dir = filename:join(temp_dir(), "girder_term_text_" ++ os:getpid()),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Terms = edge_terms() ++ [gen(4) || _ <- lists:seq(1, Count)],
    Results = run_checks(Girder, Dir, Terms),
    os:cmd("rm -rf '" ++ Dir ++ "'"),
    Failed = [R || {_, _, Bad} = R <- Results, Bad > 0],
    [io:format("~-44s ~5w checked, ~w mismatches~n", [Name, N, Bad]) || {Name, N, Bad} <- Results],
    case Failed of
        [] ->
            io:format("term_text_interop: seed ~w, ~w terms: all checks passed~n",
                      [Seed, length(Terms)]),
            halt(0);
        _ ->
            io:format("term_text_interop: seed ~w: FAILED~n", [Seed]),
            halt(1)
    end;
main(_) ->
    io:format("usage: term_text_interop.escript GIRDER [SEED [COUNT]]~n"),
    halt(2).

temp_dir() ->
    case os:getenv("TMPDIR") of
        false -> "/tmp";
        "" -> "/tmp";
        D -> D
    end.

%% ---------------------------------------------------------------------------
%% The checks.

run_checks(Girder, Dir, Terms) ->
    Infos = [{T, text(T), classify(T)} || T <- Terms],
    %% Text OTP prints that girder reads back: no closures, no other nodes.
    Readable = [{T, Txt, C} || {T, Txt, C} <- Infos, not maps:get(fn, C), not maps:get(ext, C)],
    {Plain, BigMap} = lists:partition(fun({_, _, C}) -> not maps:get(bigmap, C) end, Readable),
    ExactText = [I || {_, _, C} = I <- Infos, not maps:get(bigmap, C), not maps:get(ext, C)],
    ViaBytes = [I || {_, _, C} = I <- Infos, not maps:get(fn, C),
                     maps:get(bigmap, C) orelse maps:get(ext, C)],
    [check_encode(Girder, Dir, "encode (text -> term_to_binary)", [], Plain,
                  fun(T) -> term_to_binary(T) end),
     check_encode(Girder, Dir, "encode --deterministic (maps > 32)", ["--deterministic"], BigMap,
                  fun(T) -> term_to_binary(T, [deterministic]) end),
     check_encode(Girder, Dir, "encode --otp 26 ({minor_version,2})", ["--otp", "26"], Plain,
                  fun(T) -> term_to_binary(T, [{minor_version, 2}]) end),
     check_encode(Girder, Dir, "encode --compressed", ["--compressed"], Plain,
                  fun(T) -> term_to_binary(T, [compressed]) end),
     check_decode_text(Girder, Dir, ExactText),
     check_decode_via_bytes(Girder, Dir, ViaBytes),
     check_cli(Girder, Dir)].

%% girder term encode --lines Opts on the texts; each hex line must be Want(T).
check_encode(Girder, Dir, Name, Opts, Items, Want) ->
    In = [[Txt, $\n] || {_, Txt, _} <- Items],
    {Status, Out, Err} = girder(Girder, Dir, ["encode", "--lines" | Opts], In),
    Got = lines(Out),
    Bad = compare(Name, Items, Got, fun(T, Line) ->
                                            Exp = hex(Want(T)),
                                            case Line of
                                                Exp -> ok;
                                                _ -> {expected, Exp}
                                            end
                                    end),
    {Name, length(Items), Bad + status_failures(Name, Status, Err)}.

%% girder term decode --lines on term_to_binary(T); each line must be erl's text.
check_decode_text(Girder, Dir, Items) ->
    Name = "decode (term_to_binary -> ~p text)",
    In = [[hex(term_to_binary(T)), $\n] || {T, _, _} <- Items],
    {Status, Out, Err} = girder(Girder, Dir, ["decode", "--lines"], In),
    Bad = compare(Name, Items, lines(Out), fun(_T, Line) -> Line end),
    {Name, length(Items), Bad + status_failures(Name, Status, Err)}.

%% decode, then encode --deterministic what girder printed: the bytes must be
%% term_to_binary(T, [deterministic]).
check_decode_via_bytes(Girder, Dir, Items) ->
    Name = "decode -> encode (maps > 32, other nodes)",
    In = [[hex(term_to_binary(T)), $\n] || {T, _, _} <- Items],
    {S1, Out1, Err1} = girder(Girder, Dir, ["decode", "--lines"], In),
    Texts = lines(Out1),
    {S2, Out2, Err2} = girder(Girder, Dir, ["encode", "--lines", "--deterministic"],
                              [[L, $\n] || L <- Texts]),
    Bytes = lines(Out2),
    Items1 = lists:sublist(Items, length(Bytes)),
    Bad = compare(Name, Items1, Bytes,
                  fun(T, Line) ->
                          Exp = hex(term_to_binary(T, [deterministic])),
                          case Line of
                              Exp -> ok;
                              _ -> {expected, Exp}
                          end
                  end),
    Missing = length(Items) - length(Items1),
    {Name, length(Items),
     Bad + Missing + status_failures(Name, S1, Err1) + status_failures(Name, S2, Err2)}.

%% The single-term mode and its error reports.
check_cli(Girder, Dir) ->
    Name = "cli (single term, errors, offsets)",
    T = {ok, [1, 2 | x], <<"bin">>, #{a => 1.5}},
    B = term_to_binary(T),
    Checks =
        [{"encode with comment and final dot",
          girder(Girder, Dir, ["encode"], "% a term\n{ok, [1,2|x], <<\"bin\">>, #{a => 1.5}}.\n"),
          {0, B, ""}},
         {"encode --hex", girder(Girder, Dir, ["encode", "--hex"], "{ok, [1,2|x], <<\"bin\">>, #{a => 1.5}}"),
          {0, iolist_to_binary([hex(B), $\n]), ""}},
         {"decode", girder(Girder, Dir, ["decode"], B),
          {0, <<"{ok,[1,2|x],<<\"bin\">>,#{a => 1.5}}\n">>, ""}},
         {"decode --hex with blanks", girder(Girder, Dir, ["decode", "--hex"], [hex(B), " \n"]),
          {0, <<"{ok,[1,2|x],<<\"bin\">>,#{a => 1.5}}\n">>, ""}},
         {"syntax error offset", girder(Girder, Dir, ["encode"], "{ok,\n  [1,2|]}"),
          {1, <<>>, "girder: term encode: syntax error at offset 12 (line 2, column 8)\n"}},
         %% Which offset a cut-off term reports is the decoder's business
         %% (the first length that cannot fit): only its form is checked.
         {"truncated input", girder(Girder, Dir, ["decode"], binary:part(B, 0, 17)),
          {1, <<>>, "girder: term decode: "}},
         {"truncated input offset", girder(Girder, Dir, ["decode"], <<131, 100, 0, 5, "ab">>),
          {1, <<>>, " at offset "}},
         {"trailing bytes", girder(Girder, Dir, ["decode"], <<B/binary, 0>>),
          {1, <<>>, "offset " ++ integer_to_list(byte_size(B))}},
         {"bad hex", girder(Girder, Dir, ["decode", "--hex"], "83zz"),
          {1, <<>>, "girder: term decode: bad hex digit at offset 2\n"}},
         {"usage error", girder(Girder, Dir, ["encode", "--otp", "24"], ""),
          {2, <<>>, "bad OTP release '24'"}}],
    Bad = lists:sum([cli_check(Label, Got, Want) || {Label, Got, Want} <- Checks]),
    {Name, length(Checks), Bad}.

cli_check(Label, {Status, Out, Err}, {WantStatus, WantOut, WantErr}) ->
    ErrS = binary_to_list(Err),
    ErrOk = case lists:suffix("\n", WantErr) of
                true -> ErrS =:= WantErr;
                false -> string:find(ErrS, WantErr) =/= nomatch andalso one_line(ErrS)
            end,
    case Status =:= WantStatus andalso Out =:= WantOut andalso ErrOk of
        true -> 0;
        false ->
            io:format("MISMATCH cli ~s:~n  got  ~p ~p ~p~n  want ~p ~p ~p~n",
                      [Label, Status, Out, Err, WantStatus, WantOut, WantErr]),
            1
    end.

one_line(S) -> length(string:split(string:trim(S, trailing, "\n"), "\n", all)) =:= 1.

status_failures(_Name, 0, _Err) -> 0;
status_failures(Name, Status, Err) ->
    io:format("FAILED ~s: girder exited ~w: ~s~n", [Name, Status, Err]),
    1.

%% Compares girder's output lines with the items, printing the first few
%% mismatches; returns the number of mismatches (missing lines included).
compare(Name, Items, Lines, Check) ->
    compare(Name, Items, Lines, Check, 0).

compare(_Name, [], _Lines, _Check, Bad) -> Bad;
compare(Name, Items, [], _Check, Bad) ->
    io:format("FAILED ~s: ~w lines missing from girder's output~n", [Name, length(Items)]),
    Bad + length(Items);
compare(Name, [{T, Txt, _} | Items], [Line | Lines], Check, Bad) ->
    Verdict = case Check(T, Line) of
                  ok -> ok;
                  {expected, E} -> {E, Line};
                  Txt -> ok;
                  Other -> {Txt, Other}
              end,
    case Verdict of
        ok ->
            compare(Name, Items, Lines, Check, Bad);
        {Exp, Got} ->
            case Bad < 5 of
                true ->
                    io:format("MISMATCH ~s~n  term ~s~n  want ~s~n  got  ~s~n",
                              [Name, shorten(Txt), shorten(Exp), shorten(Got)]);
                false -> ok
            end,
            compare(Name, Items, Lines, Check, Bad + 1)
    end.

shorten(B) when byte_size(B) > 400 -> [binary:part(B, 0, 400), "..."];
shorten(B) -> B.

%% Runs girder with Input on stdin; returns {ExitStatus, Stdout, Stderr}.
girder(Girder, Dir, Args, Input) ->
    In = filename:join(Dir, "in"),
    Out = filename:join(Dir, "out"),
    Err = filename:join(Dir, "err"),
    ok = file:write_file(In, Input),
    Cmd = lists:flatten([quote(Girder), " term", [[" ", quote(A)] || A <- Args],
                         " < ", quote(In), " > ", quote(Out), " 2> ", quote(Err),
                         "; echo $?"]),
    Status = list_to_integer(string:trim(os:cmd(Cmd))),
    {ok, O} = file:read_file(Out),
    {ok, E} = file:read_file(Err),
    {Status, O, E}.

quote(S) -> [$', S, $'].

lines(Bin) ->
    case binary:split(Bin, <<"\n">>, [global]) of
        [] -> [];
        Parts -> case lists:last(Parts) of
                     <<>> -> lists:droplast(Parts);
                     _ -> Parts
                 end
    end.

hex(Bin) -> string:lowercase(binary:encode_hex(Bin)).

%% erl's ~p text on one line (latin1 printable range), as UTF-8.
text(T) -> unicode:characters_to_binary(io_lib:print(T, 1, 100000000, -1)).

%% What a term contains that changes how it can be checked.
classify(T) -> classify([T], #{bigmap => false, ext => false, fn => false}).

classify([], C) -> C;
classify([T | Rest], C) when is_list(T) -> classify(list_parts(T, Rest), C);
classify([T | Rest], C) when is_tuple(T) -> classify(tuple_to_list(T) ++ Rest, C);
classify([T | Rest], C) when is_map(T) ->
    C1 = case map_size(T) > 32 of true -> C#{bigmap := true}; false -> C end,
    classify(maps:keys(T) ++ maps:values(T) ++ Rest, C1);
classify([T | Rest], C) when is_pid(T); is_port(T); is_reference(T) ->
    classify(Rest, case node(T) =:= node() of true -> C; false -> C#{ext := true} end);
classify([T | Rest], C) when is_function(T) ->
    classify(Rest, case erlang:fun_info(T, type) of
                       {type, external} -> C;
                       _ -> C#{fn := true}
                   end);
classify([_ | Rest], C) -> classify(Rest, C).

list_parts([], Acc) -> Acc;
list_parts([H | T], Acc) when is_list(T) -> list_parts(T, [H | Acc]);
list_parts([H | T], Acc) -> [H, T | Acc].

%% ---------------------------------------------------------------------------
%% Terms.

edge_terms() ->
    Ints = [0, 1, -1, 255, 256, -256, (1 bsl 27) - 1, 1 bsl 27, -(1 bsl 27), (1 bsl 31) - 1,
            1 bsl 31, -(1 bsl 31), -(1 bsl 31) - 1, (1 bsl 59) - 1, 1 bsl 59, -(1 bsl 59),
            -(1 bsl 59) - 1, (1 bsl 63) - 1, 1 bsl 63, -(1 bsl 63), -(1 bsl 63) - 1, 1 bsl 64,
            (1 bsl 64) - 1, -(1 bsl 64), 1 bsl 2040, -(1 bsl 2040), 1 bsl 2048, pow10(100),
            -pow10(19), pow10(19) - 1, fact(60)],
    Floats = [0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 1.0e20, 1.0e-10, 5.0e-324, 1.7976931348623157e308,
              2.2250738585072014e-308, 9007199254740992.0, 9007199254740991.0, 123456789.0,
              1.0e15, 1.0e16, 100.0, 1000.0, 0.0001, 0.00001, math:pi(), -2.5e-5, 1.0e23],
    Atoms = ['', ok, 'hello world', 'A', 'and', 'fun', maybe, else, 'a.b', a@b, 'ä', 'Ä', 'ß',
             '\x{3b1}', 'a\nb', '\'', '\\', '_', 'x-y', nonode@nohost, true, false,
             list_to_atom(lists:duplicate(255, $x)), list_to_atom(lists:duplicate(255, 16#3b1)),
             list_to_atom([1, 127, 128, 160, 255]), list_to_atom([16#1F600])],
    Lists = [[], "abc", [1, 2 | 3], "a\"\\\n\t\e\v\b\f\r", [127], [160, 255], [256], [a | b],
             [[]], ["a"], lists:seq(0, 300), lists:duplicate(70000, $a), [1.5 | 2.5],
             "ä€", [$a | <<"b">>], lists:seq(1, 65535)],
    Bins = [<<>>, <<"abc">>, <<1, 2, 3>>, <<1:3>>, <<1, 2:4>>, <<"ä"/utf8>>, <<200>>,
            binary:copy(<<"x">>, 100), binary:copy(<<1>>, 100), <<0:7>>,
            list_to_binary(lists:seq(0, 255)), <<"abc", 5:3>>, <<"\"\\\n">>, <<127>>,
            binary:part(<<"0123456789abcdef">>, 3, 5)],
    Tuples = [{}, {a}, {a, {b, {c, []}}}, list_to_tuple(lists:seq(1, 300))],
    Maps = [#{}, #{a => 1}, #{1 => a, 1.0 => b}, #{b => 1, a => 2, "s" => <<"v">>},
            maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]),
            maps:from_list([{list_to_atom([$k | integer_to_list(I)]), I} || I <- lists:seq(1, 33)]),
            #{{a, b} => #{[1] => #{}}}, maps:from_list([{I, x} || I <- lists:seq(1, 32)])],
    Ids = [self(), spawn(fun() -> ok end), make_ref(), hd(erlang:ports()),
           ext_pid('b@host', 42, 0, 7), ext_pid('node@some.host', 1, 2, 3),
           ext_port('b@host', 5, 7), ext_ref('b@host', 7, [1, 2, 3])],
    Funs = [fun lists:map/2, fun 'A':'b c'/1, fun erlang:'+'/2, fun(X) -> X end,
            (fun(Y) -> fun() -> Y end end)(Ints)],
    Ints ++ Floats ++ Atoms ++ Lists ++ Bins ++ Tuples ++ Maps ++ Ids ++ Funs ++
        [{Ids, Maps}, [Funs | Ids]].

pow10(N) -> list_to_integer([$1 | lists:duplicate(N, $0)]).
fact(0) -> 1;
fact(N) -> N * fact(N - 1).

%% Identifiers of another node, built from their external format.
node_ext(Node) ->
    B = atom_to_binary(Node, utf8),
    <<118, (byte_size(B)):16, B/binary>>.
ext_pid(Node, Id, Serial, Creation) ->
    binary_to_term(<<131, 88, (node_ext(Node))/binary, Id:32, Serial:32, Creation:32>>).
ext_port(Node, Id, Creation) ->
    binary_to_term(<<131, 89, (node_ext(Node))/binary, Id:32, Creation:32>>).
ext_ref(Node, Creation, Words) ->
    binary_to_term(<<131, 90, (length(Words)):16, (node_ext(Node))/binary, Creation:32,
                     (<< <<W:32>> || W <- Words >>)/binary>>).

gen(0) -> leaf();
gen(D) ->
    case rand:uniform(12) of
        1 -> list_to_tuple([gen(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        2 -> [gen(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        3 -> lists:foldl(fun(X, Acc) -> [X | Acc] end, leaf(),
                         [gen(D - 1) || _ <- lists:seq(1, rand:uniform(3))]);
        4 -> maps:from_list([{gen(D - 1), gen(D - 1)} || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        5 -> case rand:uniform(8) of
                 1 -> maps:from_list([{leaf(), gen(D - 1)} || _ <- lists:seq(1, 33 + rand:uniform(20))]);
                 _ -> leaf()
             end;
        _ -> leaf()
    end.

leaf() ->
    case rand:uniform(14) of
        1 -> rand:uniform(512) - 256;
        2 -> rand:uniform(1 bsl 62) - (1 bsl 61);
        3 -> (rand:uniform(1 bsl 200) - (1 bsl 199)) bsr rand:uniform(190);
        4 -> rand_float();
        5 -> pick(['', ok, 'A', 'hello world', 'and', a@b, 'ä', '\x{3b1}', 'a\'b', x_Y1, error]);
        6 -> [32 + rand:uniform(95) - 1 || _ <- lists:seq(1, rand:uniform(10))];
        7 -> [rand:uniform(300) - 1 || _ <- lists:seq(1, rand:uniform(6))];
        8 -> [160 + rand:uniform(96) - 1 || _ <- lists:seq(1, rand:uniform(5))];
        9 -> list_to_binary([32 + rand:uniform(95) - 1 || _ <- lists:seq(1, rand:uniform(12) - 1)]);
        10 -> N = rand:uniform(40) - 1, B = rand:bytes(N), Bits = rand:uniform(8) - 1,
              <<B/binary, (rand:uniform(1 bsl 7)):Bits>>;
        11 -> pick([self(), make_ref(), hd(erlang:ports()), fun lists:map/2]);
        12 -> pick([ext_pid('b@host', rand:uniform(1 bsl 20), rand:uniform(100), 7),
                    ext_ref('c@host', 9, [rand:uniform(1 bsl 32) - 1 || _ <- [1, 2, 3]])]);
        13 -> [];
        14 -> {}
    end.

rand_float() ->
    <<F:64>> = rand:bytes(8),
    case <<F:64>> of
        <<_:1, 2047:11, _:52>> -> rand_float();
        <<X/float>> -> X
    end.

pick(L) -> lists:nth(rand:uniform(length(L)), L).
