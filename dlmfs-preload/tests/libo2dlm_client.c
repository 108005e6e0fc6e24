/* A client of Debian's libo2dlm (ocfs2-tools-dev), as programs written for the kernel's
 * dlmfs use it. Argument 1 and 2: two dlmfs mounts (two nodes). Prints OK on success; every
 * failure prints the failing step and the com_err message and exits 1. */
#include <stdio.h>
#include <string.h>
#include <o2dlm/o2dlm.h>

static void bast(void *arg)
{
	(void)arg;
}

static int check(const char *step, errcode_t ret, errcode_t want)
{
	if (ret != want) {
		printf("%s: got %ld (%s), want %ld\n", step, (long)ret,
		       ret ? error_message(ret) : "success", (long)want);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct o2dlm_ctxt *n1, *n2;
	char lvb[64];
	unsigned int n = 0;
	const char *msg = "from libo2dlm";

	if (argc != 3)
		return 2;
	initialize_o2dl_error_table();
	if (check("initialize node 1", o2dlm_initialize(argv[1], "capp", &n1), 0) ||
	    check("initialize node 2", o2dlm_initialize(argv[2], "capp", &n2), 0))
		return 1;
	if (check("EX lock on node 1", o2dlm_lock(n1, "L", 0, O2DLM_LEVEL_EXMODE), 0) ||
	    check("write LVB", o2dlm_write_lvb(n1, "L", msg, strlen(msg) + 1, &n), 0))
		return 1;
	if (n != strlen(msg) + 1) {
		printf("write LVB: wrote %u bytes\n", n);
		return 1;
	}
	if (check("PR trylock on node 2 while node 1 holds EX",
		  o2dlm_lock(n2, "L", O2DLM_TRYLOCK, O2DLM_LEVEL_PRMODE),
		  O2DLM_ET_TRYLOCK_FAILED))
		return 1;
	if (check("unlock on node 1", o2dlm_unlock(n1, "L"), 0) ||
	    check("PR lock on node 2", o2dlm_lock(n2, "L", 0, O2DLM_LEVEL_PRMODE), 0) ||
	    check("read LVB", o2dlm_read_lvb(n2, "L", lvb, sizeof(lvb), &n), 0))
		return 1;
	if (strcmp(lvb, msg) != 0) {
		printf("read LVB: got \"%.64s\"\n", lvb);
		return 1;
	}
	/* BAST support is gated on the kernel module's capabilities file. */
	int poll_fd = -1;
	if (check("lock with BAST", o2dlm_lock_with_bast(n1, "B", 0, O2DLM_LEVEL_EXMODE,
							 bast, NULL, &poll_fd), 0) ||
	    check("unlock the BAST lock", o2dlm_unlock(n1, "B"), 0))
		return 1;
	if (poll_fd < 0) {
		printf("lock with BAST: no poll descriptor\n");
		return 1;
	}
	if (check("unlock on node 2", o2dlm_unlock(n2, "L"), 0) ||
	    check("destroy node 1", o2dlm_destroy(n1), 0) ||
	    check("destroy node 2", o2dlm_destroy(n2), 0))
		return 1;
	printf("OK\n");
	return 0;
}
