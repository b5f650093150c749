#!/usr/bin/env python3
"""End-to-end check of probattn as Label Studio's interactive ML backend, against a real Label Studio 1.23.

Run with the Python of the venv made by lsenv.py:
    python ls_e2e.py PROBATTN_HTTP_URL WORK_FOLDER REPORT_JSON

Starts Label Studio on a free loopback port with a temporary data folder (telemetry, Sentry and update checks off),
creates a user and token, a project (BrushLabels + smart KeyPointLabels), imports a PNG task that Label Studio serves,
connects probattn as the project's ML backend through Label Studio's API, and asks Label Studio's own
interactive-annotation endpoint for predictions. Checks that the brush mask, decoded with
label_studio_sdk.converter.brush, equals probattn's own mask (POST /api/v1/predict) for the same points pixel for
pixel, and that the second call on the task reused the prepared image. Also checks a download with a personal access
token. Exits 0 when every check passed; otherwise prints the reason to stderr and exits non-zero. Every wait has a
deadline; Label Studio is stopped (its process group) in every case.
"""
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import requests
from PIL import Image, ImageDraw
from label_studio_sdk.converter import brush

PROBATTN, WORK, REPORT = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
EMAIL, PASSWORD = "probattn-test@example.com", "Passw0rd!x-probattn"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
START_DEADLINE_S = 420
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Object" background="#FF0000"/></BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="Object" smart="true" background="#000000" showInline="true"/>
  </KeyPointLabels>
</View>"""
W, H = 160, 120


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(seed, w=W, h=H):
    """A textured dark background with a bright ellipse (the object), as PNG bytes."""
    rng = np.random.default_rng(seed)
    base = np.zeros((h, w, 3), np.uint8)
    base[:] = (25, 35, 90)
    base = np.clip(base + rng.integers(-12, 12, size=base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(base)
    ImageDraw.Draw(image).ellipse((w * 0.275, h * 0.233, w * 0.725, h * 0.767), fill=(235, 205, 45))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def coco_decode(rle, w, h):
    """COCO compressed RLE (column-major) -> H x W uint8 0/1."""
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
    return np.array(bits, np.uint8).reshape((w, h)).T


def probattn_mask(image, points):
    header = {"points": [{"x": x, "y": y, "class": "object" if positive else "background"}
                         for x, y, positive in points]}
    reply = requests.post(PROBATTN + "/api/v1/predict", timeout=120, files={
        "header": ("header.json", json.dumps(header), "application/json"),
        "image": ("image.png", image, "image/png")})
    if reply.status_code != 200:
        raise Failure(f"probattn /api/v1/predict answered {reply.status_code}: {reply.text}")
    body = reply.json()
    return coco_decode(body["mask"], body["width"], body["height"]), body


def keypoint(x_pct, y_pct, positive):
    return {"original_width": W, "original_height": H, "image_rotation": 0,
            "value": {"x": x_pct, "y": y_pct, "width": 1.5, "keypointlabels": ["Object"]},
            "is_positive": positive, "id": f"kp{int(x_pct * 10)}{int(y_pct * 10)}", "from_name": "kp",
            "to_name": "image", "type": "keypointlabels", "origin": "manual"}


def pixel(pct, size):
    return min(size - 1, math.floor(pct * size / 100))


def main():
    os.makedirs(WORK, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "USERNAME", "PASSWORD")}
    env.update({
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false", "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_HOST": base,
        "LABEL_STUDIO_BASE_DATA_DIR": os.path.join(WORK, "data"), "HOME": WORK,
    })
    bindir = os.path.dirname(sys.executable)
    log_path = os.path.join(WORK, "label-studio.log")
    log = open(log_path, "w")
    started = time.monotonic()
    proc = subprocess.Popen([os.path.join(bindir, "label-studio"), "start", "--no-browser", "--internal-host",
                             "127.0.0.1", "--port", str(port), "--data-dir", os.path.join(WORK, "data"),
                             "--username", EMAIL, "--password", PASSWORD, "--user-token", TOKEN],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    report = {"label_studio_port": port}
    try:
        deadline = started + START_DEADLINE_S
        while True:
            if proc.poll() is not None:
                raise Failure(f"Label Studio exited with {proc.returncode} before it was up; log tail:\n"
                              + "".join(open(log_path).readlines()[-30:]))
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise Failure(f"Label Studio did not answer /health within {START_DEADLINE_S} s; log tail:\n"
                              + "".join(open(log_path).readlines()[-30:]))
            time.sleep(0.5)  # polling interval of the readiness check (the deadline above bounds the wait)
        report["label_studio_start_s"] = round(time.monotonic() - started, 1)
        api = requests.Session()
        api.headers["Authorization"] = f"Token {TOKEN}"

        def call(method, path, expect, **kw):
            r = api.request(method, base + path, timeout=120, **kw)
            if r.status_code not in expect:
                raise Failure(f"Label Studio {method} {path} answered {r.status_code}: {r.text[:2000]}")
            return r.json() if r.content else None

        who = call("GET", "/api/current-user/whoami", (200,))
        report["user"] = who["email"]
        project = call("POST", "/api/projects", (201,), json={"title": "probattn-test", "label_config": CONFIG})
        pid = project["id"]
        image = png(1)
        imported = call("POST", f"/api/projects/{pid}/import?return_task_ids=true", (201,),
                        files={"file": ("ellipse.png", image, "image/png")})
        tid = imported["task_ids"][0]
        task = call("GET", f"/api/tasks/{tid}", (200,))
        report["task_image_url"] = task["data"]["image"]
        ml = call("POST", "/api/ml", (201,), json={"url": PROBATTN + "/label-studio", "project": pid,
                                                   "is_interactive": True, "title": "probattn"})
        report["ml_backend_state"] = ml.get("readable_state")
        if ml.get("state") != "CO":
            raise Failure(f"the ML backend is not connected: {ml}")

        def interactive(points):
            t0 = time.monotonic()
            reply = call("POST", f"/api/ml/{ml['id']}/interactive-annotating", (200,),
                         json={"task": tid, "context": {"result": [keypoint(x, y, p) for x, y, p in points]}})
            seconds = time.monotonic() - t0
            if "data" not in reply:
                raise Failure(f"Label Studio's interactive annotation gave no prediction: {reply}")
            data = reply["data"]
            region = data["result"][0]
            if region["type"] != "brushlabels" or region["value"]["brushlabels"] != ["Object"]:
                raise Failure(f"unexpected region: {json.dumps(region)[:500]}")
            mask = brush.decode_rle(region["value"]["rle"]).reshape(H, W, 4)[:, :, 3]
            return (mask > 0).astype(np.uint8), data["probattn"], seconds

        checks = []
        for name, points in (("one positive keypoint", [(50.0, 50.0, True)]),
                             ("two keypoints", [(50.0, 50.0, True), (10.0, 10.0, False)])):
            ls_mask, info, seconds = interactive(points)
            pixels = [(pixel(x, W), pixel(y, H), p) for x, y, p in points]
            own, own_body = probattn_mask(image, pixels)
            differing = int((ls_mask != own).sum())
            checks.append({"call": name, "points_px": pixels, "mask_pixels": int(ls_mask.sum()),
                           "differing_pixels": differing, "cached": info["cached"],
                           "downloaded": info["downloaded"], "timings_ms": info["timings_ms"],
                           "label_studio_round_trip_ms": round(seconds * 1000, 1)})
            if differing:
                raise Failure(f"{name}: the brush mask differs from probattn's mask in {differing} pixels")
            if ls_mask.sum() == 0:
                raise Failure(f"{name}: the mask is empty")
        report["calls"] = checks
        if checks[0]["cached"] or not checks[0]["downloaded"] or checks[0]["timings_ms"]["encode"] <= 0:
            raise Failure(f"the first call should have downloaded and prepared the image: {checks[0]}")
        if not checks[1]["cached"] or checks[1]["downloaded"] or checks[1]["timings_ms"]["encode"] != 0:
            raise Failure(f"the second call should have reused the prepared image: {checks[1]}")

        # A personal access token (a JWT refresh token) for a download: given to probattn through /setup, used on
        # a second task (a URL probattn has not fetched yet).
        pat = call("POST", "/api/token/", (200, 201))["token"]
        second = call("POST", f"/api/projects/{pid}/import?return_task_ids=true", (201,),
                      files={"file": ("second.png", png(2), "image/png")})["task_ids"][0]
        second_task = call("GET", f"/api/tasks/{second}", (200,))
        setup = requests.post(PROBATTN + "/label-studio/setup", timeout=30,
                              json={"project": f"{pid}.0", "schema": CONFIG, "hostname": base, "access_token": pat})
        if setup.status_code != 200:
            raise Failure(f"probattn /label-studio/setup answered {setup.status_code}: {setup.text}")
        body = {"tasks": [second_task], "project": f"{pid}.0", "label_config": CONFIG,
                "params": {"login": None, "password": None, "context": {"result": [keypoint(50.0, 50.0, True)]}}}
        direct = requests.post(PROBATTN + "/label-studio/predict", json=body, timeout=120)
        if direct.status_code != 200:
            raise Failure(f"a download with a personal access token failed: {direct.status_code} {direct.text}")
        report["personal_access_token_download"] = direct.json()["results"][0]["probattn"]["downloaded"]

        # Bad input, each posted to probattn the way Label Studio posts /predict: a clear error in label-studio-ml's
        # shape ({"status", "detail", ...}), and the daemon keeps serving.
        def predict_body(url, context):
            return {"tasks": [{**second_task, "data": {"image": url}}], "project": f"{pid}.0", "label_config": CONFIG,
                    "params": {"login": None, "password": None, "context": context}}

        big = call("POST", f"/api/projects/{pid}/import?return_task_ids=true", (201,),
                   files={"file": ("big.png", png(3, 200, 150), "image/png")})["task_ids"][0]
        big_url = call("GET", f"/api/tasks/{big}", (200,))["data"]["image"]
        one = {"result": [keypoint(50.0, 50.0, True)]}
        big_ctx = {"result": [{**keypoint(50.0, 50.0, True), "original_width": 200, "original_height": 150}]}
        bad = [
            ("task URL that 404s", predict_body("/data/no-such-route/image.png", one), 502, "HTTP 404"),
            ("URL on another host", predict_body("http://images.example.com/a.png", one), 400, "not on Label Studio's host"),
            ("image over the pixel limit", predict_body(big_url, big_ctx), 413, "pixels"),
            ("point outside the image", predict_body(second_task["data"]["image"],
                                                     {"result": [keypoint(130.0, 50.0, True)]}), 400, "outside"),
            ("empty context", predict_body(second_task["data"]["image"], {"result": []}), 400, "context is empty"),
            ("no context", predict_body(second_task["data"]["image"], None), 400, "context is empty"),
            ("malformed body", b"{\"tasks\": [", 400, "not JSON"),
        ]
        report["bad_input"] = []
        for name, payload, status, words in bad:
            if isinstance(payload, bytes):
                r = requests.post(PROBATTN + "/label-studio/predict", data=payload, timeout=60,
                                  headers={"Content-Type": "application/json"})
            else:
                r = requests.post(PROBATTN + "/label-studio/predict", json=payload, timeout=60)
            detail = r.json().get("detail", "") if r.headers.get("Content-Type", "").startswith("application/json") else ""
            report["bad_input"].append({"case": name, "status": r.status_code, "detail": detail})
            if r.status_code != status or r.json().get("status") != status or words not in detail:
                raise Failure(f"{name}: expected {status} with '{words}' in the detail, got {r.status_code} {r.text}")
            if requests.get(PROBATTN + "/label-studio/health", timeout=10).status_code != 200:
                raise Failure(f"probattn stopped serving after: {name}")
        # Label Studio's own endpoint reports a backend error as {"errors": [...]} (HTTP 200).
        outside = call("POST", f"/api/ml/{ml['id']}/interactive-annotating", (200,),
                       json={"task": tid, "context": {"result": [keypoint(130.0, 50.0, True)]}})
        report["label_studio_error_reply"] = outside
        if "errors" not in outside:
            raise Failure(f"Label Studio did not report the backend's error: {outside}")
        again = interactive([(50.0, 50.0, True)])
        if not again[1]["cached"]:
            raise Failure("after the bad input the prepared image should still be cached")
        with open(REPORT, "w") as f:
            json.dump(report, f, indent=1)
        print(json.dumps(report, indent=1))
        return 0
    except Failure as failure:
        sys.stderr.write(f"{failure}\n")
        with open(REPORT, "w") as f:
            json.dump({**report, "failure": str(failure)}, f, indent=1)
        return 1
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


if __name__ == "__main__":
    sys.exit(main())
