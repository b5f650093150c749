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

/** Decodes an RLE into a row-major Uint8Array of height × width with 1 inside the mask. */
function rleDecode(rle) {
  const [height, width] = rle.size;
  const out = new Uint8Array(width * height);
  const runs = typeof rle.counts === "string" ? rleRuns(rle.counts) : rle.counts;
  let p = 0, value = 0;
  for (const n of runs) {
    if (value) {
      for (let j = p; j < p + n; j++) {
        const x = (j / height) | 0, y = j - x * height;   // column-major index -> (x, y)
        out[y * width + x] = 1;
      }
    }
    p += n;
    value ^= 1;
  }
  return out;
}

window.ProbattnRLE = { rleRuns, rleDecode };
