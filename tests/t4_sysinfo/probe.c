/* sysinfo probe for the tests: prints the fields of one sysinfo(2) call as key=value lines, or with
 * "loop N" calls it N times (1 ms apart) and prints how many calls failed or returned an implausible struct
 * (totalram 0, mem_unit 0, or a totalram different from the first call's); "syscall N" prints the errno of a bare
 * syscall N (to see a seccomp rule act). Built static in the test. */
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static unsigned long want_total;
static long thread_bad;

static void *hammer(void *arg) {
    struct sysinfo si;
    long n = (long)arg;
    for (long i = 0; i < n; i++)
        if (sysinfo(&si) != 0 || si.totalram != want_total) __sync_fetch_and_add(&thread_bad, 1);
    return NULL;
}

int main(int argc, char **argv) {
    struct sysinfo si;
    if (argc >= 2 && strcmp(argv[1], "badptr") == 0) {
        /* NULL, a read-only page, and a buffer that runs from a writable page into a read-only one: the kernel
         * answers EFAULT for each; the read-only bytes must stay untouched */
        char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 2;
        memset(p, 0x5A, 8192);
        mprotect(p + 4096, 4096, PROT_READ);
        long r1 = syscall(SYS_sysinfo, NULL);
        int e1 = errno;
        long r2 = syscall(SYS_sysinfo, p + 4096);
        int e2 = errno;
        long r3 = syscall(SYS_sysinfo, p + 4096 - 16);
        int e3 = errno;
        int intact = 1;
        for (int i = 4096; i < 8192; i++) intact &= p[i] == 0x5A;
        printf("null=%ld/%d ro=%ld/%d span=%ld/%d intact=%d\n", r1, e1, r2, e2, r3, e3, intact);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "threads") == 0) { /* 8 threads x N calls, all must see the first total */
        pthread_t t[8];
        if (sysinfo(&si) != 0) return 1;
        want_total = si.totalram;
        for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, hammer, (void *)atol(argv[2]));
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
        printf("bad=%ld totalram=%lu\n", thread_bad, want_total);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "syscall") == 0) { /* errno of syscall(N, 0, 0, 0, 0, 0, 0) */
        long r = syscall(atol(argv[2]), 0L, 0L, 0L, 0L, 0L, 0L);
        printf("ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "loop") == 0) {
        long n = atol(argv[2]), bad = 0, ok = 0;
        unsigned long first = 0;
        struct timespec ts = {0, 1000000};
        for (long i = 0; i < n; i++) {
            memset(&si, 0xA5, sizeof si);
            if (sysinfo(&si) != 0) {
                bad++;
                fprintf(stderr, "call %ld: errno %d\n", i, errno);
            } else if (si.totalram == 0 || si.mem_unit == 0 || (first && si.totalram != first)) {
                bad++;
                fprintf(stderr, "call %ld: totalram %lu mem_unit %u\n", i, si.totalram, si.mem_unit);
            } else {
                ok++;
                if (!first) first = si.totalram;
            }
            nanosleep(&ts, NULL);
        }
        printf("ok=%ld bad=%ld totalram=%lu\n", ok, bad, first);
        return bad != 0;
    }
    memset(&si, 0xA5, sizeof si);
    if (sysinfo(&si) != 0) {
        printf("error=%d\n", errno);
        return 1;
    }
    printf("uptime=%ld\nload1=%lu\nload5=%lu\nload15=%lu\ntotalram=%lu\nfreeram=%lu\nsharedram=%lu\n"
           "bufferram=%lu\ntotalswap=%lu\nfreeswap=%lu\nprocs=%u\ntotalhigh=%lu\nfreehigh=%lu\nmem_unit=%u\n"
           "phys_pages=%ld\navphys_pages=%ld\npagesize=%ld\n",
           si.uptime, si.loads[0], si.loads[1], si.loads[2], si.totalram, si.freeram, si.sharedram, si.bufferram,
           si.totalswap, si.freeswap, (unsigned)si.procs, si.totalhigh, si.freehigh, si.mem_unit,
           sysconf(_SC_PHYS_PAGES), sysconf(_SC_AVPHYS_PAGES), sysconf(_SC_PAGESIZE));
    return 0;
}
