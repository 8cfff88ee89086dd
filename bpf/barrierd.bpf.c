// SPDX-License-Identifier: GPL-2.0-only
/*
 * Records, per CPU, the CLOCK_MONOTONIC time of its latest kernel entry, and
 * whether it is running its idle task. Whatever user code a CPU ran before an
 * event is ordered before the timestamp store (see ARCHITECTURE.md, "Why a
 * published timestamp is safe"). Hot path: one clock read, one exchange, two
 * loads and a compare; no map helper call.
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

/* Only the field we read; CO-RE relocates its offset for the running kernel. */
struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

static __always_inline struct barrierd_cpu_slot *this_cpu_slot(__u32 *cpu)
{
	*cpu = bpf_get_smp_processor_id();
	if (*cpu >= BARRIERD_MAX_CPUS)
		return 0;
	return &slots[*cpu];
}

static __always_inline void record_entry(struct barrierd_cpu_slot *slot, __u32 cpu)
{
	__u64 now = bpf_ktime_get_ns();
	/*
	 * A fully ordered exchange: the user code this CPU ran before the
	 * event is visible before the new timestamp, and the loads below
	 * cannot be satisfied before the store (Dekker-style pairing with the
	 * helper's store-watermark-then-reread, helper/src/timestamps.rs).
	 */
	__u64 prev = __sync_lock_test_and_set(&slot->last_ns, now);

	/* An idle CPU never holds the published minimum back. */
	if (*(volatile __u64 *)&slot->idle)
		return;
	if (prev <= *(volatile __u64 *)&watermark.ns)
		bpf_ringbuf_output(&wakeups, &cpu, sizeof(cpu), 0);
}

/* Attached by name to the tracepoints given on the command line. */
SEC("raw_tp")
int on_kernel_entry(void *ctx)
{
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);

	if (slot)
		record_entry(slot, cpu);
	return 0;
}

/*
 * Always attached: a context switch is a kernel entry, and switches to and
 * from the idle task (pid 0) bracket the time a CPU runs no user code.
 */
SEC("tp_btf/sched_switch")
int on_sched_switch(__u64 *ctx)
{
	struct task_struct *prev = (void *)ctx[1];
	struct task_struct *next = (void *)ctx[2];
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);

	if (!slot)
		return 0;
	/*
	 * Recorded with the idle flag as it was: leaving idle does not signal
	 * (the helper counted this CPU as up to date until now), entering idle
	 * signals if this CPU held the minimum back.
	 */
	record_entry(slot, cpu);
	if (prev->pid == 0)
		/* Fully ordered: visible before this CPU can run user code. */
		__sync_lock_test_and_set(&slot->idle, 0);
	else if (next->pid == 0)
		__sync_lock_test_and_set(&slot->idle, 1);
	return 0;
}
