/*
 * relay: the reference relay of nlmcast bench, the simplest relay a C
 * programmer would write. One netlink socket joined to rtnetlink groups, a
 * blocking recvmsg, and one sendto per netlink message to a loopback
 * multicast group (the base address plus the netlink group, like nlmcast's
 * stream map), the message as it came: no framing, no batching, no
 * threads, no timers.
 *
 *   relay BASE PORT GROUP...     e.g. relay 239.255.77.0 17991 1 5 7
 *
 * It prints "ready" once joined, and on SIGTERM the messages it relayed
 * and the sends that failed ("relayed N failed M"). nlmcast bench builds
 * it with the system cc at run time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: relay BASE PORT GROUP...\n");
		return 2;
	}
	struct in_addr base;
	if (inet_pton(AF_INET, argv[1], &base) != 1) {
		fprintf(stderr, "relay: bad base %s\n", argv[1]);
		return 2;
	}
	int port = atoi(argv[2]);

	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl < 0) { perror("relay: netlink socket"); return 1; }
	int rcvbuf = 4 << 20, on = 1;
	setsockopt(nl, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	if (bind(nl, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("relay: bind"); return 1; }
	for (int i = 3; i < argc; i++) {
		int g = atoi(argv[i]);
		if (setsockopt(nl, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof g) < 0) {
			perror("relay: NETLINK_ADD_MEMBERSHIP");
			return 1;
		}
	}
	/* To know each message's group, as the bridge does. */
	setsockopt(nl, SOL_NETLINK, NETLINK_PKTINFO, &on, sizeof on);

	int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (udp < 0) { perror("relay: udp socket"); return 1; }
	unsigned char ttl = 0;
	struct in_addr lo = { .s_addr = htonl(INADDR_LOOPBACK) };
	setsockopt(udp, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
	if (setsockopt(udp, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) < 0) {
		perror("relay: IP_MULTICAST_IF");
		return 1;
	}

	struct sigaction act = { .sa_handler = on_term }; /* no SA_RESTART: recvmsg returns EINTR */
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	printf("ready\n");
	fflush(stdout);

	static char buf[65536];
	char cbuf[CMSG_SPACE(sizeof(struct nl_pktinfo))];
	unsigned long relayed = 0, failed = 0;
	while (!stop) {
		struct iovec iov = { buf, sizeof buf };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
		ssize_t n = recvmsg(nl, &mh, 0);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			perror("relay: recvmsg");
			return 1;
		}
		unsigned group = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_NETLINK && c->cmsg_type == NETLINK_PKTINFO)
				group = ((struct nl_pktinfo *)CMSG_DATA(c))->group;
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
		to.sin_addr.s_addr = htonl(ntohl(base.s_addr) + group);
		int len = n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (sendto(udp, h, h->nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0)
				failed++;
			else
				relayed++;
		}
	}
	printf("relayed %lu failed %lu\n", relayed, failed);
	return 0;
}
