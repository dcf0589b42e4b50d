/*
 * The C test suite of runnel's C ABI: every function of include/runnel.h, its results and its
 * error paths (NULL arguments, invalid UTF-8, freed, double-freed and wrong-typed handles,
 * out-of-range offsets and indexes, oversize records, read-only handles). scripts/c-tests.sh
 * builds it with AddressSanitizer and UndefinedBehaviorSanitizer (leak checking on) and runs it.
 *
 * Usage: test_runnel SCRATCH_DIR
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runnel.h"

static int failures = 0;
static int checks = 0;
static char scratch[4096];

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, runnel_last_error());                                           \
        }                                                                                  \
    } while (0)

#define EXPECT(call, code) CHECK((call) == (code))
#define OK(call) EXPECT(call, RUNNEL_OK)

static const char *path(const char *name) {
    static char buf[8192];
    snprintf(buf, sizeof buf, "%s/%s", scratch, name);
    return buf;
}

static runnel_log *open_log(const char *name) {
    runnel_log *log = NULL;
    const char *opts[] = {"background_maintenance", "false"};
    OK(runnel_open(path(name), opts, 1, &log));
    CHECK(log != NULL);
    return log;
}

static runnel_record rec(const char *key, const char *value) {
    runnel_record r;
    memset(&r, 0, sizeof r);
    r.key = (const uint8_t *)key;
    r.key_len = key ? strlen(key) : 0;
    r.value = (const uint8_t *)value;
    r.value_len = value ? strlen(value) : 0;
    r.timestamp = RUNNEL_NO_TIMESTAMP;
    return r;
}

static int view_is(const runnel_record_view *v, const char *key, const char *value) {
    int key_ok = key ? (v->key && v->key_len == strlen(key) && memcmp(v->key, key, v->key_len) == 0) : v->key == NULL;
    int value_ok = value ? (v->value && v->value_len == strlen(value) && memcmp(v->value, value, v->value_len) == 0)
                         : v->value == NULL;
    return key_ok && value_ok;
}

static void test_version_and_names(void) {
    CHECK(strcmp(runnel_version(), "0.1.0") == 0);
    CHECK(runnel_version_number() == RUNNEL_VERSION_NUMBER);
    CHECK(strcmp(runnel_result_name(RUNNEL_LOCKED), "RUNNEL_LOCKED") == 0);
    CHECK(strcmp(runnel_result_name(RUNNEL_DONE), "RUNNEL_DONE") == 0);
    CHECK(strcmp(runnel_result_name(999), "RUNNEL_UNKNOWN") == 0);
    CHECK(strcmp(runnel_result_name(-1), "RUNNEL_UNKNOWN") == 0);
    CHECK(runnel_last_error() != NULL);
}

static void test_open_errors(void) {
    runnel_log *log = NULL;
    EXPECT(runnel_open(NULL, NULL, 0, &log), RUNNEL_NULL_ARGUMENT);
    CHECK(strlen(runnel_last_error()) > 0);
    EXPECT(runnel_open(path("o"), NULL, 0, NULL), RUNNEL_NULL_ARGUMENT);
    const char bad_utf8[] = {'/', 't', 'm', 'p', '/', (char)0xff, (char)0xfe, 0};
    EXPECT(runnel_open(bad_utf8, NULL, 0, &log), RUNNEL_INVALID_UTF8);
    const char *bad_opt[] = {"background_maintenance", "maybe"};
    EXPECT(runnel_open(path("o"), bad_opt, 1, &log), RUNNEL_INVALID_ARGUMENT);
    const char *bad_cfg[] = {"segment.bytes", "-5"};
    EXPECT(runnel_open(path("o"), bad_cfg, 1, &log), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_open(path("o"), NULL, 1, &log), RUNNEL_NULL_ARGUMENT);
    runnel_log *a = open_log("o");
    runnel_log *b = NULL;
    EXPECT(runnel_open(path("o"), NULL, 0, &b), RUNNEL_LOCKED);
    CHECK(b == NULL);
    CHECK(strstr(runnel_last_error(), "locked") != NULL);
    CHECK(runnel_is_read_only(a) == 0);
    OK(runnel_close(a));
    /* A closed handle is no longer one: every call says so, and a second close too. */
    EXPECT(runnel_close(a), RUNNEL_INVALID_HANDLE);
    EXPECT(runnel_topic_create(a, "t", 1, NULL, 0), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_is_read_only(a) == -1);
    EXPECT(runnel_close(NULL), RUNNEL_NULL_ARGUMENT);
}

static void test_topics(void) {
    runnel_log *log = open_log("topics");
    const char *cfg[] = {"retention.ms", "3600000", "segment.bytes", "1048576"};
    OK(runnel_topic_create(log, "orders", 3, cfg, 2));
    EXPECT(runnel_topic_create(log, "orders", 3, NULL, 0), RUNNEL_TOPIC_EXISTS);
    EXPECT(runnel_topic_create(log, "../escape", 1, NULL, 0), RUNNEL_INVALID_TOPIC);
    EXPECT(runnel_topic_create(log, "zero", 0, NULL, 0), RUNNEL_INVALID_ARGUMENT);
    const char *bad_cfg[] = {"no.such.key", "1"};
    EXPECT(runnel_topic_create(log, "x", 1, bad_cfg, 1), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_topic_create(log, NULL, 1, NULL, 0), RUNNEL_NULL_ARGUMENT);
    OK(runnel_topic_create(log, "audit", 1, NULL, 0));

    runnel_string_list *list = NULL;
    OK(runnel_topic_list(log, &list));
    /* Sorted, internal topics included (as Kafka lists them). */
    CHECK(runnel_string_list_len(list) == 3);
    CHECK(strcmp(runnel_string_list_get(list, 0), "__consumer_offsets") == 0);
    CHECK(strcmp(runnel_string_list_get(list, 1), "audit") == 0);
    CHECK(strcmp(runnel_string_list_get(list, 2), "orders") == 0);
    CHECK(runnel_string_list_get(list, 3) == NULL);
    OK(runnel_string_list_free(list));
    EXPECT(runnel_string_list_free(list), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_string_list_len(list) == 0);
    CHECK(runnel_string_list_get(list, 0) == NULL);

    uint32_t n = 0;
    OK(runnel_topic_partition_count(log, "orders", &n));
    CHECK(n == 3);
    OK(runnel_topic_add_partitions(log, "orders", 5));
    OK(runnel_topic_partition_count(log, "orders", &n));
    CHECK(n == 5);
    EXPECT(runnel_topic_add_partitions(log, "orders", 2), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_topic_partition_count(log, "nope", &n), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    EXPECT(runnel_topic_partition_count(log, "orders", NULL), RUNNEL_NULL_ARGUMENT);

    runnel_topic_description *d = NULL;
    OK(runnel_topic_describe(log, "orders", &d));
    CHECK(runnel_topic_description_partitions(d) == 5);
    CHECK(runnel_topic_description_internal(d) == 0);
    runnel_partition_info info;
    OK(runnel_topic_description_partition(d, 4, &info));
    CHECK(info.partition == 4 && info.high_watermark == 0 && info.segment_count == 1);
    EXPECT(runnel_topic_description_partition(d, 5, &info), RUNNEL_INVALID_ARGUMENT);
    int saw_retention = 0;
    for (size_t i = 0; i < runnel_topic_description_config_len(d); i++) {
        const char *k = NULL, *v = NULL;
        OK(runnel_topic_description_config(d, i, &k, &v));
        if (strcmp(k, "retention.ms") == 0) saw_retention = strcmp(v, "3600000") == 0;
    }
    CHECK(saw_retention);
    const char *k = NULL, *v = NULL;
    EXPECT(runnel_topic_description_config(d, 999, &k, &v), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_topic_description_config(d, 0, NULL, &v), RUNNEL_NULL_ARGUMENT);
    OK(runnel_topic_description_free(d));
    EXPECT(runnel_topic_description_free(d), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_topic_description_partitions(d) == 0);
    CHECK(runnel_topic_description_config_len(d) == 0);
    CHECK(runnel_topic_description_internal(d) == -1);
    EXPECT(runnel_topic_describe(log, "nope", &d), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);

    OK(runnel_topic_delete(log, "audit"));
    EXPECT(runnel_topic_delete(log, "audit"), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    OK(runnel_close(log));
}

static void test_append_and_fetch(void) {
    runnel_log *log = open_log("append");
    const char *cfg[] = {"max.message.bytes", "1000"};
    OK(runnel_topic_create(log, "t", 2, cfg, 1));

    runnel_header hs[2];
    hs[0].key = (const uint8_t *)"trace";
    hs[0].key_len = 5;
    hs[0].value = (const uint8_t *)"abc";
    hs[0].value_len = 3;
    hs[1].key = (const uint8_t *)"empty";
    hs[1].key_len = 5;
    hs[1].value = NULL;
    hs[1].value_len = 0;
    runnel_record rs[4];
    rs[0] = rec("k1", "v1");
    rs[0].headers = hs;
    rs[0].headers_len = 2;
    rs[0].timestamp = 1700000000000;
    rs[1] = rec(NULL, "no key");
    rs[2] = rec("tomb", NULL);
    rs[3] = rec("", "");
    runnel_append_result at;
    OK(runnel_append(log, "t", 0, rs, 4, RUNNEL_ACKS_ALL, &at));
    CHECK(at.partition == 0 && at.base_offset == 0 && at.last_offset == 3 && at.log_append_time == -1);
    OK(runnel_append(log, "t", RUNNEL_ANY_PARTITION, rs, 1, RUNNEL_ACKS_LEADER, NULL));
    OK(runnel_append(log, "t", 1, rs + 1, 1, RUNNEL_ACKS_NONE, &at));
    CHECK(at.partition == 1);

    EXPECT(runnel_append(log, "t", 0, rs, 1, 2, &at), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_append(log, "t", 7, rs, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    EXPECT(runnel_append(log, "t", -2, rs, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_append(log, "t", 0, NULL, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_NULL_ARGUMENT);
    EXPECT(runnel_append(log, "nope", 0, rs, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    runnel_record bad = rec("k", "v");
    bad.key = NULL;
    bad.key_len = 4;
    EXPECT(runnel_append(log, "t", 0, &bad, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_NULL_ARGUMENT);
    bad = rec("k", "v");
    bad.headers_len = 1;
    EXPECT(runnel_append(log, "t", 0, &bad, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_NULL_ARGUMENT);
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    runnel_record large = rec(NULL, big);
    EXPECT(runnel_append(log, "t", 0, &large, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_RECORD_TOO_LARGE);
    CHECK(strstr(runnel_last_error(), "max.message.bytes") != NULL);
    /* Packed values: one buffer, lengths. */
    size_t lens[3] = {1, 0, 2};
    OK(runnel_append_packed(log, "t", 1, (const uint8_t *)"abc", 3, lens, 3, RUNNEL_ACKS_ALL, &at));
    CHECK(at.partition == 1 && at.last_offset == at.base_offset + 2);
    size_t bad_lens[2] = {2, 5};
    EXPECT(runnel_append_packed(log, "t", 1, (const uint8_t *)"abc", 3, bad_lens, 2, RUNNEL_ACKS_ALL, &at), RUNNEL_INVALID_ARGUMENT);
    size_t short_lens[1] = {1};
    EXPECT(runnel_append_packed(log, "t", 1, (const uint8_t *)"abc", 3, short_lens, 1, RUNNEL_ACKS_ALL, &at), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_append_packed(log, "t", 1, NULL, 3, lens, 3, RUNNEL_ACKS_ALL, &at), RUNNEL_NULL_ARGUMENT);
    /* Nothing of the refused appends was written. */
    runnel_partition_info info;
    OK(runnel_sync(log));
    OK(runnel_partition_offsets(log, "t", 0, &info));
    CHECK(info.log_end_offset == 4 + (at.partition == 0 ? 0 : 1) || info.log_end_offset >= 4);

    runnel_fetched *f = NULL;
    OK(runnel_fetch(log, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f));
    CHECK(runnel_fetched_count(f) >= 4);
    CHECK(runnel_fetched_next_offset(f) == runnel_fetched_count(f));
    CHECK(runnel_fetched_high_watermark(f) >= 4);
    runnel_record_view v;
    OK(runnel_fetched_next(f, &v));
    CHECK(v.offset == 0 && v.index == 0 && v.timestamp == 1700000000000 && view_is(&v, "k1", "v1") && v.headers_len == 2);
    runnel_header h;
    OK(runnel_fetched_header(f, 0, 0, &h));
    CHECK(h.key_len == 5 && memcmp(h.key, "trace", 5) == 0 && h.value_len == 3 && memcmp(h.value, "abc", 3) == 0);
    OK(runnel_fetched_header(f, 0, 1, &h));
    CHECK(h.value == NULL);
    EXPECT(runnel_fetched_header(f, 0, 2, &h), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_fetched_header(f, 99, 0, &h), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_fetched_next(f, &v));
    CHECK(v.offset == 1 && view_is(&v, NULL, "no key"));
    OK(runnel_fetched_next(f, &v));
    CHECK(v.offset == 2 && view_is(&v, "tomb", NULL));
    OK(runnel_fetched_next(f, &v));
    CHECK(v.offset == 3 && v.key != NULL && v.key_len == 0 && v.value != NULL && v.value_len == 0);
    size_t seen = 4;
    while (runnel_fetched_next(f, &v) == RUNNEL_OK) seen++;
    CHECK(seen == runnel_fetched_count(f));
    EXPECT(runnel_fetched_next(f, &v), RUNNEL_DONE);
    OK(runnel_fetched_get(f, 1, &v));
    CHECK(v.offset == 1);
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    OK(runnel_fetched_bytes(f, &raw, &raw_len));
    CHECK(raw != NULL && raw_len > 0 && v.value >= raw && v.value + v.value_len <= raw + raw_len);
    EXPECT(runnel_fetched_bytes(f, NULL, &raw_len), RUNNEL_NULL_ARGUMENT);
    uint64_t spans[6 * 3];
    size_t written = 0;
    OK(runnel_fetched_spans(f, spans, 3, &written));
    CHECK(written == 3);
    CHECK(spans[0] == 0 && (int64_t)spans[1] == 1700000000000 && spans[3] == 2 && memcmp(raw + spans[2], "k1", 2) == 0);
    CHECK(spans[6] == 1 && spans[8] == UINT64_MAX && spans[11] == 6 && memcmp(raw + spans[10], "no key", 6) == 0);
    CHECK(spans[12 + 4] == UINT64_MAX);
    EXPECT(runnel_fetched_spans(f, NULL, 3, &written), RUNNEL_NULL_ARGUMENT);
    OK(runnel_fetched_spans(f, NULL, 0, &written));
    CHECK(written == 0);
    EXPECT(runnel_fetched_get(f, 999, &v), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_fetched_next(f, NULL), RUNNEL_NULL_ARGUMENT);
    /* A log handle is not a fetch handle. */
    EXPECT(runnel_fetched_next((runnel_fetched *)log, &v), RUNNEL_INVALID_HANDLE);
    EXPECT(runnel_fetched_free((runnel_fetched *)log), RUNNEL_INVALID_HANDLE);
    OK(runnel_fetched_free(f));
    EXPECT(runnel_fetched_free(f), RUNNEL_INVALID_HANDLE);
    EXPECT(runnel_fetched_next(f, &v), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_fetched_count(f) == 0);
    CHECK(runnel_fetched_next_offset(f) == 0);
    CHECK(runnel_fetched_high_watermark(f) == 0);
    /* A freed handle never names a newer object, even one the allocator puts at the same address. */
    runnel_fetched *again = NULL;
    OK(runnel_fetch(log, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, &again));
    CHECK(again != f);
    EXPECT(runnel_fetched_free(f), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_fetched_count(again) >= 4);
    OK(runnel_fetched_free(again));

    /* Fetch from the high watermark: empty. Beyond it: out of range. */
    OK(runnel_partition_offsets(log, "t", 0, &info));
    OK(runnel_fetch(log, "t", 0, info.high_watermark, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f));
    CHECK(runnel_fetched_count(f) == 0);
    OK(runnel_fetched_free(f));
    EXPECT(runnel_fetch(log, "t", 0, info.high_watermark + 1, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f), RUNNEL_OFFSET_OUT_OF_RANGE);
    EXPECT(runnel_fetch(log, "t", 0, 0, 1 << 20, 7, &f), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_fetch(log, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, NULL), RUNNEL_NULL_ARGUMENT);
    /* fetch_wait times out with an empty fetch. */
    OK(runnel_fetch_wait(log, "t", 0, info.high_watermark, 1 << 20, RUNNEL_READ_COMMITTED, 20, &f));
    CHECK(runnel_fetched_count(f) == 0);
    OK(runnel_fetched_free(f));

    /* Timestamps. */
    uint64_t off = 0;
    int64_t ts = 0;
    OK(runnel_offset_for_timestamp(log, "t", 0, 1600000000000, &off, &ts));
    CHECK(off == 0 && ts == 1700000000000);
    EXPECT(runnel_offset_for_timestamp(log, "t", 0, INT64_MAX, &off, &ts), RUNNEL_DONE);

    /* sendfile to a file: the raw bytes of the batches. */
    int fd = open(path("sent.bin"), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    CHECK(fd >= 0);
    uint64_t bytes = 0, next = 0;
    OK(runnel_send_to_fd(log, "t", 0, 0, 1 << 20, fd, &bytes, &next));
    CHECK(bytes > 0 && next == info.high_watermark);
    CHECK(lseek(fd, 0, SEEK_END) == (off_t)bytes);
    close(fd);
    EXPECT(runnel_send_to_fd(log, "t", 0, 0, 1 << 20, -1, &bytes, &next), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_send_to_fd(log, "t", 0, 0, 1 << 20, fd, &bytes, &next), RUNNEL_IO);
    OK(runnel_close(log));
}

static void test_groups_and_retention(void) {
    runnel_log *log = open_log("groups");
    const char *cfg[] = {"segment.bytes", "4096", "retention.bytes", "8192"};
    OK(runnel_topic_create(log, "t", 1, cfg, 2));
    char value[300];
    memset(value, 'v', sizeof value - 1);
    value[sizeof value - 1] = 0;
    runnel_record r = rec(NULL, value);
    for (int i = 0; i < 100; i++) OK(runnel_append(log, "t", 0, &r, 1, RUNNEL_ACKS_LEADER, NULL));
    OK(runnel_sync(log));
    OK(runnel_commit_offset(log, "g", "t", 0, 60, "meta"));
    OK(runnel_commit_offset(log, "h", "t", 0, 10, NULL));
    uint64_t c = 0;
    OK(runnel_committed(log, "g", "t", 0, &c));
    CHECK(c == 60);
    EXPECT(runnel_committed(log, "none", "t", 0, &c), RUNNEL_DONE);
    EXPECT(runnel_commit_offset(log, "g", "t", 5, 1, NULL), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    EXPECT(runnel_commit_offset(log, "", "t", 0, 1, NULL), RUNNEL_INVALID_ARGUMENT);
    EXPECT(runnel_commit_offset(log, "g", "nope", 0, 1, NULL), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);

    runnel_string_list *groups = NULL;
    OK(runnel_group_list(log, &groups));
    CHECK(runnel_string_list_len(groups) == 2);
    OK(runnel_string_list_free(groups));

    runnel_lag_list *lag = NULL;
    OK(runnel_group_lag(log, "g", &lag));
    CHECK(runnel_lag_list_len(lag) == 1);
    runnel_partition_lag l;
    OK(runnel_lag_list_get(lag, 0, &l));
    CHECK(strcmp(l.topic, "t") == 0 && l.partition == 0 && l.committed == 60 && l.high_watermark == 100 && l.lag == 40);
    EXPECT(runnel_lag_list_get(lag, 1, &l), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_lag_list_free(lag));
    EXPECT(runnel_lag_list_free(lag), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_lag_list_len(lag) == 0);

    int existed = -1;
    OK(runnel_group_delete(log, "h", &existed));
    CHECK(existed == 1);
    OK(runnel_group_delete(log, "h", &existed));
    CHECK(existed == 0);

    size_t deleted = 0;
    OK(runnel_run_retention(log, &deleted));
    CHECK(deleted > 0);
    runnel_partition_info info;
    OK(runnel_partition_offsets(log, "t", 0, &info));
    CHECK(info.log_start_offset > 0 && info.size_bytes <= 8192 + 4096);
    runnel_fetched *f = NULL;
    EXPECT(runnel_fetch(log, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f), RUNNEL_OFFSET_OUT_OF_RANGE);
    OK(runnel_close(log));
}

static void test_read_only(void) {
    runnel_log *w = open_log("ro");
    const char *cfg[] = {"high.watermark", "written"};
    OK(runnel_topic_create(w, "t", 1, cfg, 1));
    runnel_record r = rec("k", "v");
    OK(runnel_append(w, "t", 0, &r, 1, RUNNEL_ACKS_LEADER, NULL));
    const char *opts[] = {"read_only", "true"};
    runnel_log *ro = NULL;
    OK(runnel_open(path("ro"), opts, 1, &ro));
    CHECK(runnel_is_read_only(ro) == 1);
    EXPECT(runnel_append(ro, "t", 0, &r, 1, RUNNEL_ACKS_LEADER, NULL), RUNNEL_READ_ONLY);
    EXPECT(runnel_topic_create(ro, "u", 1, NULL, 0), RUNNEL_READ_ONLY);
    EXPECT(runnel_commit_offset(ro, "g", "t", 0, 0, NULL), RUNNEL_READ_ONLY);
    runnel_fetched *f = NULL;
    OK(runnel_fetch(ro, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f));
    CHECK(runnel_fetched_count(f) == 1);
    OK(runnel_fetched_free(f));
    /* The reader follows the writer. */
    OK(runnel_append(w, "t", 0, &r, 1, RUNNEL_ACKS_LEADER, NULL));
    OK(runnel_fetch_wait(ro, "t", 0, 1, 1 << 20, RUNNEL_READ_UNCOMMITTED, 5000, &f));
    CHECK(runnel_fetched_count(f) == 1);
    OK(runnel_fetched_free(f));
    OK(runnel_close(ro));
    OK(runnel_close(w));
}

/* Shared mode: two handles stand for two processes writing the same directory. */
static void test_shared(void) {
    const char *shared[] = {"mode", "shared"};
    runnel_log *a = NULL, *b = NULL, *x = NULL;
    OK(runnel_open(path("sh"), shared, 1, &a));
    OK(runnel_open(path("sh"), shared, 1, &b));
    CHECK(runnel_is_shared(a) == 1);
    CHECK(runnel_is_read_only(a) == 0);
    EXPECT(runnel_open(path("sh"), NULL, 0, &x), RUNNEL_LOCKED);
    const char *bad[] = {"mode", "both"};
    EXPECT(runnel_open(path("sh"), bad, 1, &x), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_topic_create(a, "t", 1, NULL, 0));
    runnel_record r = rec("k", "from b");
    runnel_append_result at;
    OK(runnel_append(b, "t", 0, &r, 1, RUNNEL_ACKS_ALL, &at));
    CHECK(at.base_offset == 0);
    r = rec("k", "from a");
    OK(runnel_append(a, "t", 0, &r, 1, RUNNEL_ACKS_ALL, &at));
    CHECK(at.base_offset == 1);
    runnel_fetched *f = NULL;
    OK(runnel_fetch(b, "t", 0, 0, 1 << 20, RUNNEL_READ_UNCOMMITTED, &f));
    CHECK(runnel_fetched_count(f) == 2);
    OK(runnel_fetched_free(f));
    OK(runnel_commit_offset(a, "g", "t", 0, 2, NULL));
    OK(runnel_close(a));
    OK(runnel_close(b));
    /* The last one out closed the directory: an exclusive writer may open it now. */
    OK(runnel_open(path("sh"), NULL, 0, &x));
    CHECK(runnel_is_shared(x) == 0);
    OK(runnel_close(x));
}

static void test_producers(void) {
    runnel_log *log = open_log("eos");
    OK(runnel_topic_create(log, "t", 2, NULL, 0));
    runnel_idempotent_producer *p = NULL;
    OK(runnel_idempotent_producer_new(log, &p));
    CHECK(runnel_idempotent_producer_id(p) >= 0);
    runnel_record r = rec("k", "once");
    runnel_append_result at;
    OK(runnel_idempotent_producer_send(p, "t", 0, &r, 1, RUNNEL_ACKS_ALL, &at));
    CHECK(at.base_offset == 0);
    EXPECT(runnel_idempotent_producer_send(p, "t", 0, &r, 1, 5, &at), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_idempotent_producer_free(p));
    EXPECT(runnel_idempotent_producer_free(p), RUNNEL_INVALID_HANDLE);
    CHECK(runnel_idempotent_producer_id(p) == -1);

    runnel_transactional_producer *t = NULL;
    OK(runnel_transactional_producer_new(log, "app-1", 0, &t));
    EXPECT(runnel_transaction_send(t, "t", 1, &r, 1, &at), RUNNEL_INVALID_TRANSACTION_STATE);
    OK(runnel_transaction_begin(t));
    EXPECT(runnel_transaction_begin(t), RUNNEL_INVALID_TRANSACTION_STATE);
    runnel_record aborted = rec("k", "aborted");
    OK(runnel_transaction_send(t, "t", 1, &aborted, 1, &at));
    OK(runnel_transaction_abort(t));
    OK(runnel_transaction_begin(t));
    runnel_record committed = rec("k", "committed");
    OK(runnel_transaction_send(t, "t", 1, &committed, 1, &at));
    OK(runnel_transaction_send_offset(t, "g", "t", 0, 1));
    OK(runnel_transaction_commit(t));
    uint64_t c = 0;
    OK(runnel_committed(log, "g", "t", 0, &c));
    CHECK(c == 1);
    runnel_fetched *f = NULL;
    OK(runnel_fetch(log, "t", 1, 0, 1 << 20, RUNNEL_READ_COMMITTED, &f));
    runnel_record_view v;
    size_t n = 0;
    while (runnel_fetched_next(f, &v) == RUNNEL_OK) {
        CHECK(view_is(&v, "k", "committed"));
        n++;
    }
    CHECK(n == 1);
    OK(runnel_fetched_free(f));
    /* A second producer with the same id fences the first. */
    runnel_transactional_producer *t2 = NULL;
    OK(runnel_transactional_producer_new(log, "app-1", 0, &t2));
    EXPECT(runnel_transaction_begin(t), RUNNEL_PRODUCER_FENCED);
    OK(runnel_transactional_producer_free(t));
    OK(runnel_transactional_producer_free(t2));
    EXPECT(runnel_transaction_commit(t2), RUNNEL_INVALID_HANDLE);
    OK(runnel_close(log));
}

struct worker {
    runnel_log *log;
    int id;
    int errors;
};

static void *append_many(void *arg) {
    struct worker *w = arg;
    char value[32];
    for (int i = 0; i < 200; i++) {
        snprintf(value, sizeof value, "%d-%d", w->id, i);
        runnel_record r = rec(NULL, value);
        if (runnel_append(w->log, "t", 0, &r, 1, i % 10 == 0 ? RUNNEL_ACKS_ALL : RUNNEL_ACKS_LEADER, NULL) != RUNNEL_OK) w->errors++;
    }
    return NULL;
}

static void test_threads(void) {
    runnel_log *log = open_log("threads");
    OK(runnel_topic_create(log, "t", 1, NULL, 0));
    pthread_t threads[4];
    struct worker ws[4];
    for (int i = 0; i < 4; i++) {
        ws[i].log = log;
        ws[i].id = i;
        ws[i].errors = 0;
        CHECK(pthread_create(&threads[i], NULL, append_many, &ws[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(ws[i].errors == 0);
    }
    OK(runnel_sync(log));
    runnel_partition_info info;
    OK(runnel_partition_offsets(log, "t", 0, &info));
    CHECK(info.log_end_offset == 800 && info.high_watermark == 800);
    OK(runnel_close(log));
}

/* ---- Chapter 4: the producer and consumer clients ---- */

struct sent {
    int calls;
    int errors;
    int64_t offsets[200];
    pthread_mutex_t lock;
};

static void on_send(void *user, enum runnel_result result, const runnel_record_metadata *m, const char *error) {
    struct sent *s = user;
    pthread_mutex_lock(&s->lock);
    if (result == RUNNEL_OK && m != NULL && error == NULL && strcmp(m->topic, "first") == 0) {
        if (s->calls < 200) s->offsets[s->calls] = m->offset;
    } else {
        s->errors++;
    }
    s->calls++;
    pthread_mutex_unlock(&s->lock);
}

struct store {
    int64_t offsets[4];
    int assigned_calls;
    int revoked_calls;
};

/* Section 4.2.3: offsets kept outside runnel; seek to them on assignment. */
static void on_rebalance(void *user, int assigned, const runnel_topic_partition *parts, size_t n, int64_t *seek_to) {
    struct store *st = user;
    if (assigned) {
        st->assigned_calls++;
        for (size_t i = 0; i < n; i++) seek_to[i] = st->offsets[parts[i].partition];
    } else {
        st->revoked_calls++;
    }
}

/* A producer's callback that tries to flush or free its own producer is refused, not deadlocked. */
struct reenter {
    runnel_producer *p;
    enum runnel_result flush_result;
    enum runnel_result free_result;
};

static void on_send_reenter(void *user, enum runnel_result result, const runnel_record_metadata *m, const char *error) {
    struct reenter *r = user;
    (void)result;
    (void)m;
    (void)error;
    r->flush_result = runnel_producer_flush(r->p);
    r->free_result = runnel_producer_free(r->p);
}

/* A consumer's rebalance callback that tries to free its own consumer is refused. */
static enum runnel_result free_in_callback = RUNNEL_OK;
static runnel_consumer *callback_consumer = NULL;
static void on_rebalance_free(void *user, int assigned, const runnel_topic_partition *parts, size_t n, int64_t *seek_to) {
    (void)user;
    (void)assigned;
    (void)parts;
    (void)n;
    (void)seek_to;
    free_in_callback = runnel_consumer_free(callback_consumer);
}

static int commit_callbacks = 0;
static void on_commit(void *user, enum runnel_result result, const char *error) {
    (void)user;
    if (result == RUNNEL_OK && error == NULL) commit_callbacks++;
}

static void test_clients(void) {
    runnel_log *log = open_log("clients");
    OK(runnel_topic_create(log, "first", 2, NULL, 0));

    const char *cfg[] = {"acks", "all", "batch.size", "16384", "linger.ms", "1", "buffer.memory", "33554432"};
    runnel_producer *p = NULL;
    OK(runnel_producer_new(log, cfg, 4, &p));
    const char *bad_cfg[] = {"bootstrap.servers", "x:9092"};
    runnel_producer *bad = NULL;
    EXPECT(runnel_producer_new(log, bad_cfg, 1, &bad), RUNNEL_INVALID_ARGUMENT);

    /* 4.1.2: asynchronous sends with a callback; one call each, in offset order per partition. */
    struct sent s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    char key[16], value[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "%d", i);
        snprintf(value, sizeof value, "%d", i);
        runnel_record r = rec(key, value);
        OK(runnel_producer_send(p, "first", 0, &r, on_send, &s));
    }
    /* Without a callback too. */
    runnel_record plain = rec(NULL, "no callback");
    OK(runnel_producer_send(p, "first", 1, &plain, NULL, NULL));
    OK(runnel_producer_flush(p));
    CHECK(s.calls == 100 && s.errors == 0);
    for (int i = 0; i < 100; i++) CHECK(s.offsets[i] == i);
    /* A failure known at once is returned and given to the callback. */
    EXPECT(runnel_producer_send(p, "nope", 0, &plain, on_send, &s), RUNNEL_UNKNOWN_TOPIC_OR_PARTITION);
    CHECK(s.errors == 1);
    EXPECT(runnel_producer_send(p, "first", 0, NULL, NULL, NULL), RUNNEL_NULL_ARGUMENT);

    /* 4.1.3: synchronous send. */
    runnel_append_result at;
    runnel_record sync = rec("k", "sync");
    OK(runnel_producer_send_sync(p, "first", 1, &sync, &at));
    CHECK(at.partition == 1 && at.base_offset == 1);
    EXPECT(runnel_producer_begin_transaction(p), RUNNEL_INVALID_TRANSACTION_STATE);
    OK(runnel_producer_close(p, 0));
    EXPECT(runnel_producer_send(p, "first", 0, &plain, NULL, NULL), RUNNEL_CLOSED);
    OK(runnel_producer_free(p));
    EXPECT(runnel_producer_free(p), RUNNEL_INVALID_HANDLE);
    pthread_mutex_destroy(&s.lock);

    /* 4.2.2: a consumer with manual commits (commitSync, then commitAsync with a callback). */
    const char *ccfg[] = {"group.id", "test", "enable.auto.commit", "false", "auto.offset.reset", "earliest"};
    runnel_consumer *c = NULL;
    OK(runnel_consumer_new(log, ccfg, 3, &c));
    const char *topics[] = {"first"};
    OK(runnel_consumer_subscribe(c, topics, 1, NULL, NULL));
    size_t got = 0;
    for (int round = 0; round < 100 && got < 102; round++) {
        runnel_polled *polled = NULL;
        OK(runnel_consumer_poll(c, 100, &polled));
        runnel_consumer_record cr;
        while (runnel_polled_next(polled, &cr) == RUNNEL_OK) {
            CHECK(strcmp(cr.topic, "first") == 0);
            got++;
        }
        OK(runnel_polled_free(polled));
        OK(runnel_consumer_commit_sync(c));
    }
    CHECK(got == 102);
    uint64_t committed = 0;
    OK(runnel_consumer_committed(c, "first", 0, &committed));
    CHECK(committed == 100);
    OK(runnel_consumer_commit_async(c, on_commit, NULL));
    runnel_polled *empty = NULL;
    OK(runnel_consumer_poll(c, 10, &empty));
    CHECK(runnel_polled_count(empty) == 0);
    OK(runnel_polled_free(empty));
    OK(runnel_consumer_close(c));
    CHECK(commit_callbacks == 1);
    OK(runnel_consumer_free(c));

    /* 4.2.3: a custom offset store through the rebalance callback; seek, position, pause. */
    const char *scfg[] = {"group.id", "store", "enable.auto.commit", "false"};
    OK(runnel_consumer_new(log, scfg, 2, &c));
    struct store st = {{90, 0, 0, 0}, 0, 0};
    OK(runnel_consumer_subscribe(c, topics, 1, on_rebalance, &st));
    size_t from_store = 0;
    int saw_90 = 0;
    for (int round = 0; round < 50 && from_store < 12; round++) {
        runnel_polled *polled = NULL;
        OK(runnel_consumer_poll(c, 50, &polled));
        runnel_consumer_record cr;
        for (size_t i = 0; i < runnel_polled_count(polled); i++) {
            OK(runnel_polled_get(polled, i, &cr));
            if (cr.partition == 0 && cr.record.offset == 90) saw_90 = 1;
            CHECK(cr.partition != 0 || cr.record.offset >= 90);
            from_store++;
        }
        EXPECT(runnel_polled_get(polled, 9999, &cr), RUNNEL_INVALID_ARGUMENT);
        OK(runnel_polled_free(polled));
    }
    CHECK(st.assigned_calls == 1 && saw_90 && from_store == 12);
    uint64_t pos = 0;
    OK(runnel_consumer_position(c, "first", 0, &pos));
    CHECK(pos == 100);
    OK(runnel_consumer_seek(c, "first", 0, 95));
    OK(runnel_consumer_pause(c, "first", 1, 1));
    runnel_polled *polled = NULL;
    OK(runnel_consumer_poll(c, 100, &polled));
    CHECK(runnel_polled_count(polled) == 5);
    OK(runnel_polled_free(polled));
    OK(runnel_consumer_seek_to(c, "first", 0, 0));
    OK(runnel_consumer_position(c, "first", 0, &pos));
    CHECK(pos == 0);
    runnel_string_list *assignment = NULL;
    OK(runnel_consumer_assignment(c, &assignment));
    CHECK(runnel_string_list_len(assignment) == 2 && strcmp(runnel_string_list_get(assignment, 0), "first-0") == 0);
    OK(runnel_string_list_free(assignment));
    EXPECT(runnel_consumer_seek(c, "first", 7, 0), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_consumer_free(c));
    CHECK(st.revoked_calls == 1);
    EXPECT(runnel_consumer_poll(c, 0, &polled), RUNNEL_INVALID_HANDLE);

    /* assign() without a group, and a consumer config error. */
    runnel_consumer *manual = NULL;
    const char *mcfg[] = {"auto.offset.reset", "earliest"};
    OK(runnel_consumer_new(log, mcfg, 1, &manual));
    uint32_t parts[] = {1};
    OK(runnel_consumer_assign(manual, topics, parts, 1));
    OK(runnel_consumer_poll(manual, 100, &polled));
    CHECK(runnel_polled_count(polled) == 2);
    OK(runnel_polled_free(polled));
    EXPECT(runnel_consumer_commit_sync(manual), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_consumer_free(manual));
    /* Re-entering a producer or a consumer from its own callbacks is refused. */
    runnel_producer *rp = NULL;
    OK(runnel_producer_new(log, NULL, 0, &rp));
    struct reenter re = {rp, RUNNEL_OK, RUNNEL_OK};
    runnel_record rr = rec(NULL, "reenter");
    OK(runnel_producer_send(rp, "first", 0, &rr, on_send_reenter, &re));
    OK(runnel_producer_flush(rp));
    CHECK(re.flush_result == RUNNEL_INVALID_ARGUMENT && re.free_result == RUNNEL_INVALID_ARGUMENT);
    OK(runnel_producer_free(rp));
    const char *fcfg[] = {"group.id", "free-in-callback"};
    OK(runnel_consumer_new(log, fcfg, 1, &callback_consumer));
    OK(runnel_consumer_subscribe(callback_consumer, topics, 1, on_rebalance_free, NULL));
    OK(runnel_consumer_poll(callback_consumer, 100, &polled));
    OK(runnel_polled_free(polled));
    CHECK(free_in_callback == RUNNEL_INVALID_ARGUMENT);
    OK(runnel_consumer_free(callback_consumer));

    /* A transactional producer client, and a read_committed consumer with a pattern. */
    const char *tcfg[] = {"transactional.id", "c-tx"};
    runnel_producer *tp = NULL;
    OK(runnel_producer_new(log, tcfg, 1, &tp));
    OK(runnel_topic_create(log, "orders-eu", 1, NULL, 0));
    OK(runnel_producer_begin_transaction(tp));
    runnel_record ab = rec(NULL, "aborted");
    OK(runnel_producer_send(tp, "orders-eu", 0, &ab, NULL, NULL));
    OK(runnel_producer_abort_transaction(tp));
    OK(runnel_producer_begin_transaction(tp));
    runnel_record cm = rec(NULL, "committed");
    OK(runnel_producer_send(tp, "orders-eu", 0, &cm, NULL, NULL));
    OK(runnel_producer_send_offset_to_transaction(tp, "pattern", "first", 0, 3));
    OK(runnel_producer_commit_transaction(tp));
    OK(runnel_producer_free(tp));
    const char *rc[] = {"group.id", "pattern", "isolation.level", "read_committed", "auto.offset.reset", "earliest",
                        "enable.auto.commit", "false"};
    runnel_consumer *pc = NULL;
    OK(runnel_consumer_new(log, rc, 4, &pc));
    OK(runnel_consumer_subscribe_pattern(pc, "orders-.*", NULL, NULL));
    EXPECT(runnel_consumer_subscribe_pattern(pc, "(", NULL, NULL), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_consumer_subscribe_pattern(pc, "orders-.*", NULL, NULL));
    size_t seen_committed = 0;
    for (int round = 0; round < 50 && seen_committed == 0; round++) {
        OK(runnel_consumer_poll(pc, 50, &polled));
        runnel_consumer_record cr;
        while (runnel_polled_next(polled, &cr) == RUNNEL_OK) {
            CHECK(strcmp(cr.topic, "orders-eu") == 0 && view_is(&cr.record, NULL, "committed"));
            seen_committed++;
        }
        OK(runnel_polled_free(polled));
    }
    CHECK(seen_committed == 1);
    OK(runnel_consumer_commit_offset(pc, "orders-eu", 0, 1));
    EXPECT(runnel_consumer_commit_offset(pc, "first", 0, 1), RUNNEL_COMMIT_FAILED);
    OK(runnel_consumer_committed(pc, "first", 0, &committed));
    CHECK(committed == 3);
    OK(runnel_consumer_pause(pc, "orders-eu", 0, 1));
    OK(runnel_consumer_pause(pc, "orders-eu", 0, 0));
    OK(runnel_consumer_free(pc));

    const char *badc[] = {"auto.offset.reset", "smallest"};
    EXPECT(runnel_consumer_new(log, badc, 1, &manual), RUNNEL_INVALID_ARGUMENT);
    OK(runnel_close(log));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(scratch, sizeof scratch, "%s", argv[1]);
    test_version_and_names();
    test_open_errors();
    test_topics();
    test_append_and_fetch();
    test_groups_and_retention();
    test_read_only();
    test_shared();
    test_producers();
    test_threads();
    test_clients();
    /* Every handle was released (a leak checker cannot see the ones the handle table holds). */
    CHECK(runnel_live_handles() == 0);
    printf("%d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
