/* bench/reader.c: the load generator of `make bench`.
 *
 *   reader [-n OPENS] [-p PROCS] [-b BUFSIZE] PATH
 *
 * Each of PROCS forked processes does OPENS times: open(PATH) -> read() until EOF -> close().
 * All processes wait on a pipe and start together; the parent prints one line:
 *   ops=<total opens per wall second> secs=<wall seconds> errors=<failed opens or reads> bytes=<bytes of one read>
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

int main(int argc, char **argv)
{
	long opens = 3000, procs = 1, bufsz = 65536;
	int c;
	while ((c = getopt(argc, argv, "n:p:b:")) != -1) {
		if (c == 'n')
			opens = atol(optarg);
		else if (c == 'p')
			procs = atol(optarg);
		else if (c == 'b')
			bufsz = atol(optarg);
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: reader [-n OPENS] [-p PROCS] [-b BUFSIZE] PATH\n");
		return 2;
	}
	const char *path = argv[optind];
	char *buf = malloc((size_t)bufsz);
	long first = one_pass(path, buf, bufsz); /* warm the lookup cache; also the size we report */
	int gate[2], errs[2];
	if (!buf || pipe(gate) || pipe(errs))
		return 1;
	for (long i = 0; i < procs; i++) {
		if (fork() == 0) {
			char g;
			close(gate[1]);
			if (read(gate[0], &g, 1) < 0)
				_exit(3);
			long bad = 0;
			for (long k = 0; k < opens; k++)
				if (one_pass(path, buf, bufsz) < 0)
					bad++;
			if (write(errs[1], &bad, sizeof bad) != sizeof bad)
				_exit(4);
			_exit(0);
		}
	}
	close(gate[0]);
	close(errs[1]);
	double t0 = mono();
	close(gate[1]); /* releases every child at once */
	long bad_total = 0, bad;
	while (read(errs[0], &bad, sizeof bad) == sizeof bad)
		bad_total += bad;
	while (wait(NULL) > 0)
		;
	double dt = mono() - t0;
	printf("ops=%.1f secs=%.4f errors=%ld bytes=%ld\n", (double)(opens * procs) / dt, dt, bad_total, first);
	return 0;
}
