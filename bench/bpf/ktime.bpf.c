// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reads the clock barrierd's BPF program stamps events with
 * (bpf_ktime_get_ns, the kernel's NMI-safe CLOCK_MONOTONIC accessor), on
 * demand: run with BPF_PROG_RUN by clock-order, which compares it with the
 * vDSO's CLOCK_MONOTONIC that clients read.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 ktime_ns;

SEC("syscall")
int read_ktime(void *ctx)
{
	ktime_ns = bpf_ktime_get_ns();
	return 0;
}
