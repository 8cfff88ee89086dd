// SPDX-License-Identifier: GPL-2.0-only
/*
 * Records, per CPU, the CLOCK_MONOTONIC time of its latest kernel entry, and
 * whether it is quiescent (runs its idle task, a kernel thread or barrierd
 * itself: no client code). Whatever user code a CPU ran before an event is ordered before the
 * timestamp store (see ARCHITECTURE.md, "Why a published timestamp is
 * safe"). Hot path: one clock read, one exchange, a few loads of this CPU's
 * own line and the watermark's; no map helper call.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "barrierd_shared.h"

char LICENSE[] SEC("license") = "GPL";

struct barrierd_cpu_slot slots[BARRIERD_MAX_CPUS];
struct barrierd_watermark watermark;

/* Records carry no data: they exist to wake the helper's epoll. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} wakeups SEC(".maps");

/* Only the fields we read; CO-RE relocates their offsets for this kernel. */
struct task_struct {
	unsigned int flags;
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

#define PF_KTHREAD 0x00200000	/* include/linux/sched.h */

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

static __always_inline struct barrierd_cpu_slot *this_cpu_slot(__u32 *cpu)
{
	*cpu = bpf_get_smp_processor_id();
	if (*cpu >= BARRIERD_MAX_CPUS)
		return 0;
	return &slots[*cpu];
}

/*
 * Stores this event's time and `quiescent_after` in one exchange, then
 * signals the helper if this CPU, busy until now, may hold the published
 * minimum back. Returns whether it was quiescent before.
 */
static __always_inline __u64 record_entry(struct barrierd_cpu_slot *slot, __u32 cpu,
					  __u64 quiescent_after)
{
	__u64 now = bpf_ktime_get_ns();
	/*
	 * A fully ordered exchange: the user code this CPU ran before the
	 * event is visible before the new state, and the loads below cannot
	 * be satisfied before the store (Dekker-style pairing with the
	 * helper's store-watermark-then-read, helper/src/timestamps.rs).
	 */
	__u64 prev = __sync_lock_test_and_set(&slot->state,
					      (now & ~BARRIERD_QUIESCENT) | quiescent_after);
	__u64 owed;

	/* The helper counted a quiescent CPU as up to date: nothing to say. */
	if (prev & BARRIERD_QUIESCENT)
		return 1;
	owed = READ_ONCE(slot->owed);
	if (!owed && (prev & ~BARRIERD_QUIESCENT) > READ_ONCE(watermark.ns))
		return 0;
	/* This CPU may hold the published minimum back. */
	if (!quiescent_after &&
	    now - READ_ONCE(watermark.since) < BARRIERD_SIGNAL_INTERVAL_NS) {
		if (!owed)
			slot->owed = 1;
		return 0;
	}
	slot->owed = 0;
	bpf_ringbuf_output(&wakeups, &cpu, sizeof(cpu), 0);
	return 0;
}

/* Attached by name to the tracepoints given on the command line. */
SEC("raw_tp")
int on_kernel_entry(void *ctx)
{
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);

	/* An interrupt does not change what the CPU runs. */
	if (slot)
		record_entry(slot, cpu, READ_ONCE(slot->state) & BARRIERD_QUIESCENT);
	return 0;
}

/*
 * Tasks that run no client code: the idle task (pid 0), kernel threads
 * (kworkers and the like only run kernel code) and barrierd itself.
 */
static __always_inline int is_quiescent(struct task_struct *task)
{
	__u64 tgid;

	if (task->pid == 0 || (task->flags & PF_KTHREAD))
		return 1;
	tgid = task->tgid;
	return tgid == READ_ONCE(watermark.daemon_tgid[0]) ||
	       tgid == READ_ONCE(watermark.daemon_tgid[1]);
}

/*
 * Always attached: a context switch is a kernel entry, and switches to and
 * from quiescent tasks bracket the time a CPU runs no client code.
 */
SEC("tp_btf/sched_switch")
int on_sched_switch(__u64 *ctx)
{
	struct task_struct *next = (void *)ctx[2];
	__u64 next_quiescent = is_quiescent(next);
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);

	if (!slot)
		return 0;
	/* Every CPU was quiescent: leaving quiescence, this one holds the minimum. */
	if (record_entry(slot, cpu, next_quiescent) && !next_quiescent &&
	    READ_ONCE(watermark.arm_on_exit))
		slot->owed = 1;
	return 0;
}
