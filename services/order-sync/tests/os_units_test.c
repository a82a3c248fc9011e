/* os_units_test: order-sync's pure pieces on their own: decimal amounts to
 * minor units and back, ISO 8601 times, the CSV reader and writer, and both
 * signature schemes (with known vectors).
 *
 * amounts_convert_exactly_or_are_refused
 * iso_times_with_zones_and_fractions
 * csv_reads_quotes_line_breaks_and_guards
 * signatures_match_only_the_right_key_body_and_time */
#define _GNU_SOURCE
#include "cc_check.h"
#include "os_csv.h"
#include "os_dialects.h"
#include "os_webhook.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
amounts_convert_exactly_or_are_refused(void)
{
    TEST_BEGIN(__func__);
    const struct { const char *text, *currency; long long want; bool ok; } cases[] = {
        { "19.99", "USD", 1999, true }, { "0.10", "EUR", 10, true }, { "0.1", "EUR", 10, true },
        { "318.09", "USD", 31809, true }, { "12800", "JPY", 12800, true }, { "12800.00", "JPY", 12800, true },
        { "0.500", "KWD", 500, true }, { "1.2", "KWD", 1200, true }, { "7", "CNY", 700, true },
        { "19.990", "USD", 1999, true }, { "10000000000.00", "USD", 1000000000000LL, true },
        { "19.999", "USD", 0, false }, { "12800.5", "JPY", 0, false }, { "-1.00", "USD", 0, false },
        { "1e3", "USD", 0, false }, { "", "USD", 0, false }, { ".50", "USD", 0, false }, { "1,00", "EUR", 0, false },
        { "10000000000.01", "USD", 0, false }, { "99999999999999", "JPY", 0, false }, { " 1.00", "USD", 0, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long long got = -1;
        bool ok = os_amount_minor(cases[i].text, cases[i].currency, &got);
        CHECK(ok == cases[i].ok && (!ok || got == cases[i].want), "'%s' %s: %d %lld (want %d %lld)", cases[i].text,
              cases[i].currency, ok, got, cases[i].ok, cases[i].want);
    }
    CHECK(!os_amount_minor(NULL, "USD", &(long long) { 0 }), "NULL text");
    char buf[32];
    os_amount_text(1999, "USD", buf, sizeof buf);
    CHECK(strcmp(buf, "19.99") == 0, "%s", buf);
    os_amount_text(5, "USD", buf, sizeof buf);
    CHECK(strcmp(buf, "0.05") == 0, "%s", buf);
    os_amount_text(12800, "JPY", buf, sizeof buf);
    CHECK(strcmp(buf, "12800") == 0, "%s", buf);
    os_amount_text(1500, "KWD", buf, sizeof buf);
    CHECK(strcmp(buf, "1.500") == 0, "%s", buf);
    TEST_PASS(__func__);
}

static void
iso_times_with_zones_and_fractions(void)
{
    TEST_BEGIN(__func__);
    CHECK(os_iso_us("1970-01-01T00:00:00Z") == 0, "epoch");
    CHECK(os_iso_us("1970-01-01T00:00:01.5Z") == 1500000, "fraction");
    CHECK(os_iso_us("2026-12-01T09:15:02-05:00") == os_iso_us("2026-12-01T14:15:02Z"), "offset -05:00");
    CHECK(os_iso_us("2026-12-01T12:00:00+09:00") == os_iso_us("2026-12-01T03:00:00"), "offset +09:00, no zone is UTC");
    CHECK(os_iso_us("2026-12-01T09:15:02.123456Z") - os_iso_us("2026-12-01T09:15:02Z") == 123456, "microseconds");
    CHECK(os_iso_us("2026-12-01") < 0 && os_iso_us("yesterday") < 0 && os_iso_us("2026-12-01T09:15:02+5") < 0
          && os_iso_us("2026-12-01T09:15:02Zjunk") < 0 && os_iso_us(NULL) < 0, "malformed refused");
    TEST_PASS(__func__);
}

static void
csv_reads_quotes_line_breaks_and_guards(void)
{
    TEST_BEGIN(__func__);
    const char *text = "\xEF\xBB\xBFid,name,note\r\n"
                       "1,\"Wang, \"\"Xiao\"\" Ming\",\"two\nlines\"\r\n"
                       "\r\n"
                       "2,,'+15550100\n"
                       "3,plain,\"\"";
    os_csv_t *csv = os_csv_new(text, strlen(text));
    char **f;
    const char *why = NULL;
    CHECK(os_csv_row(csv, &f, &why) == 3 && strcmp(f[0], "id") == 0 && strcmp(f[2], "note") == 0, "header past the BOM");
    CHECK(os_csv_row(csv, &f, &why) == 3 && strcmp(f[1], "Wang, \"Xiao\" Ming") == 0 && strcmp(f[2], "two\nlines") == 0
          && os_csv_line(csv) == 2, "quotes, doubled quotes, a line break");
    CHECK(os_csv_row(csv, &f, &why) == 3 && strcmp(f[1], "") == 0 && strcmp(f[2], "+15550100") == 0 && os_csv_line(csv) == 5,
          "blank line skipped, empty field, formula guard removed (line %d)", os_csv_line(csv));
    CHECK(os_csv_row(csv, &f, &why) == 3 && strcmp(f[2], "") == 0, "quoted empty field at the end without a line break");
    CHECK(os_csv_row(csv, &f, &why) == 0, "the end");
    os_csv_destroy(&csv);
    CHECK(!csv, "destroy clears");
    const char *bad[] = { "a,\"open\n", "a,\"x\"y\n", "a,b\"c\n" };
    for (size_t i = 0; i < 3; i++) {
        csv = os_csv_new(bad[i], strlen(bad[i]));
        why = NULL;
        CHECK(os_csv_row(csv, &f, &why) == -1 && why, "malformed %zu refused", i);
        os_csv_destroy(&csv);
    }
    char *out = NULL;
    size_t len = 0;
    FILE *w = open_memstream(&out, &len);
    os_csv_put(w, "plain", false);
    os_csv_put(w, "a,b", false);
    os_csv_put(w, "say \"hi\"", false);
    os_csv_put(w, "=SUM(A1)", false);
    os_csv_put(w, NULL, true);
    fclose(w);
    CHECK(strcmp(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=SUM(A1)\",\r\n") == 0, "written: %s", out);
    csv = os_csv_new(out, len);
    CHECK(os_csv_row(csv, &f, &why) == 5 && strcmp(f[1], "a,b") == 0 && strcmp(f[2], "say \"hi\"") == 0
          && strcmp(f[3], "=SUM(A1)") == 0 && strcmp(f[4], "") == 0, "read back as written");
    os_csv_destroy(&csv);
    free(out);
    TEST_PASS(__func__);
}

/* b64 gets the base64 HMAC-SHA256 of body keyed with secret's bytes. */
static void
s_body_mac(const char *secret, const char *body, char b64[64])
{
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *) secret, strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(b64, 64, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
}

static void
signatures_match_only_the_right_key_body_and_time(void)
{
    TEST_BEGIN(__func__);
    /* The Standard Webhooks specification's example. */
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", *id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const char *body = "{\"test\": 2432232314}", *sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const char *why = NULL;
    CHECK(os_verify(secret, id, "1614265330", body, strlen(body), sig, 1614265330, &why) == 0, "spec vector: %s", why);
    CHECK(os_verify(secret, id, "1614265330", body, strlen(body), "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                    1614265330, &why) == 0, "one of several signatures (rotation)");
    CHECK(os_verify(secret, id, "1614265330", "{\"test\": 2432232315}", 20, sig, 1614265330, &why) == 401, "another body");
    CHECK(os_verify(secret, "msg_other", "1614265330", body, strlen(body), sig, 1614265330, &why) == 401, "another id");
    CHECK(os_verify(secret, id, "1614265330", body, strlen(body), sig, 1614265330 + 301, &why) == 401 && strstr(why, "replay"),
          "past the window");
    CHECK(os_verify(secret, id, "1614265330", body, strlen(body), sig, 1614265330 - 301, &why) == 401, "from the future");
    CHECK(os_verify(secret, id, "soon", body, strlen(body), sig, 1614265330, &why) == 401, "timestamp not a number");
    CHECK(os_verify("whsec_!!!", id, "1614265330", body, strlen(body), sig, 1614265330, &why) == 401, "unusable secret");
    CHECK(os_verify(secret, NULL, "1614265330", body, strlen(body), sig, 1614265330, &why) == 401, "no id");
    /* Pushes are signed by the same function the checks use: the spec's
     * signature, and a raw (not whsec_) secret keyed the same both ways. */
    char made[OS_SIGNATURE_MAX];
    CHECK(os_sign(secret, id, "1614265330", body, strlen(body), made, sizeof made, true) == 0 && strcmp(made, sig) == 0,
          "os_sign gives the spec's signature: %s", made);
    CHECK(os_sign("a raw shop secret, 32 bytes long", id, "1614265330", body, strlen(body), made, sizeof made, false) == 0
          && os_verify("a raw shop secret, 32 bytes long", id, "1614265330", body, strlen(body), made, 1614265330, &why) == 0,
          "a raw secret signs what it verifies");
    CHECK(os_sign("whsec_AAAA", id, "1614265330", body, strlen(body), made, sizeof made, true) == -1, "strict: short key");
    CHECK(os_sign("whsec_!!!", id, "1614265330", body, strlen(body), made, sizeof made, false) == -1, "bad base64");
    /* Shopify's and WooCommerce's: base64 HMAC-SHA256 of the body keyed with the secret's bytes. */
    const char *shop_secret = "shpss_hush_0123456789";
    char b64[64];
    s_body_mac(shop_secret, body, b64);
    CHECK(os_verify_body(shop_secret, body, strlen(body), b64, &why) == 0, "body signature");
    CHECK(os_verify_body("shpss_hush_0123456789!", body, strlen(body), b64, &why) == 401, "another secret");
    b64[3] = b64[3] == 'A' ? 'B' : 'A';
    CHECK(os_verify_body(shop_secret, body, strlen(body), b64, &why) == 401, "a changed signature");
    CHECK(os_verify_body(shop_secret, body, strlen(body), NULL, &why) == 401, "none");
    /* A platform row with an empty or short secret verifies nothing: a
     * signature anyone can make with that key is refused. */
    s_body_mac("", body, b64);
    CHECK(os_verify_body("", body, strlen(body), b64, &why) == 401 && strstr(why, "unusable"), "empty shop secret");
    s_body_mac("short", body, b64);
    CHECK(os_verify_body("short", body, strlen(body), b64, &why) == 401, "short shop secret");
    char sv[128], svb[64];
    unsigned char mac[32];
    crypto_auth_hmacsha256_state st;
    snprintf(sv, sizeof sv, "%s.%s.%s", id, "1614265330", body);
    crypto_auth_hmacsha256_init(&st, (const unsigned char *) "", 0);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *) sv, strlen(sv));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2base64(svb, sizeof svb, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    snprintf(sv, sizeof sv, "v1,%s", svb);
    CHECK(os_verify("whsec_", id, "1614265330", body, strlen(body), sv, 1614265330, &why) == 401, "empty whsec_ secret");
    TEST_PASS(__func__);
}

static void
a_shops_own_number_of_ours(void)
{
    TEST_BEGIN(__func__);
    char b[65];
    CHECK(strcmp(os_platform_number("1001@beta", "beta", b, sizeof b), "1001") == 0, "1001@beta on beta: %s", b);
    CHECK(strcmp(os_platform_number("1001", "acme", b, sizeof b), "1001") == 0, "1001 on acme: %s", b);
    CHECK(strcmp(os_platform_number("1001@beta", "acme", b, sizeof b), "1001@beta") == 0, "another shop's suffix: %s", b);
    CHECK(strcmp(os_platform_number("@beta", "beta", b, sizeof b), "@beta") == 0, "nothing before the @: %s", b);
    CHECK(strcmp(os_platform_number("x@eta", "beta", b, sizeof b), "x@eta") == 0, "a shorter suffix: %s", b);
    TEST_PASS(__func__);
}

int
main(void)
{
    CHECK(sodium_init() >= 0, "sodium");
    amounts_convert_exactly_or_are_refused();
    iso_times_with_zones_and_fractions();
    csv_reads_quotes_line_breaks_and_guards();
    signatures_match_only_the_right_key_body_and_time();
    a_shops_own_number_of_ours();
    printf("os_units_test: 5 passed, 0 failed\n");
    return 0;
}
