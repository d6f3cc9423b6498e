/*
 * test_map_order.c — the pair order of maps of more than 32 keys: OTP 25's
 * term_to_binary orders them by its internal term hash (HAMT order), and
 * girder must produce the same bytes (etf/otp_map_order.c).  Every expected
 * byte string below was made by term_to_binary on OTP 25.2.3 (erts
 * 13.1.5); tests/interop checks the same against a live erl on random maps.
 */
#include <stdlib.h>
#include <zlib.h>

#include "codec_util.h"
#include "internal.h"

/* Hex text to bytes (malloc'ed; the caller frees). */
static uint8_t *unhex(const char *hex, size_t *n)
{
    size_t len = strlen(hex) / 2;
    uint8_t *b = malloc(len);
    CU_ASSERT_FATAL(b != NULL);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        CU_ASSERT_FATAL(sscanf(hex + 2 * i, "%2x", &v) == 1);
        b[i] = (uint8_t)v;
    }
    *n = len;
    return b;
}

static bool encodes_to_hex(term_t t, const etf_encode_opts_t *o, const char *hex)
{
    size_t n;
    uint8_t *want = unhex(hex, &n);
    bool ok = cu_encodes_to(t, o, want, n);
    free(want);
    return ok;
}

static term_t parse(const char *text)
{
    term_t t = TERM_NONE;
    etf_error_t err = {0, 0};
    CU_ASSERT_FATAL(etf_parse(&cu_heap, text, strlen(text), &t, &err) == GD_OK);
    return t;
}

/* A map of keys[i] => vals[i], the pairs given in a shuffled order. */
static term_t map_of(term_t *keys, term_t *vals, size_t n, uint64_t *seed)
{
    termgen_shuffle_pairs(keys, vals, n, seed);
    term_t m;
    CU_ASSERT_FATAL(heap_make_map(&cu_heap, keys, vals, n, &m) == GD_OK);
    return m;
}

/* Length and CRC-32 of what etf_encode (OTP 25 defaults) makes of t. */
static void encoded_crc(term_t t, size_t *len, uint32_t *crc)
{
    etf_buf_t b = {0};
    CU_ASSERT_FATAL(etf_encode(t, NULL, &b) == GD_OK);
    *len = b.len;
    *crc = (uint32_t)crc32(0, b.data, (uInt)b.len);
    etf_buf_free(&b);
}

/* maps:from_list([{I, I} || I <- lists:seq(1, 40)]): the example. */
static const char OTP_INTS_1_40[] =
    "83740000002861216121610C610C61176117611D611D611E611E61276127611A"
    "611A611F611F610B610B6125612561096109612061206122612261196119611C"
    "611C6106610661266126610D610D6128612861146114610F610F610E610E6102"
    "6102610761076101610161086108610361036111611161166116611561156104"
    "61046124612461186118610A610A61236123611B611B61136113610561056112"
    "611261106110";

/* 45 keys of every kind the hash treats apart: [], byte and non-byte lists,
 * improper lists, strings of 3, 4 and 5 bytes, binaries of 0 and 13 bytes, a
 * 3-bit bitstring, -0.0 and 1.5, integers at the small/big boundary
 * (+-2^59), bignums +-2^64, tuples, a map, and -10..14. */
static const char MIXED_TEXT[] =
    "#{-4 => 27,5 => 36,<<97,98,99,100,101,102,103,104,105,106,107,108,109>> => 4,[97,98,99,1"
    "00] => 19,-8 => 23,{} => 17,-9 => 22,18446744073709551616 => 8,576460752303423488 => 13,"
    "-7 => 24,#{1 => 2} => 11,[[]] => 18,10 => 41,[] => 1,-0.0 => 7,-1 => 30,4 => 35,-5764607"
    "52303423488 => 15,[97,98,99,100,101] => 20,3 => 34,<<1:3>> => 5,8 => 39,1 => 32,-3 => 28"
    ",<<>> => 16,7 => 38,2 => 33,1.5 => 6,14 => 45,-6 => 25,13 => 44,0 => 31,6 => 37,-5 => 26"
    ",9 => 40,11 => 42,-2 => 29,-18446744073709551616 => 9,[1|2] => 12,[1000] => 2,5764607523"
    "03423487 => 14,-10 => 21,{1,2} => 10,[97,98,99] => 3,12 => 43}";
static const char OTP_MIXED[] = "83740000002D610C612B6B00036162636103680261016102610A62FFFFFFF661"
                                "156E0800FFFFFFFFFFFFFF07610E6C0000000162000003E86A61026C00000001"
                                "61016102610C6E0901000000000000000001610962FFFFFFFE611D610B612A61"
                                "09612862FFFFFFFB611A610661256100611F610D612C62FFFFFFFA6119610E61"
                                "2D463FF8000000000000610661026121610761266D00000000611062FFFFFFFD"
                                "611C61016120610861274D0000000103206105610361226B0005616263646561"
                                "146E08010000000000000008610F6104612362FFFFFFFF611E46800000000000"
                                "000061076A6101610A61296C000000016A6A6112740000000161016102610B62"
                                "FFFFFFF961186E08000000000000000008610D6E090000000000000000000161"
                                "0862FFFFFFF761166800611162FFFFFFF861176B00046162636461136D000000"
                                "0D6162636465666768696A6B6C6D61046105612462FFFFFFFC611B";
static const char OTP_MIXED_DETERMINISTIC[] =
    "83740000002D6E090100000000000000000161096E0801000000000000000861"
    "0F62FFFFFFF6611562FFFFFFF7611662FFFFFFF8611762FFFFFFF9611862FFFF"
    "FFFA611962FFFFFFFB611A62FFFFFFFC611B62FFFFFFFD611C62FFFFFFFE611D"
    "62FFFFFFFF611E6100611F610161206102612161036122610461236105612461"
    "066125610761266108612761096128610A6129610B612A610C612B610D612C61"
    "0E612D6E0800FFFFFFFFFFFFFF07610E6E08000000000000000008610D6E0900"
    "00000000000000000161084680000000000000006107463FF800000000000061"
    "0668006111680261016102610A740000000161016102610B6A61016C00000001"
    "61016102610C6B000361626361036B00046162636461136B0005616263646561"
    "146C0000000162000003E86A61026C000000016A6A61126D0000000061104D00"
    "000001032061056D0000000D6162636465666768696A6B6C6D6104";

static void test_small_integers(void)
{
    cu_setup();
    uint64_t seed = termgen_seed_from_env(0x0a7e);
    term_t k[40], v[40];
    for (int i = 0; i < 40; i++)
        k[i] = v[i] = SMALL(i + 1);
    CU_ASSERT(encodes_to_hex(map_of(k, v, 40, &seed), NULL, OTP_INTS_1_40));
    cu_teardown();
}

static void test_mixed_keys(void)
{
    cu_setup();
    term_t m = parse(MIXED_TEXT);
    CU_ASSERT_FATAL(heap_map_size(m) == 45);
    CU_ASSERT(encodes_to_hex(m, NULL, OTP_MIXED));
    /* [deterministic] still sorts by key term order, as OTP does. */
    etf_encode_opts_t o;
    etf_encode_opts_init(&o);
    o.deterministic = true;
    CU_ASSERT(encodes_to_hex(m, &o, OTP_MIXED_DETERMINISTIC));
    /* OTP's bytes decode and re-encode to themselves. */
    size_t n;
    uint8_t *otp = unhex(OTP_MIXED, &n);
    CU_ASSERT(cu_roundtrip_bytes(otp, n));
    free(otp);
    cu_teardown();
}

/* Larger maps, checked by length and CRC-32 of OTP's bytes:
 *   M3 = maps:from_list([{maps:from_list([{J, I} || J <- lists:seq(1, 33)]), I}
 *                        || I <- lists:seq(1, 34)])   (maps over 32 keys as keys)
 *   M4 = maps:from_list([{I * 7919 - 500000, I} || I <- lists:seq(1, 1000)])
 *   M5 = maps:from_list([{I / 7, I} || I <- lists:seq(1, 1000)])
 *   M6 = maps:from_list([{<<I:32, I:(I rem 13)>>, I} || I <- lists:seq(1, 1000)]) */
static void test_large_maps(void)
{
    cu_setup();
    uint64_t seed = termgen_seed_from_env(0x0a7e);
    size_t len;
    uint32_t crc;
    static term_t k[1000], v[1000], inner_k[33], inner_v[33];

    for (int i = 1; i <= 34; i++) {
        for (int j = 1; j <= 33; j++) {
            inner_k[j - 1] = SMALL(j);
            inner_v[j - 1] = SMALL(i);
        }
        k[i - 1] = map_of(inner_k, inner_v, 33, &seed);
        v[i - 1] = SMALL(i);
    }
    encoded_crc(map_of(k, v, 34, &seed), &len, &crc);
    CU_ASSERT(len == 4732 && crc == 3096721202u);

    for (int i = 1; i <= 1000; i++) {
        k[i - 1] = SMALL((int64_t)i * 7919 - 500000);
        v[i - 1] = SMALL(i);
    }
    encoded_crc(map_of(k, v, 1000, &seed), &len, &crc);
    CU_ASSERT(len == 9241 && crc == 1374938067u);

    for (int i = 1; i <= 1000; i++) {
        CU_ASSERT_FATAL(heap_make_float(&cu_heap, i / 7.0, &k[i - 1]) == GD_OK);
        v[i - 1] = SMALL(i);
    }
    encoded_crc(map_of(k, v, 1000, &seed), &len, &crc);
    CU_ASSERT(len == 13241 && crc == 2851635788u);

    for (int i = 1; i <= 1000; i++) {
        /* <<I:32, I:(I rem 13)>> */
        unsigned tail = (unsigned)(i % 13);
        uint8_t buf[6] = {
            (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i, 0, 0};
        uint32_t low = (uint32_t)i & ((1u << tail) - 1);
        uint32_t shifted = tail == 0 ? 0 : low << (16 - tail);
        buf[4] = (uint8_t)(shifted >> 8);
        buf[5] = (uint8_t)shifted;
        uint8_t *data;
        CU_ASSERT_FATAL(heap_make_bitstring_uninit(&cu_heap, 32 + tail, &data, &k[i - 1]) == GD_OK);
        memcpy(data, buf, (32 + tail + 7) / 8);
        v[i - 1] = SMALL(i);
    }
    encoded_crc(map_of(k, v, 1000, &seed), &len, &crc);
    CU_ASSERT(len == 15320 && crc == 2476390208u);
    cu_teardown();
}

/* Keys only the emitting VM can order (atoms, pids, refs): the order must
 * still be a function of the keys alone, whatever the build order, and
 * survive decode + encode (local pids hash as what they decode back to). */
static void test_vm_specific_keys_stable(void)
{
    cu_setup();
    uint64_t seed = termgen_seed_from_env(0x0a7e);
    static term_t k[200], v[200];
    char name[32];
    for (int i = 0; i < 200; i++) {
        switch (i % 4) {
        case 0:
            snprintf(name, sizeof name, "key_%d", i);
            k[i] = heap_atom(name);
            break;
        case 1:
            k[i] = term_make_local_pid((uint32_t)i, 0);
            break;
        case 2:
            k[i] = term_make_local_port((uint64_t)i);
            break;
        default: {
            uint32_t w[3] = {(uint32_t)i, 7, 9};
            CU_ASSERT_FATAL(heap_make_ref(&cu_heap, ATOM_NONODE, 0, w, 3, &k[i]) == GD_OK);
        }
        }
        v[i] = SMALL(i);
    }
    etf_buf_t a = {0}, b = {0}, c = {0};
    term_t m1 = map_of(k, v, 200, &seed);
    term_t m2 = map_of(k, v, 200, &seed);
    CU_ASSERT_FATAL(etf_encode(m1, NULL, &a) == GD_OK && etf_encode(m2, NULL, &b) == GD_OK);
    CU_ASSERT(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    term_t back;
    CU_ASSERT_FATAL(etf_decode(&cu_heap, a.data, a.len, NULL, &back, NULL, NULL) == GD_OK);
    CU_ASSERT_FATAL(etf_encode(back, NULL, &c) == GD_OK);
    CU_ASSERT(a.len == c.len && memcmp(a.data, c.data, a.len) == 0);
    etf_buf_free(&a);
    etf_buf_free(&b);
    etf_buf_free(&c);
    cu_teardown();
}

/* Terms girder keeps apart but OTP hashes alike: -0.0 and 0.0 (erts hashes
 * the positive zero), a local pid or port and the external form it encodes
 * and decodes as ('nonode@nohost', creation 0). */
static void test_hash_identities(void)
{
    cu_setup();
    term_t pz, nz, epid, eport;
    CU_ASSERT_FATAL(heap_make_float(&cu_heap, 0.0, &pz) == GD_OK);
    CU_ASSERT_FATAL(heap_make_float(&cu_heap, -0.0, &nz) == GD_OK);
    CU_ASSERT_FATAL(heap_make_ext_pid(&cu_heap, ATOM_NONODE, 5, 6, 0, &epid) == GD_OK);
    CU_ASSERT_FATAL(heap_make_ext_port(&cu_heap, ATOM_NONODE, 77, 0, &eport) == GD_OK);
    uint32_t a, b;
    CU_ASSERT(etf_otp_internal_hash(pz, &a) == GD_OK && etf_otp_internal_hash(nz, &b) == GD_OK &&
              a == b);
    CU_ASSERT(etf_otp_internal_hash(term_make_local_pid(5, 6), &a) == GD_OK &&
              etf_otp_internal_hash(epid, &b) == GD_OK && a == b);
    CU_ASSERT(etf_otp_internal_hash(term_make_local_port(77), &a) == GD_OK &&
              etf_otp_internal_hash(eport, &b) == GD_OK && a == b);
    /* and pids differing in their serial only hash apart */
    CU_ASSERT(etf_otp_internal_hash(term_make_local_pid(5, 6), &a) == GD_OK &&
              etf_otp_internal_hash(term_make_local_pid(5, 7), &b) == GD_OK && a != b);
    cu_teardown();
}

static const gd_test_case_t gd_tests[] = {
    {"hash_identities", test_hash_identities},
    {"small_integers", test_small_integers},
    {"mixed_keys", test_mixed_keys},
    {"large_maps", test_large_maps},
    {"vm_specific_keys_stable", test_vm_specific_keys_stable},
    {NULL, NULL},
};

GD_TEST_MAIN("etf_map_order", gd_tests)
