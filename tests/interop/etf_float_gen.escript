#!/usr/bin/env escript
%% FLOAT_EXT (tag 99) cases for the float interop test (CTest:
%% interop_etf_float): writes one record per case, <<Len:16, Bin:Len/binary,
%% Ok:8, Bits:64>>, Bin being 131 99 Text31 Tail and Ok/Bits binary_to_term/1's
%% verdict on this OTP: Ok = 0 for badarg, else 1 and the float's IEEE bits.
%%
%%   etf_float_gen.escript OUTFILE SEED N
%%
%% Cases: hand-picked edges (radix ',' and '.', exponents, signs, NUL
%% placement, texts running past the 31 bytes into the tail), N random
%% well-formed texts mutated at random, and N random byte soups of the
%% text's alphabet.  Every binary contains a NUL at or after the text, so
%% OTP's scan (which reads to a NUL) never leaves the binary.
-mode(compile).

main([Out, SeedS, NS]) ->
    Seed = list_to_integer(SeedS),
    N = list_to_integer(NS),
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}),
    Cases = fixed() ++ [structured() || _ <- lists:seq(1, N)] ++ [soup() || _ <- lists:seq(1, N)],
    Records = [<<(byte_size(B)):16, B/binary, (verdict(B))/binary>> || B <- Cases],
    ok = file:write_file(Out, Records),
    io:format("~p FLOAT_EXT cases (seed ~p)~n", [length(Cases), Seed]);
main(_) ->
    io:format(standard_error, "usage: etf_float_gen.escript OUTFILE SEED N~n", []),
    halt(2).

%% On a copy: OTP 25's sys_chars_to_double swaps a ',' radix for '.' in
%% place, in the binary it was given (probed: <<131,99,"1,5",...>> reads
%% <<131,99,"1.5",...>> after binary_to_term), so the case must be kept from
%% the verdict.
verdict(B) ->
    case catch binary_to_term(binary:copy(B)) of
        F when is_float(F) -> <<1, F/float>>;
        _ -> <<0, 0:64>>
    end.

%% 131 99 Text padded with NULs to 31 bytes, then Tail.
ext(Text, Tail) when byte_size(Text) >= 31 ->
    <<T:31/binary, More/binary>> = Text,
    <<131, 99, T/binary, More/binary, Tail/binary>>;
ext(Text, Tail) ->
    <<131, 99, Text/binary, 0:((31 - byte_size(Text)) * 8), Tail/binary>>.

fixed() ->
    Zeros = binary:copy(<<"0">>, 29),
    Texts = [<<"1.5">>, <<"1,5">>, <<"1.5e3">>, <<"1.">>, <<".5">>, <<"1.5e">>, <<"1.5e+">>,
             <<"+1.5">>, <<"-1,5E-2">>, <<" 1.5">>, <<"1.5 ">>, <<"1.5", 0, "xyz">>, <<"1e5">>,
             <<"1.0e999">>, <<"1.0e-999">>, <<"4.9e-324">>, <<"1.5e-310">>, <<"00001.5">>,
             <<"1.5e0005">>, <<"1..5">>, <<"1.5E+2">>, <<"-0.0">>, <<"1.5e3x">>, <<"1,,5">>,
             <<"1.5,">>, <<"1,5e">>, <<"inf">>, <<"nan">>, <<"0x1.8p0">>, <<"">>,
             <<"1.7976931348623157e308">>, <<"1.7976931348623159e308">>, <<"2.4703282292062328e-324">>,
             <<"-1,7976931348623157E+308">>, <<"1.0e-2147483649">>, <<"1.0e2147483648">>],
    [ext(T, <<>>) || T <- Texts] ++
        [ext(<<"1.", Zeros/binary>>, Tail)
         || Tail <- [<<0>>, <<"5", 0>>, <<"e5", 0>>, <<"E-5", 0>>, <<"x", 0>>, <<"e", 0>>,
                     <<"e+", 0>>, <<"5e5", 0>>, <<".5", 0>>, <<",5", 0>>, <<" ", 0>>]] ++
        [ext(<<"-", Zeros/binary, "0">>, <<"0.5", 0>>), ext(<<"1,", Zeros/binary>>, <<"1", 0>>),
         ext(<<"12345678901234567890.123456789">>, <<0>>),
         ext(<<"1.234567890123456789012345678e", "1">>, <<"0", 0>>)].

pick(L) -> lists:nth(rand:uniform(length(L)), L).
digits(Max) -> << <<($0 + rand:uniform(10) - 1)>> || _ <- lists:seq(1, rand:uniform(Max)) >>.
maybe(P, B) -> case rand:uniform() < P of true -> B; false -> <<>> end.

structured() ->
    Sign = maybe(0.3, pick([<<"+">>, <<"-">>])),
    Exp = maybe(0.5, <<(pick([<<"e">>, <<"E">>]))/binary,
                       (maybe(0.5, pick([<<"+">>, <<"-">>])))/binary, (digits(4))/binary>>),
    Text0 = <<Sign/binary, (digits(12))/binary, (pick([<<".">>, <<",">>]))/binary,
              (digits(14))/binary, Exp/binary>>,
    Text = mutate(Text0),
    Tail = case byte_size(Text) >= 31 of
               true -> <<(soup_bytes(rand:uniform(4) - 1))/binary, 0>>;
               false -> maybe(0.2, <<(soup_bytes(3))/binary, 0>>)
           end,
    ext(Text, Tail).

mutate(T) ->
    case rand:uniform(4) of
        1 when byte_size(T) > 0 ->
            P = rand:uniform(byte_size(T)) - 1,
            <<A:P/binary, _, B/binary>> = T,
            <<A/binary, (soup_bytes(1))/binary, B/binary>>;
        2 when byte_size(T) > 0 ->
            P = rand:uniform(byte_size(T)) - 1,
            <<A:P/binary, _, B/binary>> = T,
            <<A/binary, B/binary>>;
        _ -> T
    end.

soup_bytes(N) ->
    Alphabet = <<"0123456789012345678901234567890123456789.,eE+-+- x", 0>>,
    << <<(binary:at(Alphabet, rand:uniform(byte_size(Alphabet)) - 1))>> || _ <- lists:seq(1, N) >>.

soup() ->
    Text = soup_bytes(31),
    case binary:match(Text, <<0>>) of
        nomatch -> ext(Text, <<(soup_bytes(rand:uniform(3) - 1))/binary, 0>>);
        _ -> ext(Text, <<>>)
    end.
