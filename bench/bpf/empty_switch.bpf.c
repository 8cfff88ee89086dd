// SPDX-License-Identifier: GPL-2.0-only
/*
 * Does nothing, on the same hook as barrierd's quiescence tracking
 * (tp_btf/sched_switch): what any program there costs a context switch,
 * the floor under barrierd's own cost (bench/overhead.sh).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sched_switch")
int on_sched_switch(__u64 *ctx)
{
	return 0;
}
