#!/usr/bin/env bash
# Garbage, truncated and malformed frames on the control socket never crash
# or block ndfsd: it drops (or answers with an error) the bad connection,
# keeps serving others, and the CCD is unchanged.
source "$(dirname "$0")/functions.sh"
requires_root
requires_cmd jq
"$PYTHON" -c 'from gi.repository import GLib' 2>/dev/null || skip "python3-gi not installed"

start_node n1
adm vdisk create vd0 --size 1M --primary "n1:$TESTDIR/vd0.img"
before=$(adm --json vdisk list)

"$PYTHON" - "$SOCK" "$NDFSADM" <<'PY'
import os, socket, struct, subprocess, sys
from gi.repository import GLib

sock_path, ndfsadm = sys.argv[1], sys.argv[2]
MAGIC, MAX_BODY = 0x4346444E, 1 << 20

def header(length, magic=MAGIC, version=1, kind=1, flags=0):
    return struct.pack("<IBBHI", magic, version, kind, flags, length)

def request(rid, command, args=None):
    body = GLib.Variant("(tsa{sv})", (rid, command, args or {})).get_data_as_bytes().get_data()
    return header(len(body)) + body

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    return s

def read_frame(s):
    """The server's answer: a response frame, or None when it closed."""
    data = b""
    while len(data) < 12:
        chunk = s.recv(12 - len(data))
        if not chunk:
            return None
        data += chunk
    magic, version, kind, flags, length = struct.unpack("<IBBHI", data)
    assert magic == MAGIC and kind == 2 and length <= MAX_BODY, f"bad response header {data!r}"
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        assert chunk, "response body truncated"
        body += chunk
    v = GLib.Variant.new_from_bytes(GLib.VariantType("(tisa{sv})"), GLib.Bytes(body), False)
    return v.unpack()

def status_works(what):
    r = subprocess.run([ndfsadm, "-s", sock_path, "status"], capture_output=True, timeout=20)
    assert r.returncode == 0, f"after {what}: ndfsadm status failed: {r.stderr!r}"

def bad(what, payload, keep_open=False):
    """payload is refused: the connection is closed, or answered with an error."""
    s = connect()
    s.sendall(payload)
    if keep_open:
        # A peer that stops mid-frame must not block other clients.
        status_works(what + " (while the connection is still open)")
        s.close()
        status_works(what)
        return
    s.shutdown(socket.SHUT_WR)
    try:
        r = read_frame(s)
    except (ConnectionResetError, BrokenPipeError):
        r = None
    except socket.timeout:
        raise AssertionError(f"{what}: no answer and not closed in 10 s")
    if r is not None:
        rid, status, message, result = r
        assert status < 0 and message, f"{what}: accepted: {r}"
    s.close()
    status_works(what)

# A well-formed request works (the harness itself is right).
s = connect()
s.sendall(request(7, "status"))
rid, status, message, result = read_frame(s)
assert rid == 7 and status == 0 and "cluster-id" in result, (rid, status, message, result)
s.sendall(request(8, "no.such.command"))
rid, status, message, result = read_frame(s)
assert rid == 8 and status < 0 and message, ("unknown command", rid, status, message)
s.close()

bad("random garbage", os.urandom(4096))
bad("bad magic", header(0, magic=0xDEADBEEF))
bad("bad version", header(0, version=99))
bad("bad kind", header(0, kind=9))
bad("response kind from a client", header(0, kind=2))
bad("non-zero flags", header(0, flags=1))
bad("body over the maximum", header(MAX_BODY + 1))
bad("length 0xffffffff", header(0xFFFFFFFF))
bad("truncated header", header(16)[:7])
bad("truncated body", request(1, "status")[:-3])
bad("body not a GVariant of the request type", header(5) + b"\xff" * 5)
body = GLib.Variant("(s)", ("status",)).get_data_as_bytes().get_data()
bad("body of the wrong type", header(len(body)) + body)
body = GLib.Variant("(tisa{sv})", (1, 0, "", {})).get_data_as_bytes().get_data()
bad("response body in a request", header(len(body)) + body)
bad("create with args of the wrong types",
    request(2, "vdisk.create", {"name": GLib.Variant("u", 5), "size": GLib.Variant("s", "1M")}))
bad("create without a primary",
    request(3, "vdisk.create", {"name": GLib.Variant("s", "x"), "size": GLib.Variant("t", 1 << 20)}))
bad("create with a bad name", request(4, "vdisk.create", {
    "name": GLib.Variant("s", "../x"), "size": GLib.Variant("t", 1 << 20),
    "primary": GLib.Variant("s", "n1:/tmp/x.img")}))
bad("remove without a name", request(5, "vdisk.remove"))
bad("partial header, connection kept open", header(16)[:5], keep_open=True)
bad("partial body, connection kept open", request(6, "status")[:-2], keep_open=True)

# Many connections opened and dropped at once.
conns = [connect() for _ in range(50)]
for c in conns:
    c.close()
status_works("50 dropped connections")
PY

ndfsd_alive "$CONF"
[ "$(adm --json vdisk list)" = "$before" ] || fail "the CCD changed: $(adm --json vdisk list)"
