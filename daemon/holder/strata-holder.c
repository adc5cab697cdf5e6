/*
 * strata-holder: keeps the /dev/fuse fd of every mount stratad serves, so that a crash, stop or
 * upgrade of stratad leaves the mounts alive (their requests wait in the kernel); the next stratad
 * gets the fds back and resumes serving. It does nothing else: no request of a mount is ever read
 * here. One loop over epoll, fixed tables, every message checked before it is used; it exits when
 * it keeps nothing and no client has been connected for a while. Written in C so that it costs
 * about 1 MiB, not a node process. See README, "stratad: mounts that outlive the daemon".
 *
 * Protocol (daemon/holder/protocol.ts is the other side): one SOCK_SEQPACKET message per request
 * or reply, a 16-byte header then the key then the state (the rest of the message); fds go along
 * as SCM_RIGHTS. Sizes are what was received, never what a message claims.
 *
 * Usage: strata-holder SOCKET
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

enum {
	OP_HELLO = 1, /* -> OK */
	OP_PUT = 2,   /* key, state, one fd: keep it (replacing what the key had) -> OK */
	OP_DEL = 3,   /* key: close and forget -> OK */
	OP_LIST = 4,  /* -> ENTRY (key, state, fd) per kept fd, then END */
	OP_OK = 16,
	OP_ERROR = 17, /* the rest is a message */
	OP_ENTRY = 18,
	OP_END = 19,
};

struct header {
	uint32_t op;
	uint32_t key_len;
	uint32_t count; /* OK: entries kept; END: entries sent */
	uint32_t pid;   /* OK: the holder's pid */
};

#define MAX_MESSAGE (1 << 20)   /* protocol.ts MAX_MESSAGE */
#define MAX_KEY 4096
#define MAX_ENTRIES 8192
#define MAX_KEPT_BYTES (64u << 20) /* keys and states of all entries together */
#define MAX_CLIENTS 64
#define MAX_FDS_IN 4            /* a message carrying more is refused (and they are closed) */
#define IDLE_EXIT_MS 2000
#define SEND_TIMEOUT_S 5        /* a client that stops reading is dropped, never waited on for ever */

struct kept {
	int fd;
	uint32_t key_len;
	uint32_t state_len;
	char *data; /* key, then state */
};

static struct kept kept[MAX_ENTRIES];
static unsigned nkept;
static size_t kept_bytes;
static int clients[MAX_CLIENTS];
static unsigned nclients;
static int ep = -1;
static unsigned char msg[MAX_MESSAGE];

static void forget_at(unsigned i)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, kept[i].fd, NULL);
	close(kept[i].fd);
	kept_bytes -= (size_t)kept[i].key_len + kept[i].state_len;
	free(kept[i].data);
	kept[i] = kept[--nkept];
}

static int find_key(const char *key, uint32_t len)
{
	for (unsigned i = 0; i < nkept; i++)
		if (kept[i].key_len == len && memcmp(kept[i].data, key, len) == 0)
			return (int)i;
	return -1;
}

static void drop_client(unsigned i)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, clients[i], NULL);
	close(clients[i]);
	clients[i] = clients[--nclients];
}

/* Sends header + key + body with at most one fd; 0 or -1 (then the client is to be dropped). */
static int send_msg(int sock, uint32_t op, uint32_t count, const char *key, uint32_t key_len, const char *body, size_t body_len, int fd)
{
	struct header h = { op, key_len, count, (uint32_t)getpid() };
	struct iovec iov[3] = { { &h, sizeof h }, { (void *)key, key_len }, { (void *)body, body_len } };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
	if (fd >= 0) {
		memset(&ctl, 0, sizeof ctl);
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)(sizeof h + key_len + body_len) ? 0 : -1;
}

static int reply_ok(int sock)
{
	return send_msg(sock, OP_OK, nkept, NULL, 0, NULL, 0, -1);
}

static int reply_error(int sock, const char *text)
{
	return send_msg(sock, OP_ERROR, 0, NULL, 0, text, strlen(text), -1);
}

/* Keeps fd under key (replacing what the key had): NULL, or why not (the caller still owns fd). */
static const char *keep(const char *key, uint32_t key_len, const char *state, size_t state_len, int fd)
{
	int at = find_key(key, key_len);
	size_t freed = at >= 0 ? (size_t)kept[at].key_len + kept[at].state_len : 0;
	if (at < 0 && nkept == MAX_ENTRIES)
		return "the holder keeps as many mounts as it can";
	if (kept_bytes - freed + key_len + state_len > MAX_KEPT_BYTES)
		return "the holder keeps as much state as it can";
	char *data = malloc((size_t)key_len + state_len); /* at most MAX_MESSAGE: what was received */
	if (data == NULL)
		return "out of memory";
	/* No events asked: only EPOLLERR/EPOLLHUP, when the connection is aborted or unmounted. */
	struct epoll_event ev = { .events = 0, .data.fd = fd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(data);
		return "cannot watch that fd";
	}
	if (at >= 0)
		forget_at((unsigned)at);
	memcpy(data, key, key_len);
	memcpy(data + key_len, state, state_len);
	kept[nkept++] = (struct kept){ fd, key_len, (uint32_t)state_len, data };
	kept_bytes += (size_t)key_len + state_len;
	return NULL;
}

static int list(int sock)
{
	for (unsigned i = 0; i < nkept; i++) {
		const struct kept *k = &kept[i];
		if (send_msg(sock, OP_ENTRY, 0, k->data, k->key_len, k->data + k->key_len, k->state_len, k->fd) < 0)
			return -1;
	}
	return send_msg(sock, OP_END, nkept, NULL, 0, NULL, 0, -1);
}

/* Reads and answers one request; -1 when the client is gone or broke the protocol's framing. */
static int serve(int sock)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_IN)];
	} ctl;
	struct iovec iov = { msg, sizeof msg };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	int fds[MAX_FDS_IN];
	unsigned nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t j = 0; j < count; j++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof fd);
			if (nfds < MAX_FDS_IN)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0) { /* the client closed */
		for (unsigned j = 0; j < nfds; j++)
			close(fds[j]);
		return -1;
	}
	struct header h;
	const char *why = NULL;
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		why = "message too large";
	else if ((size_t)n < sizeof h)
		why = "message shorter than its header";
	if (why == NULL) {
		memcpy(&h, msg, sizeof h);
		if (h.key_len > MAX_KEY || h.key_len > (size_t)n - sizeof h)
			why = "bad key length";
		else if (h.op == OP_PUT && (nfds != 1 || h.key_len == 0))
			why = "put needs a key and one fd";
		else if (h.op != OP_PUT && nfds != 0)
			why = "only put sends an fd";
		else if (h.op == OP_DEL && h.key_len == 0)
			why = "del needs a key";
	}
	if (why != NULL) {
		for (unsigned j = 0; j < nfds; j++)
			close(fds[j]);
		return reply_error(sock, why);
	}
	const char *key = (const char *)msg + sizeof h;
	const char *body = key + h.key_len;
	size_t body_len = (size_t)n - sizeof h - h.key_len;
	switch (h.op) {
	case OP_HELLO:
		return reply_ok(sock);
	case OP_PUT:
		why = keep(key, h.key_len, body, body_len, fds[0]);
		if (why == NULL)
			return reply_ok(sock);
		close(fds[0]);
		return reply_error(sock, why);
	case OP_DEL: {
		int at = find_key(key, h.key_len);
		if (at >= 0)
			forget_at((unsigned)at);
		return reply_ok(sock);
	}
	case OP_LIST:
		return list(sock);
	default:
		return reply_error(sock, "unknown request");
	}
}

static void accept_client(int listen_fd)
{
	int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	struct ucred cred;
	socklen_t len = sizeof cred;
	struct timeval tv = { SEND_TIMEOUT_S, 0 };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = c };
	/* Only the holder's own user (the socket is 0600 too). */
	if (nclients == MAX_CLIENTS || getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != getuid() ||
	    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) {
		close(c);
		return;
	}
	clients[nclients++] = c;
}

int main(int argc, char **argv)
{
	if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "usage: strata-holder SOCKET (a path of at most 107 bytes)\n");
		return 2;
	}
	const char *path = argv[1];
	/* Signals that would end a daemon by accident (a closed terminal, ^C to its group) are ignored. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (chdir("/") < 0)
		return 1;
	/* Only what is handed over is kept: nothing inherited from the process that started it. */
	close_range(3, ~0u, 0);

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (listen_fd < 0) {
		perror("strata-holder: socket");
		return 1;
	}
	unlink(path);
	mode_t old = umask(0177); /* created 0600: never a moment where others may connect */
	int b = bind(listen_fd, (struct sockaddr *)&addr, sizeof addr);
	umask(old);
	struct stat own;
	if (b < 0 || stat(path, &own) < 0 || listen(listen_fd, 64) < 0) {
		perror("strata-holder: bind");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.fd = listen_fd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &lev) < 0) {
		perror("strata-holder: epoll");
		return 1;
	}

	struct epoll_event events[64];
	for (;;) {
		int idle = nkept == 0 && nclients == 0;
		int n = epoll_wait(ep, events, 64, idle ? IDLE_EXIT_MS : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0 && nkept == 0 && nclients == 0)
			break;
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd == listen_fd) {
				accept_client(listen_fd);
				continue;
			}
			unsigned j;
			for (j = 0; j < nclients && clients[j] != fd; j++)
				;
			if (j < nclients) {
				if (serve(fd) < 0)
					drop_client(j);
				continue;
			}
			for (j = 0; j < nkept && kept[j].fd != fd; j++)
				;
			if (j < nkept && (events[i].events & (EPOLLERR | EPOLLHUP)))
				forget_at(j); /* the mount is gone: nothing left to keep */
		}
	}
	close(listen_fd);
	/* A holder started after this one closed its socket may have bound the same path: leave that one. */
	struct stat now;
	if (stat(path, &now) == 0 && now.st_ino == own.st_ino && now.st_dev == own.st_dev)
		unlink(path);
	return 0;
}
