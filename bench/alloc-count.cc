/* SPDX-License-Identifier: MIT */
/* malloc interposer for the benchmarks: counts per thread, forwards to glibc. */

/*
 * The benchmark executable defines malloc and friends, so every call from
 * librctx, mctx, libstdc++ and libbenchmark binds here through the PLT
 * (the executable comes first in the lookup scope). Each call bumps
 * counters of the calling thread and forwards to glibc's own entry points
 * (__libc_malloc and co.), which never call back into us: unlike
 * dlsym(RTLD_NEXT), they need no allocation to be found.
 *
 * The counters are initial-exec thread-locals of the executable: reading
 * or bumping them never allocates and costs no atomic, so multi-threaded
 * benchmarks measure their own contention, not ours. Allocations made by
 * library threads (the timer service) are not charged to benchmark
 * threads; Go's -benchmem counts process-wide, so a per-op figure from Go
 * can only be higher for the same work.
 */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc-count.h"

extern "C" {
void *__libc_malloc(size_t n) noexcept;
void *__libc_calloc(size_t k, size_t n) noexcept;
void *__libc_realloc(void *p, size_t n) noexcept;
void __libc_free(void *p) noexcept;
void *__libc_memalign(size_t align, size_t n) noexcept;
}

static __thread struct alloc_counts alloc_tls
	__attribute__((tls_model("initial-exec")));

static inline void
alloc_note(size_t n)
{
	alloc_tls.allocs++;
	alloc_tls.bytes += n;
}

extern "C" void
alloc_count_read(struct alloc_counts *out)
{
	*out = alloc_tls;
}

extern "C" void *
malloc(size_t n) noexcept
{
	alloc_note(n);
	return __libc_malloc(n);
}

extern "C" void *
calloc(size_t k, size_t n) noexcept
{
	size_t total;

	if (__builtin_mul_overflow(k, n, &total))
		total = SIZE_MAX;
	alloc_note(total);
	return __libc_calloc(k, n);
}

extern "C" void *
realloc(void *p, size_t n) noexcept
{
	void *q = __libc_realloc(p, n);

	if (p != NULL && n == 0) {
		alloc_tls.frees++;
		return q;
	}
	/* Growing in place is not an allocation; moving (or NULL) is. */
	if (q != NULL && q != p)
		alloc_note(n);
	return q;
}

extern "C" void
free(void *p) noexcept
{
	if (p != NULL)
		alloc_tls.frees++;
	__libc_free(p);
}

extern "C" int
posix_memalign(void **out, size_t align, size_t n) noexcept
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return EINVAL;
	alloc_note(n);
	p = __libc_memalign(align, n);
	if (p == NULL)
		return ENOMEM;
	*out = p;
	return 0;
}

extern "C" void *
aligned_alloc(size_t align, size_t n) noexcept
{
	alloc_note(n);
	return __libc_memalign(align, n);
}

extern "C" void *
memalign(size_t align, size_t n) noexcept
{
	alloc_note(n);
	return __libc_memalign(align, n);
}
