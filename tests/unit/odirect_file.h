/* For the AIO unit tests: aligned buffers and a written (not sparse) file
 * out of the page cache, in a new temporary directory. Header only. */
#ifndef NDFS_TEST_ODIRECT_FILE_H
#define NDFS_TEST_ODIRECT_FILE_H

#include <criterion/criterion.h>

#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLK 4096

/* len bytes of fill, aligned for O_DIRECT; free() it. */
static inline void *aligned(size_t len, int fill)
{
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, BLK, len), 0);
    memset(p, fill, len);
    return p;
}

/* *dir: a new temporary directory; the path of a file in it of blocks
 * zeroed blocks (g_free both). */
static inline char *odirect_file_new(char **dir, size_t blocks)
{
    GError *err = NULL;
    *dir = g_dir_make_tmp(NULL, &err);
    cr_assert_not_null(*dir);
    char *path = g_build_filename(*dir, "disk", NULL);
    int wfd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    cr_assert_geq(wfd, 0);
    /* written, not sparse: an overwrite needs no allocation */
    void *zero = aligned(blocks * BLK, 0);
    cr_assert_eq(pwrite(wfd, zero, blocks * BLK, 0), (ssize_t)(blocks * BLK));
    cr_assert_eq(fsync(wfd), 0);
    /* no cached pages: an O_DIRECT RWF_NOWAIT write over them would have to
     * wait for their invalidation, and says EAGAIN */
    cr_assert_eq(posix_fadvise(wfd, 0, 0, POSIX_FADV_DONTNEED), 0);
    free(zero);
    close(wfd);
    return path;
}

/* The file at path holds want (len bytes, at most BLK) at off, read
 * through a plain descriptor. */
static inline void assert_file_holds(const char *path, off_t off, const void *want, size_t len)
{
    char plain[BLK];
    cr_assert_leq(len, sizeof plain);
    int pfd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(pfd, 0);
    cr_assert_eq(pread(pfd, plain, len, off), (ssize_t)len);
    cr_assert_eq(memcmp(plain, want, len), 0, "the file holds what was written");
    close(pfd);
}

#endif
