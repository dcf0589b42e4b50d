/*
 * runnel from C: open a data directory, create a topic, append three records with acks=all,
 * read them back, commit a consumer group's offset.
 *
 * Build and run (from the repository root):
 *   cargo build --release -p runnel-ffi
 *   cc examples/c/quickstart.c -Iinclude target/release/librunnel_ffi.a -lpthread -ldl -lm -o quickstart && ./quickstart
 * or, after `bash scripts/install-c.sh PREFIX`:
 *   cc examples/c/quickstart.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs runnel) -o quickstart
 */
#include <stdio.h>
#include <string.h>

#include "runnel.h"

#define TRY(call)                                                                               \
    do {                                                                                        \
        enum runnel_result r_ = (call);                                                          \
        if (r_ != RUNNEL_OK) {                                                                  \
            fprintf(stderr, "%s failed: %s: %s\n", #call, runnel_result_name(r_), runnel_last_error()); \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

int main(void) {
    runnel_log *log = NULL;
    TRY(runnel_open("runnel-data", NULL, 0, &log));
    enum runnel_result created = runnel_topic_create(log, "events", 1, NULL, 0);
    if (created != RUNNEL_OK && created != RUNNEL_TOPIC_EXISTS) {
        fprintf(stderr, "create: %s\n", runnel_last_error());
        return 1;
    }

    const char *values[] = {"hello", "from", "C"};
    runnel_record records[3];
    memset(records, 0, sizeof records);
    for (int i = 0; i < 3; i++) {
        records[i].value = (const uint8_t *)values[i];
        records[i].value_len = strlen(values[i]);
        records[i].timestamp = RUNNEL_NO_TIMESTAMP;
    }
    runnel_append_result at;
    TRY(runnel_append(log, "events", 0, records, 3, RUNNEL_ACKS_ALL, &at));
    printf("appended offsets %llu..%llu\n", (unsigned long long)at.base_offset, (unsigned long long)at.last_offset);

    runnel_fetched *fetch = NULL;
    TRY(runnel_fetch(log, "events", 0, 0, 1 << 20, RUNNEL_READ_COMMITTED, &fetch));
    runnel_record_view v;
    while (runnel_fetched_next(fetch, &v) == RUNNEL_OK) {
        printf("offset %llu: %.*s\n", (unsigned long long)v.offset, (int)v.value_len, (const char *)v.value);
    }
    uint64_t next = runnel_fetched_next_offset(fetch);
    TRY(runnel_fetched_free(fetch));

    TRY(runnel_commit_offset(log, "readers", "events", 0, next, NULL));
    TRY(runnel_close(log));
    return 0;
}
