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
 *
 * The times are meaningful only during the boot recorded in boot_id: the
 * 16 bytes of the UUID in /proc/sys/kernel/random/boot_id, boot_id[0] its
 * first 8 and boot_id[1] its last 8, each read as a native uint64_t. A file
 * of another boot (or all zero: written by a daemon that did not record
 * boots) was left behind, by a crash perhaps, and no daemon has started on
 * it since: its words, state included, say nothing about this boot.
 *
 * Wait by FUTEX_WAIT (shared) on the word, as barrierd_wait does: that
 * is how the daemon knows someone waits, and publishes promptly. While no
 * client waits, a barrier's word passes T within 200 ms of every CPU
 * having done so, not at once.
 */
#ifndef BARRIERD_H
#define BARRIERD_H

#include <stdint.h>

#define BARRIERD_MAGIC_BYTES "barrierd"  /* the magic word's 8 bytes, in memory order */
/* Where the daemon publishes unless told otherwise, and where clients look. */
#define BARRIERD_DEFAULT_PATH "/run/barrierd/public_file"
/* The environment variable that names another file for clients. */
#define BARRIERD_PATH_VARIABLE "BARRIERD_FILE"
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
	uint64_t prods;			/* CPUs prodded (--prod-after) since start, informational */
	uint64_t boot_id[2];		/* the boot the daemon last started in (above) */
	uint64_t reserved[4];		/* zero */
	struct barrierd_per_cpu per_cpu[];	/* at byte 128 */
};

/*
 * Optional helpers, mirroring the Rust client (client/src): open and
 * validate, liveness, futex waits, the heavy barrier. They need GCC or
 * Clang (__atomic builtins) and glibc's default feature set (syscall,
 * realpath, clock_gettime): the GNU modes have it, strict -std=c99 or c11
 * need -D_DEFAULT_SOURCE. Define BARRIERD_NO_HELPERS to get the layout alone.
 *
 * Trust: a forged file completes barriers that never happened, so
 * barrierd_open reads no word of a file that someone other than root or the
 * caller could have written (the rule of the Rust client's trust.rs; see
 * barrierd_check_trust), and barrierd_open_trusting names other uids to
 * trust, for a daemon run under an account of one's own.
 *
 * Liveness: a running daemon keeps state == BARRIERD_STATE_RUNNING and holds
 * an OFD write lock on the whole file for its life. A clean stop sets state
 * to STOPPED and wakes every futex word; SIGKILL leaves state RUNNING but
 * the kernel drops the lock, which F_OFD_GETLK (from a read-only
 * descriptor, taking nothing) reveals. The probe asks whether a read lock
 * could be taken, which only a write lock prevents: a reader, who can take
 * read locks alone, cannot make a dead daemon look alive. Waits probe the lock once per slice
 * of BARRIERD_PROBE_NS, never on the fast path. barrierd_open reads this
 * boot's id once; a file whose boot_id differs is not running, whatever its
 * state and lock say, and every check of a wait compares it (two loads)
 * before trusting the word waited on.
 */
#ifndef BARRIERD_NO_HELPERS

/*
 * syscall(), realpath() and the rest need glibc's default feature set,
 * which strict modes (-std=c99, -std=c11) leave out; <stdint.h> above has
 * already read the feature macros.
 */
#if !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
#error "barrierd.h: its helpers need the default feature set: compile with -D_DEFAULT_SOURCE (or -std=gnu11), or define BARRIERD_NO_HELPERS for the layout alone"
#else

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36	/* glibc declares it only with _GNU_SOURCE */
#endif

/* Longest futex sleep between re-checks (lost wake-ups, dead daemon). */
#define BARRIERD_PROBE_NS 100000000ULL

#define BARRIERD_BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

enum barrierd_status {
	BARRIERD_OK = 0,
	BARRIERD_ERR_SYSTEM = -1,	/* see errno */
	BARRIERD_ERR_NOT_BARRIERD = -2,	/* no magic word, or too short */
	BARRIERD_ERR_VERSION = -3,	/* other format_version */
	BARRIERD_ERR_NOT_RUNNING = -4,	/* no daemon publishes to the file */
	BARRIERD_ERR_TIMEOUT = -5,
	BARRIERD_ERR_BOOT_ID = -6,	/* BARRIERD_BOOT_ID_PATH unreadable */
	BARRIERD_ERR_UNTRUSTED = -7,	/* others could have written it: see barrierd_open */
};

struct barrierd_client {
	const struct barrierd_mapped_data *data;
	size_t size;
	int fd;
	uint64_t boot_id[2];	/* this boot's, read by barrierd_open */
	uint64_t prompt_requested_ns;	/* barrierd_request_promptness's last request */
	/* What barrierd_open found wrong, when a status cannot say it all. */
	char detail[192];
};

static inline const char *barrierd_strerror(int status)
{
	switch (status) {
	case BARRIERD_OK: return "success";
	case BARRIERD_ERR_SYSTEM: return strerror(errno);
	case BARRIERD_ERR_NOT_BARRIERD: return "not a barrierd file; check the path";
	case BARRIERD_ERR_VERSION: return "barrierd file of another format version";
	case BARRIERD_ERR_NOT_RUNNING: return "daemon not running: start barrierd PATH as root";
	case BARRIERD_ERR_TIMEOUT: return "timed out with the daemon running: retry, or raise the timeout";
	case BARRIERD_ERR_BOOT_ID: return "cannot read this boot's id from " BARRIERD_BOOT_ID_PATH
		", which tells this boot's file from a stale one: run with /proc mounted";
	case BARRIERD_ERR_UNTRUSTED: return "someone we do not trust could have written the file: "
		"it and every directory above it must be owned by root (or by us) and not writable by others";
	default: return "unknown barrierd status";
	}
}

/* barrierd_strerror, or what barrierd_open found wrong in detail. */
static inline const char *barrierd_explain(const struct barrierd_client *c, int status)
{
	if (status != BARRIERD_OK && c->detail[0] != '\0')
		return c->detail;
	return barrierd_strerror(status);
}

/* Every read of the mapping goes through an atomic load. */
static inline uint64_t barrierd_load(const uint64_t *word)
{
	return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

static inline uint64_t barrierd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Reads this boot's id as the daemon stores it (see boot_id above). 0, or
 * -1 with errno set (EINVAL if the file holds no boot id).
 */
static inline int barrierd_read_boot_id(uint64_t boot_id[2])
{
	unsigned char bytes[16] = { 0 };
	char text[64];
	ssize_t len, i;
	int digits = 0, fd, saved_errno;

	fd = open(BARRIERD_BOOT_ID_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, text, sizeof(text));
	saved_errno = errno;
	close(fd);
	errno = saved_errno;
	if (len < 0)
		return -1;
	if (len > 0 && text[len - 1] == '\n')
		len--;
	/* As the Rust client parses it: hex digits, dashes anywhere. */
	for (i = 0; i < len; i++) {
		char ch = text[i];
		int digit;

		if (ch == '-')
			continue;
		if (ch >= '0' && ch <= '9')
			digit = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			digit = ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			digit = ch - 'A' + 10;
		else
			goto invalid;
		if (digits == 32)
			goto invalid;
		bytes[digits / 2] = (unsigned char)((bytes[digits / 2] << 4) | digit);
		digits++;
	}
	if (digits != 32)
		goto invalid;
	memcpy(&boot_id[0], bytes, 8);
	memcpy(&boot_id[1], bytes + 8, 8);
	if (boot_id[0] == 0 && boot_id[1] == 0)
		goto invalid;
	return 0;
invalid:
	errno = EINVAL;
	return -1;
}

/* 1 if the file was written during the boot barrierd_open read. */
static inline int barrierd_same_boot(const struct barrierd_client *c)
{
	/*
	 * A daemon adopting another boot's file resets it before storing
	 * this boot's id: the loads that follow see the reset or newer.
	 */
	return barrierd_load(&c->data->boot_id[0]) == c->boot_id[0] &&
	       barrierd_load(&c->data->boot_id[1]) == c->boot_id[1];
}

/*
 * 1 if a daemon publishes to the file: written during this boot, state
 * RUNNING and its lock held.
 */
static inline int barrierd_running(const struct barrierd_client *c)
{
	struct flock lock;

	if (!barrierd_same_boot(c))
		return 0;
	if (barrierd_load(&c->data->state) != BARRIERD_STATE_RUNNING)
		return 0;
	memset(&lock, 0, sizeof(lock));	/* F_OFD_GETLK requires l_pid == 0 */
	lock.l_type = F_RDLCK;
	lock.l_whence = SEEK_SET;
	/* If the probe itself fails, trust the state word. */
	return fcntl(c->fd, F_OFD_GETLK, &lock) != 0 || lock.l_type != F_UNLCK;
}

static inline void barrierd_close(struct barrierd_client *c)
{
	if (c->data != NULL)
		munmap((void *)c->data, c->size);
	if (c->fd >= 0)
		close(c->fd);
	c->data = NULL;
	c->fd = -1;
}

static inline int barrierd_trusted_uid(uid_t uid, const uid_t *trusted, size_t ntrusted)
{
	size_t i;

	if (uid == 0 || uid == geteuid())
		return 1;
	for (i = 0; i < ntrusted; i++)
		if (trusted[i] == uid)
			return 1;
	return 0;
}

/*
 * The rule of the Rust client (client/src/trust.rs): OPENED (the fstat of
 * the descriptor opened at PATH, so that a name swapped after the check
 * cannot pass) and every directory above PATH's resolved form must be owned
 * by root, by our effective uid or by one of TRUSTED, and none may be
 * writable by group or others, except a sticky directory such as /tmp.
 */
static inline int barrierd_check_trust(struct barrierd_client *c, const char *path,
				       const struct stat *opened, const uid_t *trusted,
				       size_t ntrusted)
{
	struct stat st;
	char *resolved = realpath(path, NULL), *slash;
	const char *what = "it";
	int status = BARRIERD_ERR_SYSTEM, saved_errno;

	if (resolved == NULL)
		return BARRIERD_ERR_SYSTEM;
	if (stat(resolved, &st) != 0)
		goto out;
	status = BARRIERD_ERR_UNTRUSTED;
	if (st.st_dev != opened->st_dev || st.st_ino != opened->st_ino) {
		snprintf(c->detail, sizeof(c->detail), "%s changed while it was opened", path);
		goto out;
	}
	st = *opened;
	for (;;) {
		if (!barrierd_trusted_uid(st.st_uid, trusted, ntrusted)) {
			snprintf(c->detail, sizeof(c->detail),
				 "%s %s is owned by uid %lu, whom we do not trust", what, resolved,
				 (unsigned long)st.st_uid);
			goto out;
		}
		if ((st.st_mode & 022) != 0 && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX))) {
			snprintf(c->detail, sizeof(c->detail),
				 "%s %s has mode %lo: others may write it", what, resolved,
				 (unsigned long)(st.st_mode & 07777));
			goto out;
		}
		if (strcmp(resolved, "/") == 0)
			break;
		slash = strrchr(resolved, '/');
		slash[slash == resolved ? 1 : 0] = '\0';
		what = "directory";
		if (stat(resolved, &st) != 0) {
			status = BARRIERD_ERR_SYSTEM;
			goto out;
		}
	}
	status = BARRIERD_OK;
out:
	saved_errno = errno;
	free(resolved);
	errno = saved_errno;
	return status;
}

/*
 * Opens PATH read-only, checks that only root (or we, or a uid of TRUSTED)
 * could have written it (BARRIERD_ERR_UNTRUSTED, with the reason in
 * c->detail: a forged file completes barriers that never happened), maps
 * and validates it, reads this boot's id and checks that a daemon runs (on
 * a file of this boot).
 */
static inline int barrierd_open_trusting(struct barrierd_client *c, const char *path,
					 const uid_t *trusted, size_t ntrusted)
{
	struct stat st;
	uint64_t magic, ncpu;
	void *map;
	int status = BARRIERD_ERR_NOT_BARRIERD, saved_errno;

	c->data = NULL;
	c->detail[0] = '\0';
	c->prompt_requested_ns = 0;
	c->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (c->fd < 0)
		return BARRIERD_ERR_SYSTEM;
	if (fstat(c->fd, &st) != 0) {
		status = BARRIERD_ERR_SYSTEM;
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(c->detail, sizeof(c->detail),
			 "a directory: open the barrierd file in it (the daemon's default is "
			 BARRIERD_DEFAULT_PATH ")");
		goto fail;
	}
	status = barrierd_check_trust(c, path, &st, trusted, ntrusted);
	if (status != BARRIERD_OK)
		goto fail;
	status = BARRIERD_ERR_NOT_BARRIERD;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof(*c->data))
		goto fail;
	c->size = (size_t)st.st_size;
	map = mmap(NULL, c->size, PROT_READ, MAP_SHARED, c->fd, 0);
	if (map == MAP_FAILED) {
		status = BARRIERD_ERR_SYSTEM;
		goto fail;
	}
	c->data = (const struct barrierd_mapped_data *)map;
	/* The magic is stored last: once seen, the other words are valid. */
	magic = barrierd_load(&c->data->magic);
	if (memcmp(&magic, BARRIERD_MAGIC_BYTES, sizeof(magic)) != 0)
		goto fail;
	status = BARRIERD_ERR_VERSION;
	if (barrierd_load(&c->data->format_version) != BARRIERD_FORMAT_VERSION)
		goto fail;
	status = BARRIERD_ERR_NOT_BARRIERD;
	ncpu = barrierd_load(&c->data->ncpu);
	if (ncpu == 0 || ncpu > (c->size - sizeof(*c->data)) / sizeof(c->data->per_cpu[0]))
		goto fail;
	status = BARRIERD_ERR_BOOT_ID;
	if (barrierd_read_boot_id(c->boot_id) != 0)
		goto fail;
	status = BARRIERD_ERR_NOT_RUNNING;
	if (!barrierd_running(c))
		goto fail;
	return BARRIERD_OK;
fail:
	saved_errno = errno;
	barrierd_close(c);
	errno = saved_errno;
	return status;
}

/* barrierd_open_trusting that trusts root and us alone: the daemon's file. */
static inline int barrierd_open(struct barrierd_client *c, const char *path)
{
	return barrierd_open_trusting(c, path, NULL, 0);
}

/* $BARRIERD_FILE if set and not empty, else BARRIERD_DEFAULT_PATH. */
static inline const char *barrierd_default_path(void)
{
	const char *path = getenv(BARRIERD_PATH_VARIABLE);

	return path != NULL && path[0] != '\0' ? path : BARRIERD_DEFAULT_PATH;
}

/* barrierd_open on barrierd_default_path(). */
static inline int barrierd_open_default(struct barrierd_client *c)
{
	return barrierd_open(c, barrierd_default_path());
}

/*
 * Sleeps while the low 32-bit half of *word equals expected, at most
 * timeout_ns; a wake, a mismatch, a signal and the timeout all return, and
 * the caller re-checks. Shared (not FUTEX_PRIVATE_FLAG): the waker is the
 * daemon, and a shared wait is what tells it that a client waits.
 */
static inline void barrierd_futex_wait(const uint64_t *word, uint32_t expected,
				       uint64_t timeout_ns)
{
	const uint32_t *half = (const uint32_t *)word +
		(__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__);
	struct timespec ts;

	ts.tv_sec = (time_t)(timeout_ns / 1000000000ULL);
	ts.tv_nsec = (long)(timeout_ns % 1000000000ULL);
	syscall(SYS_futex, half, FUTEX_WAIT, expected, &ts, NULL, 0);
}

/*
 * Waits until *word (a futex word of the mapping, e.g.
 * &c->data->last_interrupt_ns) exceeds target. Sleeps on its low 32-bit
 * half in slices of at most BARRIERD_PROBE_NS: a change by a multiple of
 * 2^32 between the load and the sleep is invisible to the futex, and a dead
 * daemon wakes nobody. BARRIERD_ERR_NOT_RUNNING at once for a file of
 * another boot, even if *word is past target.
 */
static inline int barrierd_wait(const struct barrierd_client *c, const uint64_t *word,
				uint64_t target, uint64_t timeout_ns)
{
	uint64_t now = barrierd_now_ns();
	uint64_t deadline = now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
	uint64_t next_probe = now + BARRIERD_PROBE_NS;

	for (;;) {
		uint64_t value, slice;

		/* Before the value: another boot's times are another clock's. */
		if (!barrierd_same_boot(c))
			return BARRIERD_ERR_NOT_RUNNING;
		value = barrierd_load(word);
		if (value > target)
			return BARRIERD_OK;
		if (barrierd_load(&c->data->state) != BARRIERD_STATE_RUNNING)
			return BARRIERD_ERR_NOT_RUNNING;
		now = barrierd_now_ns();
		if (now >= next_probe) {
			if (!barrierd_running(c))
				return BARRIERD_ERR_NOT_RUNNING;
			next_probe = now + BARRIERD_PROBE_NS;
		}
		if (now >= deadline)
			return BARRIERD_ERR_TIMEOUT;
		slice = (deadline < next_probe ? deadline : next_probe) - now;
		barrierd_futex_wait(word, (uint32_t)value, slice);
	}
}

/*
 * The start point of a barrier in vtime, as T is in CLOCK_MONOTONIC time: a
 * full fence (this thread's earlier stores are globally visible before the
 * load), then a load of vtime. Once barrierd_wait on
 * &c->data->last_interrupt_vtime passes it (followed by an acquire fence),
 * every CPU has entered the kernel after this call, with the guarantees of
 * barrierd_heavy_barrier.
 */
static inline uint64_t barrierd_begin_vtime(const struct barrierd_client *c)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return barrierd_load(&c->data->vtime);
}

/* How long the daemon publishes promptly after a client blocked in a wait. */
#define BARRIERD_PROMPTNESS_NS 1000000000ULL

/*
 * For a client that polls (barrierd_passed_ns) instead of waiting: asks
 * the daemon to publish promptly for the next BARRIERD_PROMPTNESS_NS, as it
 * does while a client waits (it recognises one by a thread blocked in a
 * shared futex wait). Costs one FUTEX_WAIT that times out after 20 us, and
 * only when this client's last request is half that old; otherwise one
 * clock read. Without it, a polled barrier completes within 200 ms of
 * every CPU passing it.
 */
static inline void barrierd_request_promptness(struct barrierd_client *c)
{
	uint64_t now = barrierd_now_ns();
	uint64_t last = __atomic_load_n(&c->prompt_requested_ns, __ATOMIC_RELAXED);

	if (last != 0 && now - last < BARRIERD_PROMPTNESS_NS / 2)
		return;
	__atomic_store_n(&c->prompt_requested_ns, now, __ATOMIC_RELAXED);
	/* The state word changes only at a start or a stop: it blocks. */
	barrierd_futex_wait(&c->data->state, (uint32_t)barrierd_load(&c->data->state), 20000);
}

/* 1 once every CPU entered the kernel after T (then an acquire fence). */
static inline int barrierd_passed_ns(const struct barrierd_client *c, uint64_t t_ns)
{
	if (barrierd_load(&c->data->last_interrupt_ns) > t_ns) {
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		return 1;
	}
	return 0;
}

/*
 * The start of a barrier to be polled with barrierd_passed_ns: a full
 * fence, T = now, and barrierd_request_promptness. Returns T.
 */
static inline uint64_t barrierd_begin_polled(struct barrierd_client *c)
{
	uint64_t t_ns;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	t_ns = barrierd_now_ns();
	barrierd_request_promptness(c);
	return t_ns;
}

/*
 * The heavy side of an asymmetric barrier: full fence, T = now, wait until
 * every CPU entered the kernel after T, acquire fence. On BARRIERD_OK, the
 * stores any thread made before its CPU's first kernel entry after T are
 * visible, and ours are visible to what it runs after that entry; the light
 * side needs only a compiler fence, __atomic_signal_fence(__ATOMIC_SEQ_CST).
 * See ARCHITECTURE.md ("Why a published timestamp is safe") for the
 * argument and its assumptions (x86-64, TSC clocksource).
 */
static inline int barrierd_heavy_barrier(const struct barrierd_client *c, uint64_t timeout_ns)
{
	int status;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	status = barrierd_wait(c, &c->data->last_interrupt_ns, barrierd_now_ns(), timeout_ns);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return status;
}

#define BARRIERD_MEMBARRIER_CMD_GLOBAL 1	/* <linux/membarrier.h>'s MEMBARRIER_CMD_GLOBAL */

/*
 * barrierd_heavy_barrier, or membarrier(MEMBARRIER_CMD_GLOBAL) (the same
 * guarantee for the same light side, tens of ms) when C is not open (its
 * data NULL: barrierd_open failed), the daemon does not run or does not
 * complete the barrier within TIMEOUT_NS. Returns BARRIERD_OK through the
 * daemon, 1 through membarrier, BARRIERD_ERR_SYSTEM if membarrier failed.
 */
static inline int barrierd_heavy_barrier_or_membarrier(const struct barrierd_client *c,
						       uint64_t timeout_ns)
{
	if (c->data != NULL && barrierd_heavy_barrier(c, timeout_ns) == BARRIERD_OK)
		return BARRIERD_OK;
	if (syscall(SYS_membarrier, BARRIERD_MEMBARRIER_CMD_GLOBAL, 0) != 0)
		return BARRIERD_ERR_SYSTEM;
	return 1;
}

#endif /* the default feature set */
#endif /* !BARRIERD_NO_HELPERS */

#endif /* !BARRIERD_H */
