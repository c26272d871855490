/* SPDX-License-Identifier: MIT */
/* Runs a program with io_uring_setup failing; passes if it reports SKIP. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * usage: uring-skip ENOSYS|EPERM program [tap]
 * The child gets a seccomp filter that fails io_uring_setup with that
 * errno, as a sandbox without io_uring does; the program must then exit
 * 77 (meson's SKIP), not 0 and not a failure; with "tap", it must exit 0
 * having printed a TAP plan "1..0 # SKIP" (meson reads "not ok # SKIP"
 * as a failure). Exit 77 here too where the filter cannot be installed.
 */
#if defined(__x86_64__)
#define RCTX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RCTX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

int
main(int argc, char **argv)
{
	int err, status, out[2], want = 77;
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (argc != 3 && !(argc == 4 && strcmp(argv[3], "tap") == 0)) {
		fprintf(stderr, "usage: %s ENOSYS|EPERM program [tap]\n",
			argv[0]);
		return 2;
	}
	err = strcmp(argv[1], "EPERM") == 0 ? EPERM : ENOSYS;
	if (argc == 4)
		want = 0;
#ifndef RCTX_AUDIT_ARCH
	printf("SKIP: no seccomp filter for this architecture\n");
	return 77;
#else
	if (pipe(out)) {
		perror("pipe");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
				 offsetof(struct seccomp_data, arch)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RCTX_AUDIT_ARCH, 1,
				 0),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
				 offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup,
				 0, 1),
			BPF_STMT(BPF_RET | BPF_K,
				 SECCOMP_RET_ERRNO | (unsigned)err),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]),
					   .filter = f };

		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
			printf("SKIP: cannot install a seccomp filter: %s\n",
			       strerror(errno));
			_exit(100);
		}
		execl(argv[2], argv[2], (char *)NULL);
		perror("execl");
		_exit(1);
	}
	close(out[1]);
	/* Read to the end (the first 4 KiB are kept), so the child never
	 * blocks on a full pipe. */
	for (;;) {
		char drop[512];

		if (len < sizeof(buf) - 1)
			n = read(out[0], buf + len, sizeof(buf) - 1 - len);
		else
			n = read(out[0], drop, sizeof(drop));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (len < sizeof(buf) - 1)
			len += (size_t)n;
	}
	buf[len] = '\0';
	close(out[0]);
	fputs(buf, stdout); /* the child's reason, for the log */
	if (waitpid(pid, &status, 0) != pid) {
		perror("waitpid");
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 100)
		return 77;
	if (WIFEXITED(status) && WEXITSTATUS(status) == want &&
	    (want == 77 || strstr(buf, "1..0 # SKIP"))) {
		printf("io_uring_setup failing with %s: the program skipped\n",
		       argv[1]);
		return 0;
	}
	fprintf(stderr, "io_uring_setup failing with %s: status %#x, not %s\n",
		argv[1], (unsigned)status, want ? "77" : "0 with 1..0 # SKIP");
	return 1;
#endif
}
