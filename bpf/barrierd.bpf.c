// SPDX-License-Identifier: GPL-2.0-only
/*
 * Records, per CPU, the CLOCK_MONOTONIC time of its latest kernel entry, and
 * whether it is quiescent (runs its idle task, a kernel thread or barrierd
 * itself: no client code). Whatever user code a CPU ran before an event is
 * ordered before the timestamp store (see ARCHITECTURE.md, "Why a published
 * timestamp is safe"). Hot path: a switch inside a storm is a few loads, one
 * store to this CPU's own line and, when a client task blocks, one call to
 * find its syscall registers; a recorded event one clock read, one exchange
 * and a few loads of its line and the watermark's. No map helper is called.
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
struct sched_entity {
	__u64 exec_start;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	int pid;
	int tgid;
	struct sched_entity se;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

#define PF_KTHREAD 0x00200000	/* include/linux/sched.h */
#define TASK_FREEZABLE 0x00002000	/* include/linux/sched.h */
#define PWR_EVENT_EXIT 0xffffffffU	/* include/trace/events/power.h */

#if defined(__TARGET_ARCH_x86)
/* A blocked task's syscall number and arguments, as it entered the kernel. */
struct pt_regs {
	unsigned long si;
	unsigned long r10;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

/* arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/linux/futex.h */
#define NR_futex 202
#define NR_futex_waitv 449
#define NR_futex_wait 455
#define FUTEX_WAIT 0
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX2_PRIVATE 128
#endif

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/*
 * The latest signal, any CPU's: a storm signals at most once a jiffy, and
 * without demand at most once per BARRIERD_UNDEMANDED_NS, until
 * `spacing_ends_ns`. `deferred`: 1 once a debt was deferred for that spacing
 * since the helper's last read, which then reads again when the spacing
 * ends (helper/src/main.rs, `serve`). Written only when signalling or
 * deferring; alone on its line.
 */
struct {
	__u64 jiffy;
	__u64 spacing_ends_ns;
	__u64 deferred;
} last_signal __attribute__((aligned(64)));

/*
 * Demand: a client task blocking in a shared futex wait (how barrier
 * clients wait for the daemon's FUTEX_WAKE) makes the next
 * `demand_window_ns` demanded, and signals if demand had lapsed. Set by the
 * helper before loading, from barrierd_privsep::handover::DEMAND_NS (one
 * definition: the publisher's prod window and the clients' promptness
 * requests are the same span); read-only once loaded, so the verifier knows
 * it. Longer than the clients' probe interval (100 ms), after which a
 * waiter blocks again: a waiting client keeps demand alive.
 */
const volatile __u64 demand_window_ns;

/* When a client last blocked in a barrier wait. */
__u64 demand_ns __attribute__((aligned(64)));

static __always_inline struct barrierd_cpu_slot *this_cpu_slot(__u32 *cpu)
{
	*cpu = bpf_get_smp_processor_id();
	if (*cpu >= BARRIERD_MAX_CPUS)
		return 0;
	return &slots[*cpu];
}

/* Signed: another CPU's clock reading may be a few ns ahead of ours. */
static __always_inline int within(__u64 now, __u64 then, __u64 ns)
{
	return (__s64)(now - then) < (__s64)ns;
}

/*
 * Stores this event's time and `quiescent_after` in one exchange, then
 * signals the helper if this CPU may hold the published minimum back.
 * `settling`: this event switches to the idle task or a kernel thread, after
 * which the CPU may have no event for a long time (a waiter blocking in
 * FUTEX_WAIT is the usual case): a debt is paid now. A switch into barrierd
 * itself is not settling, or the daemon's own wake-ups would re-signal it.
 * `waiting`: a client blocks in a barrier wait; if demand had lapsed, debts
 * may have been left unpaid on CPUs that are idle now, and this pass
 * collects them. Returns whether the CPU was quiescent before.
 */
static __always_inline __u64 record_entry(struct barrierd_cpu_slot *slot, __u32 cpu,
					  __u64 quiescent_after, int settling, int waiting)
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
	__u64 was_quiescent = prev & BARRIERD_QUIESCENT;
	__u64 prev_ns = prev & ~BARRIERD_QUIESCENT;
	__u64 owed = READ_ONCE(slot->owed);

	if (waiting) {
		int lapsed = !within(now, READ_ONCE(demand_ns), demand_window_ns);

		demand_ns = now;
		if (lapsed)
			goto signal;
	}
	if (was_quiescent) {
		/* Quiescent since it went into barrierd owing: settling pays. */
		if (owed && settling)
			goto signal_if_due;
		return was_quiescent;
	}
	if (!owed && prev_ns > READ_ONCE(watermark.ns))
		return was_quiescent;
	/*
	 * This CPU may hold the published minimum back. Deferring only helps
	 * against a storm of events: a CPU whose previous event is old (ticks,
	 * an interrupt now and then) might have no next one for a tick, and
	 * neither might a CPU whose client just blocked in a barrier wait (its
	 * wake-up was a recent event, but a busy task runs next).
	 */
	if (settling || waiting || now - prev_ns >= BARRIERD_SPARSE_NS ||
	    bpf_jiffies64() != READ_ONCE(last_signal.jiffy))
		goto signal_if_due;
	if (!owed)
		slot->owed = 1;
	return was_quiescent;
signal_if_due:
	/*
	 * Nobody waits: the minimum only matters to clients that poll it, and
	 * each signal costs two process wake-ups, so signals are spaced out.
	 * The debt stays, and is paid at a later event or collected by the
	 * helper when the spacing ends, whichever comes first: a CPU that goes
	 * idle here may have no later event. Dekker-style with the helper,
	 * which stores `helper_sleeps` and then takes `deferred`: we store
	 * `deferred` (fully ordered) and then load `helper_sleeps`, so either
	 * it reads again or we signal. (Seeing `deferred` already set, we come
	 * before the helper takes it, and its next read sees our state word.)
	 */
	if (!within(now, READ_ONCE(demand_ns), demand_window_ns) &&
	    (__s64)(READ_ONCE(last_signal.spacing_ends_ns) - now) > 0) {
		if (!owed)
			slot->owed = 1;
		if (!READ_ONCE(last_signal.deferred))
			__sync_lock_test_and_set(&last_signal.deferred, 1);
		if (!READ_ONCE(watermark.helper_sleeps))
			return was_quiescent;
	}
signal:
	slot->owed = 0;
	last_signal.jiffy = bpf_jiffies64();
	last_signal.spacing_ends_ns = now + BARRIERD_UNDEMANDED_NS;
	bpf_ringbuf_output(&wakeups, &cpu, sizeof(cpu), 0);
	return was_quiescent;
}

/* Attached by name to the tracepoints given on the command line. */
SEC("raw_tp")
int on_kernel_entry(void *ctx)
{
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);

	/* An interrupt does not change what the CPU runs. */
	if (slot)
		record_entry(slot, cpu, READ_ONCE(slot->state) & BARRIERD_QUIESCENT, 0, 0);
	return 0;
}

/* The idle task (pid 0) and kernel threads only run kernel code. */
static __always_inline int runs_no_user_code(struct task_struct *task)
{
	return task->pid == 0 || (task->flags & PF_KTHREAD);
}

/*
 * barrierd's own processes run no client code either. Their tgids are the
 * kernel's own numbering (init pid namespace, as `task->tgid` is), stored by
 * identify_daemon: the pids the daemon sees of itself are its namespace's.
 */
static __always_inline int is_barrierd(struct task_struct *task)
{
	__u64 tgid = task->tgid;

	return tgid == READ_ONCE(watermark.daemon_tgid[0]) ||
	       tgid == READ_ONCE(watermark.daemon_tgid[1]);
}

/*
 * Whether `task`, blocking, waits in a shared futex: how barrier clients
 * wait for the daemon's FUTEX_WAKE (process-shared mutexes and condition
 * variables look the same, and only cost a pass). A 32-bit task's syscall
 * numbers differ: it is not seen waiting, and its waits see the spacing of
 * undemanded signals unless another client's keep demand alive.
 */
static __always_inline int waits_in_shared_futex(struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	unsigned long nr = regs->orig_ax;

	if (nr == NR_futex) {
		unsigned long op = regs->si;
		unsigned long cmd = op & ~(unsigned long)(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);

		return !(op & FUTEX_PRIVATE_FLAG) && (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET);
	}
	if (nr == NR_futex_wait)
		return !(regs->r10 & FUTEX2_PRIVATE);
	return nr == NR_futex_waitv;
#else
	/* Not ported: every block counts as a barrier wait, so demand never lapses. */
	return 1;
#endif
}

/*
 * Always attached: a context switch is a kernel entry, and switches to and
 * from quiescent tasks bracket the time a CPU runs no client code.
 */
SEC("tp_btf/sched_switch")
int on_sched_switch(__u64 *ctx)
{
	int preempted = (__u8)ctx[0];
	struct task_struct *prev = (void *)ctx[1];
	struct task_struct *next = (void *)ctx[2];
	unsigned int prev_state = ctx[3];
	int settling = runs_no_user_code(next);
	__u64 next_quiescent = settling || is_barrierd(next);
	__u32 cpu;
	struct barrierd_cpu_slot *slot = this_cpu_slot(&cpu);
	__u64 picked_at, last, quiescent;
	int short_gap, waiting;

	if (!slot)
		return 0;
	/*
	 * A client task (the CPU is not quiescent) blocking in a barrier wait.
	 * Futex waits sleep TASK_FREEZABLE (since Linux 6.1) and pipe reads do
	 * not: the flag spares a pipe storm the call that finds the registers.
	 */
	quiescent = READ_ONCE(slot->state) & BARRIERD_QUIESCENT;
	waiting = !preempted && (prev_state & TASK_FREEZABLE) && !quiescent &&
		  waits_in_shared_futex(prev);
	/*
	 * Skipping a switch is always safe: it is then as if it were not
	 * traced. What it saves is the clock read, a helper call and most of
	 * this program's cost. Inside a storm (this switch and the one before
	 * each came less than BARRIERD_SWITCH_STORM_NS after the previous one)
	 * one switch per BARRIERD_SWITCH_STORM_NS is recorded, so a CPU may be
	 * recorded that much early. A task that wakes on a quiet CPU and
	 * blocks again soon after (a barrier waiter) breaks no storm: both its
	 * switches are recorded. So is any change of quiescence, a settling
	 * switch that pays a debt, and a barrier wait. The clock that decides
	 * is free: the scheduler stamped `next` when it picked it
	 * (rq_clock_task, which lags real time by interrupt time: it can only
	 * make a storm look sparser).
	 */
	picked_at = next->se.exec_start;
	last = READ_ONCE(slot->last_pick);
	short_gap = picked_at - (last & ~1ULL) < BARRIERD_SWITCH_STORM_NS;
	slot->last_pick = (picked_at & ~1ULL) | short_gap;
	if ((last & 1) && short_gap && quiescent == next_quiescent && !waiting &&
	    !(settling && READ_ONCE(slot->owed)) &&
	    picked_at - READ_ONCE(slot->recorded_pick) < BARRIERD_SWITCH_STORM_NS)
		return 0;
	slot->recorded_pick = picked_at;
	/* Every CPU was quiescent: leaving quiescence, this one holds the minimum. */
	if (record_entry(slot, cpu, next_quiescent, settling, waiting) && !next_quiescent &&
	    READ_ONCE(watermark.arm_on_exit))
		slot->owed = 1;
	return 0;
}

/*
 * The idle loop, entered (not PWR_EVENT_EXIT): the CPU runs no client code
 * until a switch into a client task, which is traced and clears the flag.
 * This does not rely on the switch into the idle loop having been traced:
 * switches *out of* some tasks never reach sched_switch (see
 * ARCHITECTURE.md, "What must be traced"), and a CPU left marked busy by one
 * would then idle, take no tick and hold every barrier back until its next
 * interrupt. Entering the idle loop settles the CPU: it is marked quiescent
 * and pays what it owes.
 */
SEC("tp_btf/cpu_idle")
int on_cpu_idle(__u64 *ctx)
{
	unsigned int state = ctx[0];
	__u32 cpu;
	struct barrierd_cpu_slot *slot;

	if (state == PWR_EVENT_EXIT)
		return 0;
	slot = this_cpu_slot(&cpu);
	if (!slot)
		return 0;
	/* The usual case: a traced switch already marked it and paid. */
	if ((READ_ONCE(slot->state) & BARRIERD_QUIESCENT) && !READ_ONCE(slot->owed))
		return 0;
	/*
	 * Checked, not assumed: the tracepoint is in the idle task's loop (and
	 * an idle-injection kernel thread's), never in a client's.
	 */
	if (!runs_no_user_code(bpf_get_current_task_btf()))
		return 0;
	record_entry(slot, cpu, BARRIERD_QUIESCENT, 1, 0);
	return 0;
}

/*
 * Run once by the helper (BPF_PROG_RUN, before anything is attached): it and
 * its parent, the publisher, are barrierd. The kernel's numbering of them
 * holds in any pid namespace the daemon may run in.
 */
SEC("syscall")
int identify_daemon(void *ctx)
{
	struct task_struct *helper = bpf_get_current_task_btf();

	watermark.daemon_tgid[0] = helper->tgid;
	watermark.daemon_tgid[1] = helper->real_parent->tgid;
	return 0;
}
