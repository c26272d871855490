/* SPDX-License-Identifier: MIT */
/* bench-cset: C calls into the rctx children set and the cds_lfht baseline. */
#ifndef RCTX_BENCH_CSET_H
#define RCTX_BENCH_CSET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The rctx children set (src/children.h), one call per operation. */
struct bench_cset;
struct bench_cset *bench_cset_new(void);
/* free needs an empty set; insert returns the slot */
void bench_cset_free(struct bench_cset *b);
void *bench_cset_insert(struct bench_cset *b, uintptr_t e);
int bench_cset_remove(void *slot, uintptr_t e);
uintptr_t bench_cset_walk(struct bench_cset *b); /* sum of entries */
size_t bench_cset_count(struct bench_cset *b);
size_t bench_cset_capacity(struct bench_cset *b); /* slots */
size_t bench_cset_tables(struct bench_cset *b);
size_t bench_cset_table_header(void); /* bytes before a table's slots */
size_t bench_cset_inline_bytes(void); /* the set inside a context */
size_t bench_cset_inline_slots(void); /* its inline slots */
size_t bench_cset_ext_bytes(void);    /* its extension block */

/* liburcu cds_lfht, bp flavor; nodes are bench_lfht_node_bytes() each,
 * 8-aligned, owned by the caller (intrusive, as in a child context). */
struct bench_lfht;
struct bench_lfht *bench_lfht_new(void);
void bench_lfht_free(struct bench_lfht *h); /* must be empty */
void bench_lfht_add(struct bench_lfht *h, void *node);
int bench_lfht_del(struct bench_lfht *h, void *node);
uintptr_t bench_lfht_walk(struct bench_lfht *h); /* sum of node addresses */
size_t bench_lfht_count(struct bench_lfht *h);
void bench_lfht_grace(void); /* synchronize_rcu: nodes may be reused */
size_t bench_lfht_node_bytes(void);

/* Heap bytes in use in every malloc arena, mmapped chunks included. */
size_t bench_heap_in_use(void);

#ifdef __cplusplus
}
#endif

#endif /* RCTX_BENCH_CSET_H */
