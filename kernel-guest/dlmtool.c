/*
 * dlmtool: takes one lock through the kernel's dlmfs in the interop test's guest, and says
 * what happens, one line per step on stdout (busybox has no way to open a file O_NONBLOCK or
 * to poll one). Built static by build.sh with the host's gcc.
 *
 *   dlmtool [-r] [-n] [-w TEXT] [-p SECS] [-s SECS] FILE
 *
 * Opens FILE read-write (an EX lock; created if missing), or read-only for -r (a PR lock),
 * with O_NONBLOCK for -n (a trylock: "open: ETXTBSY" and status 1 while another node holds it),
 * and prints "opened". Then prints the value block ("lvb=TEXT", up to its first NUL, other
 * bytes as \xNN), writes TEXT into it for -w ("wrote"), polls the file for up to SECS seconds
 * for -p ("poll: POLLIN" once a BAST has come, i.e. another node wants the lock; "poll:
 * timeout" otherwise), sleeps SECS seconds for -s, closes the file and prints "closed".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LVB_LEN 64

static void usage(void)
{
	fprintf(stderr, "usage: dlmtool [-r] [-n] [-w TEXT] [-p SECS] [-s SECS] FILE\n");
	exit(2);
}

static int seconds(const char *arg)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < 0 || v > 3600)
		usage();
	return (int)v;
}

int main(int argc, char **argv)
{
	int flags = O_RDWR | O_CREAT, poll_secs = -1, sleep_secs = 0, opt, fd, i;
	const char *text = NULL;
	unsigned char lvb[LVB_LEN];
	ssize_t n;

	setvbuf(stdout, NULL, _IONBF, 0);
	while ((opt = getopt(argc, argv, "rnw:p:s:")) != -1) {
		switch (opt) {
		case 'r': flags = (flags & ~O_RDWR) | O_RDONLY; break;
		case 'n': flags |= O_NONBLOCK; break;
		case 'w': text = optarg; break;
		case 'p': poll_secs = seconds(optarg); break;
		case 's': sleep_secs = seconds(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	fd = open(argv[optind], flags, 0600);
	if (fd < 0) {
		printf("open: %s\n", errno == ETXTBSY ? "ETXTBSY" : strerror(errno));
		return 1;
	}
	printf("opened\n");
	/* At offset 0 whatever came before: dlmfs refuses I/O past the value block. */
	n = pread(fd, lvb, sizeof(lvb), 0);
	if (n < 0) {
		printf("read: %s\n", strerror(errno));
		return 1;
	}
	printf("lvb=");
	for (i = 0; i < n && lvb[i] != '\0'; i++) {
		if (lvb[i] >= 0x20 && lvb[i] < 0x7f && lvb[i] != '\\')
			putchar(lvb[i]);
		else
			printf("\\x%02x", lvb[i]);
	}
	printf("\n");
	if (text) {
		if (pwrite(fd, text, strlen(text), 0) < 0) {
			printf("write: %s\n", strerror(errno));
			return 1;
		}
		printf("wrote\n");
	}
	if (poll_secs >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, poll_secs * 1000);

		if (r < 0)
			printf("poll: %s\n", strerror(errno));
		else if (r == 0)
			printf("poll: timeout\n");
		else if (p.revents & POLLIN)
			printf("poll: POLLIN\n");
		else
			printf("poll: revents 0x%x\n", (unsigned)p.revents);
	}
	if (sleep_secs > 0)
		sleep((unsigned)sleep_secs);
	close(fd);
	printf("closed\n");
	return 0;
}
