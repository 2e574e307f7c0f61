// SPDX-License-Identifier: GPL-2.0-only
/*
 * fdstore: a small "fd store" daemon of the kind a service manager runs across a live update,
 * written against the kernel's selftest library (libliveupdate) and built by luo-harness for the
 * guest. `fdstore hold` creates a session, preserves a patterned memfd in it and leaves a daemon
 * holding the session across the kexec; `fdstore verify` (after the kexec) retrieves the session
 * and the memfd and checks its size and every byte. Both print TAP: a case per step.
 *
 * The session name comes from FDSTORE_SESSION, the memfd's size and pattern seed from
 * fdstore.conf in the working directory (staged beside the program with `files:`).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libliveupdate.h"

#define TOKEN 1

static unsigned long size;
static unsigned int seed;
static int failed, number;

static void result(int ok, const char *name, const char *detail)
{
	printf("%sok %d %s%s%s\n", ok ? "" : "not ", ++number, name,
	       detail ? " # " : "", detail ? detail : "");
	failed |= !ok;
}

/* Position-dependent, so a page moved or lost shows up, not only one zeroed. */
static unsigned char byte_at(unsigned long i)
{
	uint32_t x = (uint32_t)(i / 4096 + 1) * 2654435761u ^ seed;

	return (unsigned char)((x >> ((i % 4) * 8)) ^ i);
}

static void read_config(void)
{
	FILE *f = fopen("fdstore.conf", "r");

	if (!f || fscanf(f, "size %lu seed %u", &size, &seed) != 2) {
		printf("Bail out! fdstore.conf: expected \"size N seed N\"\n");
		exit(1);
	}
	fclose(f);
}

static const char *session_name(void)
{
	const char *s = getenv("FDSTORE_SESSION");

	return s && *s ? s : "fdstore";
}

static int hold(void)
{
	static unsigned char buf[65536];
	int luo, session, memfd, ready[2];
	unsigned long off;
	char c;

	printf("TAP version 13\n1..4\n");
	luo = luo_open_device();
	result(luo >= 0, "open_device", luo < 0 ? strerror(errno) : NULL);
	session = luo_create_session(luo, session_name());
	result(session >= 0, "create_session", session < 0 ? strerror(-session) : NULL);
	memfd = memfd_create("fdstore", 0);
	int filled = memfd >= 0 && ftruncate(memfd, size) == 0;
	for (off = 0; filled && off < size; off += sizeof(buf)) {
		unsigned long n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		for (unsigned long i = 0; i < n; i++)
			buf[i] = byte_at(off + i);
		filled = pwrite(memfd, buf, n, off) == (ssize_t)n;
	}
	result(filled, "fill_memfd", NULL);
	int err = luo_session_preserve_fd(session, memfd, TOKEN);
	result(err == 0, "preserve_fd", err ? strerror(-err) : NULL);
	if (failed)
		return 1;
	fflush(stdout);

	/* The daemon holds the session (and so the preserved memfd) until the kexec. */
	if (pipe(ready) < 0)
		return 1;
	switch (fork()) {
	case -1:
		return 1;
	case 0:
		setsid();
		close(ready[0]);
		close(STDIN_FILENO);
		close(STDOUT_FILENO);
		close(STDERR_FILENO);
		close(ready[1]); /* ready: the parent may go */
		for (;;)
			pause();
	default:
		close(ready[1]);
		/* EOF once the daemon has let go of the program's stdout. */
		while (read(ready[0], &c, 1) > 0)
			;
		printf("# holding session %s with %lu bytes: you may kexec\n", session_name(), size);
		return 0;
	}
}

static int verify(void)
{
	static unsigned char buf[65536];
	struct stat st;
	unsigned long off, bad = (unsigned long)-1;
	int luo, session, fd, err;
	char why[96];

	printf("TAP version 13\n1..6\n");
	luo = luo_open_device();
	result(luo >= 0, "open_device", luo < 0 ? strerror(errno) : NULL);
	session = luo_retrieve_session(luo, session_name());
	result(session >= 0, "retrieve_session", session < 0 ? strerror(-session) : NULL);
	fd = luo_session_retrieve_fd(session, TOKEN);
	result(fd >= 0, "retrieve_fd", fd < 0 ? strerror(-fd) : NULL);
	int sized = fd >= 0 && fstat(fd, &st) == 0 && (unsigned long)st.st_size == size;
	snprintf(why, sizeof(why), "size %ld, expected %lu", fd >= 0 ? (long)st.st_size : -1L, size);
	result(sized, "size", sized ? NULL : why);
	for (off = 0; sized && off < size && bad == (unsigned long)-1; off += sizeof(buf)) {
		unsigned long n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		if (pread(fd, buf, n, off) != (ssize_t)n) {
			bad = off;
			break;
		}
		for (unsigned long i = 0; i < n; i++)
			if (buf[i] != byte_at(off + i)) {
				bad = off + i;
				break;
			}
	}
	snprintf(why, sizeof(why), "first wrong byte at offset %lu", bad);
	result(sized && bad == (unsigned long)-1, "contents", bad == (unsigned long)-1 ? NULL : why);
	err = session >= 0 ? luo_session_finish(session) : -EBADF;
	result(err == 0, "finish", err ? strerror(-err) : NULL);
	return failed;
}

int main(int argc, char *argv[])
{
	/* Unbuffered: what was printed survives a crash. */
	setvbuf(stdout, NULL, _IONBF, 0);
	read_config();
	if (argc == 2 && !strcmp(argv[1], "hold"))
		return hold();
	if (argc == 2 && !strcmp(argv[1], "verify"))
		return verify();
	fprintf(stderr, "usage: fdstore hold|verify\n");
	return 2;
}
