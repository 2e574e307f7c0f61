// SPDX-License-Identifier: GPL-2.0-only
/*
 * luo-store-service: a systemd service that keeps state across `systemctl kexec` the way systemd
 * 262 offers it, in its fd store (FileDescriptorStorePreserve=yes). Three modes, one unit each:
 *
 *   memfd          stores a patterned, sealed memfd under the name "pattern"; systemd preserves
 *                  it in LUO by token and gives it back after the kexec.
 *   own-session    creates a LUO session of its own (/dev/liveupdate), preserves a patterned
 *                  memfd in it and hands the session fd to the fd store as "session"; systemd
 *                  carries the session by name.
 *   luo-session N  is handed a session by systemd itself (LUOSession=N) and preserves a
 *                  patterned memfd in it.
 *
 * Started again after the kexec (the units are WantedBy=multi-user.target), it finds what its
 * fd store gave back and checks every byte, the size and the seals. It prints TAP to stdout, which
 * systemd sends to the journal, where the harness's `journal` step reads it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "libliveupdate.h"

#define SIZE (1UL << 20)
#define TOKEN 1
#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW)
#define OWN_SESSION "luo-harness-own"
#define SESSION_LINK "anon_inode:[luo_session] "

static int failed, number;
static unsigned int seed;

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

static int patterned_memfd(void)
{
	unsigned char *p;
	int fd = memfd_create("luo-store-service", MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, SIZE))
		return -1;
	p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	for (unsigned long i = 0; i < SIZE; i++)
		p[i] = byte_at(i);
	munmap(p, SIZE);
	if (fcntl(fd, F_ADD_SEALS, SEALS))
		return -1;
	return fd;
}

/* The first byte that differs, or -1 when size and contents are what patterned_memfd wrote. */
static long first_difference(int fd)
{
	struct stat st;
	unsigned char *p;
	long bad = -1;

	if (fstat(fd, &st) || (unsigned long)st.st_size != SIZE)
		return 0;
	p = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 0;
	for (unsigned long i = 0; i < SIZE && bad < 0; i++)
		if (p[i] != byte_at(i))
			bad = i;
	munmap(p, SIZE);
	return bad;
}

/* The fd systemd passed under `name` (LISTEN_FDS, LISTEN_FDNAMES), or -1. */
static int listened(const char *name)
{
	const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	char *names = getenv("LISTEN_FDNAMES"), *save = NULL, *tok;
	int count, fd = 3;

	if (!pid || atoi(pid) != getpid() || !n || !names)
		return -1;
	count = atoi(n);
	names = strdup(names);
	for (tok = strtok_r(names, ":", &save); tok && fd < 3 + count; tok = strtok_r(NULL, ":", &save), fd++)
		if (!strcmp(tok, name))
			return fd;
	return -1;
}

/* sd_pid_notify_with_fds(), without libsystemd: one datagram to $NOTIFY_SOCKET. */
static int notify(const char *msg, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
	socklen_t len;
	int s, r;

	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, path);
	len = offsetof(struct sockaddr_un, sun_path) + strlen(path);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	mh.msg_namelen = len;
	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	r = sendmsg(s, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
	close(s);
	return r;
}

/*
 * sd_notify_barrier(): systemd has handled every message sent before it once the pipe's write end,
 * sent with BARRIER=1, is closed. Without it a service that exits at once can lose its FDSTORE=1.
 */
static int barrier(void)
{
	int p[2], r;
	struct pollfd pfd;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	r = notify("BARRIER=1", p[1]);
	close(p[1]);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (!r && poll(&pfd, 1, 5000) != 1)
		r = -ETIMEDOUT;
	close(p[0]);
	return r;
}

static void store(int fd, const char *name)
{
	char msg[128];
	int r;

	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = notify(msg, fd);
	if (!r)
		r = barrier();
	result(!r, "handed to the fd store", r ? strerror(-r) : name);
}

/* luo_harness.boot from the command line: 0 on the cold boot, 1 after one kexec. */
static int boot_index(void)
{
	char buf[4096] = "";
	FILE *f = fopen("/proc/cmdline", "r");
	const char *p;

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	p = strstr(buf, "luo_harness.boot=");
	return p ? atoi(p + strlen("luo_harness.boot=")) : 0;
}

/*
 * What the fd store gave back under `name`. After a kexec an empty store is a loss, reported as
 * such; the service then starts afresh, as a real one would.
 */
static int from_store(const char *name)
{
	int fd = listened(name);
	char detail[96];

	if (boot_index() > 0) {
		snprintf(detail, sizeof(detail), "%s", fd < 0 ? "lost across the kexec" : name);
		result(fd >= 0, "the fd store gave back what it held before the kexec", detail);
	}
	printf("# %s\n", fd < 0 ? "nothing in the fd store: starting afresh" : "found in the fd store");
	return fd;
}

static void link_of(int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	buf[n < 0 ? 0 : n] = 0;
}

static void check_memfd(int fd)
{
	long bad = first_difference(fd);
	char detail[64];
	int seals = fcntl(fd, F_GET_SEALS);

	snprintf(detail, sizeof(detail), "first difference at byte %ld", bad);
	result(bad < 0, "size and every byte as stored", bad < 0 ? "1 MiB" : detail);
	snprintf(detail, sizeof(detail), "seals 0x%x", seals);
	result(seals == SEALS, "seals as stored", detail);
}

/* A session fd from the fd store after the kexec: what it looks like, and the memfd in it. */
static void check_session(int session, const char *expected_name)
{
	char link[256], name[64] = "";
	int fd;

	char what[384];

	link_of(session, link, sizeof(link));
	/* The link and the name in the case itself: they are what the report keeps per design. */
	snprintf(what, sizeof(what), "still a LUO session fd (%s)", link);
	result(!strncmp(link, SESSION_LINK, strlen(SESSION_LINK)), what, NULL);
	luo_get_session_name(session, name, sizeof(name));
	snprintf(what, sizeof(what), "its name is %s", name);
	result(!expected_name || !strcmp(name, expected_name), what, NULL);
	fd = luo_session_retrieve_fd(session, TOKEN);
	result(fd >= 0, "memfd retrieved from it", fd < 0 ? strerror(-fd) : NULL);
	if (fd >= 0)
		check_memfd(fd);
	result(!luo_session_finish(session), "session finished", NULL);
}

static void preserve_in(int session)
{
	int memfd = patterned_memfd();
	int r = memfd < 0 ? -errno : luo_session_preserve_fd(session, memfd, TOKEN);

	result(!r, "patterned memfd preserved in the session", r ? strerror(-r) : NULL);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	seed = (unsigned int)strlen(mode) * 7919;
	printf("TAP version 13\n");
	if (!strcmp(mode, "memfd")) {
		fd = from_store("pattern");
		if (fd < 0) {
			fd = patterned_memfd();
			result(fd >= 0, "patterned sealed memfd", fd < 0 ? strerror(errno) : NULL);
			store(fd, "pattern");
		} else {
			check_memfd(fd);
		}
	} else if (!strcmp(mode, "own-session")) {
		fd = from_store("session");
		if (fd < 0) {
			int luo = luo_open_device();

			result(luo >= 0, "open /dev/liveupdate", luo < 0 ? strerror(errno) : NULL);
			fd = luo < 0 ? -1 : luo_create_session(luo, OWN_SESSION);
			result(fd >= 0, "create session " OWN_SESSION, fd < 0 ? strerror(-fd) : NULL);
			if (fd >= 0)
				preserve_in(fd);
			/* One opener at a time: systemd-shutdown opens the device for the kexec. */
			close(luo);
			store(fd, "session");
		} else {
			check_session(fd, OWN_SESSION);
		}
	} else if (!strcmp(mode, "luo-session") && argc > 2) {
		int probe;

		fd = listened(argv[2]);
		result(fd >= 0, "systemd handed over the session", argv[2]);
		if (fd >= 0) {
			/* Retrieving from a created session is EINVAL: that is a first start. */
			probe = luo_session_retrieve_fd(fd, TOKEN);
			if (boot_index() > 0)
				result(probe != -EINVAL,
				       "the session systemd handed over is the one from before the kexec",
				       probe == -EINVAL ? "lost across the kexec: a new one" : NULL);
			if (probe == -EINVAL) {
				printf("# a new session: preserving\n");
				preserve_in(fd);
			} else {
				if (probe >= 0)
					close(probe);
				check_session(fd, NULL);
			}
		}
	} else {
		printf("Bail out! usage: %s memfd | own-session | luo-session NAME\n", argv[0]);
		return 2;
	}
	printf("1..%d\n", number);
	return failed;
}
