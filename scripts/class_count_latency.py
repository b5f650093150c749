#!/usr/bin/env python3
"""Feedback round trips of one annotator on one image with K classes (docs/PERFORMANCE.md, "Clicks with more than
two classes"). `probattn bench latency` opens its images with the two default classes; this opens an image with the
classes given, sends random clicks (uniform pixels, classes drawn uniformly, seeded) one after another, and prints
the p50 / p90 of the round trips by click number. Needs pyzmq (`python3 -m pip install pyzmq`).

    python3 scripts/class_count_latency.py --endpoint tcp://127.0.0.1:5555 --classes object,other,background \
        --clicks 120 --seed 1 /tmp/big/vga/person6.jpg
"""
import argparse
import json
import random
import sys
import time
import uuid

import zmq


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="a PNG or JPEG file")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="the daemon's request endpoint")
    parser.add_argument("--classes", default="object,background", help="comma-separated class names")
    parser.add_argument("--clicks", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one reply")
    args = parser.parse_args()
    classes = args.classes.split(",")

    socket = zmq.Context().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(args.endpoint)

    def request(kind, payload=(), **fields):
        header = dict(protocol=1, request_id=str(uuid.uuid4()), kind=kind, **fields)
        socket.send_multipart([json.dumps(header).encode()] + list(payload))
        if not socket.poll(int(args.timeout * 1000)):
            sys.exit(f"no reply to {kind} within {args.timeout} s")
        reply = json.loads(socket.recv_multipart()[0])
        if not reply.get("ok"):
            sys.exit(f"{kind}: {reply.get('error')}")
        return reply

    image_id = "classes-" + uuid.uuid4().hex[:8]
    with open(args.image, "rb") as f:
        opened = request("open_image", payload=[f.read()], image_id=image_id, classes=classes, annotator="a")
    width, height = opened["width"], opened["height"]
    rng = random.Random(args.seed)
    times = []
    for _ in range(args.clicks):
        click = {"x": rng.randrange(width), "y": rng.randrange(height), "class": rng.choice(classes)}
        start = time.perf_counter()
        request("feedback", image_id=image_id, annotator="a", clicks=[click])
        times.append((time.perf_counter() - start) * 1000)
    request("close_image", image_id=image_id)

    def percentile(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    buckets = [(1, 10), (11, 50), (51, 200), (201, 500), (501, len(times))]
    parts = []
    for first, last in buckets:
        chunk = times[first - 1:last]
        if chunk:
            parts.append(f"{first}-{min(last, len(times))}: p50 {percentile(chunk, 0.5):.1f} "
                         f"p90 {percentile(chunk, 0.9):.1f} ms")
    print(f"{len(classes)} classes, {width}x{height}, {len(times)} clicks; " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
