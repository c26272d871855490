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
 * usage: uring-skip ENOSYS|EPERM program
 * The child gets a seccomp filter that fails io_uring_setup with that
 * errno, as a sandbox without io_uring does; the program must then exit
 * 77 (meson's SKIP), not 0 and not a failure. Exit 77 here too where the
 * filter cannot be installed.
 */
#if defined(__x86_64__)
#define RCTX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RCTX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

int
main(int argc, char **argv)
{
	int err, status;
	pid_t pid;

	if (argc != 3) {
		fprintf(stderr, "usage: %s ENOSYS|EPERM program\n", argv[0]);
		return 2;
	}
	err = strcmp(argv[1], "EPERM") == 0 ? EPERM : ENOSYS;
#ifndef RCTX_AUDIT_ARCH
	printf("SKIP: no seccomp filter for this architecture\n");
	return 77;
#else
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
	if (waitpid(pid, &status, 0) != pid) {
		perror("waitpid");
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 100)
		return 77;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("io_uring_setup failing with %s: the program skipped\n",
		       argv[1]);
		return 0;
	}
	fprintf(stderr, "io_uring_setup failing with %s: status %#x, not 77\n",
		argv[1], (unsigned)status);
	return 1;
#endif
}
