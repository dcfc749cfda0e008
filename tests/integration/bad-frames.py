#!/usr/bin/env python3
"""Sends malformed transport frames to an ndfsd listen address.

usage: bad-frames.py HOST PORT

Each case opens its own TCP connection, reads the acceptor's challenge if
one comes, sends something malformed and expects ndfsd to close the
connection within a deadline. One connection that sent half a header stays
open meanwhile: a slow peer must not stall anyone. UDP garbage goes to the
heartbeat port. Prints one line per case; exits 1 if a connection stayed
open. The header layout is the one of transport/frame.h."""
import os
import socket
import struct
import sys
import time

MAGIC = 0x5446444E
HEADER = 64
DEADLINE = float(os.environ.get("BAD_FRAMES_DEADLINE", "10"))

_table = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _table.append(c)


def crc32c(crc, data):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def header(ftype, control, data=b"", version=1, channel=0, control_len=None,
           data_len=None, checksum=None, flags=0x03):
    cl = len(control) if control_len is None else control_len
    dl = len(data) if data_len is None else data_len
    fields = [MAGIC, version, ftype, flags, 0, channel, 0, cl, dl, dl,
              1, 0, 7, 0]
    fmt = "<IBBBBHHIIIQQQQ"
    h = struct.pack(fmt, *fields) + struct.pack("<II", 0, 0)
    if checksum is None:
        checksum = crc32c(crc32c(crc32c(0, control), data), h)
    return struct.pack(fmt, *fields) + struct.pack("<II", checksum, 0)


def connect(host, port):
    s = socket.create_connection((host, port), timeout=DEADLINE)
    return s


def closed_by_peer(s):
    """True when the peer closes (EOF or reset) before the deadline; reads
    and discards what it sends first (its challenge)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


def send_all(s, data):
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    good_control = b"\x00" * 40
    cases = [
        ("random bytes", os.urandom(4096)),
        ("bad checksum", header(2, good_control, checksum=0xDEADBEEF) + good_control),
        ("huge length", header(2, b"", control_len=0xFFFFFFF0) + os.urandom(512)),
        ("huge data length", header(4, b"", data_len=0x7FFFFFFF) + os.urandom(512)),
        ("unknown version", header(2, good_control, version=99) + good_control),
        ("unknown type", header(200, good_control) + good_control),
        ("data before authentication", header(4, good_control, b"x" * 100, channel=4)
         + good_control + b"x" * 100),
        ("zero-length garbage after challenge", b"\x00" * 64),
    ]
    slow = connect(host, port)
    send_all(slow, header(2, good_control)[:20])
    failed = 0
    for name, payload in cases:
        s = connect(host, port)
        send_all(s, payload)
        ok = closed_by_peer(s)
        s.close()
        print(f"{name}: {'dropped' if ok else 'NOT DROPPED'}")
        failed += not ok
    # UDP: garbage and a truncated header to the heartbeat port.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for payload in (os.urandom(1200), header(6, b"")[:30], header(6, b"", checksum=1)):
        u.sendto(payload, (host, port))
    u.close()
    print("udp garbage: sent")
    slow.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
