#!/usr/bin/env python3
"""Turns the data records of a `telegen --record` recording into a seed for the protocol
trackers' fuzz targets (fuzz_targets/common/exchanges.rs): per record an op byte (bit 0
ingress, bits 2-3 the descriptor's slot, bit 4 the thread's slot, bit 6 the server's end),
a length byte, a byte of bytes not captured (times 16), then the bytes (at most 255: longer
records become several steps).

Usage: from_recording.py RECORDING FLAG SERVER_PORT OUT  (FLAG: the data_flags bit)"""
import struct, sys

rec, flag, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
buf = open(rec, "rb").read()
assert buf[:8] == b"TGREC\x01\0\0", "not a recording"
at, fds, tids, seed = 8, {}, {}, bytearray()
while at + 4 <= len(buf):
    (n,) = struct.unpack_from("<I", buf, at)
    r = buf[at + 4 : at + 4 + n]
    at += 4 + n
    kind, _, tgid, tid = struct.unpack_from("<IIII", r, 0)
    if kind != 5 or not struct.unpack_from("<H", r, 102)[0] & flag:
        continue
    fd, direction, length, captured = struct.unpack_from("<IIII", r, 40)
    sport, dport = struct.unpack_from("<HH", r, 96)
    slot = fds.setdefault((tgid, fd), len(fds) % 4)
    thread = tids.setdefault(tid, len(tids) % 2)
    data = r[104 : 104 + captured]
    op = (direction == 0) | slot << 2 | thread << 4 | (sport == port) << 6
    # Longer records go as several steps; what was not captured follows the last.
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    for i, chunk in enumerate(chunks):
        cut = min((length - captured) // 16, 255) if i == len(chunks) - 1 else 0
        seed += bytes([op, len(chunk), cut]) + chunk
open(out, "wb").write(seed)
print(f"{out}: {len(seed)} bytes")
