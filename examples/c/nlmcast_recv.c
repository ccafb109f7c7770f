/*
 * nlmcast_recv: receive nlmcast raw frames with nothing but libc.
 *
 *   nlmcast_recv [-x] [--source-port N] [--insecure] GROUP:PORT [GROUP:PORT...]
 *                                    receive and print frames
 *   nlmcast_recv --decode            decode hex datagrams from stdin
 *
 * For each group: a socket bound to the group address (not INADDR_ANY), so
 * it gets only that group's datagrams; SO_REUSEADDR, so every receiver on
 * the host gets its own copy; IP_MULTICAST_ALL off; the group joined with
 * imr_interface = 127.0.0.1 (the interface goes in imr_interface, the group
 * in imr_multiaddr). Datagrams not from 127.0.0.1 and the bridge's source
 * port (--source-port, default 1021), or not received on lo, are dropped
 * and counted.
 *
 * That check proves the root-run bridge sent a frame only where no other
 * user can bind that port: where it is below net.ipv4.ip_unprivileged_port_start
 * (container runtimes set it to 0). Where it is not, it refuses to start,
 * unless --insecure is given; then it warns.
 *
 * Each frame prints as one line (the format PROTOCOL.md gives for test
 * vectors; -x adds the payload in hex, otherwise it is left empty):
 *   ok kind=1 flags=0 family=0 group=1 epoch=... seq=7 time_ns=... len=1492 payload=...
 *
 * Build: cc -O2 -Wall -o nlmcast_recv nlmcast_recv.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADER_LEN 48
#define MAX_GROUPS 64

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const unsigned char *p) { return (uint32_t)be16(p) << 16 | be16(p + 2); }
static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

/* Decode one datagram and print its line. Returns 0 if it was a valid frame. */
static int print_frame(const unsigned char *b, size_t n, int hex)
{
	if (n < HEADER_LEN) { puts("error short"); return -1; }
	if (memcmp(b, "NLMC", 4) != 0) { puts("error magic"); return -1; }
	if (b[4] != 1) { puts("error version"); return -1; }
	size_t hl = be16(b + 8);
	if (hl < HEADER_LEN || hl > n) { puts("error header-length"); return -1; }
	uint16_t flags = be16(b + 6);
	uint32_t plen = be32(b + 40);
	if (flags & 1) { puts("error auth"); return -1; }
	if ((uint64_t)plen != (uint64_t)(n - hl)) { puts("error length"); return -1; }
	printf("ok kind=%u flags=%u family=%u group=%u epoch=%016llx seq=%llu time_ns=%lld len=%u payload=",
	       b[5], flags, be16(b + 10), be32(b + 12), (unsigned long long)be64(b + 16),
	       (unsigned long long)be64(b + 24), (long long)be64(b + 32), plen);
	if (hex)
		for (size_t i = hl; i < n; i++)
			printf("%02x", b[i]);
	putchar('\n');
	return 0;
}

/* --decode: one hex datagram per line on stdin (empty line: empty datagram). */
static int decode_stdin(void)
{
	static char line[2 * 70000];
	static unsigned char buf[70000];
	while (fgets(line, sizeof line, stdin)) {
		size_t len = strcspn(line, "\r\n"), n = 0;
		for (size_t i = 0; i + 1 < len && n < sizeof buf; i += 2) {
			unsigned v;
			if (sscanf(line + i, "%2x", &v) != 1) break;
			buf[n++] = (unsigned char)v;
		}
		print_frame(buf, n, 1);
	}
	return 0;
}

/* Whether only root can send from port: 0 if so, else 1 after saying why
 * (refusing unless insecure). */
static int untrusted_port(int port, int insecure)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	int start = -1;
	if (f) {
		if (fscanf(f, "%d", &start) != 1) start = -1;
		fclose(f);
	}
	if (start > port) return 0;
	if (start < 0)
		fprintf(stderr, "nlmcast_recv: %scannot read net.ipv4.ip_unprivileged_port_start, so cannot tell whether "
			"only root can send from port %d", insecure ? "warning: " : "", port);
	else
		fprintf(stderr, "nlmcast_recv: %snet.ipv4.ip_unprivileged_port_start is %d in this network namespace, "
			"so any user can send from port %d", insecure ? "warning: " : "", start, port);
	if (insecure)
		fprintf(stderr, ": the source check proves nothing, and frames are not authenticated (--insecure)\n");
	else
		fprintf(stderr, ": the source check proves nothing. Give the receiver the bridge's key "
			"(frames are then authenticated) or, knowing the risk, use --insecure\n");
	return 1;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int open_group(const char *spec)
{
	char addr[64];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof addr) {
		fprintf(stderr, "bad group %s: want GROUP:PORT, e.g. 239.255.78.1:17802\n", spec);
		return -1;
	}
	memcpy(addr, spec, (size_t)(colon - spec));
	addr[colon - spec] = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || !IN_MULTICAST(ntohl(sa.sin_addr.s_addr))) {
		fprintf(stderr, "bad group %s: not an IPv4 multicast address\n", spec);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) { perror("socket"); return -1; }
	int one = 1, zero = 0, rcvbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
	setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); close(fd); return -1; }
	struct ip_mreq mreq = { .imr_multiaddr = sa.sin_addr };
	mreq.imr_interface.s_addr = htonl(INADDR_LOOPBACK); /* the interface: lo */
	if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0) {
		perror("IP_ADD_MEMBERSHIP");
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	int hex = 0, insecure = 0, port = 1021, first = 1;
	if (argc > 1 && strcmp(argv[1], "--decode") == 0)
		return decode_stdin();
	for (; first < argc && argv[first][0] == '-'; first++) {
		if (strcmp(argv[first], "-x") == 0) hex = 1;
		else if (strcmp(argv[first], "--insecure") == 0) insecure = 1;
		else if (strcmp(argv[first], "--source-port") == 0 && first + 1 < argc) port = atoi(argv[++first]);
		else break;
	}
	if (argc <= first || argc - first > MAX_GROUPS || argv[first][0] == '-' || port < 1 || port > 65535) {
		fprintf(stderr, "usage: %s [-x] [--source-port N] [--insecure] GROUP:PORT [GROUP:PORT...] (up to %d)\n"
			"       %s --decode < hexlines\nfind groups with: nlmcast groups\n", argv[0], MAX_GROUPS, argv[0]);
		return 2;
	}
	if (untrusted_port(port, insecure) && !insecure)
		return 1;
	struct pollfd pfd[MAX_GROUPS];
	int nfd = 0;
	for (int i = first; i < argc; i++) {
		if ((pfd[nfd].fd = open_group(argv[i])) < 0) return 1;
		pfd[nfd++].events = POLLIN;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	fprintf(stderr, "ready\n");

	unsigned lo_index = if_nametoindex("lo");
	static unsigned char buf[65536];
	unsigned long bad_source = 0, bad_if = 0, bad_frame = 0;
	while (!stop) {
		if (poll(pfd, (nfds_t)nfd, -1) < 0) {
			if (errno == EINTR) continue;
			perror("poll");
			return 1;
		}
		for (int i = 0; i < nfd; i++) {
			if (!(pfd[i].revents & POLLIN)) continue;
			struct sockaddr_in from;
			char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct iovec iov = { buf, sizeof buf };
			struct msghdr msg = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
					      .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
			ssize_t n = recvmsg(pfd[i].fd, &msg, MSG_DONTWAIT);
			if (n < 0) continue;
			unsigned ifindex = 0;
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
				if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
					ifindex = (unsigned)((struct in_pktinfo *)CMSG_DATA(c))->ipi_ifindex;
			if (ifindex != lo_index) { bad_if++; continue; }
			if (from.sin_addr.s_addr != htonl(INADDR_LOOPBACK) || ntohs(from.sin_port) != port) {
				bad_source++;
				continue;
			}
			if (print_frame(buf, (size_t)n, hex) != 0) bad_frame++;
		}
	}
	fprintf(stderr, "dropped: %lu wrong source, %lu wrong interface; invalid frames: %lu\n",
		bad_source, bad_if, bad_frame);
	return 0;
}
