%% etf_gen: the Erlang side of girder's ETF interop test (tests/interop).
%%
%%   erl -noshell -pa EBIN -run etf_gen main gen SEED CORPUS
%%       Writes >= 5,000 terms (edge values of every type plus random nested
%%       terms from SEED) as term_to_binary/1,2 records into CORPUS.
%%   erl -noshell -pa EBIN -run etf_gen main check CORPUS GIRDER
%%       Reads what girder encoded (GIRDER, written by etf_interop) and
%%       checks that binary_to_term gives back the original terms.
%%   erl -noshell -pa EBIN -run etf_gen main phash2 SEED OUT
%%       Writes one line per corpus term (the same terms as gen): its
%%       term_to_binary in hex, then erlang:phash2(T), phash2(T, 1),
%%       phash2(T, 1000003) and phash2(T, 4294967296), space separated
%%       (tests/interop/phash2_interop.sh).
%%   erl -noshell -pa EBIN -run etf_gen main seeds SEED DIR MAXBYTES TOTAL
%%       Writes one file per distinct encoding of at most MAXBYTES bytes into
%%       DIR, TOTAL bytes at most (fuzz seed corpus for the decoder).
%%
%% Corpus file: "GDETFC01", then records, all integers big-endian:
%%   Id:32  Otp:8  Minor:8  Det:8  Level:8  InLen:32 In  ExpLen:32 Exp
%% Otp is the OTP release whose term_to_binary girder must reproduce (25, or
%% 26 = OTP 25's {minor_version,2}, which is OTP 26's default atom encoding);
%% Minor is the explicit {minor_version,M} option or 255 for none; Det is 1
%% for [deterministic]; Level is the zlib level of {compressed,Level} or 255
%% for none.  In is the input girder decodes; Exp is what girder's encoder
%% must produce with those options -- ExpLen 0 means Exp = In (In came
%% from term_to_binary with the options).  Records with ExpLen > 0 are
%% crafted, non-canonical inputs (old tags, unsorted maps, ...) whose Exp is
%% term_to_binary(binary_to_term(In), Opts).
%%
%% Girder file (etf_interop's output): "GDETFG01", then records:
%%   Src:8  Id:32  Otp:8  Minor:8  Det:8  Level:8  Len:32 Bytes
%% Src 0: Bytes re-encode corpus record number Id (0-based);
%% Src 1: Bytes encode girder-generated term number Id (several records per
%% term, one per option set).
-module(etf_gen).
-export([main/1]).

-define(CORPUS_MAGIC, <<"GDETFC01">>).
-define(GIRDER_MAGIC, <<"GDETFG01">>).
-define(NONE, 255).
-define(MIN_TERMS, 5000).

main(["gen", Seed, File]) ->
    run(fun() -> gen(list_to_integer(Seed), File) end);
main(["check", Corpus, Girder]) ->
    run(fun() -> check(Corpus, Girder) end);
main(["phash2", Seed, File]) ->
    run(fun() -> phash2(list_to_integer(Seed), File) end);
main(["seeds", Seed, Dir, Max, Total]) ->
    run(fun() -> seeds(list_to_integer(Seed), Dir, list_to_integer(Max), list_to_integer(Total)) end);
main(Args) ->
    io:format(standard_error, "etf_gen: bad arguments ~p~n", [Args]),
    halt(2).

run(F) ->
    Code = try F() of
               ok -> 0;
               _ -> 1
           catch C:R:S ->
                   io:format(standard_error, "etf_gen crashed: ~p:~p~n~p~n", [C, R, S]),
                   1
           end,
    halt(Code).

%% ---------------------------------------------------------------------------
%% phash2

phash2(Seed, File) ->
    Terms = terms(Seed),
    Lines = [[binary:encode_hex(term_to_binary(T)),
              [[$\s, integer_to_list(H)]
               || H <- [erlang:phash2(T) | [erlang:phash2(T, R) || R <- [1, 1000003, 1 bsl 32]]]],
              $\n] || T <- Terms],
    ok = file:write_file(File, Lines),
    io:format("etf_gen: seed ~p: phash2 of ~p terms~n", [Seed, length(Terms)]),
    ok.

%% ---------------------------------------------------------------------------
%% gen

gen(Seed, File) ->
    Terms = terms(Seed),
    Records = records(Terms) ++ crafted_records(),
    Body = [encode_record(I, R) || {I, R} <- Records],
    ok = file:write_file(File, [?CORPUS_MAGIC | Body]),
    Variants = lists:foldl(fun({_, {_, Opts, _, _}}, Acc) ->
                                   K = variant_name(Opts),
                                   maps:update_with(K, fun(N) -> N + 1 end, 1, Acc)
                           end, #{}, Records),
    io:format("etf_gen: seed ~p: ~p terms, ~p records (~s), ~p bytes~n",
              [Seed, length(Terms), length(Records),
               lists:join(", ", [io_lib:format("~s ~p", [K, N])
                                 || {K, N} <- lists:sort(maps:to_list(Variants))]),
               iolist_size(Body) + 8]),
    true = length(Terms) >= ?MIN_TERMS,
    ok.

variant_name({crafted, _}) -> "crafted";
variant_name(Opts) ->
    case [N || {O, N} <- [{compressed, "compressed"}, {minor0, "minor_version0"},
                          {deterministic, "deterministic"}, {otp26, "otp26"}],
               has_opt(O, Opts)] of
        [] -> "default";
        Ns -> lists:join("+", Ns)
    end.

has_opt(compressed, Opts) -> lists:member(compressed, Opts) orelse lists:keymember(compressed, 1, Opts);
has_opt(minor0, Opts) -> lists:member({minor_version, 0}, Opts);
has_opt(otp26, Opts) -> lists:member({minor_version, 2}, Opts);
has_opt(deterministic, Opts) -> lists:member(deterministic, Opts).

%% A record: {Id, {In, Opts, Exp, Header}}; Id is the term's number.
%% Every term gets a default record; subsets get the option variants.
records(Terms) ->
    Numbered = lists:zip(lists:seq(0, length(Terms) - 1), Terms),
    lists:append([term_records(I, T) || {I, T} <- Numbered]).

term_records(I, T) ->
    Big = has_big_map(T),
    Variants =
        [[] ] ++
        [[compression(I)] || I rem 5 =:= 0 orelse byte_size(term_to_binary(T)) > 50000] ++
        [[{minor_version, 0}] || I rem 7 =:= 0 orelse has_float(T)] ++
        [[deterministic] || I rem 11 =:= 0 orelse has_map(T)] ++
        [[deterministic, compression(I + 1)] || has_map(T), I rem 4 =:= 0] ++
        [[{minor_version, 2}] || not Big, I rem 3 =:= 0 orelse has_atom(T)],
    [{I, {term_to_binary(T, Opts), Opts, <<>>, header(Opts)}} || Opts <- Variants].

%% Cycle through the zlib levels, including 0 (stored: never smaller, so OTP
%% returns the plain encoding) and the bare `compressed` option (level 6).
compression(I) ->
    case I div 5 rem 5 of
        0 -> compressed;
        1 -> {compressed, 1};
        2 -> {compressed, 9};
        3 -> {compressed, 0};
        4 -> {compressed, 3}
    end.

header(Opts) ->
    Otp = case lists:member({minor_version, 2}, Opts) of true -> 26; false -> 25 end,
    Minor = case lists:member({minor_version, 0}, Opts) of true -> 0; false -> ?NONE end,
    Det = case lists:member(deterministic, Opts) of true -> 1; false -> 0 end,
    Level = case [L || {compressed, L} <- Opts] ++ [6 || compressed <- Opts] of
                [L] -> L;
                [] -> ?NONE
            end,
    <<Otp:8, Minor:8, Det:8, Level:8>>.

encode_record(Id, {In, _Opts, Exp, Header}) ->
    [<<Id:32>>, Header, <<(byte_size(In)):32>>, In, <<(byte_size(Exp)):32>>, Exp].

%% ---------------------------------------------------------------------------
%% The terms: edge values of every type, then random nested terms.

terms(Seed) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}),
    Edge = edge_terms(),
    Pools = pools(),
    NRandom = max(?MIN_TERMS + 200 - length(Edge), 0),
    Random = [random_term(Pools, 1 + rand:uniform(5)) || _ <- lists:seq(1, NRandom)],
    Edge ++ Random.

edge_terms() ->
    ints() ++ floats() ++ atoms() ++ binaries() ++ bitstrings() ++ strings()
        ++ lists() ++ tuples() ++ maps_() ++ identifiers() ++ funs() ++ nested()
        ++ hash_order_maps().

ints() ->
    Base = [0, 1, 2, 127, 128, 255, 256, 257, 65535, 65536, -1, -2, -127, -128,
            -255, -256, -257],
    Pow = lists:append([[P, P - 1, P + 1, -P, -P - 1, -P + 1]
                        || E <- [27, 28, 31, 32, 59, 60, 63, 64, 65, 127, 128],
                           P <- [1 bsl E]]),
    Bytes = lists:append([[(1 bsl (8 * N)) - 1, 1 bsl (8 * N), -((1 bsl (8 * N)) - 1),
                           -(1 bsl (8 * N))]
                          || N <- [1, 2, 3, 4, 7, 8, 9, 16, 254, 255, 256, 1000]]),
    Random = [S * rand_big(N) || N <- [255, 256, 1000], S <- [1, -1]],
    Base ++ Pow ++ Bytes ++ Random ++ [1 bsl E || E <- lists:seq(0, 130)]
        ++ [-(1 bsl E) || E <- lists:seq(0, 130)].

%% A random integer of exactly N bytes.
rand_big(N) ->
    <<X:(8 * N)>> = rand:bytes(N),
    X bor (1 bsl (8 * N - 1)).

floats() ->
    [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 0.1, 1 / 3, -2.5, 1.0e308, -1.0e308,
     1.7976931348623157e308, -1.7976931348623157e308, 5.0e-324, -5.0e-324,
     2.2250738585072014e-308, 2.225073858507201e-308, math:pi(), -math:pi(),
     math:exp(1), 1.0e15, 1.0e16, 123456789.123456789, 9007199254740993.0,
     float(1 bsl 62), 1.0e-10, 100.0, 1.0e21, 1.0e22, 1.0e23].

atoms() ->
    [ '', a, 'A', ok, true, false, undefined, nil, 'hello world', 'EXIT',
      'ö', 'ÿ', 'Åäö', '日本', 'α', 'ƒoo', '😀', 'a😀b',
      list_to_atom(lists:duplicate(255, $a)),
      list_to_atom(lists:duplicate(255, $ö)),   % 255 Latin-1 chars, 510 UTF-8 bytes
      list_to_atom(lists:duplicate(255, 26085)), % 255 x '日' (765 UTF-8 bytes)
      list_to_atom(lists:duplicate(255, 16#1F600)), % 1020 UTF-8 bytes
      list_to_atom(lists:duplicate(127, $ö) ++ "x"), % 255 UTF-8 bytes
      list_to_atom(lists:duplicate(128, $ö)),    % 256 UTF-8 bytes
      list_to_atom(lists:duplicate(85, 26085)),  % 255 UTF-8 bytes
      list_to_atom(lists:seq(1, 255)),
      list_to_atom([0, 1, 2]),
      nonode@nohost, 'other@host'].

binaries() ->
    Big = rand:bytes(100000),
    [<<>>, <<0>>, <<255>>, <<"abc">>, binary:copy(<<7>>, 63), rand:bytes(64),
     rand:bytes(65), rand:bytes(255), rand:bytes(256), rand:bytes(4096),
     rand:bytes(65536), Big, binary:copy(<<"girder">>, 20000),
     binary:part(Big, 1, 10), binary:part(Big, 100, 1000), binary:part(Big, 0, 64),
     binary:part(Big, 99990, 10)].

bitstrings() ->
    B = rand:bytes(100),
    [<<X:N>> || N <- lists:seq(1, 7), X <- [0, 1, (1 bsl N) - 1]]
        ++ [<<(binary:part(B, 0, L))/binary, 5:K>> || L <- [1, 2, 63, 64, 65, 99], K <- lists:seq(1, 7)]
        ++ [begin <<_:Off, S:Len/bitstring, _/bitstring>> = B, S end
            || {Off, Len} <- [{3, 13}, {1, 1}, {7, 64}, {5, 517}, {8, 9}, {1, 8}, {3, 24}]].

strings() ->
    ["", "a", "hello", [0], [255], lists:seq(0, 255), lists:duplicate(65535, $x),
     lists:duplicate(65536, $x), lists:seq(1, 300), "ab" ++ [256], [$a | <<"b">>],
     lists:duplicate(100, 0), [rand:uniform(256) - 1 || _ <- lists:seq(1, 1000)]].

lists() ->
    [[1, 2 | 3], [a | b], [[]], [[] | []], [1 | 2.0], [<<>> | <<>>],
     [a, b, c | d], lists:seq(1, 1000), [{}, [], #{}], [-1], [256, 1], [1, 256],
     [[[[[]]]]], ["abc", "def" | "ghi"], [1.0, 2.0], lists:duplicate(70000, a)].

tuples() ->
    [{}, {a}, {a, b}, {{}}, list_to_tuple(lists:seq(1, 255)),
     list_to_tuple(lists:seq(1, 256)), list_to_tuple(lists:duplicate(1000, x)),
     list_to_tuple([lists:seq(1, I) || I <- lists:seq(0, 20)])].

maps_() ->
    M = fun(N) -> maps:from_list([{K, K * 2} || K <- lists:seq(1, N)]) end,
    A = fun(N) -> maps:from_list([{list_to_atom("k" ++ integer_to_list(K)), K}
                                  || K <- lists:seq(1, N)]) end,
    Mixed = fun(N) ->
                    maps:from_list(
                      [{case K rem 9 of
                            0 -> K;
                            1 -> list_to_atom("m" ++ integer_to_list(K));
                            2 -> integer_to_binary(K);
                            3 -> {K, t};
                            4 -> [K];
                            5 -> K + 0.5;
                            6 -> -K * (1 bsl 70);
                            7 -> #{K => K};
                            8 -> integer_to_list(K)
                        end, K} || K <- lists:seq(1, N)])
            end,
    [#{}, #{a => 1}, #{1 => a, 1.0 => b}, #{b => 1, a => 2}, #{1 => a, a => 1},
     #{[] => [], {} => {}, <<>> => <<>>, #{} => #{}},
     M(31), M(32), M(33), M(64), M(1000), A(32), A(33), A(100),
     Mixed(32), Mixed(33), Mixed(1000),
     #{nested => #{deep => #{deeper => M(40)}}},
     maps:from_list([{self(), pid}, {make_ref(), ref}, {fun lists:map/2, f}, {-0.0, z}]),
     maps:from_list([{I, M(I)} || I <- [0, 1, 33]])].

%% Maps of more than 32 keys whose keys OTP hashes the same in every VM
%% (no atoms, pids, ports, references or funs inside): girder must re-encode
%% them to OTP's exact bytes, i.e. reproduce OTP's internal hash and HAMT
%% order.  Every key type and shape the hash treats differently, mixed.
hash_order_maps() ->
    Sizes = [33, 34, 40, 48, 64, 100, 257, 1000, 4000]
        ++ [32 + rand:uniform(300) || _ <- lists:seq(1, 150)],
    Typed = [maps:from_list([{portable_key(Kind, 2), I} || I <- lists:seq(1, 80)])
             || Kind <- lists:seq(1, 14)],
    [maps:from_list([{portable_key(rand:uniform(14), 2), I} || I <- lists:seq(1, N)])
     || N <- Sizes] ++ Typed ++ [#{nested => hd(Typed)}, {hd(Typed), lists:last(Typed)}].

portable_key(Kind, D) ->
    case Kind of
        1 -> rand:uniform(1 bsl 20) - (1 bsl 19);
        2 -> element(rand:uniform(6), {(1 bsl 59) - 1, -(1 bsl 59), 1 bsl 59,
                                       -(1 bsl 59) - 1, 0, rand:uniform(1 bsl 59)});
        3 -> sign() * rand_big(rand:uniform(24));
        4 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(40) - 20);
        5 -> element(rand:uniform(4), {0.0, -0.0, float(rand:uniform(1000)), -1.5});
        6 -> rand:bytes(rand:uniform(41) - 1);
        7 -> <<(rand:bytes(rand:uniform(30) - 1))/binary, (rand:uniform(127)):(rand:uniform(7))>>;
        8 -> %% unaligned sub-binaries (OTP hashes a copy of their bits)
            Len = rand:uniform(30) - 1,
            Bits = rand:uniform(7),
            <<_:Bits, Sub:Len/binary, _/bitstring>> = rand:bytes(Len + 1),
            Sub;
        9 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(13) - 1)];
        10 -> %% mixed and improper lists
            lists:foldl(fun(_, Acc) -> [key_leaf(D) | Acc] end, key_leaf(D),
                        lists:seq(1, rand:uniform(5) - 1));
        11 -> list_to_tuple([key_leaf(D) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        12 -> maps:from_list([{key_leaf(D), key_leaf(D)} || _ <- lists:seq(1, rand:uniform(4) - 1)]);
        13 -> [];
        14 when D > 0 -> %% a map of more than 32 keys as a key
            maps:from_list([{portable_key(rand:uniform(9), D - 1), I}
                            || I <- lists:seq(1, 33 + rand:uniform(20))]);
        14 -> rand:uniform(1000)
    end.

key_leaf(D) when D =< 0 -> rand:uniform(300) - 100;
key_leaf(D) -> portable_key(rand:uniform(13), D - 1).

%% Local pids/ports/refs and ones of other nodes, made with binary_to_term
%% of crafted NEW_PID_EXT / NEW_PORT_EXT / V4_PORT_EXT / NEWER_REFERENCE_EXT.
identifiers() ->
    Nodes = ['other@host', 'x@日本', 'n@127.0.0.1', list_to_atom("long" ++ lists:duplicate(200, $n) ++ "@h")],
    Creations = [0, 1, 3, 4, 16#12345678, 16#FFFFFFFF],
    Pids = [binary_to_term(<<131, 88, (atom_ext(N))/binary, Id:32, Ser:32, Cr:32>>)
            || N <- Nodes, Cr <- Creations, {Id, Ser} <- [{0, 0}, {1, 2}, {16#7FFF, 16#1FFF}, {16#FFFFFFFF, 16#FFFFFFFF}]],
    Ports = [binary_to_term(<<131, 89, (atom_ext(N))/binary, Id:32, Cr:32>>)
             || N <- Nodes, Cr <- Creations, Id <- [0, 5, 16#FFFFFFFF]]
        ++ [binary_to_term(<<131, 120, (atom_ext(N))/binary, Id:64, Cr:32>>)
            || N <- Nodes, Cr <- [1, 16#FFFFFFFF], Id <- [0, 16#100000000, 16#FFFFFFFFFFFFFFFF]],
    Refs = [binary_to_term(<<131, 90, Len:16, (atom_ext(N))/binary, Cr:32,
                             (<< <<W:32>> || W <- lists:sublist([16#3FFFF, 16#FFFFFFFF, 7, 8, 9], Len) >>)/binary>>)
            || N <- Nodes, Cr <- [0, 2, 16#FFFFFFFF], Len <- lists:seq(0, 5)],
    Local = binary_to_term(<<131, 88, (atom_ext(node()))/binary, 5:32, 6:32, 0:32>>),
    Spawned = spawn(fun() -> ok end),
    [self(), Local, Spawned, make_ref(), make_ref(), hd(erlang:ports()),
     lists:last(erlang:ports()), {self(), make_ref()}, [self() | make_ref()]]
        ++ Pids ++ Ports ++ Refs.

atom_ext(A) ->
    B = atom_to_binary(A, utf8),
    <<118, (byte_size(B)):16, B/binary>>.

funs() ->
    [fun lists:map/2, fun erlang:'+'/2, erlang:make_fun('mod with space', 'f ö', 0),
     erlang:make_fun('日本', '日本', 255), fun() -> ok end, fun(X) -> X end,
     adder(5), adder(1 bsl 100), adder([a, b, {c}]), adder(#{a => 1}),
     adder(maps:from_list([{K, K} || K <- lists:seq(1, 40)])),
     closure3(1.5, <<"bin">>, self()), closure3(adder(1), fun lists:map/2, []),
     closure3(lists:seq(1, 300), list_to_tuple(lists:seq(1, 300)), -0.0)].

adder(Y) -> fun(X) -> X + Y end.

closure3(A, B, C) -> fun(X) -> {X, A, B, C} end.

%% Deep nesting: the decoder and encoder must not recurse on the C stack.
nested() ->
    [deep_list(3000), deep_tuple(3000), deep_map(500), deep_cdr(5000),
     lists:foldl(fun(I, Acc) -> {I, [Acc], #{I => Acc}} end, leaf, lists:seq(1, 12)),
     nest_mix(200)].

deep_list(0) -> [];
deep_list(N) -> [deep_list(N - 1)].

deep_tuple(0) -> {};
deep_tuple(N) -> {deep_tuple(N - 1)}.

deep_map(0) -> #{};
deep_map(N) -> #{N => deep_map(N - 1)}.

deep_cdr(N) -> lists:foldl(fun(I, Acc) -> [I | Acc] end, tail, lists:seq(1, N)).

nest_mix(0) -> <<"end">>;
nest_mix(N) ->
    case N rem 4 of
        0 -> [N, nest_mix(N - 1)];
        1 -> {N, nest_mix(N - 1)};
        2 -> #{N => nest_mix(N - 1)};
        3 -> adder(nest_mix(N - 1))
    end.

%% ---------------------------------------------------------------------------
%% Random terms.

pools() ->
    Atoms = atoms() ++ [random_atom() || _ <- lists:seq(1, 150)],
    %% OTP 25.2.3 (erts 13.1.5) mishandles some external references as
    %% keys of hash maps (> 32 keys): two that agree in their first three
    %% id words crash the VM (segfault) when put in one map; after
    %% binary_to_term a 1-word one is not found by maps:get and the map is
    %% not =:= to an equal one, and a 0-word one fails binary_to_term.  The
    %% random terms put anything in maps, so they use references of 2 or 3
    %% words only; the other lengths appear in the edge terms (never as keys
    %% of a hash map).
    Ids = [I || I <- identifiers(), not is_reference(I) orelse lists:member(ref_words(I), [2, 3])],
    Funs = [fun lists:map/2, fun() -> ok end, erlang:make_fun(m, f, 3)],
    {list_to_tuple(Atoms), list_to_tuple(Ids), list_to_tuple(Funs)}.

random_atom() ->
    Len = rand:uniform(21) - 1,
    list_to_atom([random_char() || _ <- lists:seq(1, Len)]).

random_char() ->
    case rand:uniform(10) of
        1 -> 128 + rand:uniform(127);           % Latin-1 upper half
        2 -> 16#100 + rand:uniform(16#700);     % 2-byte UTF-8
        3 -> 16#3040 + rand:uniform(16#60);     % 3-byte UTF-8
        4 -> 16#1F600 + rand:uniform(16#40);    % 4-byte UTF-8
        _ -> $a + rand:uniform(26) - 1
    end.

ref_words(R) ->
    <<131, 90, Len:16, _/binary>> = term_to_binary(R),
    Len.

pick(T) -> element(rand:uniform(tuple_size(T)), T).

random_term(Pools, D) when D =< 0 -> random_leaf(Pools);
random_term(Pools, D) ->
    case rand:uniform(16) of
        1 -> [random_term(Pools, D - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)];
        2 -> lists:foldl(fun(_, Acc) -> [random_term(Pools, D - 1) | Acc] end,
                         random_leaf(Pools), lists:seq(1, rand:uniform(4)));
        3 -> list_to_tuple([random_term(Pools, D - 1) || _ <- lists:seq(1, rand:uniform(7) - 1)]);
        4 -> random_map(Pools, D);
        5 -> random_map(Pools, D);
        6 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(40))];
        7 -> closure3(random_term(Pools, D - 1), random_leaf(Pools), random_leaf(Pools));
        8 -> adder(random_term(Pools, D - 1));
        _ -> random_leaf(Pools)
    end.

%% Big maps (around and above the 32-key flat/hash boundary) get leaf keys
%% and values so that the term size stays linear in the depth.
random_map(Pools, D) ->
    {N, VD} = case rand:uniform(10) of
                  1 -> {30 + rand:uniform(10), 0};
                  2 -> {60 + rand:uniform(100), 0};
                  _ -> {rand:uniform(6) - 1, D - 1}
              end,
    maps:from_list([{random_term(Pools, min(VD, 1)), random_term(Pools, VD)}
                    || _ <- lists:seq(1, N)]).

sign() -> 3 - 2 * rand:uniform(2).

random_leaf({Atoms, Ids, Funs}) ->
    case rand:uniform(14) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31);
        3 -> rand:uniform(1 bsl 62) - (1 bsl 61);
        4 -> sign() * rand_big(rand:uniform(40));
        5 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        6 -> pick(Atoms);
        7 -> pick(Atoms);
        8 -> rand:bytes(rand:uniform(100) - 1);
        9 -> <<(rand:bytes(rand:uniform(80) - 1))/binary, (rand:uniform(127)):(rand:uniform(7))>>;
        10 -> pick(Ids);
        11 -> pick(Funs);
        12 -> [];
        13 -> rand:bytes(65 + rand:uniform(300));
        14 -> rand:uniform(1000) * 1.0
    end.

%% ---------------------------------------------------------------------------
%% Crafted (non-canonical) inputs: girder must decode them and re-encode to
%% exactly what OTP's term_to_binary makes of the decoded term.

crafted_records() ->
    Other = <<100, 0, 10, "other@host">>,
    Local = atom_ext(node()),
    Inputs =
        [<<131, 115, 3, "abc">>,                          % SMALL_ATOM_EXT
         <<131, 115, 1, 246>>,                            % SMALL_ATOM_EXT Latin-1
         <<131, 119, 3, "abc">>,                          % SMALL_ATOM_UTF8_EXT, ASCII
         <<131, 118, 0, 3, "abc">>,                       % ATOM_UTF8_EXT, short
         <<131, 119, 2, 195, 182>>,                       % 'ö' as UTF-8
         <<131, 100, 0, 0>>,                              % '' as ATOM_EXT
         <<131, 99, (float_text(1.5))/binary>>,           % FLOAT_EXT
         <<131, 99, (float_text(-0.0))/binary>>,
         <<131, 99, (float_text(1.0e308))/binary>>,
         <<131, 110, 1, 0, 5>>,                           % bignum that fits 97
         <<131, 110, 0, 1>>,                              % empty negative bignum = 0
         <<131, 110, 4, 1, 0, 0, 0, 0>>,                  % negative zero
         <<131, 110, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0>>,      % leading zero digits
         <<131, 111, 0, 0, 0, 2, 1, 255, 255>>,           % LARGE_BIG, small value
         <<131, 98, 0, 0, 0, 5>>,                         % INTEGER_EXT for 5
         <<131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106>>,     % LIST_EXT of bytes -> STRING_EXT
         <<131, 108, 0, 0, 0, 0, 97, 7>>,                 % LIST_EXT len 0 = the tail
         <<131, 107, 0, 0>>,                              % STRING_EXT len 0 = []
         <<131, 105, 0, 0, 0, 2, 97, 1, 97, 2>>,          % LARGE_TUPLE_EXT arity 2
         <<131, 116, 0, 0, 0, 2, 100, 0, 1, $b, 97, 1, 100, 0, 1, $a, 97, 2>>, % unsorted
         <<131, 116, 0, 0, 0, 2, 97, 2, 97, 0, 97, 1, 97, 0>>,
         <<131, 77, 0, 0, 0, 1, 3, 255>>,                 % dirty tail bits
         <<131, 77, 0, 0, 0, 2, 8, 1, 2>>,                % Bits = 8: a binary
         <<131, 77, 0, 0, 0, 0, 0>>,                      % <<>>
         <<131, 103, Other/binary, 1:32, 2:32, 3>>,       % PID_EXT
         <<131, 102, Other/binary, 9:32, 2>>,             % PORT_EXT
         <<131, 101, Other/binary, 9:32, 1>>,             % REFERENCE_EXT
         <<131, 114, 0, 3, Other/binary, 2, 1:32, 2:32, 3:32>>, % NEW_REFERENCE_EXT
         <<131, 114, 0, 1, Other/binary, 0, 1:32>>,
         <<131, 120, Other/binary, 5:64, 1:32>>,          % V4_PORT_EXT, small id
         <<131, 88, Local/binary, 7:32, 8:32, 0:32>>,     % local pid spelled UTF-8
         <<131, 90, 0, 2, 119, 10, "other@host", 1:32, 1:32, 2:32>>],
    Compressed = [term_to_binary(T, [compressed])
                  || T <- [lists:duplicate(100, 0), lists:seq(1, 1000),
                           binary:copy(<<"abc">>, 1000), #{big => lists:duplicate(50, x)}]],
    [{10000000 + I, {In, {crafted, Opts}, term_to_binary(binary_to_term(In), Opts), header(Opts)}}
     || {I, {In, Opts}} <- lists:zip(lists:seq(0, length(Inputs) + 2 * length(Compressed) - 1),
                                     [{In, []} || In <- Inputs]
                                     ++ [{In, []} || In <- Compressed]
                                     ++ [{In, [{minor_version, 0}]} || In <- Compressed])].

float_text(F) ->
    S = list_to_binary(io_lib:format("~.20e", [F])),
    <<S/binary, 0:((31 - byte_size(S)) * 8)>>.

%% ---------------------------------------------------------------------------
%% Term predicates (the generator's own terms: plain recursion is fine).

has_big_map(T) -> any(fun(X) -> is_map(X) andalso map_size(X) > 32 end, T).
%% A map of more than 32 keys whose order only the emitting VM knows: a key
%% holds an atom (hashed by its atom-table index), a pid, port, reference or
%% fun (node and export entries hashed by address).  Others must re-encode
%% to the same bytes.
vm_specific_big_map(T) ->
    VmSpecific = fun(X) -> is_atom(X) orelse is_pid(X) orelse is_port(X)
                               orelse is_reference(X) orelse is_function(X) end,
    any(fun(X) -> is_map(X) andalso map_size(X) > 32 andalso
                      lists:any(fun(K) -> any(VmSpecific, K) end, maps:keys(X)) end, T).
has_map(T) -> any(fun is_map/1, T).
has_float(T) -> any(fun is_float/1, T).
has_atom(T) -> any(fun is_atom/1, T).

any(P, T) ->
    P(T) orelse
        case T of
            [H | R] -> any(P, H) orelse any(P, R);
            _ when is_tuple(T) -> lists:any(fun(E) -> any(P, E) end, tuple_to_list(T));
            _ when is_map(T) -> lists:any(fun({K, V}) -> any(P, K) orelse any(P, V) end,
                                          maps:to_list(T));
            _ when is_function(T) -> lists:any(fun(E) -> any(P, E) end, fun_env(T));
            _ -> false
        end.

fun_env(F) ->
    case erlang:fun_info(F, type) of
        {type, local} -> element(2, erlang:fun_info(F, env));
        {type, external} -> []
    end.

%% ---------------------------------------------------------------------------
%% check: the reverse direction.

check(CorpusFile, GirderFile) ->
    {ok, <<"GDETFC01", CBody/binary>>} = file:read_file(CorpusFile),
    {ok, <<"GDETFG01", GBody/binary>>} = file:read_file(GirderFile),
    Corpus = list_to_tuple(corpus_records(CBody)),
    GRecs = girder_records(GBody),
    Init = #{decoded => 0, equal => 0, bytes => 0, map_equal => 0, failed => 0,
             from_corpus => 0, generated => 0, first => #{}},
    R = lists:foldl(fun(G, Acc) -> check_one(G, Corpus, Acc) end, Init, GRecs),
    #{decoded := D, equal := E, bytes := B, map_equal := M, failed := F,
      from_corpus := FC, generated := GN} = R,
    io:format("reverse (girder -> OTP): ~p girder encodings checked: ~p decoded by binary_to_term, "
              "~p equal to the original (=:= and the same deterministic encoding), ~p failed~n"
              "  ~p encode corpus terms; ~p encode girder-built terms, which OTP re-encodes to "
              "the same bytes ~p times (map-equal: ~p, maps > 32 keys with atom, pid, port, ref or fun keys, in the emitting VM's hash order)~n",
              [length(GRecs), D, E, F, FC, GN, B, M]),
    case F =:= 0 andalso length(GRecs) > 0 andalso E =:= length(GRecs) of
        true -> ok;
        false -> error
    end.

corpus_records(<<>>) -> [];
corpus_records(<<Id:32, _Hdr:4/binary, InLen:32, In:InLen/binary, ExpLen:32, _:ExpLen/binary,
                 Rest/binary>>) ->
    [{Id, In} | corpus_records(Rest)].

girder_records(<<>>) -> [];
girder_records(<<Src:8, Id:32, Otp:8, Minor:8, Det:8, Level:8, Len:32, Bytes:Len/binary,
                 Rest/binary>>) ->
    [{Src, Id, {Otp, Minor, Det, Level}, Bytes} | girder_records(Rest)].

opts({Otp, Minor, Det, Level}) ->
    [{minor_version, 2} || Otp >= 26] ++ [{minor_version, Minor} || Minor =/= ?NONE]
        ++ [deterministic || Det =:= 1] ++ [{compressed, Level} || Level =/= ?NONE].

check_one({Src, Id, Hdr, Bytes}, Corpus, Acc0) ->
    Acc = bump(case Src of 0 -> from_corpus; 1 -> generated end, Acc0),
    try binary_to_term(Bytes) of
        T ->
            Acc1 = bump(decoded, Acc),
            case Src of
                0 ->
                    {_, In} = element(Id + 1, Corpus),
                    Orig = binary_to_term(In),
                    check_equal(Orig, T, {corpus, Id}, Acc1);
                1 ->
                    %% Generated terms have no Erlang original: OTP must re-encode
                    %% the decoded term to exactly girder's bytes (to the same
                    %% deterministic bytes when a map has > 32 keys), and every
                    %% option set of one term must decode to the same term.
                    Ref = case get({gen, Id}) of
                              undefined -> put({gen, Id}, T), T;
                              First -> First
                          end,
                    Acc3 = check_equal(Ref, T, {generated, Id}, Acc1),
                    Opts = opts(Hdr),
                    case term_to_binary(T, Opts) of
                        Bytes -> bump(bytes, Acc3);
                        _ ->
                            case vm_specific_big_map(T) andalso not lists:member(deterministic, Opts) of
                                true -> bump(map_equal, Acc3);
                                false -> fail({generated, Id, Opts, reencode_differs,
                                               first_difference(Bytes, term_to_binary(T, Opts))},
                                              Acc3)
                            end
                    end
            end
    catch C:R ->
            fail({Src, Id, Hdr, binary_to_term_failed, C, R, Bytes}, Acc)
    end.

%% =:= plus equal deterministic encodings: OTP 25's =:= holds for 0.0 and
%% -0.0, the encodings tell them apart.
check_equal(A, B, What, Acc) ->
    case A =:= B andalso term_to_binary(A, [deterministic]) =:= term_to_binary(B, [deterministic]) of
        true -> bump(equal, Acc);
        false -> fail({What, not_equal, A, B}, Acc)
    end.

%% Where two encodings first differ: {Offset, GirderWindow, OtpWindow}.
first_difference(G, O) ->
    N = length(lists:takewhile(fun({X, Y}) -> X =:= Y end,
                               lists:zip(binary_to_list(binary:part(G, 0, min(byte_size(G), byte_size(O)))),
                                         binary_to_list(binary:part(O, 0, min(byte_size(G), byte_size(O))))))),
    From = max(0, N - 16),
    W = fun(B) -> binary:part(B, From, min(byte_size(B) - From, 40)) end,
    {at, N, girder, W(G), otp, W(O)}.

bump(K, M) -> maps:update_with(K, fun(N) -> N + 1 end, 1, M).

fail(Why, Acc = #{failed := F}) ->
    F < 10 andalso io:format("reverse FAIL: ~P~n", [Why, 40]),
    Acc#{failed := F + 1}.

%% ---------------------------------------------------------------------------
%% seeds: one file per small encoding, for the decoder's fuzz corpus.  The
%% crafted inputs come first, then the edge terms (and their option
%% variants), then random terms, until Total bytes are written.

seeds(Seed, Dir, Max, Total) ->
    Terms = terms(Seed),
    Records = crafted_records() ++ records(Terms),
    Small = dedup([In || {_, {In, _, _, _}} <- Records, byte_size(In) =< Max], #{}),
    Chosen = take_bytes(Small, Total),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    lists:foreach(fun({I, B}) ->
                          Name = io_lib:format("otp25-~5..0b.etf", [I]),
                          ok = file:write_file(filename:join(Dir, Name), B)
                  end, lists:zip(lists:seq(1, length(Chosen)), Chosen)),
    io:format("etf_gen: wrote ~p seed files (<= ~p bytes each, ~p bytes total) to ~s~n",
              [length(Chosen), Max, lists:sum([byte_size(B) || B <- Chosen]), Dir]),
    ok.

dedup([], _) -> [];
dedup([B | Bs], Seen) when is_map_key(B, Seen) -> dedup(Bs, Seen);
dedup([B | Bs], Seen) -> [B | dedup(Bs, Seen#{B => true})].

take_bytes([B | Bs], Left) when byte_size(B) =< Left -> [B | take_bytes(Bs, Left - byte_size(B))];
take_bytes(_, _) -> [].
