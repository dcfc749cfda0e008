/* The control protocol: header and body codecs, the vdisk dict, and the
 * blocking client against a scripted server thread on a real unix socket. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ndfs/control.h"

static void header_bytes(uint8_t out[NDFS_CONTROL_HEADER_SIZE], uint32_t magic, uint8_t version,
                         uint8_t kind, uint16_t flags, uint32_t length)
{
    struct ndfs_control_header h = {magic, version, kind, flags, length};
    ndfs_control_header_encode(&h, out);
}

Test(control_header, round_trip_is_little_endian)
{
    uint8_t raw[NDFS_CONTROL_HEADER_SIZE];
    struct ndfs_control_header h;

    header_bytes(raw, NDFS_CONTROL_MAGIC, NDFS_CONTROL_VERSION, NDFS_CONTROL_EVENT, 0, 0x010203);
    cr_assert_eq(memcmp(raw, "NDFC", 4), 0);
    cr_assert_eq(raw[4], NDFS_CONTROL_VERSION);
    cr_assert_eq(raw[5], NDFS_CONTROL_EVENT);
    cr_assert_eq(raw[8], 0x03);
    cr_assert_eq(raw[9], 0x02);
    cr_assert_eq(raw[10], 0x01);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), 0);
    cr_assert_eq(h.magic, NDFS_CONTROL_MAGIC);
    cr_assert_eq(h.version, NDFS_CONTROL_VERSION);
    cr_assert_eq(h.kind, NDFS_CONTROL_EVENT);
    cr_assert_eq(h.flags, 0);
    cr_assert_eq(h.length, 0x010203);
}

Test(control_header, rejects_every_bad_field)
{
    uint8_t raw[NDFS_CONTROL_HEADER_SIZE];
    struct ndfs_control_header h;
    const uint32_t magic = NDFS_CONTROL_MAGIC;
    const uint8_t version = NDFS_CONTROL_VERSION;

    header_bytes(raw, magic ^ 1, version, 1, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, 0x434644ce, version, 1, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version + 1, 1, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTONOSUPPORT);
    header_bytes(raw, magic, 0, 1, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTONOSUPPORT);
    header_bytes(raw, magic, version, 0, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version, 4, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version, 255, 0, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version, 1, 1, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version, 1, 0x8000, 0);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EPROTO);
    header_bytes(raw, magic, version, 1, 0, NDFS_CONTROL_MAX_BODY + 1);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EMSGSIZE);
    header_bytes(raw, magic, version, 1, 0, UINT32_MAX);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), -EMSGSIZE);
    header_bytes(raw, magic, version, 1, 0, NDFS_CONTROL_MAX_BODY);
    cr_assert_eq(ndfs_control_header_decode(raw, &h), 0);
    for (uint8_t kind = NDFS_CONTROL_REQUEST; kind <= NDFS_CONTROL_EVENT; kind++) {
        header_bytes(raw, magic, version, kind, 0, 7);
        cr_assert_eq(ndfs_control_header_decode(raw, &h), 0);
    }
}

static GVariant *sample_request(void)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string("db1"));
    g_variant_builder_add(&b, "{sv}", "size", g_variant_new_uint64(10ull << 30));
    g_variant_builder_add(&b, "{sv}", "mode", g_variant_new_uint32(0660));
    return g_variant_new("(tsa{sv})", (guint64)42, "vdisk.create", &b);
}

/* The body bytes of a frame built from body. */
static GBytes *body_of(enum ndfs_control_kind kind, GVariant *body)
{
    g_autoptr(GBytes) frame = ndfs_control_frame(kind, body);
    cr_assert_not_null(frame);
    return g_bytes_new_from_bytes(frame, NDFS_CONTROL_HEADER_SIZE,
                                  g_bytes_get_size(frame) - NDFS_CONTROL_HEADER_SIZE);
}

Test(control_body, frame_then_decode_round_trips)
{
    g_autoptr(GVariant) expected = g_variant_ref_sink(sample_request());
    g_autoptr(GBytes) frame = ndfs_control_frame(NDFS_CONTROL_REQUEST, g_variant_ref(expected));
    cr_assert_not_null(frame);

    gsize len;
    const uint8_t *raw = g_bytes_get_data(frame, &len);
    struct ndfs_control_header h;
    cr_assert_eq(ndfs_control_header_decode(raw, &h), 0);
    cr_assert_eq(h.kind, NDFS_CONTROL_REQUEST);
    cr_assert_eq(h.length, len - NDFS_CONTROL_HEADER_SIZE);

    g_autoptr(GVariant) got =
        ndfs_control_body_decode(NDFS_CONTROL_REQUEST, raw + NDFS_CONTROL_HEADER_SIZE, h.length);
    cr_assert_not_null(got);
    cr_assert(!g_variant_is_floating(got));
    cr_assert(g_variant_equal(got, expected));
}

Test(control_body, frame_refuses_wrong_type_and_oversize)
{
    cr_assert_null(ndfs_control_frame(NDFS_CONTROL_RESPONSE, sample_request()));
    cr_assert_null(ndfs_control_frame(NDFS_CONTROL_EVENT, g_variant_new_string("x")));

    g_autofree char *big = g_malloc(NDFS_CONTROL_MAX_BODY + 1);
    memset(big, 'a', NDFS_CONTROL_MAX_BODY);
    big[NDFS_CONTROL_MAX_BODY] = '\0';
    GVariant *event = g_variant_new("(sa{sv})", big, NULL);
    cr_assert_null(ndfs_control_frame(NDFS_CONTROL_EVENT, event));
}

Test(control_body, decode_rejects_other_kinds_type)
{
    g_autoptr(GBytes) request = body_of(NDFS_CONTROL_REQUEST, sample_request());
    gsize len;
    const void *raw = g_bytes_get_data(request, &len);

    /* the header's kind decides the type: bytes of one type may well be a
     * valid value of another (this request reads as a response whose status
     * is "vdis"), so all the decoder can promise is the kind's type */
    g_autoptr(GVariant) as_response = ndfs_control_body_decode(NDFS_CONTROL_RESPONSE, raw, len);
    if (as_response)
        cr_assert(g_variant_is_of_type(as_response, ndfs_control_body_type(NDFS_CONTROL_RESPONSE)));
    cr_assert_null(ndfs_control_body_decode(NDFS_CONTROL_EVENT, raw, len));
    cr_assert_null(ndfs_control_body_decode(0, raw, len));
    cr_assert_null(ndfs_control_body_decode(NDFS_CONTROL_REQUEST, NULL, 0));
    cr_assert_null(ndfs_control_body_decode(NDFS_CONTROL_REQUEST, "", 0));
}

static void assert_decode_is_safe(enum ndfs_control_kind kind, const uint8_t *buf, size_t len)
{
    g_autoptr(GVariant) v = ndfs_control_body_decode(kind, buf, len);
    if (v) {
        cr_assert(g_variant_is_of_type(v, ndfs_control_body_type(kind)));
        cr_assert(g_variant_is_normal_form(v));
    }
}

Test(control_body, truncations_and_bit_flips_never_crash)
{
    g_autoptr(GBytes) request = body_of(NDFS_CONTROL_REQUEST, sample_request());
    gsize len;
    const uint8_t *raw = g_bytes_get_data(request, &len);

    for (size_t cut = 0; cut < len; cut++) {
        /* a heap copy of exactly cut bytes, so ASan sees any over-read */
        g_autofree uint8_t *part = g_memdup2(raw, cut);
        assert_decode_is_safe(NDFS_CONTROL_REQUEST, part, cut);
        cr_assert_null(ndfs_control_body_decode(NDFS_CONTROL_REQUEST, part, cut),
                       "truncation to %zu of %zu bytes accepted", cut, len);
    }
    g_autofree uint8_t *flipped = g_memdup2(raw, len);
    for (size_t bit = 0; bit < len * 8; bit++) {
        flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_decode_is_safe(NDFS_CONTROL_REQUEST, flipped, len);
        flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

Test(control_body, random_garbage_never_crashes)
{
    GRand *rand = g_rand_new_with_seed(12345);
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)g_rand_int_range(rand, 0, 200);
        g_autofree uint8_t *buf = g_malloc(len ? len : 1);
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)g_rand_int(rand);
        enum ndfs_control_kind kind = (enum ndfs_control_kind)g_rand_int_range(rand, 1, 4);
        assert_decode_is_safe(kind, buf, len);
    }
    g_rand_free(rand);
}

static void vdisk_fill(struct ndfs_vdisk *v, bool with_secondary)
{
    memset(v, 0, sizeof(*v));
    v->id = 7;
    v->size = 1ull << 30;
    v->mode = 0640;
    v->mtime_ns = 1700000000123456789ull;
    v->version = 3;
    v->name = g_strdup("db1");
    v->owner = g_strdup("alice");
    v->group = g_strdup("disk");
    v->primary_node = g_strdup("n1");
    v->primary_path = g_strdup("/dev/sdb");
    if (with_secondary) {
        v->secondary_node = g_strdup("n2");
        v->secondary_path = g_strdup("/srv/disks/db1.img");
    }
}

static void vdisk_free_fields(struct ndfs_vdisk *v)
{
    g_free(v->name);
    g_free(v->owner);
    g_free(v->group);
    g_free(v->primary_node);
    g_free(v->primary_path);
    g_free(v->secondary_node);
    g_free(v->secondary_path);
    memset(v, 0, sizeof(*v));
}

static void assert_vdisk_equal(const struct ndfs_vdisk *a, const struct ndfs_vdisk *b)
{
    cr_assert_eq(a->id, b->id);
    cr_assert_eq(a->size, b->size);
    cr_assert_eq(a->mode, b->mode);
    cr_assert_eq(a->mtime_ns, b->mtime_ns);
    cr_assert_eq(a->version, b->version);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_str_eq(a->owner, b->owner);
    cr_assert_str_eq(a->group, b->group);
    cr_assert_str_eq(a->primary_node, b->primary_node);
    cr_assert_str_eq(a->primary_path, b->primary_path);
    cr_assert_eq(g_strcmp0(a->secondary_node, b->secondary_node), 0);
    cr_assert_eq(g_strcmp0(a->secondary_path, b->secondary_path), 0);
}

Test(control_vdisk, dict_round_trip_with_and_without_secondary)
{
    for (int with = 0; with <= 1; with++) {
        struct ndfs_vdisk v, back;
        vdisk_fill(&v, with);
        g_autoptr(GVariant) dict = g_variant_ref_sink(ndfs_vdisk_to_dict(&v));
        cr_assert(g_variant_is_of_type(dict, G_VARIANT_TYPE_VARDICT));
        const char *primary;
        cr_assert(g_variant_lookup(dict, "primary", "&s", &primary));
        cr_assert_str_eq(primary, "n1:/dev/sdb");
        cr_assert_eq(g_variant_lookup_value(dict, "secondary", NULL) != NULL, with);
        cr_assert_eq(ndfs_vdisk_from_dict(dict, &back), 0);
        assert_vdisk_equal(&v, &back);
        vdisk_free_fields(&v);
        vdisk_free_fields(&back);
    }
}

/* The dict of a sample vdisk with key replaced by value (NULL: removed). */
static GVariant *dict_with(const char *key, GVariant *value)
{
    struct ndfs_vdisk v;
    vdisk_fill(&v, true);
    g_autoptr(GVariant) dict = g_variant_ref_sink(ndfs_vdisk_to_dict(&v));
    vdisk_free_fields(&v);

    GVariantBuilder b;
    GVariantIter iter;
    const char *k;
    GVariant *val;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_iter_init(&iter, dict);
    while (g_variant_iter_next(&iter, "{&sv}", &k, &val)) {
        if (strcmp(k, key) != 0)
            g_variant_builder_add(&b, "{sv}", k, val);
        g_variant_unref(val);
    }
    if (value)
        g_variant_builder_add(&b, "{sv}", key, value);
    return g_variant_ref_sink(g_variant_builder_end(&b));
}

static void assert_dict_rejected(GVariant *dict, const char *why)
{
    struct ndfs_vdisk out;
    cr_assert_eq(ndfs_vdisk_from_dict(dict, &out), -EINVAL, "%s accepted", why);
    cr_assert_null(out.name);
    cr_assert_null(out.primary_node);
    g_variant_unref(dict);
}

Test(control_vdisk, missing_or_mistyped_keys_are_rejected)
{
    static const char *required[] = {"name", "id",      "size",  "owner",  "group",
                                     "mode", "primary", "mtime", "version"};
    for (size_t i = 0; i < G_N_ELEMENTS(required); i++) {
        assert_dict_rejected(dict_with(required[i], NULL), required[i]);
        assert_dict_rejected(dict_with(required[i], g_variant_new_boolean(TRUE)), required[i]);
    }
    assert_dict_rejected(dict_with("secondary", g_variant_new_uint32(1)), "secondary u");
    assert_dict_rejected(dict_with("primary", g_variant_new_string("n1")), "primary n1");
    assert_dict_rejected(dict_with("primary", g_variant_new_string("n1:rel")), "relative path");
    assert_dict_rejected(dict_with("primary", g_variant_new_string("N1:/x")), "bad node");
    assert_dict_rejected(dict_with("secondary", g_variant_new_string("n2")), "secondary n2");
    assert_dict_rejected(dict_with("name", g_variant_new_string("a/b")), "name a/b");
    assert_dict_rejected(dict_with("mode", g_variant_new_uint32(010000)), "mode 010000");

    struct ndfs_vdisk out;
    cr_assert_eq(ndfs_vdisk_from_dict(g_variant_new_string("x"), &out), -EINVAL);
    cr_assert_eq(ndfs_vdisk_from_dict(NULL, &out), -EINVAL);

    g_autoptr(GVariant) no_secondary = dict_with("secondary", NULL);
    cr_assert_eq(ndfs_vdisk_from_dict(no_secondary, &out), 0);
    cr_assert_null(out.secondary_node);
    cr_assert_null(out.secondary_path);
    vdisk_free_fields(&out);
}

/* ---- the client against a scripted server thread ---- */

struct server;
typedef void (*scenario_fn)(struct server *s, int fd);

struct server {
    char *dir;
    char *path;
    int listen_fd;
    GThread *thread;
    scenario_fn scenario;
};

static gpointer server_main(gpointer data)
{
    struct server *s = data;
    int fd = accept(s->listen_fd, NULL, NULL);
    cr_assert_geq(fd, 0);
    s->scenario(s, fd);
    close(fd);
    return NULL;
}

static void server_start(struct server *s, scenario_fn scenario)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    g_autoptr(GError) error = NULL;

    s->dir = g_dir_make_tmp(NULL, &error);
    cr_assert_not_null(s->dir);
    s->path = g_build_filename(s->dir, "ctl.sock", NULL);
    cr_assert_lt(strlen(s->path), sizeof(addr.sun_path));
    strcpy(addr.sun_path, s->path);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->listen_fd, 0);
    cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(listen(s->listen_fd, 4), 0);
    s->scenario = scenario;
    s->thread = g_thread_new("test-server", server_main, s);
}

static void server_stop(struct server *s)
{
    g_thread_join(s->thread);
    close(s->listen_fd);
    g_unlink(s->path);
    g_rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        cr_assert_gt(n, 0, "server: short read");
        p += n;
        len -= (size_t)n;
    }
}

/* Reads one request; returns its body. */
static GVariant *server_read_request(int fd)
{
    uint8_t raw[NDFS_CONTROL_HEADER_SIZE];
    struct ndfs_control_header h;
    read_all(fd, raw, sizeof(raw));
    cr_assert_eq(ndfs_control_header_decode(raw, &h), 0);
    cr_assert_eq(h.kind, NDFS_CONTROL_REQUEST);
    g_autofree uint8_t *body = g_malloc(h.length + 1);
    read_all(fd, body, h.length);
    GVariant *v = ndfs_control_body_decode(NDFS_CONTROL_REQUEST, body, h.length);
    cr_assert_not_null(v);
    return v;
}

static void server_send(int fd, enum ndfs_control_kind kind, GVariant *body)
{
    g_autoptr(GBytes) frame = ndfs_control_frame(kind, body);
    cr_assert_not_null(frame);
    gsize len;
    const void *raw = g_bytes_get_data(frame, &len);
    write_all(fd, raw, len);
}

/* Answers a request with {command s} so the caller can check the match. */
static void server_echo(int fd, GVariant *request)
{
    guint64 id;
    const char *command;
    g_variant_get(request, "(t&s@a{sv})", &id, &command, NULL);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "command", g_variant_new_string(command));
    server_send(fd, NDFS_CONTROL_RESPONSE, g_variant_new("(tisa{sv})", id, 0, "", &b));
}

/* What the client's callbacks saw. */
struct observed {
    GMutex lock;
    GCond cond;
    int closed;
    int events;
    char *last_event;
    guint64 last_event_id;
};

static void on_event(struct ndfs_control_client *c, const char *event, GVariant *args, void *data)
{
    struct observed *o = data;
    (void)c;
    g_mutex_lock(&o->lock);
    o->events++;
    g_free(o->last_event);
    o->last_event = g_strdup(event);
    g_variant_lookup(args, "id", "t", &o->last_event_id);
    g_cond_broadcast(&o->cond);
    g_mutex_unlock(&o->lock);
}

static void on_closed(struct ndfs_control_client *c, void *data)
{
    struct observed *o = data;
    (void)c;
    g_mutex_lock(&o->lock);
    o->closed++;
    g_cond_broadcast(&o->cond);
    g_mutex_unlock(&o->lock);
}

/* Waits (with a deadline, so a bug fails instead of hanging) until
 * *counter reaches want. */
static void wait_for_count(struct observed *o, int *counter, int want)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    g_mutex_lock(&o->lock);
    while (*counter < want)
        if (!g_cond_wait_until(&o->cond, &o->lock, deadline))
            break;
    int got = *counter;
    g_mutex_unlock(&o->lock);
    cr_assert_geq(got, want, "callback count %d, want %d", got, want);
}

static struct ndfs_control_client *connect_to(struct server *s, struct observed *o)
{
    struct ndfs_control_client *c = NULL;
    g_mutex_init(&o->lock);
    g_cond_init(&o->cond);
    cr_assert_eq(ndfs_control_client_connect(s->path, on_event, on_closed, o, &c), 0);
    cr_assert_not_null(c);
    return c;
}

static void observed_clear(struct observed *o)
{
    g_free(o->last_event);
    g_mutex_clear(&o->lock);
    g_cond_clear(&o->cond);
}

Test(control_client, connect_to_missing_socket_fails)
{
    struct ndfs_control_client *c = (void *)1;
    cr_assert_eq(ndfs_control_client_connect("/nonexistent/ndfs.sock", NULL, NULL, NULL, &c),
                 -ENOENT);
    cr_assert_null(c);
}

/* Reads two requests, then answers them in reverse order. */
static void scenario_two_reversed(struct server *s, int fd)
{
    (void)s;
    g_autoptr(GVariant) first = server_read_request(fd);
    g_autoptr(GVariant) second = server_read_request(fd);
    server_echo(fd, second);
    server_echo(fd, first);
}

struct caller {
    struct ndfs_control_client *c;
    const char *command;
    int status;
    char *echoed;
};

static gpointer caller_main(gpointer data)
{
    struct caller *k = data;
    g_autoptr(GVariant) result = NULL;
    k->status = ndfs_control_client_call(k->c, k->command, NULL, 10000, &result, NULL);
    if (k->status == 0)
        g_variant_lookup(result, "command", "s", &k->echoed);
    return NULL;
}

Test(control_client, concurrent_calls_get_their_own_responses)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_two_reversed);
    struct ndfs_control_client *c = connect_to(&s, &o);

    struct caller a = {c, "status", -1, NULL}, b = {c, "vdisk.list", -1, NULL};
    GThread *ta = g_thread_new("a", caller_main, &a);
    GThread *tb = g_thread_new("b", caller_main, &b);
    g_thread_join(ta);
    g_thread_join(tb);
    cr_assert_eq(a.status, 0);
    cr_assert_eq(b.status, 0);
    cr_assert_str_eq(a.echoed, "status");
    cr_assert_str_eq(b.echoed, "vdisk.list");

    server_stop(&s);
    wait_for_count(&o, &o.closed, 1); /* the server hung up */
    ndfs_control_client_close(c);
    cr_assert_eq(o.closed, 1);
    g_free(a.echoed);
    g_free(b.echoed);
    observed_clear(&o);
}

/* An event, then the response, then an error response. */
static void scenario_event_and_error(struct server *s, int fd)
{
    (void)s;
    g_autoptr(GVariant) watch = server_read_request(fd);
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string("db1"));
    g_variant_builder_add(&b, "{sv}", "id", g_variant_new_uint64(9));
    server_send(fd, NDFS_CONTROL_EVENT, g_variant_new("(sa{sv})", "vdisk.removed", &b));
    server_echo(fd, watch);

    g_autoptr(GVariant) show = server_read_request(fd);
    guint64 id;
    g_variant_get_child(show, 0, "t", &id);
    server_send(fd, NDFS_CONTROL_RESPONSE,
                g_variant_new("(tisa{sv})", id, -ENOENT, "vdisk \"x\" does not exist", NULL));
    /* wait for the client to hang up */
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0);
}

Test(control_client, events_reach_event_cb_and_errors_carry_message)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_event_and_error);
    struct ndfs_control_client *c = connect_to(&s, &o);

    g_autoptr(GVariant) result = NULL;
    cr_assert_eq(ndfs_control_client_call(c, "watch", NULL, 0, &result, NULL), 0);
    cr_assert_not_null(result);
    wait_for_count(&o, &o.events, 1);
    cr_assert_str_eq(o.last_event, "vdisk.removed");
    cr_assert_eq(o.last_event_id, 9);

    g_autofree char *errmsg = NULL;
    GVariant *show_result = (void *)1;
    GVariant *args = g_variant_new_parsed("{'name': <'x'>}");
    cr_assert_eq(ndfs_control_client_call(c, "vdisk.show", args, 5000, &show_result, &errmsg),
                 -ENOENT);
    cr_assert_null(show_result);
    cr_assert_str_eq(errmsg, "vdisk \"x\" does not exist");

    ndfs_control_client_close(c);
    server_stop(&s);
    cr_assert_eq(o.closed, 0, "closed_cb must not run on a close we asked for");
    observed_clear(&o);
}

static void scenario_hang_up_after_request(struct server *s, int fd)
{
    (void)s;
    g_variant_unref(server_read_request(fd));
}

Test(control_client, server_hang_up_fails_waiting_call)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_hang_up_after_request);
    struct ndfs_control_client *c = connect_to(&s, &o);

    g_autofree char *errmsg = NULL;
    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 0, NULL, &errmsg), -ECONNRESET);
    cr_assert_not_null(errmsg);
    wait_for_count(&o, &o.closed, 1);
    /* later calls fail at once */
    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 0, NULL, NULL), -ECONNRESET);
    server_stop(&s);
    ndfs_control_client_close(c);
    cr_assert_eq(o.closed, 1);
    observed_clear(&o);
}

static void scenario_garbage_reply(struct server *s, int fd)
{
    (void)s;
    g_variant_unref(server_read_request(fd));
    uint8_t raw[NDFS_CONTROL_HEADER_SIZE];
    header_bytes(raw, NDFS_CONTROL_MAGIC, NDFS_CONTROL_VERSION, NDFS_CONTROL_RESPONSE, 0, 5);
    write_all(fd, raw, sizeof(raw));
    write_all(fd, "\xff\xff\xff\xff\xff", 5);
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0, "the client must hang up on garbage");
}

Test(control_client, garbage_frame_resets_connection)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_garbage_reply);
    struct ndfs_control_client *c = connect_to(&s, &o);

    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 0, NULL, NULL), -ECONNRESET);
    wait_for_count(&o, &o.closed, 1);
    server_stop(&s);
    ndfs_control_client_close(c);
    observed_clear(&o);
}

static void scenario_bad_magic(struct server *s, int fd)
{
    (void)s;
    g_variant_unref(server_read_request(fd));
    write_all(fd, "HTTP/1.1 400 Bad Request\r\n", 26);
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0);
}

Test(control_client, bad_header_resets_connection)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_bad_magic);
    struct ndfs_control_client *c = connect_to(&s, &o);

    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 0, NULL, NULL), -ECONNRESET);
    wait_for_count(&o, &o.closed, 1);
    server_stop(&s);
    ndfs_control_client_close(c);
    observed_clear(&o);
}

/* Never answers the first request; answers the second. */
static void scenario_ignore_first(struct server *s, int fd)
{
    (void)s;
    g_autoptr(GVariant) ignored = server_read_request(fd);
    g_autoptr(GVariant) second = server_read_request(fd);
    /* a late answer to the first: the client must drop it */
    server_echo(fd, ignored);
    server_echo(fd, second);
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0);
}

Test(control_client, timeout_then_late_response_is_ignored)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_ignore_first);
    struct ndfs_control_client *c = connect_to(&s, &o);

    g_autofree char *errmsg = NULL;
    gint64 start = g_get_monotonic_time();
    cr_assert_eq(ndfs_control_client_call(c, "slow", NULL, 100, NULL, &errmsg), -ETIMEDOUT);
    cr_assert_geq(g_get_monotonic_time() - start, 100 * 1000);
    cr_assert_not_null(errmsg);

    g_autoptr(GVariant) result = NULL;
    cr_assert_eq(ndfs_control_client_call(c, "fast", NULL, 5000, &result, NULL), 0);
    const char *echoed;
    cr_assert(g_variant_lookup(result, "command", "&s", &echoed));
    cr_assert_str_eq(echoed, "fast");

    ndfs_control_client_close(c);
    server_stop(&s);
    cr_assert_eq(o.closed, 0);
    observed_clear(&o);
}

Test(control_client, rejects_args_that_are_not_a_dict)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_hang_up_after_request);
    struct ndfs_control_client *c = connect_to(&s, &o);

    cr_assert_eq(ndfs_control_client_call(c, "x", g_variant_new_string("no"), 0, NULL, NULL),
                 -EINVAL);
    /* unblock the server, which waits for one request */
    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 0, NULL, NULL), -ECONNRESET);
    server_stop(&s);
    ndfs_control_client_close(c);
    observed_clear(&o);
}

/* Well-formed frames that a server must never send. */
static void scenario_request_from_server(struct server *s, int fd)
{
    (void)s;
    g_variant_unref(server_read_request(fd));
    server_send(fd, NDFS_CONTROL_REQUEST, g_variant_new("(tsa{sv})", (guint64)1, "status", NULL));
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0);
}

static void scenario_positive_status(struct server *s, int fd)
{
    (void)s;
    g_autoptr(GVariant) request = server_read_request(fd);
    guint64 id;
    g_variant_get_child(request, 0, "t", &id);
    server_send(fd, NDFS_CONTROL_RESPONSE, g_variant_new("(tisa{sv})", id, 5, "", NULL));
    uint8_t byte;
    cr_assert_eq(recv(fd, &byte, 1, 0), 0);
}

static void assert_call_resets(scenario_fn scenario)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario);
    struct ndfs_control_client *c = connect_to(&s, &o);

    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 5000, NULL, NULL), -ECONNRESET);
    wait_for_count(&o, &o.closed, 1);
    server_stop(&s);
    ndfs_control_client_close(c);
    cr_assert_eq(o.closed, 1);
    observed_clear(&o);
}

Test(control_client, request_from_server_resets_connection)
{
    assert_call_resets(scenario_request_from_server);
}

Test(control_client, positive_status_resets_connection)
{
    assert_call_resets(scenario_positive_status);
}

/* Reads nothing until the client hangs up. */
static void scenario_never_read(struct server *s, int fd)
{
    (void)s;
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
    cr_assert_eq(poll(&pfd, 1, 10000), 1, "the client did not hang up");
}

Test(control_client, stuck_write_times_out_and_resets)
{
    struct server s;
    struct observed o = {0};
    server_start(&s, scenario_never_read);
    struct ndfs_control_client *c = connect_to(&s, &o);

    /* larger than the socket buffers, so the write cannot finish */
    g_autofree char *blob = g_strnfill(900 * 1024, 'x');
    GVariant *args = g_variant_new_parsed("{'blob': <%s>}", blob);
    cr_assert_eq(ndfs_control_client_call(c, "vdisk.create", args, 200, NULL, NULL), -ETIMEDOUT);
    /* half a frame went out: the stream is torn, so the connection closes */
    wait_for_count(&o, &o.closed, 1);
    cr_assert_eq(ndfs_control_client_call(c, "status", NULL, 200, NULL, NULL), -ECONNRESET);
    server_stop(&s);
    ndfs_control_client_close(c);
    observed_clear(&o);
}
