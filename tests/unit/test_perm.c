/* Who may change the CCD, and the lookups behind it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <glib.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ndfs/perm.h"

#define NO_ADMIN_GROUP ((gid_t)-1)

Test(perm, root_may_always_change)
{
    struct ndfs_peer root = {.pid = 1, .uid = 0, .gid = 0};
    cr_assert(ndfs_perm_may_change(&root, NO_ADMIN_GROUP, NULL, 0));
    cr_assert(ndfs_perm_may_change(&root, 1234, NULL, 0));
    struct ndfs_peer root_other_gid = {.pid = 1, .uid = 0, .gid = 100};
    cr_assert(ndfs_perm_may_change(&root_other_gid, 1234, NULL, 0));
}

Test(perm, admin_group_member_by_primary_group)
{
    struct ndfs_peer alice = {.pid = 10, .uid = 1000, .gid = 1234};
    gid_t groups[] = {1234};
    cr_assert(ndfs_perm_may_change(&alice, 1234, NULL, 0));
    cr_assert(ndfs_perm_may_change(&alice, 1234, groups, 1));
}

Test(perm, admin_group_member_by_supplementary_group)
{
    struct ndfs_peer bob = {.pid = 11, .uid = 1001, .gid = 1001};
    gid_t groups[] = {1001, 27, 1234, 100};
    cr_assert(ndfs_perm_may_change(&bob, 1234, groups, 4));
    /* only the first ngroups entries count */
    cr_assert_not(ndfs_perm_may_change(&bob, 1234, groups, 2));
}

Test(perm, non_member_may_not_change)
{
    struct ndfs_peer carol = {.pid = 12, .uid = 1002, .gid = 1002};
    gid_t groups[] = {1002, 27, 100};
    cr_assert_not(ndfs_perm_may_change(&carol, 1234, groups, 3));
    cr_assert_not(ndfs_perm_may_change(&carol, 1234, NULL, 0));
}

Test(perm, without_admin_group_only_root)
{
    /* a peer whose groups happen to include (gid_t)-1 must not slip through */
    struct ndfs_peer odd = {.pid = 13, .uid = 1003, .gid = (gid_t)-1};
    gid_t groups[] = {(gid_t)-1};
    cr_assert_not(ndfs_perm_may_change(&odd, NO_ADMIN_GROUP, groups, 1));
    struct ndfs_peer dave = {.pid = 14, .uid = 1004, .gid = 1004};
    gid_t daves[] = {1004, 0};
    cr_assert_not(ndfs_perm_may_change(&dave, NO_ADMIN_GROUP, daves, 2));
}

Test(perm, peer_credentials_of_a_socketpair)
{
    int fds[2];
    struct ndfs_peer peer;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    cr_assert_eq(ndfs_peer_from_socket(fds[0], &peer), 0);
    cr_assert_eq(peer.pid, getpid());
    cr_assert_eq(peer.uid, geteuid());
    cr_assert_eq(peer.gid, getegid());
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(ndfs_peer_from_socket(-1, &peer), -EBADF);
}

Test(perm, groups_of_a_known_user_include_primary)
{
    struct passwd *pw = getpwuid(geteuid());
    if (!pw)
        cr_skip_test("the test's user has no passwd entry");
    gid_t *groups = NULL;
    int n = 0;
    cr_assert_eq(ndfs_peer_groups(pw->pw_uid, pw->pw_gid, &groups, &n), 0);
    cr_assert_geq(n, 1);
    bool has_primary = false;
    for (int i = 0; i < n; i++)
        has_primary |= groups[i] == pw->pw_gid;
    cr_assert(has_primary);
    g_free(groups);
}

Test(perm, groups_of_unknown_uid_are_the_primary_gid)
{
    uid_t uid = 3999999000u;
    while (getpwuid(uid))
        uid++;
    gid_t *groups = NULL;
    int n = 0;
    cr_assert_eq(ndfs_peer_groups(uid, 4321, &groups, &n), -ENOENT);
    cr_assert_eq(n, 1);
    cr_assert_eq(groups[0], 4321);
    g_free(groups);
}

/* Finds any group with a listed member and checks the lookup sees it. */
Test(perm, groups_include_supplementary_membership)
{
    g_autofree char *member = NULL;
    gid_t member_of = 0;
    setgrent();
    for (struct group *gr; (gr = getgrent());) {
        if (gr->gr_mem && gr->gr_mem[0] && getpwnam(gr->gr_mem[0])) {
            member = g_strdup(gr->gr_mem[0]);
            member_of = gr->gr_gid;
            break;
        }
    }
    endgrent();
    if (!member)
        cr_skip_test("no group on this system lists a member");

    struct passwd *pw = getpwnam(member);
    cr_assert_not_null(pw);
    gid_t *groups = NULL;
    int n = 0;
    cr_assert_eq(ndfs_peer_groups(pw->pw_uid, pw->pw_gid, &groups, &n), 0);
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= groups[i] == member_of;
    cr_assert(found, "%s is listed in group %u but the lookup missed it", member, member_of);
    struct ndfs_peer peer = {.pid = 1, .uid = pw->pw_uid ? pw->pw_uid : 1, .gid = pw->pw_gid};
    if (pw->pw_gid != member_of)
        cr_assert(ndfs_perm_may_change(&peer, member_of, groups, n));
    g_free(groups);
}
