#!/usr/bin/env python3
"""The web annotator in a real browser: two headless Chromium pages as two annotators on one image.

Run by Tests/DaemonTests/WebAnnotatorBrowserTests.swift against a real probattnd (HTTP gateway on --url, image folder
--folder holding square.png, three.png and notes.txt). Drives Debian's chromium through Debian's chromedriver
(/usr/bin/chromedriver, given explicitly: Selenium never fetches a driver). Chromium resolves no host but 127.0.0.1,
and every failed request fails the test. Prints each measurement; exits 0 when every check passed, 1 on a failed
check, 2 when the browser could not start (the reason is printed).
"""
import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

os.environ.setdefault("SE_OFFLINE", "true")   # Selenium Manager, if it ever ran, must not reach the network

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1360,820",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SQUARE = {"object": (80, 60), "object2": (100, 72), "outside": (12, 10)}   # square.png is 160x120
TIMEOUT = 30.0


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)
    print("ok:", what, flush=True)


def wait_for(what, predicate, timeout=TIMEOUT, interval=0.02):
    """Waits, with Selenium's WebDriverWait, until predicate returns a truthy value; fails with `what` at the deadline.
    A predicate that raises (a page in the middle of a reload) counts as not yet."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait
    last = [None]

    def check(_):
        try:
            last[0] = predicate()
        except Exception as e:  # a page in the middle of a reload
            last[0] = e
            return False
        return last[0] if last[0] else False

    try:
        return WebDriverWait(None, timeout, poll_frequency=interval).until(check)
    except TimeoutException:
        raise CheckFailed(f"timed out after {timeout} s waiting for {what} (last: {last[0]!r})")


class Page:
    """One Chromium instance (its own profile: its own annotator name) showing the annotator."""

    def __init__(self, label, base_url, shots):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        options = Options()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.downloads = os.path.join(shots, f"downloads-{label}")
        os.makedirs(self.downloads, exist_ok=True)
        for name in os.listdir(self.downloads):
            os.remove(os.path.join(self.downloads, name))
        options.add_experimental_option("prefs", {"download.default_directory": self.downloads,
                                                  "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(TIMEOUT)
        self.label, self.base_url, self.shots = label, base_url, shots
        self.requests = {}          # CDP request id -> (method, url)
        self.failures = []          # (url, reason) of every failed request
        self.allowed = []           # (method, url suffix, status) expected to fail, each once
        self.console_errors = []
        self.refused = []           # URLs of the expected refusals seen (Chromium also logs them to the console)

    def load(self, name):
        self.driver.get(self.base_url + "/")
        if not self.js("return localStorage.getItem('probattn.annotator')"):
            wait_for("the name dialog", lambda: self.driver.find_element("id", "name-input").is_displayed())
            self.driver.find_element("id", "name-input").send_keys(name)
            self.driver.find_element("id", "name-ok").click()
        wait_for(f"{self.label} ready", lambda: self.js("return document.body.dataset.ready === 'true'"))

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def find(self, css):
        return self.driver.find_element("css selector", css)

    def open_from_folder(self, name, classes=""):
        box = self.find("#classes")
        box.clear()
        if classes:
            box.send_keys(classes)
        wait_for(f"{name} in the folder list", lambda: self.find(f'#folder button[data-name="{name}"]'))
        self.find(f'#folder button[data-name="{name}"]').click()
        self.wait_live(name)

    def wait_live(self, name=None):
        """Waits until the page shows a live session (of the image `name`, when given) with its mask."""
        wait_for(f"{self.label}: a live session of {name or 'the image'} with a mask",
                 lambda: self.js("return document.getElementById('connection').dataset.state === 'live' && "
                                 "document.getElementById('mask-canvas').dataset.version !== '' && "
                                 "(arguments[0] === null || "
                                 "document.getElementById('imageinfo').title.startsWith(arguments[0] + '@'))", name))

    def version(self):
        v = self.js("return document.getElementById('mask-canvas').dataset.version")
        return int(v) if v not in (None, "") else -1

    def mask_at(self, x, y):
        """The mask canvas's alpha at image pixel (x, y): > 0 where the page shows the mask."""
        return self.js("return document.getElementById('mask-canvas').getContext('2d')"
                       ".getImageData(arguments[0], arguments[1], 1, 1).data[3]", x, y)

    def click_image(self, x, y, button="left", keys=""):
        """A real pointer click on image pixel (x, y) of the click canvas."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys
        canvas = self.find("#click-canvas")
        w, h = self.js("const s = arguments[0].getBoundingClientRect(); return [s.width, s.height]", canvas)
        iw, ih = self.js("const c = document.getElementById('mask-canvas'); return [c.width, c.height]")
        dx = (x + 0.5) * w / iw - w / 2
        dy = (y + 0.5) * h / ih - h / 2
        chain = ActionChains(self.driver).move_to_element_with_offset(canvas, int(round(dx)), int(round(dy)))
        if keys == "shift":
            chain = chain.key_down(Keys.SHIFT)
        chain = chain.context_click() if button == "right" else chain.click()
        if keys == "shift":
            chain = chain.key_up(Keys.SHIFT)
        chain.perform()

    def press(self, key):
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(self.driver).send_keys(key).perform()

    def timings(self):
        return self.js("return window.probattnTimings")

    def presence(self):
        return self.js("return [...document.querySelectorAll('#presence li.person')].map(li => "
                       "[li.dataset.annotator, li.querySelector('.num').textContent])")

    def screenshot(self, name):
        path = os.path.join(self.shots, f"{self.label}-{name}.png")
        self.driver.save_screenshot(path)
        print(f"screenshot: {path}", flush=True)

    def expect_failure(self, method, suffix, status):
        self.allowed.append((method, suffix, status))

    def collect_network(self):
        """Reads the DevTools events since the last call; records failed requests and console errors."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            if method == "Network.requestWillBeSent":
                self.requests[params["requestId"]] = (params["request"]["method"], params["request"]["url"])
            elif method == "Network.responseReceived":
                status = params["response"]["status"]
                url = params["response"]["url"]
                if status >= 400:
                    req_method = self.requests.get(params["requestId"], ("?", url))[0]
                    for i, (m, suffix, s) in enumerate(self.allowed):
                        if m == req_method and url.split("?")[0].endswith(suffix) and s == status:
                            del self.allowed[i]
                            self.refused.append(url)
                            print(f"{self.label}: expected refusal {req_method} {url} -> {status}", flush=True)
                            break
                    else:
                        self.failures.append((url, f"HTTP {status}"))
            elif method == "Network.loadingFailed":
                url = self.requests.get(params["requestId"], ("?", "?"))[1]
                self.failures.append((url, params.get("errorText", "failed")))
            elif method == "Network.webSocketFrameError":
                self.failures.append(("websocket", params.get("errorMessage", "frame error")))
        for entry in self.driver.get_log("browser"):
            text = entry.get("message", "")
            if entry.get("level") != "SEVERE":
                continue
            if "Failed to load resource" in text and any(text.startswith(url + " ") for url in self.refused):
                continue
            self.console_errors.append(text)

    def assert_clean(self):
        self.collect_network()
        check(not self.failures, f"{self.label}: no failed request (failures: {self.failures})")
        check(not self.console_errors, f"{self.label}: no console error ({self.console_errors})")

    def quit(self):
        try:
            self.driver.quit()
        except Exception:
            pass


def http_json(base_url, path):
    with urllib.request.urlopen(base_url + "/api/v1" + path, timeout=TIMEOUT) as r:
        return json.loads(r.read())


def rle_pixel(rle, x, y):
    """COCO RLE (column-major) value at (x, y), decoded as in docs/PROTOCOL.md §3."""
    s, counts, i = rle["counts"].encode(), [], 0
    while i < len(s):
        v, k, more = 0, 0, True
        while more:
            c = s[i] - 48
            v |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                v |= -1 << (5 * k)
        if len(counts) > 2:
            v += counts[-2]
        counts.append(v)
    target, pos, value = x * rle["size"][0] + y, 0, 0
    for n in counts:
        if pos + n > target:
            return value
        pos += n
        value ^= 1
    return 0


def run(args):
    os.makedirs(args.screenshots, exist_ok=True)
    pages = []
    try:
        try:
            a = Page("A", args.url, args.screenshots)
            pages.append(a)
            b = Page("B", args.url, args.screenshots)
            pages.append(b)
        except Exception as e:
            print(f"FAILED: the browser could not start: {type(e).__name__}: {e}", flush=True)
            return 2
        print(f"browser: {a.driver.capabilities.get('browserVersion')}, chromedriver "
              f"{a.driver.capabilities.get('chrome', {}).get('chromedriverVersion', '?').split(' ')[0]}", flush=True)

        # Two annotators open the same image from the image folder: the second open joins the session.
        a.load("alice")
        b.load("bob")
        a.open_from_folder("square.png")
        b.open_from_folder("square.png")
        image_id = a.js("return document.getElementById('imageinfo').title")
        check(image_id == b.js("return document.getElementById('imageinfo').title"),
              f"both pages are on image {image_id!r}")
        for page in (a, b):
            wait_for(f"{page.label} sees alice and bob present",
                     lambda page=page: {n for n, _ in page.presence()} >= {"alice", "bob"})
        check(True, "presence: each page lists alice and bob")

        # A clicks the object; B shows the new mask (read from its canvas) within 5 s of A's reply.
        x, y = SQUARE["object"]
        check(b.mask_at(x, y) == 0, "before the click, B shows no mask at the click")
        a.click_image(x, y)
        t = wait_for("A's click to be painted", lambda: (a.timings() or [{}])[0].get("paint") and a.timings()[0])
        check(t["ok"] and t["class"] == "object" and (t["x"], t["y"]) == (x, y),
              f"A's click reached the daemon as object at ({x}, {y}): version {t['version']}")
        seen_epoch = b.driver.execute_async_script("""
            const [x, y, deadline] = arguments, done = arguments[arguments.length - 1];
            const ctx = document.getElementById('mask-canvas').getContext('2d');
            const end = performance.now() + deadline;
            (function poll() {
              if (ctx.getImageData(x, y, 1, 1).data[3] > 0) return done(performance.timeOrigin + performance.now());
              if (performance.now() > end) return done(null);
              requestAnimationFrame(poll);
            })();""", x, y, 10000)
        check(seen_epoch is not None, "B's canvas shows the mask at A's click")
        delay = seen_epoch - t["replyEpoch"]
        print(f"MEASURED: A's round trip {t['reply'] - t['click']:.1f} ms; A paint - reply "
              f"{t['paint'] - t['reply']:.1f} ms; B shows the mask {delay:.1f} ms after A's reply", flush=True)
        check(delay <= 5000, f"B shows A's mask {delay:.1f} ms after A's reply (limit 5000 ms)")
        check(t["paint"] - t["reply"] <= 50, f"A: paint - reply = {t['paint'] - t['reply']:.1f} ms (limit 50 ms)")
        check(b.mask_at(*SQUARE["outside"]) == 0, "B shows no mask outside the object")
        wait_for("B on A's version", lambda: b.version() >= t["version"])

        # B clicks too (background, shift-click); then A undoes: only A's click goes, on both pages.
        b.click_image(*SQUARE["outside"], keys="shift")
        tb = wait_for("B's click to be painted", lambda: (b.timings() or [{}])[0].get("paint") and b.timings()[0])
        check(tb["ok"] and tb["class"] == "background", f"B's shift-click reached the daemon as background: "
              f"version {tb['version']}")
        wait_for("A on B's version", lambda: a.version() >= tb["version"])
        for page in (a, b):
            wait_for(f"{page.label} lists one click each",
                     lambda page=page: dict(page.presence()) == {"alice": "1 click", "bob": "1 click"})
        a.press("z")
        undo = wait_for("A's undo reply", lambda: [u for u in a.timings() if u["kind"] == "undo" and u.get("paint")])
        check(undo[0]["ok"], f"A's undo accepted: version {undo[0]['version']}")
        for page in (a, b):
            wait_for(f"{page.label} on the undo's version", lambda page=page: page.version() >= undo[0]["version"])
            wait_for(f"{page.label}: alice has no click, bob keeps his",
                     lambda page=page: dict(page.presence()) == {"alice": "", "bob": "1 click"})
        check(True, "undo in A removed only A's click on both pages")
        mask = http_json(args.url, "/images/" + urllib.parse.quote(image_id, safe="") + "/mask?format=rle")
        check(mask["clicks"] == 1 and mask["version"] == undo[0]["version"],
              f"the daemon has 1 active click at version {mask['version']}")
        for page in (a, b):
            wait_for(f"{page.label} shows no mask at A's undone click", lambda page=page: page.mask_at(x, y) == 0)
        a.screenshot("after-undo")
        b.screenshot("after-undo")

        # Keyboard: o steps the opacity; the downloads are the daemon's mask as PNG and as COCO RLE JSON.
        before = a.js("return document.getElementById('opacity').value")
        a.press("o")
        after = a.js("return document.getElementById('opacity').value")
        check(before != after, f"key o changes the opacity ({before}% -> {after}%)")
        a.find("#download-png").click()
        png_path = os.path.join(a.downloads, "square-mask.png")
        wait_for("the PNG download", lambda: os.path.exists(png_path) and os.path.getsize(png_path) > 8)
        with open(png_path, "rb") as f:
            check(f.read(8) == b"\x89PNG\r\n\x1a\n", f"Mask PNG downloads a PNG ({os.path.getsize(png_path)} bytes)")
        a.find("#download-rle").click()
        rle_path = os.path.join(a.downloads, "square-mask.json")
        wait_for("the RLE download", lambda: os.path.exists(rle_path) and os.path.getsize(rle_path) > 0)
        with open(rle_path) as f:
            downloaded = json.load(f)
        check(downloaded["version"] == mask["version"] and downloaded["mask"] == mask["mask"],
              f"RLE JSON downloads the daemon's mask (version {downloaded['version']})")

        # A file that is not an image: the daemon's error is shown on the page.
        a.expect_failure("POST", "/api/v1/images", 400)
        a.find("#file").send_keys(os.path.join(args.folder, "notes.txt"))
        error = wait_for("the error on page A",
                         lambda: a.find("#error").is_displayed() and a.find("#error").text)
        check(a.find("#error").get_attribute("data-code") == "bad_image",
              f"page A shows the daemon's bad_image error: {error!r}")
        a.screenshot("not-an-image")

        # Reloading B shows the current mask.
        a.click_image(*SQUARE["object2"])
        t2 = wait_for("A's second click", lambda: [u for u in a.timings() if u["kind"] == "feedback"
                                                   and u.get("paint") and u["x"] == SQUARE["object2"][0]])
        b.collect_network()
        b.driver.refresh()
        wait_for("B ready after reload", lambda: b.js("return document.body.dataset.ready === 'true'"))
        b.wait_live()
        wait_for("B (reloaded) on the current version", lambda: b.version() == t2[0]["version"])
        check(b.mask_at(*SQUARE["object2"]) > 0 and b.mask_at(*SQUARE["outside"]) == 0,
              f"B after reload shows the current mask (version {b.version()})")
        b.screenshot("after-reload")

        # A three-class session: the palette is shown, and the class chosen reaches the daemon.
        a.open_from_folder("three.png", classes="sky, grass, background")
        check(a.find("#palette-section").is_displayed(), "the palette is shown for three classes")
        swatches = a.js("return [...document.querySelectorAll('#palette .swatch')].map(b => b.dataset.class)")
        check(swatches == ["sky", "grass", "background"], f"palette: {swatches}")
        a.press("2")
        check(a.js("return document.querySelector('#palette .swatch.selected').dataset.class") == "grass",
              "key 2 selects grass")
        three_id = a.js("return document.getElementById('imageinfo').title")
        a.click_image(40, 90)   # three.png: grass in the lower part
        t3 = wait_for("the grass click", lambda: [u for u in a.timings() if u.get("class") == "grass"
                                                  and u.get("paint")])
        check(t3[0]["ok"], f"grass click accepted: version {t3[0]['version']}")
        mask = http_json(args.url, "/images/" + urllib.parse.quote(three_id, safe="") + "/mask?format=rle")
        check(rle_pixel(mask["class_masks"]["grass"], 40, 90) == 1,
              "the daemon's grass mask covers the click (the chosen class reached the daemon)")
        check(a.mask_at(40, 90) > 0, "page A shows the grass mask")
        a.screenshot("three-classes")

        for page in pages:
            page.assert_clean()
        print("PASS", flush=True)
        return 0
    except CheckFailed as e:
        print(f"FAILED: {e}", flush=True)
        for page in pages:
            try:
                page.screenshot("failure")
                page.collect_network()
                print(f"{page.label}: failed requests {page.failures}, console errors {page.console_errors}")
            except Exception:
                pass
        return 1
    finally:
        for page in pages:
            page.quit()


def synthetic_png(path, width=480, height=320):
    """A synthetic photo-like scene for the README's screenshot: a gradient, an orange ellipse, a grey block."""
    import struct
    import zlib
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            n = (x * 7 + y * 13) % 11
            if ((x - 190) / 110) ** 2 + ((y - 170) / 80) ** 2 < 1:
                shade = int(40 * (y - 90) / 160)
                rows += bytes((236 - shade + n, 140 - shade + n, 52 + n))
            elif 320 <= x < 430 and 60 <= y < 150:
                rows += bytes((150 + n, 156 + n, 166 + n))
            else:
                rows += bytes((20 + x // 16 + n, 60 + y // 8 + n, 90 + x // 12 + n))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


def docs_screenshot(args):
    """Two annotators on a synthetic scene; saves bob's page (the screenshot in README.md and docs/WEB.md)."""
    os.makedirs(args.screenshots, exist_ok=True)
    image = os.path.join(args.screenshots, "scene.png")
    synthetic_png(image)
    a, b = Page("A", args.url, args.screenshots), Page("B", args.url, args.screenshots)
    try:
        a.load("alice")
        b.load("bob")
        for page in (a, b):
            page.find("#file").send_keys(image)
            page.wait_live()
        for page, x, y, keys in ((a, 190, 170, ""), (b, 120, 200, ""), (a, 370, 100, "shift"), (b, 40, 40, "shift")):
            before = len(page.timings())
            page.click_image(x, y, keys=keys)
            wait_for("the click's paint", lambda page=page, n=before: len([t for t in page.timings()
                                                                          if t.get("paint")]) > n)
        wait_for("B on the last version", lambda: b.version() == a.version() == 4)
        wait_for("B's session list on the last version",
                 lambda: "v4 " in b.find("#sessions").text)
        b.driver.save_screenshot(args.docs_screenshot)
        print(f"docs screenshot: {args.docs_screenshot}")
        return 0
    finally:
        a.quit()
        b.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:5580")
    parser.add_argument("--folder", required=True, help="the daemon's http.image_folder")
    parser.add_argument("--screenshots", required=True, help="folder for the pages' screenshots")
    parser.add_argument("--docs-screenshot", help="instead of the test, save the README's screenshot here")
    args = parser.parse_args()
    sys.exit(docs_screenshot(args) if args.docs_screenshot else run(args))


if __name__ == "__main__":
    main()
