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
 * A CPU that owes the helper a signal sends it at once when it settles
 * (switches to its idle task or a kernel thread, or enters the idle loop)
 * or when its events are sparse (its previous one is at least this old:
 * ticks are >= 1 ms apart at HZ <= 1000); under a storm of events, at its first one in a later jiffy
 * than the latest signal. That bounds the helper's wake-ups to about HZ per
 * second however dense the events, and still reports every CPU within a
 * tick.
 */
#define BARRIERD_SPARSE_NS 1000000ULL


/*
 * Without demand, signals are at least this far apart (any CPU's): the
 * published minimum still advances, for clients that poll it without
 * waiting, but a quiet machine's stray wake-ups no longer each cost a pass.
 */
#define BARRIERD_UNDEMANDED_NS 200000000ULL

/*
 * Switches closer together than this make a storm, and a storm records one
 * switch per this interval (bpf/barrierd.bpf.c, on_sched_switch): it costs
 * one clock read per interval, and a CPU whose storm ends may be recorded
 * this much early.
 */
#define BARRIERD_SWITCH_STORM_NS 50000ULL

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
	/* The scheduler's pick time of the last switch recorded here. */
	__u64 recorded_pick;
	/*
	 * The pick time of the last switch here, rounded down to even; bit 0
	 * set if it came less than BARRIERD_SWITCH_STORM_NS after the one
	 * before.
	 */
	__u64 last_pick;
	__u64 pad[4];
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
	/*
	 * 1 when a CPU leaving quiescence owes a signal: while the helper
	 * reads, and when no CPU was busy at its last read (the leaving CPU
	 * then holds the minimum).
	 */
	__u64 arm_on_exit;
	/*
	 * The helper's and the publisher's tgids in the init pid namespace
	 * (written by BPF itself, identify_daemon): their tasks are quiescent.
	 */
	__u64 daemon_tgid[2];
	/*
	 * 1 while the helper sleeps with no deadline (bpf/barrierd.bpf.c,
	 * `deferred`): a debt may not be deferred then.
	 */
	__u64 helper_sleeps;
	__u64 pad[3];
} __attribute__((aligned(64)));

#endif
