#!/usr/bin/env python3
"""Round trips of `health` against an open and a CURVE daemon, alternated over 4 rounds (docs/SECURITY.md).

    python3 docs/examples/curve_rtt.py OPEN_ENDPOINT CURVE_ENDPOINT SERVER.key CLIENT.key_secret [N]

`health` is answered at once by the daemon, so the difference of the medians is what CURVE itself costs per round
trip (encryption, the per-request key check), without the pipeline's time.
"""
import json
import statistics
import sys
import time

import zmq


def fields(path):
    """A probattn key file as a dict."""
    return dict((k.strip(), v.strip()) for k, v in
                (line.split(":", 1) for line in map(str.strip, open(path)) if line and not line.startswith("#")))


def main():
    open_endpoint, curve_endpoint, server_key, client_key = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    context = zmq.Context()

    def connect(endpoint, curve):
        socket = context.socket(zmq.DEALER)
        if curve:
            me = fields(client_key)
            socket.curve_serverkey = fields(server_key)["public_key"].encode()
            socket.curve_publickey = me["public_key"].encode()
            socket.curve_secretkey = me["secret_key"].encode()
        socket.connect(endpoint)
        return socket

    def median_ms(socket, n):
        times = []
        for i in range(n):
            start = time.perf_counter()
            socket.send(json.dumps({"protocol": 1, "request_id": str(i), "kind": "health"}).encode())
            if not socket.poll(5000):
                sys.exit(f"no reply within 5 s (wrong keys, or no daemon at {socket.getsockopt_string(zmq.LAST_ENDPOINT)})")
            socket.recv_multipart()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    plain, curve = connect(open_endpoint, False), connect(curve_endpoint, True)
    median_ms(plain, 50), median_ms(curve, 50)  # connect and warm up
    for round_number in range(1, 5):
        a, b = median_ms(plain, count), median_ms(curve, count)
        print(f"round {round_number}: health p50 open {a:.3f} ms, CURVE {b:.3f} ms, difference {b - a:+.3f} ms")


if __name__ == "__main__":
    main()
