#!/usr/bin/env python3
"""Where a running daemon's `open_image` time goes (docs/PERFORMANCE.md, "Large images").

Opens every image file given, --repeat times each (a fresh image id every time, closed right after), alternating
between the files so that a load change affects all of them alike, and prints per file the median of the reply's
`timings_ms` (decode, encode, adapt, propagate = the first mask, commit = the store, total) and of the round trip.
Needs pyzmq.

    python3 scripts/open_timings.py --endpoint tcp://127.0.0.1:15555 --repeat 3 small.jpg large.jpg [--json out.json]
"""
import argparse
import json
import statistics
import sys
import time
import uuid

import zmq


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--json", help="also write the medians here")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(args.endpoint)

    def request(kind, payload=(), **fields):
        request_id = str(uuid.uuid4())
        socket.send_multipart([json.dumps(dict(protocol=1, request_id=request_id, kind=kind, **fields)).encode()]
                              + list(payload))
        if not socket.poll(int(args.timeout * 1000)):
            raise SystemExit(f"no reply to {kind} within {args.timeout} s")
        reply = json.loads(socket.recv_multipart()[0])
        if not reply.get("ok"):
            raise SystemExit(f"{kind} failed: {reply.get('error')}")
        return reply

    files = {path: open(path, "rb").read() for path in args.images}
    samples = {path: [] for path in args.images}
    for _ in range(args.repeat):
        for path, data in files.items():
            image_id = "open-timings-" + uuid.uuid4().hex[:8]
            start = time.monotonic()
            reply = request("open_image", payload=[data], image_id=image_id)
            timings = dict(reply["timings_ms"], round_trip=(time.monotonic() - start) * 1e3)
            timings["size"] = f"{reply['width']}x{reply['height']}"
            samples[path].append(timings)
            request("close_image", image_id=image_id)

    stages = ["decode", "encode", "adapt", "propagate", "commit", "total", "round_trip"]
    medians = {}
    print("file".ljust(28) + "size".rjust(11) + "".join(s.rjust(11) for s in stages) + "   (median ms)")
    for path in args.images:
        medians[path] = {s: round(statistics.median(t[s] for t in samples[path]), 1) for s in stages}
        medians[path]["size"] = samples[path][0]["size"]
        print(path[-28:].ljust(28) + medians[path]["size"].rjust(11)
              + "".join(f"{medians[path][s]:11.1f}" for s in stages))
    if len(args.images) > 1:
        first = medians[args.images[0]]["round_trip"]
        for path in args.images[1:]:
            print(f"{path}: open round trip {medians[path]['round_trip'] / first:.2f} x {args.images[0]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeat": args.repeat, "medians": medians, "samples": samples}, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
