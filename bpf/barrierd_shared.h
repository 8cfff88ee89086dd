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
 * A CPU that owes the helper a signal sends it at its first event at least
 * this long after the last pass's watermark or after its own previous event,
 * or at once when it settles (switches to its idle task or a kernel thread).
 * Bounds the helper's wake-ups to about 1/interval under a context-switch
 * storm; adds nothing for CPUs whose events are sparser (ticks are >= 1 ms
 * apart at HZ <= 1000).
 */
#define BARRIERD_SIGNAL_INTERVAL_NS 1000000ULL

/* Bit 0 of a slot's state word: the CPU is quiescent. */
#define BARRIERD_QUIESCENT 1ULL

/*
 * One per CPU, a cache line each: only its own CPU writes it (the helper
 * writes `state` once, for offline CPUs, before attaching), so events on
 * different CPUs never contend for a line.
 */
struct barrierd_cpu_slot {
	/*
	 * One word, so that BPF writes and the helper reads both halves at once:
	 * bits 63-1, the CLOCK_MONOTONIC ns of this CPU's latest traced kernel
	 * entry rounded down to even (0: none yet); bit 0, BARRIERD_QUIESCENT
	 * while it runs its idle task, a kernel thread or a barrierd process
	 * (or is offline): no client code, and switching to a client task
	 * clears it with a fully ordered exchange before that task runs.
	 */
	__u64 state;
	/* 1 once this CPU may hold the published minimum back, until it signals. */
	__u64 owed;
	__u64 pad[6];
} __attribute__((aligned(64)));

/*
 * Written by the helper, read by events. Alone on its cache line so that
 * slot stores never invalidate it.
 */
struct barrierd_watermark {
	/*
	 * A busy CPU whose previous timestamp is at or below this may hold the
	 * published minimum back, and owes a signal: the minimum over busy
	 * CPUs at the helper's last read (its clock reading if none was busy),
	 * or all-ones while the helper reads (whoever has an event then owes).
	 */
	__u64 ns;
	/* The last read's minimum: the signal rate limit counts from here. */
	__u64 since;
	/*
	 * 1 when a CPU leaving quiescence owes a signal: while the helper
	 * reads, and when no CPU was busy at its last read (the leaving CPU
	 * then holds the minimum).
	 */
	__u64 arm_on_exit;
	/* The helper's and the publisher's tgids: their tasks are quiescent. */
	__u64 daemon_tgid[2];
	__u64 pad[3];
} __attribute__((aligned(64)));

#endif
