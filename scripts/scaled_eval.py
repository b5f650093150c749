#!/usr/bin/env python3
"""NoC of GrabCut or Berkeley at native size against the same images scaled up (docs/PERFORMANCE.md, "Large images").

Writes, under a fresh folder in /tmp, the benchmark's images and masks twice as a `probattn eval --dataset folder`
pair: at native size and scaled to about --megapixels (each image by its own factor, aspect kept; images with PIL's
LANCZOS, masks with NEAREST so their values stay 0/128/255), then runs `probattn eval --dataset folder` on both with
the same options (the click simulator places its clicks on the scaled masks, so clicks scale with the image) and
prints both summaries and the NoC@90 difference. Nothing is written into the repository.

    python3 scripts/scaled_eval.py --dataset grabcut --root ../shared/datasets/GrabCut --limit 10 \
        --probattn .build/release/probattn [--megapixels 12] [--config Config/probattnd.yaml] [--keep]

GrabCut masks: 255 object, 128 ignored (`--object-value 255 --ignore-value 128`). Berkeley masks are thresholded at
> 127 and written 0/255; pairs.tsv pairs masks with images, and the image its transform names is rotated first.
The JSON of both summaries goes to --out (default: the temporary folder's results.json).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image


def grabcut_pairs(root):
    images = {os.path.splitext(n)[0]: os.path.join(root, "data_GT", n) for n in os.listdir(os.path.join(root, "data_GT"))}
    pairs = []
    for name in sorted(os.listdir(os.path.join(root, "boundary_GT"))):
        stem = os.path.splitext(name)[0]
        pairs.append((stem, images[stem], os.path.join(root, "boundary_GT", name), "none"))
    return pairs


def berkeley_pairs(root):
    with open(os.path.join(root, "pairs.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    return sorted((os.path.splitext(os.path.basename(r["mask"]))[0], os.path.join(root, r["image"]),
                   os.path.join(root, r["mask"]), r["image_transform_to_match_mask"]) for r in rows)


def write_pair(out, stem, image, mask, size):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    if size is not None:
        image = image.resize(size, Image.LANCZOS)
        mask = mask.resize(size, Image.NEAREST)
    # PNG for both: no second lossy compression of the scaled image.
    image.save(os.path.join(out, "images", stem + ".png"))
    mask.save(os.path.join(out, "masks", stem + ".png"))


def run_eval(probattn, folder, dataset, extra):
    args = [probattn, "eval", "--dataset", "folder", "--images", os.path.join(folder, "images"),
            "--masks", os.path.join(folder, "masks"), "--report", os.path.join(folder, "report")]
    if dataset == "grabcut":
        args += ["--object-value", "255", "--ignore-value", "128"]
    args += extra
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)
    with open(os.path.join(folder, "report", "summary.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["grabcut", "berkeley"], required=True)
    parser.add_argument("--root", required=True, help="the dataset's folder, e.g. ../shared/datasets/GrabCut")
    parser.add_argument("--probattn", default=".build/release/probattn")
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--limit", type=int, help="only the first N instances (sorted by name)")
    parser.add_argument("--config", help="passed to probattn eval --config")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--out", help="write both summaries as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    pairs = grabcut_pairs(args.root) if args.dataset == "grabcut" else berkeley_pairs(args.root)
    if args.limit:
        pairs = pairs[:args.limit]
    work = tempfile.mkdtemp(prefix="probattn-scaled-", dir="/tmp")
    native, scaled = os.path.join(work, "native"), os.path.join(work, "scaled")
    for stem, image_path, mask_path, transform in pairs:
        image = Image.open(image_path).convert("RGB")
        if transform == "rotate_90_clockwise":
            image = image.transpose(Image.ROTATE_270)
        mask = Image.open(mask_path).convert("L")
        if args.dataset == "berkeley":
            mask = mask.point(lambda v: 255 if v > 127 else 0)
        factor = math.sqrt(args.megapixels * 1e6 / (image.width * image.height))
        size = (round(image.width * factor), round(image.height * factor))
        write_pair(native, stem, image, mask, None)
        write_pair(scaled, stem, image, mask, size)
    print(f"{len(pairs)} instances; native and ~{args.megapixels:g} MP copies in {work}", flush=True)

    extra = ["--max-clicks", str(args.max_clicks), "--jobs", str(args.jobs)]
    if args.config:
        extra += ["--config", args.config]
    results = {"native": run_eval(args.probattn, native, args.dataset, extra),
               "scaled": run_eval(args.probattn, scaled, args.dataset, extra)}
    results["megapixels"] = args.megapixels
    results["noc90_difference"] = results["scaled"]["noc90"] - results["native"]["noc90"]
    results["noc85_difference"] = results["scaled"]["noc85"] - results["native"]["noc85"]
    for which in ["native", "scaled"]:
        s = results[which]
        print(f"{which}: {s['images']} instances, NoC@85 {s['noc85']:.3f}, NoC@90 {s['noc90']:.3f}, "
              f">=20@90 {s['fail90']}")
    print(f"NoC@90 scaled - native: {results['noc90_difference']:+.3f}; "
          f"NoC@85: {results['noc85_difference']:+.3f}")
    out = args.out or os.path.join(work, "results.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    print(f"results: {out}")
    if not args.keep:  # the scaled images are large; the reports and results.json stay
        for folder in [native, scaled]:
            shutil.rmtree(os.path.join(folder, "images"))
            shutil.rmtree(os.path.join(folder, "masks"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
