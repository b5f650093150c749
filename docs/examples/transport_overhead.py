#!/usr/bin/env python3
"""Per-click cost of the HTTP gateway against ZeroMQ, under the same load (docs/PERFORMANCE.md, "HTTP gateway").

Usage: python3 transport_overhead.py REQUEST_ENDPOINT HTTP_HOST:PORT [CLICKS]
e.g.   python3 transport_overhead.py tcp://127.0.0.1:5555 127.0.0.1:5580 40

Opens one 640x480 synthetic image and sends CLICKS feedback requests over each transport, interleaved click by click
(a DEALER request and a keep-alive POST alternately, the order swapped every two clicks), so that both see the same
load. Prints, per transport, the round-trip p50, the daemon's own total (`timings_ms.total` of each reply) and the
transport's share (round trip - total). Needs pyzmq.
"""
import http.client
import json
import random
import statistics
import struct
import sys
import time
import uuid
import zlib

import zmq

REQUESTS, HTTP_ADDRESS = sys.argv[1], sys.argv[2]
CLICKS = int(sys.argv[3]) if len(sys.argv) > 3 else 40
WIDTH, HEIGHT = 640, 480


def make_png():
    rows = bytearray()
    for y in range(HEIGHT):
        rows.append(0)
        for x in range(WIDTH):
            inside = (x - 320) ** 2 / 150 ** 2 + (y - 240) ** 2 / 100 ** 2 < 1
            rows += bytes((200 + (x * 7 + y) % 40, 180, 60) if inside else (30, 40 + (x + y * 3) % 50, 110))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


def main():
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(REQUESTS)

    def zmq_request(kind, payload=(), **fields):
        header = dict(protocol=1, request_id=str(uuid.uuid4()), kind=kind, **fields)
        dealer.send_multipart([json.dumps(header).encode()] + list(payload))
        return json.loads(dealer.recv_multipart()[0])

    host, port = HTTP_ADDRESS.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port))

    def http_feedback(image, body):
        connection.request("POST", f"/api/v1/images/{image}/feedback", json.dumps(body),
                           {"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())

    image = "overhead-" + uuid.uuid4().hex[:8]
    assert zmq_request("open_image", [make_png()], image_id=image, annotator="bench")["ok"]
    random.seed(1)
    results = {"zmq": [], "http": []}
    for click in range(CLICKS):
        inside = click % 2 == 0
        x, y = ((320 + random.randint(-80, 80), 240 + random.randint(-50, 50)) if inside
                else (random.randint(0, 100), random.randint(0, 80)))
        body = {"annotator": "bench", "clicks": [{"x": x, "y": y, "class": "object" if inside else "background"}]}
        for transport in (["zmq", "http"] if click % 4 < 2 else ["http", "zmq"]):
            start = time.perf_counter()
            reply = zmq_request("feedback", image_id=image, **body) if transport == "zmq" else http_feedback(image, body)
            round_trip = (time.perf_counter() - start) * 1000
            if not reply["ok"]:
                raise SystemExit(f"{transport}: {reply['error']}")
            results[transport].append((round_trip, reply["timings_ms"]["total"]))
    zmq_request("close_image", image_id=image)
    for transport, samples in results.items():
        trips = [trip for trip, _ in samples]
        shares = sorted(trip - total for trip, total in samples)
        print(f"{transport}: {len(samples)} clicks, round trip p50 {statistics.median(trips):.2f} ms, daemon total p50 "
              f"{statistics.median([total for _, total in samples]):.2f} ms, transport share p50 "
              f"{statistics.median(shares):.2f} ms, p90 {shares[int(0.9 * len(shares))]:.2f} ms")
    context.destroy(linger=0)


if __name__ == "__main__":
    main()
