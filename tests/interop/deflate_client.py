"""A client of another implementation (Python `websockets`) with
permessage-deflate on, against a switchboard started with --compression.

Usage: deflate_client.py HOST:PORT

Two clients join one channel; the first sends 1 KiB JSON actions, which
`websockets` compresses, and both must receive every `user_action`, which
the server sends compressed. Frames are counted inside the library's own
permessage-deflate extension, so "compressed" means RSV1 on the wire as
websockets saw it. Prints one JSON line of counts; exits 1 on any failure.
"""

import json
import sys

from websockets.extensions import permessage_deflate as pmd
from websockets.frames import Opcode
from websockets.sync.client import connect

counts = {"sent_compressed": 0, "received_compressed": 0}
_encode, _decode = pmd.PerMessageDeflate.encode, pmd.PerMessageDeflate.decode


def encode(self, frame):
    out = _encode(self, frame)
    if out.rsv1 and frame.opcode == Opcode.TEXT:
        counts["sent_compressed"] += 1
    return out


def decode(self, frame, *, max_size=None):
    if frame.rsv1 and frame.opcode == Opcode.TEXT:
        counts["received_compressed"] += 1
    return _decode(self, frame, max_size=max_size)


pmd.PerMessageDeflate.encode, pmd.PerMessageDeflate.decode = encode, decode


def recv_json(ws, want):
    while True:
        msg = json.loads(ws.recv(timeout=5))
        if msg["type"] == want:
            return msg
        if msg["type"] not in ("presence",):
            raise SystemExit(f"expected {want}, got {msg}")


def action(seq):
    cursors = [
        {"user": f"user-{i}", "x": (seq + i) * 37 % 1000, "y": i * 91 % 800, "sel": [i * 3, i * 5]}
        for i in range(16)
    ]
    return {"seq": seq, "cursors": cursors}


def main():
    addr = sys.argv[1]
    with connect(f"ws://{addr}/ws?user=py-a", compression="deflate") as a, connect(
        f"ws://{addr}/ws?user=py-b", compression="deflate"
    ) as b:
        for ws in (a, b):
            names = [e.name for e in ws.protocol.extensions]
            if names != ["permessage-deflate"]:
                raise SystemExit(f"not negotiated: {names}")
            recv_json(ws, "welcome")
            ws.send(json.dumps({"type": "join_channel", "channel": "doc:py", "id": 1}))
            recv_json(ws, "joined")
        for seq in range(10):
            sent = action(seq)
            a.send(json.dumps({"type": "user_action", "channel": "doc:py", "action": sent}))
            for ws in (a, b):
                got = recv_json(ws, "user_action")
                if got["action"] != sent or got["user"] != "py-a":
                    raise SystemExit(f"wrong event: {got}")
    print(json.dumps(counts))
    if counts["sent_compressed"] < 10 or counts["received_compressed"] < 20:
        raise SystemExit("messages were not compressed both ways")


if __name__ == "__main__":
    main()
