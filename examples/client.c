/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * client PATH [ITERATIONS]: performs ITERATIONS heavy barriers through the
 * barrierd file at PATH (default: until interrupted) and prints how long
 * each one waited.
 *
 *     cc -Wall -Wextra -O2 -Iinclude examples/client.c -o c-client
 *     ./c-client /run/barrierd/public_file 10
 *
 * Exit status: 0 after ITERATIONS barriers, 1 on any failure (message on
 * stderr), 2 on a bad command line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "barrierd.h"

/* Barriers take milliseconds; this only bounds a stall. */
#define TIMEOUT_NS (10ULL * 1000000000ULL)

int main(int argc, char **argv)
{
	struct barrierd_client client;
	unsigned long long iterations = 0, i;
	int status;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s PATH [ITERATIONS]\n", argv[0]);
		return 2;
	}
	if (argc == 3) {
		char *end;

		errno = 0;
		iterations = strtoull(argv[2], &end, 10);
		if (errno != 0 || *end != '\0' || end == argv[2] || argv[2][0] == '-') {
			fprintf(stderr, "%s: ITERATIONS must be a number, not %s\n", argv[0], argv[2]);
			return 2;
		}
	}

	status = barrierd_open(&client, argv[1]);
	if (status != BARRIERD_OK) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], barrierd_explain(&client, status));
		return 1;
	}
	for (i = 0; argc < 3 || i < iterations; i++) {
		uint64_t begin = barrierd_now_ns(), elapsed;

		status = barrierd_heavy_barrier(&client, TIMEOUT_NS);
		elapsed = barrierd_now_ns() - begin;
		if (status != BARRIERD_OK) {
			fprintf(stderr, "%s: %s: barrier %llu: %s\n", argv[0], argv[1], i + 1,
				barrierd_strerror(status));
			barrierd_close(&client);
			return 1;
		}
		printf("Wait on ns finished after %.3f ms.\n", (double)elapsed / 1e6);
		/* One line per barrier even when piped: callers watch progress. */
		fflush(stdout);
	}
	barrierd_close(&client);
	return 0;
}
