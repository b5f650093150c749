// COCO RLE (docs/PROTOCOL.md §3): {"size": [height, width], "counts": "<string>"}, read column-major, alternating
// runs starting with zeros, each run in LEB128-like 5-bit groups offset by 48, runs after the third stored as the
// difference to the run two before (what pycocotools.mask.encode writes).
"use strict";

/** The run lengths of a compressed COCO counts string. */
function rleRuns(counts) {
  const runs = [];
  let i = 0;
  while (i < counts.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = counts.charCodeAt(i) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      i += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

/** Sets out[y * width + x] = value for every pixel (x, y) inside the mask (row-major output; no per-pixel division). */
function rleFill(rle, out, value) {
  const [height, width] = rle.size;
  const runs = typeof rle.counts === "string" ? rleRuns(rle.counts) : rle.counts;
  let p = 0, inside = 0;
  for (const n of runs) {
    if (inside && n > 0) {
      let x = (p / height) | 0, y = p - x * height, left = n;
      while (left > 0) {                     // the run, cut at column ends
        const take = Math.min(left, height - y);
        for (let k = 0, q = y * width + x; k < take; k++, q += width) out[q] = value;
        left -= take;
        y = 0;
        x += 1;
      }
    }
    p += n;
    inside ^= 1;
  }
  return out;
}

/** Decodes an RLE into a row-major Uint8Array of height × width with 1 inside the mask. */
function rleDecode(rle) {
  return rleFill(rle, new Uint8Array(rle.size[0] * rle.size[1]), 1);
}

window.ProbattnRLE = { rleRuns, rleDecode, rleFill };
