/*
 * nlmcast_recv: receive nlmcast raw frames with libc, and OpenSSL's libcrypto
 * for HMAC-SHA256 (authenticated frames).
 *
 *   nlmcast_recv [-x] [--key FILE] [--source-port N] [--insecure] GROUP:PORT [GROUP:PORT...]
 *                                    receive and print frames
 *   nlmcast_recv --decode [--key FILE --dest GROUP:PORT]
 *                                    decode hex datagrams from stdin
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
 * unless --insecure is given (then it warns) or --key: a key makes the
 * source check moot.
 *
 * With --key (the bridge's key file, nlmcast keygen), only frames whose
 * authentication trailer verifies are printed (PROTOCOL.md, Authenticated
 * frames): the tag is HMAC-SHA256, cut to 16 bytes, over the group address,
 * port and encoding (0: raw), then the datagram up to the tag.
 *
 * Each frame prints as one line (the format PROTOCOL.md gives for test
 * vectors; -x adds the payload in hex, otherwise it is left empty):
 *   ok kind=1 flags=0 family=0 group=1 epoch=... seq=7 time_ns=... len=1492 payload=...
 * and, for an event of a peer network namespace (flag NSID, 4), its id
 * after the flags:
 *   ok kind=1 flags=4 nsid=42 family=0 group=1 ...
 *
 * Private streams (proc, conntrack, other namespaces' events...) are sealed:
 * encrypted under a key only their readers hold (PROTOCOL.md, Sealed
 * frames). This example does not open them: it prints a sealed frame's
 * header as a line starting with "sealed", says once on stderr how to read
 * the stream (nlmcast listen --private, or the Python example), and counts
 * it.
 *
 * Build: cc -O2 -Wall -o nlmcast_recv nlmcast_recv.c -lcrypto   (Debian: libssl-dev)
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define HEADER_LEN 48
#define TRAILER_LEN 20 /* key id (4 bytes), then the tag (16) */
#define SEALED_TRAILER_LEN 32 /* a sealed frame's: key id (4), nonce (12), tag (16) */
#define FLAG_SEALED 32
#define MAX_GROUPS 64
#define MAX_KEYS 16

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const unsigned char *p) { return (uint32_t)be16(p) << 16 | be16(p + 2); }
static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static struct { uint32_t id; unsigned char secret[32]; } keys[MAX_KEYS];
static int nkeys = -1; /* -1: no --key, frames are not verified */
static const char *key_path;
static struct stat key_stat; /* of the file as loaded: a rotation changes it */

/* Read the key file: lines "ID CREATED SECRET", # comments. */
static int load_keys(const char *path)
{
	struct stat st;
	key_path = path;
	if (stat(path, &st) != 0) { perror(path); return -1; }
	key_stat = st;
	if (st.st_mode & 027) {
		fprintf(stderr, "%s: others can read or write it, and whoever reads it can forge frames (chmod 0640 %s)\n", path, path);
		return -1;
	}
	FILE *f = fopen(path, "r");
	if (!f) { perror(path); return -1; }
	char line[256], hex[65];
	nkeys = 0;
	while (fgets(line, sizeof line, f) && nkeys < MAX_KEYS) {
		unsigned id;
		if (line[0] == '#' || sscanf(line, "%x %*s %64s", &id, hex) != 2 || strlen(hex) != 64) continue;
		keys[nkeys].id = id;
		for (int i = 0; i < 32; i++) sscanf(hex + 2 * i, "%2hhx", &keys[nkeys].secret[i]);
		nkeys++;
	}
	fclose(f);
	if (nkeys == 0) { fprintf(stderr, "%s: no key (make one with: nlmcast keygen FILE)\n", path); return -1; }
	return 0;
}

/* Reload the key file if it changed (nlmcast keygen --rotate replaces it). */
static void reload_keys(void)
{
	static time_t next;
	struct stat st;
	if (nkeys < 0 || time(NULL) < next) return;
	next = time(NULL) + 1;
	if (stat(key_path, &st) != 0) return;
	if (st.st_ino != key_stat.st_ino || st.st_mtim.tv_sec != key_stat.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != key_stat.st_mtim.tv_nsec || st.st_size != key_stat.st_size)
		load_keys(key_path);
}

/* Check the trailer of raw datagram b, received on group:port. NULL: good. */
static const char *verify(const unsigned char *b, size_t n, const struct sockaddr_in *group)
{
	static unsigned char m[7 + 65536];
	if (n < HEADER_LEN + TRAILER_LEN || !(b[7] & 1)) return "unauthenticated";
	uint32_t id = be32(b + n - TRAILER_LEN);
	int k = 0;
	while (k < nkeys && keys[k].id != id) k++;
	if (k == nkeys) return "unknown-key";
	memcpy(m, &group->sin_addr, 4); /* the context: address, port, encoding */
	memcpy(m + 4, &group->sin_port, 2);
	m[6] = 0;
	memcpy(m + 7, b, n - 16);
	unsigned char tag[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	HMAC(EVP_sha256(), keys[k].secret, 32, m, 7 + n - 16, tag, &len);
	return CRYPTO_memcmp(tag, b + n - 16, 16) == 0 ? NULL : "bad-tag";
}

static unsigned long sealed_frames;

/* Decode one datagram and print its line. Returns 0 if it was a valid
 * frame, 1 if it was sealed (not opened here). */
static int print_frame(const unsigned char *b, size_t n, int hex, const struct sockaddr_in *group)
{
	if (n < HEADER_LEN) { puts("error short"); return -1; }
	if (memcmp(b, "NLMC", 4) != 0) { puts("error magic"); return -1; }
	if (b[4] != 1) { puts("error version"); return -1; }
	size_t hl = be16(b + 8);
	if (hl < HEADER_LEN || hl > n) { puts("error header-length"); return -1; }
	uint16_t flags = be16(b + 6);
	uint32_t plen = be32(b + 40);
	/* SEALED or AUTH: a trailer follows the payload */
	size_t end = n - ((flags & FLAG_SEALED) ? SEALED_TRAILER_LEN : (flags & 1) ? TRAILER_LEN : 0);
	if (end < hl || end > n || (uint64_t)plen != (uint64_t)(end - hl)) { puts("error length"); return -1; }
	if (flags & FLAG_SEALED) {
		if (sealed_frames++ == 0)
			fprintf(stderr, "nlmcast_recv: a private stream: its frames are sealed, and this example does not open them; "
				"read it with: nlmcast listen --private STREAM=KEYFILE (or examples/python/nlmcast_recv.py --private KEYFILE)\n");
		printf("sealed kind=%u flags=%u family=%u group=%u epoch=%016llx seq=%llu len=%u\n", b[5], flags,
		       be16(b + 10), be32(b + 12), (unsigned long long)be64(b + 16), (unsigned long long)be64(b + 24), plen);
		return 1;
	}
	const char *why = nkeys >= 0 ? verify(b, n, group) : NULL;
	if (why) { printf("error %s\n", why); return -1; }
	printf("ok kind=%u flags=%u", b[5], flags);
	if (flags & 4) /* NSID: from a peer network namespace, whose (signed) id is at offset 44 */
		printf(" nsid=%d", (int32_t)be32(b + 44));
	printf(" family=%u group=%u epoch=%016llx seq=%llu time_ns=%lld len=%u payload=",
	       be16(b + 10), be32(b + 12), (unsigned long long)be64(b + 16),
	       (unsigned long long)be64(b + 24), (long long)be64(b + 32), plen);
	if (hex)
		for (size_t i = hl; i < end; i++)
			printf("%02x", b[i]);
	putchar('\n');
	return 0;
}

/* --decode: one hex datagram per line on stdin (empty line: empty datagram). */
static int decode_stdin(const struct sockaddr_in *dest)
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
		print_frame(buf, n, 1, dest);
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

static int parse_group(const char *spec, struct sockaddr_in *sa)
{
	char addr[64];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof addr) {
		fprintf(stderr, "bad group %s: want GROUP:PORT, e.g. 239.255.78.1:17802\n", spec);
		return -1;
	}
	memcpy(addr, spec, (size_t)(colon - spec));
	addr[colon - spec] = 0;
	*sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1 || !IN_MULTICAST(ntohl(sa->sin_addr.s_addr))) {
		fprintf(stderr, "bad group %s: not an IPv4 multicast address\n", spec);
		return -1;
	}
	return 0;
}

static int open_group(const struct sockaddr_in sa)
{
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
	int hex = 0, decode = 0, ngroups = 0, insecure = 0, port = 1021, usage = 0;
	const char *specs[MAX_GROUPS], *dest = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-x") == 0) hex = 1;
		else if (strcmp(argv[i], "--decode") == 0) decode = 1;
		else if (strcmp(argv[i], "--insecure") == 0) insecure = 1;
		else if (strcmp(argv[i], "--source-port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) { if (load_keys(argv[++i]) != 0) return 1; }
		else if (strcmp(argv[i], "--dest") == 0 && i + 1 < argc) dest = argv[++i];
		else if (argv[i][0] == '-' || ngroups == MAX_GROUPS) usage = 1;
		else specs[ngroups++] = argv[i];
	}
	struct sockaddr_in groups[MAX_GROUPS];
	if (decode && !usage) {
		if (nkeys >= 0 && (!dest || parse_group(dest, &groups[0]) != 0)) {
			fprintf(stderr, "--decode --key needs --dest GROUP:PORT, where the datagrams were received\n");
			return 2;
		}
		return decode_stdin(&groups[0]);
	}
	if (usage || ngroups == 0 || port < 1 || port > 65535) {
		fprintf(stderr, "usage: %s [-x] [--key FILE] [--source-port N] [--insecure] GROUP:PORT [GROUP:PORT...] (up to %d)\n"
			"       %s --decode [--key FILE --dest GROUP:PORT] < hexlines\n"
			"find groups with: nlmcast groups\n", argv[0], MAX_GROUPS, argv[0]);
		return 2;
	}
	if (nkeys < 0 && untrusted_port(port, insecure) && !insecure) /* a key makes the port check moot */
		return 1;
	struct pollfd pfd[MAX_GROUPS];
	int nfd = 0;
	for (int i = 0; i < ngroups; i++) {
		if (parse_group(specs[i], &groups[i]) != 0 || (pfd[nfd].fd = open_group(groups[i])) < 0) return 1;
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
		reload_keys(); /* at least once a second: poll wakes up then */
		if (poll(pfd, (nfds_t)nfd, 1000) < 0) {
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
			if (print_frame(buf, (size_t)n, hex, &groups[i]) < 0) bad_frame++;
		}
	}
	fprintf(stderr, "dropped: %lu wrong source, %lu wrong interface; invalid or not authenticated frames: %lu; "
		"sealed frames not opened: %lu\n", bad_source, bad_if, bad_frame, sealed_frames);
	return 0;
}
