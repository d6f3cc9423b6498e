/*
 * test_text.c — etf_print / etf_parse (etf/text_print.c, etf/text_parse.c).
 *
 * Reference strings.  Every expected text below that says "erl" was printed
 * by OTP 25.2.3 (erts-13.1.5) on this machine with
 *     erl -noshell -eval 'io:format("~s", [unicode:characters_to_binary(
 *         io_lib:format("~p", [T]))]), halt().'
 * (io_lib:format ~p = latin1 printable range, one line for short terms; the
 * characters converted to UTF-8 as etf_print emits them).  The "forms"
 * table was made by feeding each input to erl_scan:string/1 +
 * erl_parse:parse_term/1 and printing the result the same way.  The
 * generator scripts are in the commit message of the commit adding this
 * file; the values are checked here as literals.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "etf.h"
#include "termgen_util.h"

/* ------------------------------------------------------------------------ */
/* Helpers.                                                                 */

static heap_t heap;

static void heap_setup(void)
{
    CU_ASSERT_FATAL(heap_init(&heap, 0) == GD_OK);
}

/* Prints t into a NUL-terminated malloc'ed string (NULL on failure). */
static char *print_term(term_t t)
{
    etf_buf_t b = {0};
    if (etf_print(t, &b) != GD_OK || etf_buf_reserve(&b, 1) != GD_OK) {
        etf_buf_free(&b);
        return NULL;
    }
    b.data[b.len] = '\0';
    return (char *)b.data;
}

static int parse_str(const char *text, term_t *out, etf_error_t *err)
{
    return etf_parse(&heap, text, strlen(text), out, err);
}

/* Asserts that t prints as `want`. */
static void check_print(term_t t, const char *want)
{
    char *got = print_term(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    if (strcmp(got, want) != 0)
        printf("\n  print: got [%s] want [%s]\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
}

/* Asserts that `text` parses and prints back as `want`. */
static void check_form(const char *text, const char *want)
{
    term_t t;
    etf_error_t err;
    int rc = parse_str(text, &t, &err);
    if (rc != GD_OK)
        printf("\n  parse of [%s] failed: %s at %zu\n", text, etf_strerror(rc), err.offset);
    CU_ASSERT_EQUAL_FATAL(rc, GD_OK);
    CU_ASSERT_EQUAL(err.code, 0);
    check_print(t, want);
}

/* Asserts print -> parse gives a term =:= t that prints the same. */
static void check_roundtrip(term_t t)
{
    char *text = print_term(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    term_t back;
    etf_error_t err;
    int rc = etf_parse(&heap, text, strlen(text), &back, &err);
    if (rc != GD_OK) {
        printf("\n  reparse of [%.200s] failed: %s at %zu\n", text, etf_strerror(rc), err.offset);
        CU_FAIL("reparse failed");
        free(text);
        return;
    }
    if (tg_compare(t, back, true) != 0) {
        printf("\n  reparse of [%.200s] is not =:=\n", text);
        CU_FAIL("reparse differs");
    }
    char *again = print_term(back);
    CU_ASSERT_PTR_NOT_NULL_FATAL(again);
    CU_ASSERT_STRING_EQUAL(text, again);
    free(again);
    free(text);
}

static term_t atom(const char *name)
{
    term_t a = heap_atom(name);
    CU_ASSERT_FATAL(a != TERM_NONE);
    return a;
}

static term_t tuple2(term_t a, term_t b)
{
    term_t *e, t;
    CU_ASSERT_FATAL(heap_make_tuple(&heap, 2, &e, &t) == GD_OK);
    e[0] = a;
    e[1] = b;
    return t;
}

static term_t charlist(const int *cs, size_t n)
{
    term_t l = TERM_NIL;
    for (size_t i = n; i-- > 0;)
        CU_ASSERT_FATAL(heap_cons(&heap, term_make_small(cs[i]), l, &l) == GD_OK);
    return l;
}

static term_t flt(double d)
{
    term_t t;
    CU_ASSERT_FATAL(heap_make_float(&heap, d, &t) == GD_OK);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Printing terms built directly (independent of the parser).               */

static void test_print_built(void)
{
    heap_setup();
    term_t t;

    /* Integers (erl). */
    check_print(term_make_small(0), "0");
    check_print(term_make_small(-1), "-1");
    check_print(term_make_small(SMALL_MAX), "576460752303423487");
    CU_ASSERT_FATAL(heap_make_int64(&heap, SMALL_MAX + 1, &t) == GD_OK);
    check_print(t, "576460752303423488");
    CU_ASSERT_FATAL(heap_make_int64(&heap, SMALL_MIN - 1, &t) == GD_OK);
    check_print(t, "-576460752303423489");
    CU_ASSERT_FATAL(heap_make_uint64(&heap, UINT64_MAX, &t) == GD_OK);
    check_print(t, "18446744073709551615");
    uint64_t two64[2] = {0, 1};
    CU_ASSERT_FATAL(heap_make_integer_digits(&heap, true, two64, 2, &t) == GD_OK);
    check_print(t, "-18446744073709551616");
    uint64_t two200[4] = {0, 0, 0, (uint64_t)1 << 8};
    CU_ASSERT_FATAL(heap_make_integer_digits(&heap, false, two200, 4, &t) == GD_OK);
    check_print(t, "1606938044258990275541962092341162602522202993782792835301376");
    /* 10^19 and 10^19 - 1 straddle the printer's limb size. */
    CU_ASSERT_FATAL(heap_make_uint64(&heap, UINT64_C(10000000000000000000), &t) == GD_OK);
    check_print(t, "10000000000000000000");
    CU_ASSERT_FATAL(heap_make_uint64(&heap, UINT64_C(9999999999999999999), &t) == GD_OK);
    check_print(t, "9999999999999999999");

    /* Floats (erl). */
    check_print(flt(1.0), "1.0");
    check_print(flt(-0.0), "-0.0");
    check_print(flt(0.1), "0.1");
    check_print(flt(1.0e20), "1.0e20");
    check_print(flt(1.0e-10), "1.0e-10");
    check_print(flt(1000.0), "1.0e3");
    check_print(flt(9007199254740992.0), "9.007199254740992e15");
    check_print(flt(5e-324), "5.0e-324");

    /* Atoms (erl). */
    check_print(atom("ok"), "ok");
    check_print(atom("hello world"), "'hello world'");
    check_print(atom("A"), "'A'");
    check_print(atom(""), "''");
    check_print(atom("and"), "'and'");
    check_print(atom("maybe"), "maybe");
    check_print(atom("a@b"), "a@b");
    check_print(atom("x_Y1@"), "x_Y1@");
    check_print(atom("_x"), "'_x'");
    check_print(atom("\xc3\xa4"), "\xc3\xa4");     /* ä */
    check_print(atom("\xc3\x84x"), "'\xc3\x84x'"); /* Äx */
    check_print(atom("\xce\xb1"), "'\\x{3B1}'");   /* α */
    check_print(atom("a'b\\c\n"), "'a\\'b\\\\c\\n'");
    check_print(atom("\x01\x7f\xc2\x80\xc2\x9f\xc2\xa0\xc3\xbf\xc4\x80"),
                "'\\001\\d\\200\\237\xc2\xa0\xc3\xbf\\x{100}'");

    /* Lists and strings (erl). */
    check_print(TERM_NIL, "[]");
    int abc[] = {'a', 'b', 'c'};
    check_print(charlist(abc, 3), "\"abc\"");
    int esc[] = {'a', '"', 'b', '\\', '\n', '\t', 27, '\v', '\b', '\f', '\r'};
    check_print(charlist(esc, 11), "\"a\\\"b\\\\\\n\\t\\e\\v\\b\\f\\r\"");
    int del[] = {127};
    check_print(charlist(del, 1), "[127]");
    int lat[] = {160, 255};
    check_print(charlist(lat, 2), "\"\xc2\xa0\xc3\xbf\"");
    int big[] = {256};
    check_print(charlist(big, 1), "[256]");
    CU_ASSERT_FATAL(heap_cons(&heap, term_make_small(2), term_make_small(3), &t) == GD_OK);
    CU_ASSERT_FATAL(heap_cons(&heap, term_make_small(1), t, &t) == GD_OK);
    check_print(t, "[1,2|3]");
    CU_ASSERT_FATAL(heap_cons(&heap, charlist(abc, 1), TERM_NIL, &t) == GD_OK);
    check_print(t, "[\"a\"]");

    /* Binaries and bitstrings (erl). */
    CU_ASSERT_FATAL(heap_make_binary(&heap, "", 0, &t) == GD_OK);
    check_print(t, "<<>>");
    CU_ASSERT_FATAL(heap_make_binary(&heap, "abc", 3, &t) == GD_OK);
    check_print(t, "<<\"abc\">>");
    CU_ASSERT_FATAL(heap_make_binary(&heap, "\x01\x02\x03", 3, &t) == GD_OK);
    check_print(t, "<<1,2,3>>");
    CU_ASSERT_FATAL(heap_make_binary(&heap, "\xc3\xa4", 2, &t) == GD_OK);
    check_print(t, "<<\"\xc3\x83\xc2\xa4\">>");
    CU_ASSERT_FATAL(heap_make_binary(&heap, "a\"\\", 3, &t) == GD_OK);
    check_print(t, "<<\"a\\\"\\\\\">>");
    uint8_t *d;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&heap, 11, &d, &t) == GD_OK);
    d[0] = 1;
    d[1] = 2 << 5;
    check_print(t, "<<1,2:3>>");
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&heap, 27, &d, &t) == GD_OK);
    memcpy(d, "abc", 3);
    d[3] = 1 << 5;
    check_print(t, "<<97,98,99,1:3>>");
    /* A sub-binary at a bit offset: bytes are reassembled across bytes. */
    term_t orig, sub;
    CU_ASSERT_FATAL(heap_make_binary(&heap, "\x0f\xf5\x55", 3, &orig) == GD_OK);
    CU_ASSERT_FATAL(heap_make_sub_binary(&heap, orig, 4, 13, &sub) == GD_OK);
    check_print(sub, "<<255,10:5>>");
    /* A refc binary (more than 64 bytes), printable. */
    char text[100];
    memset(text, 'x', sizeof text);
    CU_ASSERT_FATAL(heap_make_binary(&heap, text, sizeof text, &t) == GD_OK);
    char want[120] = "<<\"";
    memcpy(want + 3, text, sizeof text);
    strcpy(want + 3 + sizeof text, "\">>");
    check_print(t, want);

    /* Tuples and maps (erl). */
    term_t *e;
    CU_ASSERT_FATAL(heap_make_tuple(&heap, 0, &e, &t) == GD_OK);
    check_print(t, "{}");
    check_print(tuple2(term_make_small(-1), flt(-2.5)), "{-1,-2.5}");
    term_t keys[2] = {atom("b"), atom("a")}, vals[2] = {TERM_NIL, term_make_small(1)};
    CU_ASSERT_FATAL(heap_make_map(&heap, keys, vals, 2, &t) == GD_OK);
    check_print(t, "#{a => 1,b => []}");
    term_t nkeys[2] = {flt(1.0), term_make_small(1)}, nvals[2] = {atom("b"), atom("a")};
    CU_ASSERT_FATAL(heap_make_map(&heap, nkeys, nvals, 2, &t) == GD_OK);
    check_print(t, "#{1 => a,1.0 => b}");
    CU_ASSERT_FATAL(heap_make_map(&heap, NULL, NULL, 0, &t) == GD_OK);
    check_print(t, "#{}");

    /* Exports (erl). */
    CU_ASSERT_FATAL(heap_make_export(&heap, atom("lists"), atom("map"), 2, &t) == GD_OK);
    check_print(t, "fun lists:map/2");
    CU_ASSERT_FATAL(heap_make_export(&heap, atom("A"), atom("b c"), 1, &t) == GD_OK);
    check_print(t, "fun 'A':'b c'/1");
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* erl's ~p output parses and prints back identically.                      */

static const char *const erl_printed[] = {
    "0",
    "1",
    "-1",
    "42",
    "576460752303423487",
    "576460752303423488",
    "-576460752303423488",
    "-576460752303423489",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551616",
    "1606938044258990275541962092341162602522202993782792835301376",
    "-6111107929003458258805337065228134483154405180997808751908421348063143899290010118550192128",
    "10000000000000000000",
    "9999999999999999999",
    "1.0",
    "-1.0",
    "0.1",
    "0.0",
    "-0.0",
    "1.0e20",
    "1.0e-10",
    "123.456",
    "1.0e100",
    "2.5e-5",
    "100.0",
    "1.0e3",
    "0.0001",
    "1.0e15",
    "1.0e16",
    "9.007199254740992e15",
    "1.7976931348623157e308",
    "5.0e-324",
    "ok",
    "'hello world'",
    "'A'",
    "''",
    "'and'",
    "'fun'",
    "'andalso'",
    "maybe",
    "else",
    "'a.b'",
    "a@b",
    "'a-b'",
    "'a b'",
    "\xc3\xa4",
    "'\xc3\x84x'",
    "\xc3\x9fx",
    "'a\\nb'",
    "'a\\'b'",
    "'a\\\\b'",
    "'\\x{3B1}'",
    "'\\001\\d\\200\\237\xc2\xa0\xc3\xbf\\x{100}'",
    "'_x'",
    "x_Y1@",
    "[]",
    "\"abc\"",
    "\"a\\\"b\\\\c\\n\\t\\e\\v\\b\\f\\r\"",
    "[127]",
    "\"\xc2\xa0\xc3\xbf\"",
    "[256]",
    "\"\xc3\xa4\"",
    "[1,2|3]",
    "[a|b]",
    "[[]]",
    "[\"a\"]",
    "[1,2,3]",
    "[a,\"b\",<<\"c\">>]",
    "\" ~\"",
    "<<>>",
    "<<\"abc\">>",
    "<<1,2,3>>",
    "<<1,2:3>>",
    "<<5:4>>",
    "<<\"ab\\n\">>",
    "<<\"\xc3\x83\xc2\xa4\">>",
    "<<\"\xc3\x88\">>",
    "<<97,98,99,1:3>>",
    "<<0:1>>",
    "<<\"a\\\"\\\\\">>",
    "<<127>>",
    "{}",
    "{a}",
    "{a,b,{c,[d]}}",
    "{-1,-2.5}",
    "{[],<<>>,#{}}",
    "#{}",
    "#{a => 1,b => [2]}",
    "#{1 => a,1.0 => b}",
    "#{-1 => -2}",
    "#{{a} => #{b => c}}",
    "#{[1] => \"x\",<<\"k\">> => 1.5}",
    "fun lists:map/2",
    "fun 'A':'b c'/1",
    "fun erlang:'+'/2",
    /* OTP's own local identifiers print the same in our syntax. */
    "<0.9.0>",
    "#Ref<0.319204872.2489057281.131594>",
    "#Port<0.0>",
};

static void test_erl_printed_fixpoint(void)
{
    heap_setup();
    for (size_t i = 0; i < sizeof erl_printed / sizeof erl_printed[0]; i++)
        check_form(erl_printed[i], erl_printed[i]);
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* Other spellings: input -> what erl prints for parse_term of it (erl).    */

static const char *const forms[][2] = {
    {"16#FF", "255"},
    {"2#1010", "10"},
    {"36#Zz", "1295"},
    {"-16#ff", "-255"},
    {"1_000_000", "1000000"},
    {"16#ff_ff", "65535"},
    {"+7", "7"},
    {"- 7", "-7"},
    {"$a", "97"},
    {"$\\n", "10"},
    {"$\\s", "32"},
    {"$ ", "32"},
    {"$\\^A", "1"},
    {"-$a", "-97"},
    {"$\\x{3b1}", "945"},
    {"$\xc3\xa4", "228"},
    {"1.0E5", "1.0e5"},
    {"2.5E-3", "0.0025"},
    {"1.5e+3", "1.5e3"},
    {"0.1e1", "1.0"},
    {"1.0e-400", "0.0"},
    {"1_0.2_5", "10.25"},
    {"12345678901234567890123", "12345678901234567890123"},
    {"\"ab\" \"cd\"", "\"abcd\""},
    {"\"a\" % comment\n \"b\"", "\"ab\""},
    {"\"\\x41\\x{42}\\101\\q\\s\\d\\^z\"", "[65,66,65,113,32,127,26]"},
    {"\"\\x{3b1}\"", "[945]"},
    {"\"\xc3\xa4\"", "\"\xc3\xa4\""},
    {"[$a|\"b\"]", "\"ab\""},
    {"[1|[2]]", "[1,2]"},
    {"[]", "[]"},
    {"\"\"", "[]"},
    {"'\\x{3b1}'", "'\\x{3B1}'"},
    {"'hello world'", "'hello world'"},
    {"'ok'", "ok"},
    {"a@b", "a@b"},
    {"\xc3\x9fx", "\xc3\x9fx"},
    {"'\\''", "'\\''"},
    {"<<\"abc\">>", "<<\"abc\">>"},
    {"<<\"\xc3\xa4\"/utf8>>", "<<\"\xc3\x83\xc2\xa4\">>"},
    {"<<\"ab\":16>>", "<<0,97,0,98>>"},
    {"<<\"\xc3\xa4x\"/utf16-little>>", "<<228,0,120,0>>"},
    {"<<\"a\"/utf32-little>>", "<<97,0,0,0>>"},
    {"<<16#1F600/utf32>>", "<<0,1,246,0>>"},
    {"<<16#1F600/utf8>>", "<<240,159,152,128>>"},
    {"<<16#1F600/utf16>>", "<<216,61,222,0>>"},
    {"<<1:12/little>>", "<<1,0:4>>"},
    {"<<16#abc:12/little>>", "<<188,10:4>>"},
    {"<<-1:12/little>>", "<<255,15:4>>"},
    {"<<-5:20/little>>", "<<251,255,15:4>>"},
    {"<<-1:70>>", "<<255,255,255,255,255,255,255,255,63:6>>"},
    {"<<1:3>>", "<<1:3>>"},
    {"<<5:4, 3:4>>", "<<\"S\">>"},
    {"<<7:3, 1:5>>", "<<\"\xc3\xa1\">>"},
    {"<<1:0>>", "<<>>"},
    {"<<>>", "<<>>"},
    {"<<1.5/float>>", "<<63,248,0,0,0,0,0,0>>"},
    {"<<1.5:32/float>>", "<<63,192,0,0>>"},
    {"<<1:16/float>>", "<<60,0>>"},
    {"<<70000.0:16/float>>", "<<124,0>>"},
    {"<<1.0e300:32/float>>", "<<127,128,0,0>>"},
    {"<<1.5/float-little>>", "<<0,0,0,0,0,0,248,63>>"},
    {"<<2/float>>", "<<64,0,0,0,0,0,0,0>>"},
    {"<<-2.5:16/float>>", "<<193,0>>"},
    {"<<1.0e-6:16/float>>", "<<0,17>>"},
    {"<<1:8/unit:2>>", "<<0,1>>"},
    {"<<1/signed>>", "<<1>>"},
    {"<<-1/unsigned>>", "<<\"\xc3\xbf\">>"},
    {"<<$a, $b>>", "<<\"ab\">>"},
    {"<<256>>", "<<0>>"},
    {"<<-1>>", "<<\"\xc3\xbf\">>"},
    {"<<1:16/big-unsigned-integer>>", "<<0,1>>"},
    {"<<1:16/native>>", "<<1,0>>"},
    {"<<\"a\", 1:1, \"b\">>", "<<97,177,0:1>>"},
    {"#{a => 1, a => 2}", "#{a => 2}"},
    {"#{b => 1, a => 2}", "#{a => 2,b => 1}"},
    {"#{1.0 => a, 1 => b}", "#{1 => b,1.0 => a}"},
    {"{ok , [ 1 , 2 | 3 ] }", "{ok,[1,2|3]}"},
    {"fun m:f/2", "fun m:f/2"},
    {"fun 'A':'b c'/0", "fun 'A':'b c'/0"},
    {"[ ]", "[]"},
    {"{ }", "{}"},
    {"#{ }", "#{}"},
    {"- 0", "0"},
    {"-0.0", "-0.0"},
    {"-0", "0"},
    /* Our own additions (no erl reference): comments, final dot. */
    {"% leading comment\n{a, % inside\n b}. % after", "{a,b}"},
    {"ok.", "ok"},
    {"[1.5].\n", "[1.5]"},
};

static void test_parse_forms(void)
{
    heap_setup();
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        check_form(forms[i][0], forms[i][1]);
    heap_destroy(&heap);
}

/* Parsed values checked through the heap API, not through printing. */
static void test_parse_values(void)
{
    heap_setup();
    term_t t;
    CU_ASSERT_FATAL(parse_str("16#FF", &t, NULL) == GD_OK);
    CU_ASSERT_EQUAL(t, term_make_small(255));
    CU_ASSERT_FATAL(parse_str("'hello world'", &t, NULL) == GD_OK);
    CU_ASSERT_EQUAL(t, atom("hello world"));
    CU_ASSERT_FATAL(parse_str("2.5E-3", &t, NULL) == GD_OK);
    CU_ASSERT_FATAL(term_is_float(t));
    CU_ASSERT_EQUAL(term_float_value(t), 2.5e-3);
    CU_ASSERT_FATAL(parse_str("-0.0", &t, NULL) == GD_OK);
    CU_ASSERT(signbit(term_float_value(t)));
    CU_ASSERT_FATAL(parse_str("-16#10000000000000000", &t, NULL) == GD_OK);
    CU_ASSERT_FATAL(term_is_big(t));
    CU_ASSERT(term_big_negative(t));
    CU_ASSERT_EQUAL(term_big_ndigits(t), 2);
    CU_ASSERT_EQUAL(term_big_digits(t)[0], 0);
    CU_ASSERT_EQUAL(term_big_digits(t)[1], 1);
    CU_ASSERT_FATAL(parse_str("<<1:3>>", &t, NULL) == GD_OK);
    heap_bin_view_t v;
    heap_bin_view(t, &v);
    CU_ASSERT_EQUAL(v.bit_size, 3);
    CU_ASSERT_EQUAL(v.bytes[0] >> v.bit_offset, 0x20 >> v.bit_offset);
    CU_ASSERT_FATAL(parse_str("{ok, [1,2|x]}", &t, NULL) == GD_OK);
    CU_ASSERT_FATAL(term_is_tuple(t) && term_tuple_arity(t) == 2);
    CU_ASSERT_EQUAL(term_tuple_elems(t)[0], ATOM_OK);
    term_t l = term_tuple_elems(t)[1];
    CU_ASSERT_EQUAL(term_car(l), term_make_small(1));
    CU_ASSERT_EQUAL(term_car(term_cdr(l)), term_make_small(2));
    CU_ASSERT_EQUAL(term_cdr(term_cdr(l)), atom("x"));
    CU_ASSERT_FATAL(parse_str("#{a => 1}", &t, NULL) == GD_OK);
    CU_ASSERT_EQUAL(tg_map_get(t, atom("a")), term_make_small(1));
    CU_ASSERT_FATAL(parse_str("fun m:f/3", &t, NULL) == GD_OK);
    CU_ASSERT_FATAL(term_is_export(t));
    CU_ASSERT_EQUAL(term_boxed_ptr(t)[3], term_make_small(3));
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* Pids, ports, references, funs.                                           */

static void test_identifiers(void)
{
    heap_setup();
    term_t node = atom("b@host"), t, back;

    /* Local immediates print as OTP's local forms and parse back to them. */
    t = term_make_local_pid(42, 7);
    check_print(t, "<0.42.7>");
    CU_ASSERT_FATAL(parse_str("<0.42.7>", &back, NULL) == GD_OK);
    CU_ASSERT_EQUAL(back, t);
    t = term_make_local_port(5);
    check_print(t, "#Port<0.5>");
    CU_ASSERT_FATAL(parse_str("#Port<0.5>", &back, NULL) == GD_OK);
    CU_ASSERT_EQUAL(back, t);

    /* Another node's identifiers carry node and creation. */
    CU_ASSERT_FATAL(heap_make_ext_pid(&heap, node, 42, 0, 3, &t) == GD_OK);
    check_print(t, "<'b@host'.42.0.3>");
    check_roundtrip(t);
    CU_ASSERT_FATAL(heap_make_ext_pid(&heap, node, UINT32_MAX, UINT32_MAX, UINT32_MAX, &t) ==
                    GD_OK);
    check_print(t, "<'b@host'.4294967295.4294967295.4294967295>");
    check_roundtrip(t);
    CU_ASSERT_FATAL(heap_make_ext_port(&heap, node, (uint64_t)1 << 40, 9, &t) == GD_OK);
    check_print(t, "#Port<'b@host'.1099511627776.9>");
    check_roundtrip(t);
    uint32_t w[3] = {131594, 2489057281u, 319204872};
    CU_ASSERT_FATAL(heap_make_ref(&heap, node, 5, w, 3, &t) == GD_OK);
    check_print(t, "#Ref<'b@host'.319204872.2489057281.131594.5>");
    check_roundtrip(t);
    uint32_t w5[5] = {1, 2, 3, 4, 5};
    CU_ASSERT_FATAL(heap_make_ref(&heap, atom("x y@h"), 0, w5, 5, &t) == GD_OK);
    check_print(t, "#Ref<'x y@h'.5.4.3.2.1.0>");
    check_roundtrip(t);

    /* 'nonode@nohost' creation 0 is the default local node: OTP's forms. */
    CU_ASSERT_FATAL(heap_make_ext_pid(&heap, ATOM_NONODE, 85, 0, 0, &t) == GD_OK);
    check_print(t, "<0.85.0>");
    check_roundtrip(t);
    CU_ASSERT_FATAL(heap_make_ext_pid(&heap, ATOM_NONODE, 85, 0, 2, &t) == GD_OK);
    check_print(t, "<'nonode@nohost'.85.0.2>");
    check_roundtrip(t);
    CU_ASSERT_FATAL(heap_make_ref(&heap, ATOM_NONODE, 0, w, 3, &t) == GD_OK);
    check_print(t, "#Ref<0.319204872.2489057281.131594>");
    check_roundtrip(t);
    /* A shorter reference of this node is widened to 3 words, as OTP does;
     * one without words is refused (OTP: badarg). */
    CU_ASSERT_FATAL(heap_make_ref(&heap, ATOM_NONODE, 0, w, 1, &t) == GD_OK);
    check_print(t, "#Ref<0.0.0.131594>");
    check_roundtrip(t);
    CU_ASSERT_EQUAL(heap_make_ref(&heap, ATOM_NONODE, 0, w, 0, &t), GD_EBADARG);
    /* Numbers outside the local ranges are refused for this node (OTP:
     * badarg), never truncated into a live local pid; another creation
     * keeps them exact. */
    CU_ASSERT_EQUAL(heap_make_ext_pid(&heap, ATOM_NONODE, 1, 1u << 30, 0, &t), GD_EBADARG);
    CU_ASSERT(parse_str("<0.1.1073741824>", &back, NULL) != GD_OK);
    CU_ASSERT_FATAL(heap_make_ext_pid(&heap, ATOM_NONODE, 1, 1u << 30, 1, &t) == GD_OK);
    check_print(t, "<'nonode@nohost'.1.1073741824.1>");
    check_roundtrip(t);

    /* Funs print as OTP does and are refused by the parser. */
    heap_fun_info_t fi = {.arity = 1,
                          .index = 0,
                          .num_free = 1,
                          .module = atom("t1"),
                          .old_index = term_make_small(0),
                          .old_uniq = term_make_small(98666),
                          .pid = term_make_local_pid(9, 0)};
    term_t *fv;
    CU_ASSERT_FATAL(heap_make_fun(&heap, &fi, &fv, &t) == GD_OK);
    fv[0] = TERM_NIL;
    check_print(t, "#Fun<t1.0.98666>");
    etf_error_t err;
    CU_ASSERT_EQUAL(parse_str("[#Fun<t1.0.98666>]", &back, &err), ETF_EPARSE);
    CU_ASSERT_EQUAL(err.offset, 1);
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* Errors and their offsets.                                                */

static const struct {
    const char *text;
    int code;
    size_t offset;
} bad_inputs[] = {
    {"", ETF_EPARSE, 0}, /* no term */
    {"   % only a comment", ETF_EPARSE, 19},
    {"{a,b", ETF_EPARSE, 4}, /* unclosed */
    {"[1,]", ETF_EPARSE, 3},
    {"{a b}", ETF_EPARSE, 3},
    {"[1|2|3]", ETF_EPARSE, 4},
    {"[1|]", ETF_EPARSE, 3},
    {"#{a => 1, b}", ETF_EPARSE, 11},
    {"#{a}", ETF_EPARSE, 3},
    {"{a}}", ETF_EPARSE, 3}, /* text after the term */
    {"ok. x", ETF_EPARSE, 4},
    {"a.b", ETF_EPARSE, 1},
    {"X", ETF_EPARSE, 0}, /* variables */
    {"{ok, _}", ETF_EPARSE, 5},
    {"'abc", ETF_EPARSE, 0}, /* unterminated */
    {"[\"abc]", ETF_EPARSE, 1},
    {"1e10", ETF_EPARSE, 1},    /* Erlang floats need a fraction */
    {"1.0e400", ETF_EPARSE, 0}, /* overflow */
    {"37#1", ETF_EPARSE, 0},
    {"16#", ETF_EPARSE, 3},
    {"2#102", ETF_EPARSE, 4},
    {"- a", ETF_EPARSE, 2},
    {"- - 1", ETF_EPARSE, 2},
    {"\"\\x{110000}\"", ETF_EPARSE, 1}, /* beyond Unicode */
    {"\"\\x{D800}\"", ETF_EPARSE, 1},   /* surrogate */
    {"\"\\xz\"", ETF_EPARSE, 1},
    {"\"\xff\"", ETF_EPARSE, 1}, /* invalid UTF-8 */
    {"[a, \xc3]", ETF_EPARSE, 4},
    {"a = b", ETF_EPARSE, 2},
    {"#x", ETF_EPARSE, 0},
    {"<0.1>", ETF_EPARSE, 4},
    {"<1.2.3>", ETF_EPARSE, 1}, /* another node's index */
    {"<0.1.2.3>", ETF_EPARSE, 7},
    {"< 0.1.2>", ETF_EPARSE, 2},
    {"<'n@h'.1.2>", ETF_EPARSE, 10},
    {"<0.4294967296.0>", ETF_EPARSE, 0},
    {"#Ref<0.1.2.3.4.5.6>", ETF_EPARSE, 17},
    {"#Port<'n@h'.1>", ETF_EPARSE, 13},
    {"#Fun<m.1.2>", ETF_EPARSE, 0},
    {"fun m:f/256", ETF_EPARSE, 8},
    {"fun m/2", ETF_EPARSE, 5},
    {"<<1:3/binary>>", ETF_EPARSE, 6},
    {"<<\"a\"/utf8:8>>", ETF_EPARSE, 10},
    {"<<\"a\":8/utf8>>", ETF_EPARSE, 2},
    {"<<16#110000/utf8>>", ETF_EPARSE, 2},
    {"<<1,>>", ETF_EPARSE, 4},
    {"<<1 2>>", ETF_EPARSE, 4},
    {"<<a>>", ETF_EPARSE, 2},
    {"<<1.5:24/float>>", ETF_EPARSE, 2},
    {"<<1.5:8>>", ETF_EPARSE, 2},
    {"<<1/utf8-utf16>>", ETF_EPARSE, 9},
    {"<<1:4294967296/unit:256>>", ETF_ETOO_LARGE, 2},
    {"<<0:134219000>>", ETF_ETOO_LARGE, 2}, /* 2^27 bits + 64 per input byte */
    {"<<0:18446744073709551615/unit:2>>", ETF_ETOO_LARGE, 2},
    {"<<0:18446744073709551616>>", ETF_ETOO_LARGE, 4},
    {"'\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}"
     "\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}\\x{1F600}"
     "'",
     GD_OK, 0}, /* 18 characters: fine */
};

static void test_errors(void)
{
    heap_setup();
    for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++) {
        term_t t;
        etf_error_t err = {99, 99};
        int rc = parse_str(bad_inputs[i].text, &t, &err);
        if (rc != bad_inputs[i].code || (rc != GD_OK && err.offset != bad_inputs[i].offset))
            printf("\n  [%s]: got %d at %zu, want %d at %zu\n", bad_inputs[i].text, rc, err.offset,
                   bad_inputs[i].code, bad_inputs[i].offset);
        CU_ASSERT_EQUAL(rc, bad_inputs[i].code);
        CU_ASSERT_EQUAL(err.code, bad_inputs[i].code);
        if (rc != GD_OK)
            CU_ASSERT_EQUAL(err.offset, bad_inputs[i].offset);
    }
    /* err may be NULL. */
    term_t t;
    CU_ASSERT_EQUAL(parse_str("{", &t, NULL), ETF_EPARSE);

    /* Atoms: 256 characters are too many. */
    char longatom[300];
    longatom[0] = '\'';
    memset(longatom + 1, 'a', 256);
    strcpy(longatom + 257, "'");
    etf_error_t err;
    CU_ASSERT_EQUAL(parse_str(longatom, &t, &err), ETF_EATOM);
    CU_ASSERT_EQUAL(err.offset, 0);
    CU_ASSERT_EQUAL(parse_str(longatom + 1, &t, &err), ETF_EATOM); /* bare, too long */
    CU_ASSERT_EQUAL(err.offset, 0);
    longatom[256] = '\'';
    longatom[257] = '\0';
    CU_ASSERT_EQUAL(parse_str(longatom, &t, &err), GD_OK); /* 255 */

    /* Integers: the decimal digit cap, and bignums beyond the heap limit. */
    size_t n = 400001;
    char *digits = malloc(n + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(digits);
    digits[0] = '[';
    memset(digits + 1, '7', n);
    digits[n + 1] = '\0';
    CU_ASSERT_EQUAL(parse_str(digits, &t, &err), ETF_EBIG);
    CU_ASSERT_EQUAL(err.offset, 1);
    free(digits);
    size_t hexn = 64 / 4 * HEAP_BIG_MAX_DIGITS + 1;
    char *hex = malloc(hexn + 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hex);
    memcpy(hex, "16#", 3);
    memset(hex + 3, 'F', hexn);
    hex[3 + hexn] = '\0';
    CU_ASSERT_EQUAL(parse_str(hex, &t, &err), ETF_EBIG);
    CU_ASSERT_EQUAL(err.offset, 0);
    hex[3 + hexn - 1] = '\0'; /* exactly the limit */
    CU_ASSERT_EQUAL(parse_str(hex, &t, &err), GD_OK);
    free(hex);

    /* Nesting: the codec's cap (ETF_MAX_DEPTH_DEFAULT) is the parser's.
     * {{...{1}...}} at the cap parses and encodes; one level more fails
     * at the bracket that passed it; so does the cap plus a string that
     * encodes as LIST_EXT (one level more than its quotes show). */
    size_t cap = ETF_MAX_DEPTH_DEFAULT;
    char *deep = malloc(2 * cap + 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(deep);
    memset(deep, '{', cap);
    memcpy(deep + cap, "1", 1);
    memset(deep + cap + 1, '}', cap);
    deep[2 * cap + 1] = '\0';
    CU_ASSERT_EQUAL_FATAL(parse_str(deep, &t, &err), GD_OK);
    etf_buf_t enc = {0};
    etf_encode_opts_t eo;
    etf_encode_opts_init(&eo);
    CU_ASSERT_EQUAL(etf_encode(t, &eo, &enc), GD_OK);
    etf_buf_free(&enc);
    memset(deep, '{', cap + 1);
    memcpy(deep + cap + 1, "1", 1);
    memset(deep + cap + 2, '}', cap + 1);
    deep[2 * cap + 3] = '\0';
    CU_ASSERT_EQUAL(parse_str(deep, &t, &err), ETF_EDEPTH);
    CU_ASSERT_EQUAL(err.offset, cap);
    memset(deep, '{', cap);
    memcpy(deep + cap, "\"\xc4\x80\"", 4); /* "\x{100}": LIST_EXT */
    memset(deep + cap + 4, '}', cap);
    deep[2 * cap + 4] = '\0';
    CU_ASSERT_EQUAL(parse_str(deep, &t, &err), ETF_EDEPTH);
    CU_ASSERT_EQUAL(err.offset, cap - 1);
    memcpy(deep + cap - 1, "\"\xc4\x80\"", 4); /* one tuple less: fine */
    memset(deep + cap + 3, '}', cap - 1);
    deep[2 * cap + 2] = '\0';
    CU_ASSERT_EQUAL(parse_str(deep, &t, &err), GD_OK);
    free(deep);

    /* The binary budget (2^27 bits plus 64 per input byte) is per parse. */
    CU_ASSERT_EQUAL(parse_str("[<<0:67108864>>, <<0:67108864>>, <<0:8192>>]", &t, &err),
                    ETF_ETOO_LARGE);
    CU_ASSERT_EQUAL(err.offset, 35);
    CU_ASSERT_EQUAL(parse_str("[<<0:67108864>>, <<0:67108864>>, <<0:1024>>]", &t, &err), GD_OK);
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* Deep nesting: the codec's cap, no C recursion in either direction.       */

#define DEEP ETF_MAX_DEPTH_DEFAULT

static void check_deep(term_t t, size_t expect_len)
{
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(etf_print(t, &b) == GD_OK);
    CU_ASSERT_EQUAL(b.len, expect_len);
    term_t back;
    etf_error_t err;
    CU_ASSERT_FATAL(etf_parse(&heap, (const char *)b.data, b.len, &back, &err) == GD_OK);
    CU_ASSERT(tg_compare(t, back, true) == 0);
    etf_buf_t b2 = {0};
    CU_ASSERT_FATAL(etf_print(back, &b2) == GD_OK);
    CU_ASSERT(b2.len == b.len && memcmp(b.data, b2.data, b.len) == 0);
    etf_buf_free(&b);
    etf_buf_free(&b2);
}

static void test_deep_nesting(void)
{
    heap_setup();
    /* [[[...[]...]]]: 1e6 lists around []. */
    term_t t = TERM_NIL;
    for (size_t i = 0; i < DEEP; i++)
        CU_ASSERT_FATAL(heap_cons(&heap, t, TERM_NIL, &t) == GD_OK);
    check_deep(t, 2 * DEEP + 2);
    heap_destroy(&heap);
    heap_setup();
    /* {{{...{}...}}} */
    term_t *e;
    CU_ASSERT_FATAL(heap_make_tuple(&heap, 0, &e, &t) == GD_OK);
    for (size_t i = 0; i < DEEP; i++) {
        term_t inner = t;
        CU_ASSERT_FATAL(heap_make_tuple(&heap, 1, &e, &t) == GD_OK);
        e[0] = inner;
    }
    check_deep(t, 2 * DEEP + 2);
    heap_destroy(&heap);
    heap_setup();
    /* #{a => #{a => ... 1}}: maps keep their sorted pairs on a side stack. */
    term_t key = atom("a");
    t = term_make_small(1);
    for (size_t i = 0; i < DEEP; i++)
        CU_ASSERT_FATAL(heap_make_map(&heap, &key, &t, 1, &t) == GD_OK);
    check_deep(t, 8 * (size_t)DEEP + 1);
    heap_destroy(&heap);
    heap_setup();
    /* A long list tail walk: [1,1,...|x]. */
    t = atom("x");
    for (size_t i = 0; i < DEEP; i++)
        CU_ASSERT_FATAL(heap_cons(&heap, term_make_small(1), t, &t) == GD_OK);
    check_deep(t, 2 * DEEP + 3);
    heap_destroy(&heap);
    heap_setup();
    /* A million levels print (the printer has no cap) and are refused by
     * the parser as by the codec, at the bracket one past the cap. */
    t = term_make_small(1);
    for (size_t i = 0; i < 10 * (size_t)DEEP; i++)
        CU_ASSERT_FATAL(heap_cons(&heap, t, TERM_NIL, &t) == GD_OK);
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(etf_print(t, &b) == GD_OK);
    term_t back;
    etf_error_t err;
    CU_ASSERT(etf_parse(&heap, (const char *)b.data, b.len, &back, &err) == ETF_EDEPTH &&
              err.offset == DEEP);
    etf_buf_t enc = {0};
    etf_encode_opts_t eo;
    etf_encode_opts_init(&eo);
    CU_ASSERT(etf_encode(t, &eo, &enc) == ETF_EDEPTH);
    etf_buf_free(&enc);
    etf_buf_free(&b);
    heap_destroy(&heap);
}

/* ------------------------------------------------------------------------ */
/* Random terms: print -> parse is the identity (=:=).                      */

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

static const char *const atom_pool[] = {
    "ok",
    "a",
    "",
    "A",
    "hello world",
    "and",
    "fun",
    "a@b",
    "x_Y1@",
    "\xc3\xa4",
    "\xc3\x84x",
    "\xce\xb1\xce\xb2",
    "a'b",
    "a\\b",
    "\n",
    "nonode@nohost",
    "b@host",
    "\xf0\x9f\x98\x80",
    "_",
    "\x01\x7f",
};

static term_t gen_atom(void)
{
    return atom(atom_pool[below(sizeof atom_pool / sizeof atom_pool[0])]);
}

static term_t gen_integer(void)
{
    term_t t;
    switch (below(5)) {
    case 0:
        return term_make_small((int64_t)below(256));
    case 1:
        return term_make_small((int64_t)(rnd() >> 4) >> 4);
    case 2: {
        static const int64_t edges[] = {SMALL_MAX, SMALL_MIN, INT64_MAX, INT64_MIN, -1, 0};
        CU_ASSERT_FATAL(heap_make_int64(&heap, edges[below(6)], &t) == GD_OK);
        return t;
    }
    default: {
        uint64_t d[6];
        size_t n = 1 + below(6);
        for (size_t i = 0; i < n; i++)
            d[i] = below(4) == 0 ? 0 : rnd();
        CU_ASSERT_FATAL(heap_make_integer_digits(&heap, below(2), d, n, &t) == GD_OK);
        return t;
    }
    }
}

static term_t gen_float(void)
{
    static const double specials[] = {0.0,
                                      -0.0,
                                      1.0,
                                      0.1,
                                      1e20,
                                      1e-10,
                                      5e-324,
                                      1.7976931348623157e308,
                                      9007199254740992.0,
                                      123456789.0,
                                      1e15,
                                      1e16};
    double d;
    if (below(3) == 0) {
        d = specials[below(sizeof specials / sizeof specials[0])];
    } else {
        do {
            uint64_t bits = rnd();
            memcpy(&d, &bits, sizeof d);
        } while (!isfinite(d));
    }
    return flt(d);
}

static term_t gen_bitstring(void)
{
    size_t bits = below(4) == 0 ? below(80 * 8) : 8 * below(80);
    uint8_t *data;
    term_t t;
    CU_ASSERT_FATAL(heap_make_bitstring_uninit(&heap, bits, &data, &t) == GD_OK);
    bool printable = below(2);
    for (size_t i = 0; i < (bits + 7) / 8; i++)
        data[i] = printable ? (uint8_t)(32 + below(95)) : (uint8_t)rnd();
    if (bits % 8)
        data[bits / 8] &= (uint8_t)(0xFF << (8 - bits % 8));
    if (below(3) == 0 && bits > 0) {
        size_t off = below(bits), len = below(bits - off + 1);
        CU_ASSERT_FATAL(heap_make_sub_binary(&heap, t, off, len, &t) == GD_OK);
    }
    return t;
}

static term_t gen_string(void)
{
    size_t n = below(12);
    term_t l = TERM_NIL;
    bool printable = below(2);
    for (size_t i = 0; i < n; i++) {
        int64_t c = printable ? (int64_t)(below(2) ? 32 + below(95) : 160 + below(96))
                              : (int64_t)below(1000);
        CU_ASSERT_FATAL(heap_cons(&heap, term_make_small(c), l, &l) == GD_OK);
    }
    return l;
}

static term_t gen_ident(void)
{
    term_t node = below(3) == 0 ? ATOM_NONODE : gen_atom();
    uint32_t creation = below(2) ? 0 : (uint32_t)rnd();
    if (node == ATOM_NONODE && creation == 0)
        creation = 1; /* this node's identifiers are the local cases */
    term_t t;
    switch (below(5)) {
    case 0:
        return term_make_local_pid((uint32_t)below(HEAP_LOCAL_PID_NUMBER_MAX + 1),
                                   (uint32_t)below(HEAP_LOCAL_PID_SERIAL_MAX + 1));
    case 1:
        return term_make_local_port(below(LOCAL_PORT_MAX + 1));
    case 2:
        CU_ASSERT_FATAL(heap_make_ext_pid(&heap, node, (uint32_t)rnd(), (uint32_t)rnd(), creation,
                                          &t) == GD_OK);
        return t;
    case 3:
        CU_ASSERT_FATAL(heap_make_ext_port(&heap, node, rnd(), creation, &t) == GD_OK);
        return t;
    default: {
        uint32_t w[5];
        size_t n = below(6);
        for (size_t i = 0; i < n; i++)
            w[i] = (uint32_t)rnd();
        CU_ASSERT_FATAL(heap_make_ref(&heap, node, creation, w, n, &t) == GD_OK);
        return t;
    }
    }
}

static term_t gen_term(int depth)
{
    unsigned kind = (unsigned)below(depth > 0 ? 14 : 9);
    term_t t;
    switch (kind) {
    case 0:
    case 1:
        return gen_integer();
    case 2:
        return gen_float();
    case 3:
        return gen_atom();
    case 4:
        return gen_bitstring();
    case 5:
        return gen_string();
    case 6:
        return gen_ident();
    case 7:
        CU_ASSERT_FATAL(heap_make_export(&heap, gen_atom(), gen_atom(), (uint8_t)below(256), &t) ==
                        GD_OK);
        return t;
    case 8:
        return TERM_NIL;
    case 9:
    case 10: {
        size_t n = below(6);
        term_t *e;
        CU_ASSERT_FATAL(heap_make_tuple(&heap, n, &e, &t) == GD_OK);
        for (size_t i = 0; i < n; i++)
            e[i] = TERM_NIL; /* valid while the elements are generated */
        for (size_t i = 0; i < n; i++)
            e[i] = gen_term(depth - 1);
        return t;
    }
    case 11:
    case 12: {
        size_t n = below(6);
        term_t l = below(4) == 0 ? gen_term(depth - 1) : TERM_NIL;
        for (size_t i = 0; i < n; i++)
            CU_ASSERT_FATAL(heap_cons(&heap, gen_term(depth - 1), l, &l) == GD_OK);
        return l;
    }
    default: {
        size_t n = below(4) == 0 ? 33 + below(20) : below(6);
        term_t keys[64], vals[64];
        for (size_t i = 0; i < n; i++) {
            keys[i] = gen_term(depth - 1);
            vals[i] = gen_term(depth - 1);
        }
        int rc = heap_make_map(&heap, keys, vals, n, &t);
        if (rc == GD_EDUPLICATE_KEY)
            return gen_atom();
        CU_ASSERT_FATAL(rc == GD_OK);
        return t;
    }
    }
}

static void test_random_roundtrip(void)
{
    const char *env = getenv("GD_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 20240611;
    for (int round = 0; round < 3000; round++) {
        heap_setup();
        rnd_state = seed + (uint64_t)round;
        term_t t = gen_term(4);
        char *text = print_term(t);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        term_t back;
        etf_error_t err;
        int rc = etf_parse(&heap, text, strlen(text), &back, &err);
        if (rc != GD_OK || tg_compare(t, back, true) != 0) {
            printf("\n  seed %llu round %d: [%.300s] rc %d at %zu\n", (unsigned long long)seed,
                   round, text, rc, err.offset);
            CU_FAIL("random round trip");
        } else {
            char *again = print_term(back);
            CU_ASSERT_PTR_NOT_NULL_FATAL(again);
            CU_ASSERT_STRING_EQUAL(text, again);
            free(again);
        }
        free(text);
        heap_destroy(&heap);
    }
}

/* ------------------------------------------------------------------------ */
/* Bignums and floats in bulk.                                              */

/* Decimal text of a magnitude by schoolbook long division by 10 (slow,
 * obviously right), for checking the 10^19 fast path. */
static char *slow_decimal(const uint64_t *digits, size_t n)
{
    uint32_t *w = malloc(2 * n * sizeof *w);
    char *s = malloc(20 * n + 2);
    CU_ASSERT_FATAL(w != NULL && s != NULL);
    for (size_t i = 0; i < n; i++) {
        w[2 * i] = (uint32_t)digits[i];
        w[2 * i + 1] = (uint32_t)(digits[i] >> 32);
    }
    size_t len = 2 * n, k = 0;
    while (len > 0 && w[len - 1] == 0)
        len--;
    do {
        uint64_t r = 0;
        for (size_t i = len; i-- > 0;) {
            uint64_t cur = (r << 32) | w[i];
            w[i] = (uint32_t)(cur / 10);
            r = cur % 10;
        }
        s[k++] = (char)('0' + r);
        while (len > 0 && w[len - 1] == 0)
            len--;
    } while (len > 0);
    for (size_t i = 0; i < k / 2; i++) {
        char c = s[i];
        s[i] = s[k - 1 - i];
        s[k - 1 - i] = c;
    }
    s[k] = '\0';
    free(w);
    return s;
}

static void test_bignums(void)
{
    heap_setup();
    rnd_state = 77;
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + below(round < 190 ? 8 : 300);
        uint64_t d[300];
        for (size_t i = 0; i < n; i++)
            d[i] = below(5) == 0 ? UINT64_MAX : below(5) == 0 ? 0 : rnd();
        d[n - 1] |= 1;
        term_t t;
        CU_ASSERT_FATAL(heap_make_integer_digits(&heap, false, d, n, &t) == GD_OK);
        char *want = slow_decimal(d, n);
        check_print(t, want);
        free(want);
        check_roundtrip(t);
    }
    /* Above the decimal limit: hexadecimal, which reads back exactly. */
    size_t n = 4097;
    uint64_t *d = malloc(n * sizeof *d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (size_t i = 0; i < n; i++)
        d[i] = rnd();
    d[n - 1] = 0xABC;
    term_t t;
    CU_ASSERT_FATAL(heap_make_integer_digits(&heap, true, d, n, &t) == GD_OK);
    char *text = print_term(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT(strncmp(text, "-16#ABC", 7) == 0);
    CU_ASSERT_EQUAL(strlen(text), 7 + 16 * (n - 1));
    free(text);
    check_roundtrip(t);
    free(d);
    heap_destroy(&heap);
}

/* Floats with known erl output, and random doubles reading back exactly. */
static void test_floats(void)
{
    static const struct {
        uint64_t bits;
        const char *text;
    } known[] = {
        /* erl: io_lib:format("~p", [<<F/float>> = <<Bits:64>>]) */
        {0x3FB999999999999AULL, "0.1"},
        {0x3FD3333333333333ULL, "0.3"},
        {0x4340000000000000ULL, "9.007199254740992e15"},
        {0x433FFFFFFFFFFFFFULL, "9007199254740991.0"},
        {0x4350000000000000ULL, "1.8014398509481984e16"},
        {0x7FEFFFFFFFFFFFFFULL, "1.7976931348623157e308"},
        {0x0000000000000001ULL, "5.0e-324"},
        {0x0010000000000000ULL, "2.2250738585072014e-308"},
        {0x44B52D02C7E14AF6ULL, "1.0e23"},
        {0x44B52D02C7E14AF5ULL, "9.999999999999997e22"},
        {0x3F1A36E2EB1C432DULL, "0.0001"},
        {0x3EE4F8B588E368F1ULL, "1.0e-5"},
        {0x3F50624DD2F1A9FCULL, "0.001"},
        {0x41D26580B4800000ULL, "1234567890.0"},
        {0x42069DA7DD900000ULL, "12141788082.0"},
        {0x40FE240C9FBE76C9ULL, "123456.789"},
        {0xC0934A4584F4C6E7ULL, "-1234.56789"},
    };
    heap_setup();
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        double d;
        memcpy(&d, &known[i].bits, sizeof d);
        check_print(flt(d), known[i].text);
    }
    rnd_state = 99;
    for (int i = 0; i < 5000; i++) {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d))
            continue;
        term_t t = flt(d), back;
        char *text = print_term(t);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        CU_ASSERT_FATAL(parse_str(text, &back, NULL) == GD_OK);
        CU_ASSERT_FATAL(term_is_float(back));
        double e = term_float_value(back);
        CU_ASSERT(memcmp(&d, &e, sizeof d) == 0);
        free(text);
    }
    heap_destroy(&heap);
}

static void test_print_failure_leaves_buffer(void)
{
    heap_setup();
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(etf_buf_reserve(&b, 4) == GD_OK);
    memcpy(b.data, "abc", 3);
    b.len = 3;
    /* A header word is not a term: refused, buffer as it was. */
    term_t bogus = heap_make_header(HDR_TUPLE, 1);
    term_t *e, t;
    CU_ASSERT_FATAL(heap_make_tuple(&heap, 2, &e, &t) == GD_OK);
    e[0] = term_make_small(1);
    e[1] = bogus;
    CU_ASSERT_EQUAL(etf_print(t, &b), GD_EBADARG);
    CU_ASSERT_EQUAL(b.len, 3);
    CU_ASSERT_EQUAL(etf_print(atom("ok"), &b), GD_OK);
    CU_ASSERT(b.len == 5 && memcmp(b.data, "abcok", 5) == 0);
    etf_buf_free(&b);
    heap_destroy(&heap);
}

static const gd_test_case_t cases[] = {
    {"print_built", test_print_built},
    {"erl_printed_fixpoint", test_erl_printed_fixpoint},
    {"parse_forms", test_parse_forms},
    {"parse_values", test_parse_values},
    {"identifiers", test_identifiers},
    {"errors", test_errors},
    {"deep_nesting", test_deep_nesting},
    {"random_roundtrip", test_random_roundtrip},
    {"bignums", test_bignums},
    {"floats", test_floats},
    {"print_failure_leaves_buffer", test_print_failure_leaves_buffer},
    {NULL, NULL},
};

GD_TEST_MAIN("etf_text", cases)
