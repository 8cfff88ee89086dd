// SPDX-License-Identifier: GPL-2.0-only
/*
 * Records, per CPU, the CLOCK_MONOTONIC time of its latest kernel entry.
 * Attached (as a raw tracepoint, no argument marshalling) to frequent events:
 * whatever user code a CPU ran before the event is ordered before the
 * timestamp store (see ARCHITECTURE.md, "Why a published timestamp is safe").
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

SEC("raw_tp")
int on_kernel_entry(void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 now, prev;

	if (cpu >= BARRIERD_MAX_CPUS)
		return 0;
	now = bpf_ktime_get_ns();
	/*
	 * A fully ordered exchange: the user code this CPU ran before the
	 * event is visible before the new timestamp, and the watermark load
	 * below cannot be satisfied before the store (Dekker-style pairing
	 * with the helper's store-watermark-then-reread, see
	 * helper/src/timestamps.rs).
	 */
	prev = __sync_lock_test_and_set(&slots[cpu].last_ns, now);
	if (prev <= *(volatile __u64 *)&watermark.ns)
		bpf_ringbuf_output(&wakeups, &cpu, sizeof(cpu), 0);
	return 0;
}
