#!/usr/bin/env python3
"""Error analysis of a `probattn eval --save-click-masks` report (docs/RESULTS.md, "Kinds of remaining error").

Reads the report's instances.json, the mask after every click (clicks/<name>/click-NN.png) and the token footprint
(clicks/<name>/tokens.png), the dataset's ground truth and images (colours only), and sorts the remaining errors into
kinds by measurable rules (the RULES text below, printed with --rules). Writes a JSON summary; with --figures DIR it
draws error maps of chosen instances (GT outline, FP, FN, clicks; no photo pixels).

    python3 scripts/error_analysis.py --report R --dataset grabcut --root ../shared/datasets/GrabCut --out R/kinds.json
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

RULES = """
Pixels (for an error mask E = FP | FN over non-ignored pixels), in this order of priority:
  thin      the pixel's true class is narrower than a token there: it belongs to the true-class region but not to
            its opening by a disc of radius THIN_RADIUS (4 px: parts under ~9 px wide, below the 8 px token)
  boundary  within BOUNDARY_PX (3 px) of the GT boundary (and not thin)
  multi     FN component (region error, the rest of E's connected component) whose mean CIELAB colour is more than
            MULTI_DE (20) from the colour of every positive click so far (7x7 mean at the click): an object part
            of another colour than any clicked part
  lookalike FP component whose mean colour is within LOOK_DE (12) of some positive click's colour: background that
            looks like a clicked part of the object
  other     the rest (FN of a clicked colour, FP of another colour)
Clicks (each click before the instance first reaches 90 % IoU that gains less than 1 IoU point):
  a flip: IoU falls (gain < 0) and the pixels the click turned wrong exceed FLIP_FRACTION (1 %) of the object;
  flip_straddle     a flip where the clicked token straddles the GT boundary (minority class >= 10 % of its
                    footprint) or a token reached by clicks of both classes (within the 3 px click radius) lies in
                    the region that turned wrong
  spread_lookalike  another flip whose turned-wrong region lies mostly (> 50 %) in components not within 8 px of
                    the click, with a mean colour within LOOK_DE of the clicked pixel's: the click's class spread
                    through the units to a distant region that looks like the clicked pixel
  spread_other      the remaining flips (next to the click, or of another colour)
  thin / boundary / multi / lookalike / other   the kind of the clicked pixel in the previous mask's error (pixel
            rules above; the click's own component decides multi / lookalike)
Instances that never reach 90 %: the kind holding most error pixels of the final mask; 'flips' counts those with a
flip event (a drop > 0.2 IoU whose turned-wrong region holds a straddling or two-class token).
"""

THIN_RADIUS = 4
BOUNDARY_PX = 3
MULTI_DE = 20.0
LOOK_DE = 12.0
FLIP_FRACTION = 0.01
CLICK_RADIUS = 3


def srgb_to_lab(rgb):
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def load_instance_files(dataset, root, name):
    """(rgb HxWx3, truth HxW int8: 1 object, 0 background, -1 ignore)."""
    if dataset == "grabcut":
        images = os.listdir(os.path.join(root, "data_GT"))
        image = next(f for f in images if os.path.splitext(f)[0] == name)
        rgb = np.asarray(Image.open(os.path.join(root, "data_GT", image)).convert("RGB"))
        m = np.asarray(Image.open(os.path.join(root, "boundary_GT", name + ".bmp")))
        if m.ndim == 3:
            m = m.max(-1)
        truth = np.where(m == 128, -1, np.where(m > 128, 1, 0)).astype(np.int8)
    else:
        rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(root, "pairs.tsv"))][1:]
        row = next(r for r in rows if os.path.splitext(os.path.basename(r[0]))[0] == name)
        rgb = np.asarray(Image.open(os.path.join(root, row[1])).convert("RGB"))
        if row[3] == "rotate_90_clockwise":
            rgb = np.rot90(rgb, k=-1)
        m = np.asarray(Image.open(os.path.join(root, row[0])))
        if m.ndim == 3:
            m = m.max(-1)
        truth = (m > 127).astype(np.int8)
    return np.ascontiguousarray(rgb), truth


def disc(r):
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


class Instance:
    def __init__(self, record, dataset, root, report):
        self.name = record["name"]
        self.ious = record["ious"]
        self.clicks = record["clicks"]
        self.noc90 = record["noc90"]
        rgb, self.truth = load_instance_files(dataset, root, self.name)
        self.lab = srgb_to_lab(rgb)
        folder = os.path.join(report, "clicks", self.name)
        self.masks = [np.asarray(Image.open(os.path.join(folder, "click-%02d.png" % (k + 1))).convert("L")) > 127
                      for k in range(len(self.ious))]
        t = np.asarray(Image.open(os.path.join(folder, "tokens.png")).convert("RGB")).astype(np.int32)
        self.tokens = t[..., 0] * 256 + t[..., 1]
        self.valid = self.truth >= 0
        obj = self.truth == 1
        bg = self.truth == 0
        self.obj = obj
        # thin parts: pixels of a class region removed by an opening with a disc (narrower than the token)
        se = disc(THIN_RADIUS)
        thin_obj = obj & ~ndimage.binary_opening(obj, structure=se)
        thin_bg = bg & ~ndimage.binary_opening(bg, structure=se, border_value=1)
        self.thin = thin_obj | thin_bg
        edge = obj ^ ndimage.binary_erosion(obj, structure=np.ones((3, 3)), border_value=1)
        edge |= bg & ndimage.binary_dilation(obj, structure=np.ones((3, 3)))
        self.boundary = ndimage.distance_transform_edt(~edge) <= BOUNDARY_PX
        # token purity: minority GT share of each token's (non-ignored) footprint
        n = self.tokens.max() + 1
        tv = self.tokens[self.valid]
        count = np.bincount(tv, minlength=n).astype(np.float64)
        objc = np.bincount(tv, weights=obj[self.valid].astype(np.float64), minlength=n)
        share = np.divide(objc, count, out=np.zeros(n), where=count > 0)
        self.straddles = np.minimum(share, 1 - share) >= 0.10
        self.token_count = n
        self.object_area = max(1, int(obj.sum()))

    def click_colour(self, c):
        y, x = c["y"], c["x"]
        patch = self.lab[max(0, y - 3):y + 4, max(0, x - 3):x + 4].reshape(-1, 3)
        return patch.mean(0)

    def positive_colours(self, upto):
        return np.array([self.click_colour(c) for c in self.clicks[:upto] if c["positive"]])

    def mixed_tokens(self, upto):
        """Tokens reached (within the click radius) by clicks of both classes among the first `upto` clicks."""
        h, w = self.tokens.shape
        reach = [set(), set()]
        for c in self.clicks[:upto]:
            y0, y1 = max(0, c["y"] - CLICK_RADIUS), min(h, c["y"] + CLICK_RADIUS + 1)
            x0, x1 = max(0, c["x"] - CLICK_RADIUS), min(w, c["x"] + CLICK_RADIUS + 1)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            inside = (yy - c["y"]) ** 2 + (xx - c["x"]) ** 2 <= CLICK_RADIUS ** 2
            reach[0 if c["positive"] else 1].update(np.unique(self.tokens[y0:y1, x0:x1][inside]).tolist())
        return reach[0] & reach[1]

    def pixel_kinds(self, k):
        """Error pixels of the mask after click k (1-based; 0 = empty prediction) by kind."""
        pred = self.masks[k - 1] if k > 0 else np.zeros_like(self.obj)
        fn = self.obj & ~pred & self.valid
        fp = ~self.obj & pred & self.valid
        kind = {}
        err = fn | fp
        thin = err & self.thin
        boundary = err & self.boundary & ~thin
        region = err & ~thin & ~boundary
        kind["thin"] = thin
        kind["boundary"] = boundary
        colours = self.positive_colours(k)
        multi = np.zeros_like(err)
        look = np.zeros_like(err)
        for mask, is_fn in ((fn & region, True), (fp & region, False)):
            lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
            if n == 0:
                continue
            means = np.stack([ndimage.mean(self.lab[..., j], lab, index=np.arange(1, n + 1)) for j in range(3)], -1)
            if len(colours):
                d = np.sqrt(((means[:, None, :] - colours[None, :, :]) ** 2).sum(-1)).min(1)
            else:
                d = np.full(n, np.inf)
            sel = np.concatenate([[False], d > MULTI_DE]) if is_fn else np.concatenate([[False], d <= LOOK_DE])
            (multi if is_fn else look)[sel[lab]] = True
        kind["multi"] = multi
        kind["lookalike"] = look
        kind["other"] = region & ~multi & ~look
        return kind, fn, fp

    def click_kind(self, k):
        """Kind of click k (1-based) and whether it is a straddling flip."""
        prev = self.masks[k - 2] if k > 1 else np.zeros_like(self.obj)
        cur = self.masks[k - 1]
        gain = self.ious[k - 1] - (self.ious[k - 2] if k > 1 else 0.0)
        turned_wrong = self.valid & ((prev == self.obj) & (cur != self.obj))
        c = self.clicks[k - 1]
        if gain < 0 and turned_wrong.sum() > FLIP_FRACTION * self.object_area:
            self.last_flip = self.flip_detail(k, turned_wrong)
            straddle = self.flip_straddles(k, turned_wrong)
            if straddle:
                return "flip_straddle", True
            far = self.last_flip["connected_to_click"] < 0.5
            if far and self.last_flip["delta_e_to_click"] <= LOOK_DE:
                return "spread_lookalike", False
            return "spread_other", False
        kinds, _, _ = self.pixel_kinds(k - 1)
        for name in ("thin", "boundary", "multi", "lookalike"):
            if kinds[name][c["y"], c["x"]]:
                return name, False
        return "other", False

    def flip_detail(self, k, turned_wrong):
        """How a flip looks: which way the pixels turned (to the click's class or away from it), how far from the
        click, and how close in colour to the clicked pixel."""
        c = self.clicks[k - 1]
        cls = 1 if c["positive"] else 0  # the GT value of the click's class
        cur = self.masks[k - 1]
        to_click_class = turned_wrong & ((cur == 1) == (cls == 1))
        h, w = cur.shape
        ys, xs = np.nonzero(turned_wrong)
        dist = np.sqrt((ys - c["y"]) ** 2 + (xs - c["x"]) ** 2)
        colour = self.lab[turned_wrong].mean(0)
        de = float(np.sqrt(((colour - self.click_colour(c)) ** 2).sum()))
        lab, n = ndimage.label(turned_wrong, structure=np.ones((3, 3)))
        touching = 0
        if n:
            near = np.zeros_like(turned_wrong)
            near[max(0, c["y"] - 8):c["y"] + 9, max(0, c["x"] - 8):c["x"] + 9] = True
            ids = np.unique(lab[near & turned_wrong])
            touching = int(np.isin(lab, ids[ids > 0]).sum())
        return {"positive": c["positive"], "pixels": int(turned_wrong.sum()),
                "to_click_class": float(to_click_class.sum() / max(1, turned_wrong.sum())),
                "median_distance": float(np.median(dist)), "delta_e_to_click": round(de, 1),
                "connected_to_click": float(touching / max(1, turned_wrong.sum())),
                "object_fraction": float(turned_wrong.sum() / self.object_area)}

    def flip_straddles(self, k, turned_wrong):
        c = self.clicks[k - 1]
        if self.straddles[self.tokens[c["y"], c["x"]]]:
            return True
        mixed = self.mixed_tokens(k)
        if mixed and np.isin(self.tokens[turned_wrong], list(mixed)).any():
            return True
        return False

    def flip_events(self):
        events = []
        for k in range(2, len(self.ious) + 1):
            if self.ious[k - 2] - self.ious[k - 1] > 0.2:
                prev, cur = self.masks[k - 2], self.masks[k - 1]
                turned_wrong = self.valid & ((prev == self.obj) & (cur != self.obj))
                events.append((k, self.ious[k - 2] - self.ious[k - 1], self.flip_straddles(k, turned_wrong)))
        return events


def analyse(args):
    records = json.load(open(os.path.join(args.report, "instances.json")))
    if isinstance(records, dict):
        records = records.get("instances", records)
    kinds = ["flip_straddle", "spread_lookalike", "spread_other", "thin", "boundary", "multi", "lookalike", "other"]
    click_counts = {k: 0 for k in kinds}
    straddling_flips = 0
    low_clicks = 0
    failed = []
    pixel_totals = {k: 0 for k in kinds[3:]}
    final_pixel_totals = {k: 0 for k in kinds[3:]}
    flip_events = 0
    flip_events_straddling = 0
    per_instance = []
    for record in records:
        inst = Instance(record, args.dataset, args.root, args.report)
        reached = next((i + 1 for i, v in enumerate(inst.ious) if v >= 0.9), None)
        last = (reached - 1) if reached else len(inst.ious)
        clicks = []
        for k in range(1, last + 1):
            gain = inst.ious[k - 1] - (inst.ious[k - 2] if k > 1 else 0.0)
            if gain < 0.01:
                inst.last_flip = None
                kind, straddle = inst.click_kind(k)
                click_counts[kind] += 1
                straddling_flips += int(straddle)
                low_clicks += 1
                clicks.append({"click": k, "gain": round(gain, 4), "kind": kind, "straddle": straddle,
                               "flip": inst.last_flip})
        events = inst.flip_events()
        flip_events += len(events)
        flip_events_straddling += sum(1 for e in events if e[2])
        pk, _, _ = inst.pixel_kinds(len(inst.ious))
        for name in pixel_totals:
            final_pixel_totals[name] += int(pk[name].sum())
        entry = {"name": inst.name, "noc90": inst.noc90, "final_iou": inst.ious[-1], "low_gain_clicks": clicks,
                 "flip_events": [{"click": e[0], "drop": round(e[1], 3), "straddle": e[2]} for e in events],
                 "final_error_pixels": {n: int(pk[n].sum()) for n in pixel_totals}}
        if reached is None:
            dominant = max(pixel_totals, key=lambda n: int(pk[n].sum()))
            entry["kind"] = dominant
            failed.append(entry)
            for name in pixel_totals:
                pixel_totals[name] += int(pk[name].sum())
        per_instance.append(entry)
        print(f"{inst.name}: noc90 {inst.noc90} low-gain {len(clicks)} flips {len(events)}", file=sys.stderr)
    out = {
        "report": os.path.basename(os.path.normpath(args.report)),
        "dataset": args.dataset,
        "instances": len(records),
        "rules": {"thin_radius": THIN_RADIUS, "boundary_px": BOUNDARY_PX, "multi_de": MULTI_DE, "look_de": LOOK_DE,
                  "flip_fraction": FLIP_FRACTION},
        "low_gain_clicks": low_clicks,
        "low_gain_click_kinds": click_counts,
        "low_gain_straddling_flips": straddling_flips,
        "failed_instances": len(failed),
        "failed_kinds": {k: sum(1 for f in failed if f["kind"] == k) for k in pixel_totals},
        "failed_with_flip": sum(1 for f in failed if any(e["straddle"] for e in f["flip_events"])),
        "failed_error_pixels": pixel_totals,
        "final_error_pixels_all": final_pixel_totals,
        "flip_events": flip_events,
        "flip_events_straddling": flip_events_straddling,
        "per_instance": per_instance,
    }
    json.dump(out, open(args.out, "w"), indent=1)
    brief = {k: v for k, v in out.items() if k != "per_instance"}
    print(json.dumps(brief, indent=1))


def figure(args):
    """Error map of one instance after one click: background white, GT outline black, FP orange, FN blue,
    positive clicks green dots, negative clicks red dots; the newest click ringed. No photo pixels."""
    records = json.load(open(os.path.join(args.report, "instances.json")))
    record = next(r for r in records if r["name"] == args.name)
    inst = Instance(record, args.dataset, args.root, args.report)
    k = args.click
    pred = inst.masks[k - 1]
    out = np.full(pred.shape + (3,), 255, np.uint8)
    fn = inst.obj & ~pred & inst.valid
    fp = ~inst.obj & pred & inst.valid
    out[inst.obj & pred] = (225, 225, 225)
    out[~inst.valid] = (245, 245, 200)
    out[fp] = (240, 140, 30)
    out[fn] = (40, 110, 230)
    edge = inst.obj ^ ndimage.binary_erosion(inst.obj, structure=np.ones((3, 3)), border_value=1)
    out[edge] = (0, 0, 0)
    h, w = pred.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for i, c in enumerate(inst.clicks[:k]):
        d2 = (yy - c["y"]) ** 2 + (xx - c["x"]) ** 2
        if i == k - 1:
            out[(d2 <= 64) & (d2 >= 36)] = (0, 0, 0)
        out[d2 <= 16] = (20, 160, 60) if c["positive"] else (210, 30, 30)
    img = Image.fromarray(out)
    if args.scale != 1:
        img = img.resize((int(w * args.scale), int(h * args.scale)), Image.NEAREST)
    img = img.quantize(colors=16)
    img.save(args.png, optimize=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", required=True)
    p.add_argument("--dataset", choices=["grabcut", "berkeley"], required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--out")
    p.add_argument("--rules", action="store_true")
    p.add_argument("--name", help="draw the error map of this instance (with --click and --png)")
    p.add_argument("--click", type=int)
    p.add_argument("--png")
    p.add_argument("--scale", type=float, default=0.5)
    args = p.parse_args()
    if args.rules:
        print(RULES)
        return
    if args.name:
        figure(args)
    else:
        analyse(args)


if __name__ == "__main__":
    main()
