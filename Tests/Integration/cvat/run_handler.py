#!/usr/bin/env python3
"""Runs the CVAT function's handler (deploy/cvat/probattn/nuclio/main.py) locally, without nuclio.

Usage: python3 run_handler.py PROBATTN_URL REQUEST_JSON_FILE [raw]
Builds the two objects nuclio's Python runtime passes (`context` with `user_data`, `logger` and `Response`, and
`event` whose `body` is the parsed JSON, as nuclio gives it for application/json, or the raw bytes with `raw`), calls
init_context and handler once, and prints {"status", "content_type", "body"} as one JSON line.
"""
import importlib.util
import json
import os
import sys
import types

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class Response:
    def __init__(self, body=None, headers=None, content_type=None, status_code=200):
        self.body, self.headers, self.content_type, self.status_code = body, headers or {}, content_type, status_code


class Logger:
    def info(self, message, *args):
        sys.stderr.write(f"[handler] {message}\n")

    debug = warn = error = info


def main():
    os.environ["PROBATTN_URL"] = sys.argv[1]
    with open(sys.argv[2], "rb") as f:
        raw = f.read()
    spec = importlib.util.spec_from_file_location("probattn_cvat_main",
                                                  os.path.join(ROOT, "deploy", "cvat", "probattn", "nuclio", "main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = types.SimpleNamespace(user_data=types.SimpleNamespace(), logger=Logger(), Response=Response)
    event = types.SimpleNamespace(body=raw if len(sys.argv) > 3 and sys.argv[3] == "raw" else json.loads(raw))
    module.init_context(context)
    response = module.handler(context, event)
    body = response.body.decode() if isinstance(response.body, bytes) else response.body
    print(json.dumps({"status": response.status_code, "content_type": response.content_type, "body": body}))


if __name__ == "__main__":
    main()
