/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The file published by barrierd (byte-compatible with the 2018 original's
 * header: same field names and offsets; new words live in its padding).
 *
 * Every field is a native-endian uint64_t that the daemon writes with single
 * atomic 64-bit stores; read them with atomic (acquire) loads. The futex word
 * of a field is its low 32-bit half (its own address on little-endian); after
 * changing a field the daemon wakes all waiters (FUTEX_WAKE, shared, not
 * private) on that half. Fields that are futex words: vtime,
 * last_interrupt_ns, last_interrupt_vtime, state and every per-CPU field.
 *
 * A barrier for time T (CLOCK_MONOTONIC ns) is complete once
 * last_interrupt_ns > T: every CPU has entered the kernel after T. See
 * ARCHITECTURE.md for what that guarantees.
 */
#ifndef BARRIERD_H
#define BARRIERD_H

#include <stdint.h>

#define BARRIERD_MAGIC_BYTES "barrierd"  /* the magic word's 8 bytes, in memory order */
#define BARRIERD_FORMAT_VERSION 1
#define BARRIERD_STATE_STOPPED 0
#define BARRIERD_STATE_RUNNING 1

struct barrierd_per_cpu {
	/* CLOCK_MONOTONIC ns of this CPU's latest kernel entry seen. */
	uint64_t last_interrupt_ns;
	/* The vtime in force when that entry happened. */
	uint64_t last_interrupt_vtime;
};

struct barrierd_mapped_data {
	uint64_t ncpu;			/* number of per_cpu records */
	uint64_t vtime;			/* advances by one after each update pass */
	uint64_t last_interrupt_ns;	/* min over CPUs of last_interrupt_ns */
	uint64_t last_interrupt_vtime;	/* min over CPUs of last_interrupt_vtime */
	/* Words 4-15: the original's padding. */
	uint64_t magic;			/* BARRIERD_MAGIC_BYTES */
	uint64_t format_version;	/* BARRIERD_FORMAT_VERSION */
	uint64_t state;			/* BARRIERD_STATE_*; a futex word */
	uint64_t generation;		/* incremented at each daemon start */
	uint64_t daemon_pid;		/* publisher's pid, informational */
	uint64_t reserved[7];		/* zero */
	struct barrierd_per_cpu per_cpu[];	/* at byte 128 */
};

#endif /* !BARRIERD_H */
