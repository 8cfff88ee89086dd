/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Layouts shared by the BPF program (bpf/barrierd.bpf.c) and the helper
 * (helper/src/timestamps.rs reads them through the generated skeleton).
 * Nothing here is visible to clients: the published file's layout lives in
 * include/barrierd.h.
 */
#ifndef BARRIERD_SHARED_H
#define BARRIERD_SHARED_H

#include <linux/types.h>

/* Upper bound on possible CPUs; the helper refuses to start above it. */
#define BARRIERD_MAX_CPUS 4096

/*
 * One per CPU, a cache line each: only its own CPU writes it, so events on
 * different CPUs never contend for a line.
 */
struct barrierd_cpu_slot {
	/* CLOCK_MONOTONIC ns of this CPU's latest traced kernel entry; 0: none yet. */
	__u64 last_ns;
	/*
	 * 1 while this CPU runs its idle task (or is offline): it runs no user
	 * code until it switches away, and that switch clears this first.
	 */
	__u64 idle;
	__u64 pad[6];
} __attribute__((aligned(64)));

/*
 * Written by the helper, read by every event: a busy CPU signals the helper
 * when its previous timestamp was at or below this (the minimum over busy
 * CPUs that the helper last saw), i.e. when it may be the CPU holding the
 * published minimum back. BARRIERD_ALL_IDLE when no CPU was busy.
 * Alone on its cache line so that slot stores never invalidate it.
 */
#define BARRIERD_ALL_IDLE (~0ULL)

struct barrierd_watermark {
	__u64 ns;
	__u64 pad[7];
} __attribute__((aligned(64)));

#endif
