/* bench/reader.c: the load generator of `make bench`.
 *
 *   reader [-n OPENS] [-p PROCS] [-b BUFSIZE] [-t SECONDS] [-g] PATH
 *   reader -L INTERVAL_US [-n SAMPLES] PATH
 *
 * Throughput: each of PROCS forked processes does OPENS times (or, with -t, for SECONDS):
 * open(PATH) -> read() until EOF -> close(). All processes wait on a pipe and start together; the parent
 * prints one line:
 *   ops=<total opens per wall second> secs=<wall seconds> errors=<failed opens or reads> bytes=<bytes of one read>
 * -g: once the children are forked, print READY and wait for one byte on stdin before releasing them, so
 * the harness can start readers in several containers at the same instant.
 * Latency (-L): one process, SAMPLES timed open -> read to EOF -> close, INTERVAL_US apart; prints
 *   lat_med_us=<median> lat_p99_us=<99th percentile> lat_max_us=<max> samples=<n> errors=<failed>
 * The benchmark harness places this process in the limited cgroups and in its own pid namespace
 * before exec, so the FUSE daemons see a container caller.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long one_pass(const char *path, char *buf, long bufsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	long total = 0;
	for (;;) {
		ssize_t r = read(fd, buf, (size_t)bufsz);
		if (r < 0) {
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		total += r;
	}
	close(fd);
	return total;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* -L: paced single-process latency samples (what another container's tool sees, e.g. a monitoring agent). */
static int latency(const char *path, char *buf, long bufsz, long samples, long interval_us)
{
	double *lat = calloc((size_t)samples, sizeof *lat);
	long bad = 0;
	if (!lat || samples < 1)
		return 1;
	one_pass(path, buf, bufsz); /* warm the lookup cache */
	for (long k = 0; k < samples; k++) {
		double t = mono();
		if (one_pass(path, buf, bufsz) < 0)
			bad++;
		lat[k] = (mono() - t) * 1e6;
		struct timespec ts = {interval_us / 1000000, (interval_us % 1000000) * 1000};
		nanosleep(&ts, NULL);
	}
	qsort(lat, (size_t)samples, sizeof *lat, cmp_double);
	long p99 = (samples * 99 + 99) / 100 - 1; /* ceil(0.99 n) - 1 */
	printf("lat_med_us=%.1f lat_p99_us=%.1f lat_max_us=%.1f samples=%ld errors=%ld\n", lat[samples / 2],
	       lat[p99], lat[samples - 1], samples, bad);
	return 0;
}

struct tally {
	long bad, done;
};

int main(int argc, char **argv)
{
	long opens = 3000, procs = 1, bufsz = 65536, interval_us = -1;
	double seconds = 0;
	int c, gated = 0;
	while ((c = getopt(argc, argv, "n:p:b:t:gL:")) != -1) {
		if (c == 'n')
			opens = atol(optarg);
		else if (c == 'p')
			procs = atol(optarg);
		else if (c == 'b')
			bufsz = atol(optarg);
		else if (c == 't')
			seconds = atof(optarg);
		else if (c == 'g')
			gated = 1;
		else if (c == 'L')
			interval_us = atol(optarg);
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: reader [-n OPENS] [-p PROCS] [-b BUFSIZE] [-t SECONDS] [-g] PATH\n"
				"       reader -L INTERVAL_US [-n SAMPLES] PATH\n");
		return 2;
	}
	const char *path = argv[optind];
	char *buf = malloc((size_t)bufsz);
	if (!buf)
		return 1;
	if (interval_us >= 0)
		return latency(path, buf, bufsz, opens, interval_us);
	long first = one_pass(path, buf, bufsz); /* warm the lookup cache; also the size we report */
	int gate[2], errs[2];
	if (pipe(gate) || pipe(errs))
		return 1;
	for (long i = 0; i < procs; i++) {
		if (fork() == 0) {
			char g;
			close(gate[1]);
			if (read(gate[0], &g, 1) < 0)
				_exit(3);
			struct tally t = {0, 0};
			double end = mono() + seconds;
			for (long k = 0; seconds > 0 ? mono() < end : k < opens; k++, t.done++)
				if (one_pass(path, buf, bufsz) < 0)
					t.bad++;
			if (write(errs[1], &t, sizeof t) != sizeof t)
				_exit(4);
			_exit(0);
		}
	}
	close(gate[0]);
	close(errs[1]);
	if (gated) {
		char g;
		printf("READY\n");
		fflush(stdout);
		if (read(0, &g, 1) != 1)
			return 5;
	}
	double t0 = mono();
	close(gate[1]); /* releases every child at once */
	long bad_total = 0, done_total = 0;
	struct tally t;
	while (read(errs[0], &t, sizeof t) == sizeof t) {
		bad_total += t.bad;
		done_total += t.done;
	}
	while (wait(NULL) > 0)
		;
	double dt = mono() - t0;
	printf("ops=%.1f secs=%.4f errors=%ld bytes=%ld opens=%ld\n", (double)done_total / dt, dt, bad_total, first,
	       done_total);
	return 0;
}
