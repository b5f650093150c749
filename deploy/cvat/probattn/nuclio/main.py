"""CVAT interactor function for probattn: forwards each call to $PROBATTN_URL/cvat/interactor.

CVAT's lambda manager posts {"image": base64, "pos_points": [[x, y], ...], "neg_points": [...], "obj_bbox": ...};
probattnd answers {"mask": rows of 0/255 cropped to the object, "bounds": [xtl, ytl, xbr, ybr]}, which this handler
returns unchanged. A daemon error comes back with its status and text; an unreachable daemon is a 503 with the
reason. Python's standard library only (no nuclio-sdk import: nuclio passes `context` and `event`).
"""
import json
import os
import urllib.error
import urllib.request


def init_context(context):
    context.user_data.url = os.environ.get("PROBATTN_URL", "http://127.0.0.1:5580").rstrip("/") + "/cvat/interactor"
    context.user_data.timeout = float(os.environ.get("PROBATTN_TIMEOUT_S", "30"))
    context.logger.info(f"probattn interactor forwarding to {context.user_data.url}")


def forward(url, body, timeout):
    """POSTs `body` (dict, str or bytes) as JSON; returns (status, content type, bytes)."""
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = bytes(body or b"")
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.headers.get("Content-Type", "application/json"), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", "text/plain"), error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return 503, "text/plain", f"probattnd at {url} is not reachable: {reason}\n".encode()


def handler(context, event):
    status, content_type, body = forward(context.user_data.url, event.body, context.user_data.timeout)
    return context.Response(body=body, headers={}, content_type=content_type.split(";")[0], status_code=status)
