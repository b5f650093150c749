#!/usr/bin/env python3
"""probattnd example client (protocol version 1; see docs/PROTOCOL.md).

Usage: python3 client.py [REQUEST_ENDPOINT] [RESULTS_ENDPOINT]
Defaults are the endpoints of `make run`. Needs pyzmq (`python3 -m pip install pyzmq`).
Exits with status 0 when every step behaved as the protocol says, 1 otherwise.
"""
import json
import struct
import sys
import time
import uuid
import zlib

import zmq

REQUESTS = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"
RESULTS = sys.argv[2] if len(sys.argv) > 2 else "tcp://127.0.0.1:5556"
TIMEOUT_MS = 30000
WIDTH, HEIGHT = 160, 120


def make_png(width, height):
    """A dark RGB image with a bright square in the middle, encoded as PNG with the standard library only."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            inside = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            rows += bytes((230, 200, 40) if inside else (20, 30, 90))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows)))
            + chunk(b"IEND", b""))


def rle_decode(rle):
    """COCO compressed RLE -> flat list of 0/1 in column-major order (what pycocotools.mask.decode does)."""
    s, counts, i = rle["counts"].encode(), [], 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = s[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    bits, value = [], 0
    for n in counts:
        bits += [value] * n
        value ^= 1
    return bits


def pixel(rle, x, y):
    h, _ = rle["size"]
    return rle_decode(rle)[x * h + y]  # column-major


class Client:
    def __init__(self, context, endpoint):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def request(self, kind, payload=(), **fields):
        """Sends one request and returns (reply header, extra reply frames)."""
        request_id = str(uuid.uuid4())
        header = dict(protocol=1, request_id=request_id, kind=kind, **fields)
        self.socket.send_multipart([json.dumps(header).encode()] + list(payload))
        if not self.socket.poll(TIMEOUT_MS):
            raise SystemExit(f"no reply to {kind} within {TIMEOUT_MS} ms")
        frames = self.socket.recv_multipart()
        reply = json.loads(frames[0])
        if reply["request_id"] != request_id:
            raise SystemExit(f"reply for {reply['request_id']}, expected {request_id}")
        return reply, frames[1:]


def expect(condition, what):
    if not condition:
        raise SystemExit("FAILED: " + what)
    print("ok:", what)


def main():
    context = zmq.Context()
    client = Client(context, REQUESTS)
    image_id = "example-" + uuid.uuid4().hex[:8]

    # Subscribe before opening, so the updates of this image are not missed (topic = "mask/" + id + NUL).
    updates = context.socket(zmq.SUB)
    updates.setsockopt(zmq.LINGER, 0)
    updates.setsockopt(zmq.SUBSCRIBE, b"mask/" + image_id.encode() + b"\0")
    updates.connect(RESULTS)
    time.sleep(0.5)  # let the subscription reach the daemon (PUB drops messages for unknown subscribers)

    health, _ = client.request("health")
    expect(health["ok"], f"health: up {health.get('uptime_s')} s, {health.get('sessions')} sessions")

    reply, _ = client.request("open_image", payload=[make_png(WIDTH, HEIGHT)], image_id=image_id,
                              annotator="alice")
    expect(reply["ok"] and (reply["width"], reply["height"]) == (WIDTH, HEIGHT),
           f"open_image {image_id}: {reply.get('width')}x{reply.get('height')}, version {reply.get('version')}")

    reply, _ = client.request("feedback", image_id=image_id, annotator="alice",
                              clicks=[{"x": 80, "y": 60, "class": "object"}])
    expect(reply["ok"] and reply["version"] == 1, f"feedback -> version {reply.get('version')}")
    expect(pixel(reply["mask"], 80, 60) == 1, "the object click is inside the mask")

    reply, _ = client.request("feedback", image_id=image_id, annotator="bob",
                              clicks=[{"x": 10, "y": 10, "class": "background"}])
    expect(reply["ok"] and reply["version"] == 2, "a second annotator's click -> version 2")
    expect(pixel(reply["mask"], 10, 10) == 0, "the background click is outside the mask")

    reply, _ = client.request("feedback", image_id=image_id, annotator="alice",
                              clicks=[{"x": 500, "y": 10, "class": "object"}])
    expect(not reply["ok"] and reply["error"]["code"] == "out_of_bounds",
           "a click outside the image is refused: " + reply.get("error", {}).get("message", ""))

    reply, _ = client.request("undo", image_id=image_id, annotator="bob")
    expect(reply["ok"] and reply["version"] == 3 and reply["undone"]["class"] == "background",
           "bob's undo removes bob's click -> version 3")

    reply, frames = client.request("get_mask", image_id=image_id, format="both")
    rle = reply["mask"]
    expect(reply["ok"] and reply["version"] == 3 and len(rle_decode(rle)) == WIDTH * HEIGHT,
           f"get_mask: version 3, {sum(rle_decode(rle))} object pixels")
    expect(len(frames) == 1 and frames[0][:8] == b"\x89PNG\r\n\x1a\n", f"PNG frame of {len(frames[0])} bytes")

    seen = []
    while updates.poll(2000):
        topic, header, *rest = updates.recv_multipart()
        update = json.loads(header)
        expect(topic == b"mask/" + image_id.encode() + b"\0" and update["image_id"] == image_id,
               f"update: version {update['version']} by {update['annotator']} ({update['cause']})")
        seen.append(update["version"])
        if update["version"] == 3:
            break
    expect(seen == sorted(seen) and seen[-1:] == [3], f"updates arrived in order: {seen}")

    reply, _ = client.request("close_image", image_id=image_id)
    expect(reply["ok"], "close_image")
    reply, _ = client.request("get_mask", image_id=image_id)
    expect(not reply["ok"] and reply["error"]["code"] == "unknown_image", "a closed image is unknown")
    context.destroy(linger=0)
    print("PASS")


if __name__ == "__main__":
    main()
