/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dump PATH: prints every word of the barrierd file at PATH, one
 * "name value" line each, as read through include/barrierd.h. For looking at
 * a live file, and for checking that C and Rust read the same thing.
 *
 *     cc -Wall -Wextra -O2 -Iinclude examples/dump.c -o dump
 *     ./dump /run/barrierd/public_file
 *
 * Exit status: 0, or 1 if PATH is not a file a running daemon publishes.
 */
#include <inttypes.h>
#include <stdio.h>

#include "barrierd.h"

static void print(const char *name, const uint64_t *word)
{
	printf("%s %" PRIu64 "\n", name, barrierd_load(word));
}

int main(int argc, char **argv)
{
	struct barrierd_client client;
	const struct barrierd_mapped_data *data;
	uint64_t cpu, ncpu;
	int status;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH\n", argv[0]);
		return 2;
	}
	status = barrierd_open(&client, argv[1]);
	if (status != BARRIERD_OK) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], barrierd_explain(&client, status));
		return 1;
	}
	data = client.data;
	/* In file order, so that a reader can diff two dumps. */
	print("ncpu", &data->ncpu);
	print("vtime", &data->vtime);
	print("last_interrupt_ns", &data->last_interrupt_ns);
	print("last_interrupt_vtime", &data->last_interrupt_vtime);
	print("format_version", &data->format_version);
	print("state", &data->state);
	print("generation", &data->generation);
	print("daemon_pid", &data->daemon_pid);
	print("boot_id[0]", &data->boot_id[0]);
	print("boot_id[1]", &data->boot_id[1]);
	ncpu = barrierd_load(&data->ncpu);
	for (cpu = 0; cpu < ncpu; cpu++) {
		printf("per_cpu[%" PRIu64 "].last_interrupt_ns %" PRIu64 "\n", cpu,
		       barrierd_load(&data->per_cpu[cpu].last_interrupt_ns));
		printf("per_cpu[%" PRIu64 "].last_interrupt_vtime %" PRIu64 "\n", cpu,
		       barrierd_load(&data->per_cpu[cpu].last_interrupt_vtime));
	}
	barrierd_close(&client);
	return 0;
}
