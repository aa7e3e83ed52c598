// Geometry shared by the pages: the box corners, the polygon rules (the same arithmetic as
// schemas/annotations.py, in the same order, so both sides reach the same verdict), and COCO
// run-length encoding of masks.

/** The four corners of a box, clockwise from top-left, rotated about its centre. */
export function boxCorners(box) {
  const cx = box.x + box.w / 2;
  const cy = box.y + box.h / 2;
  const theta = (box.angle || 0) * (Math.PI / 180);
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const out = [];
  for (const [dx, dy] of [[-1, -1], [1, -1], [1, 1], [-1, 1]]) {
    const px = (dx * box.w) / 2;
    const py = (dy * box.h) / 2;
    out.push([cx + px * cos - py * sin, cy + px * sin + py * cos]);
  }
  return out;
}

export function shoelace(points) {
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    const [x1, y1] = points[i];
    const [x2, y2] = points[(i + 1) % points.length];
    sum += x1 * y2 - x2 * y1;
  }
  return 0.5 * sum;
}

function orientation(p, q, r) {
  const v = (q[1] - p[1]) * (r[0] - q[0]) - (q[0] - p[0]) * (r[1] - q[1]);
  return Math.abs(v) < 1e-12 ? 0 : v > 0 ? 1 : 2;
}

function onSegment(p, q, r) {
  return (
    Math.min(p[0], r[0]) <= q[0] &&
    q[0] <= Math.max(p[0], r[0]) &&
    Math.min(p[1], r[1]) <= q[1] &&
    q[1] <= Math.max(p[1], r[1])
  );
}

function segmentsCross(a, b, c, d) {
  const o1 = orientation(a, b, c);
  const o2 = orientation(a, b, d);
  const o3 = orientation(c, d, a);
  const o4 = orientation(c, d, b);
  if (o1 !== o2 && o3 !== o4) return true;
  return (
    (o1 === 0 && onSegment(a, c, b)) ||
    (o2 === 0 && onSegment(a, d, b)) ||
    (o3 === 0 && onSegment(c, a, d)) ||
    (o4 === 0 && onSegment(c, b, d))
  );
}

const samePoint = (a, b) => a[0] === b[0] && a[1] === b[1];

/** Do two non-adjacent edges of the closed polygon touch or cross? (The server's rule.) */
export function selfIntersects(points) {
  let pts = points.filter((p, i) => i === 0 || !samePoint(p, points[i - 1]));
  if (pts.length > 1 && samePoint(pts[0], pts[pts.length - 1])) pts = pts.slice(0, -1);
  const n = pts.length;
  const edges = pts.map((p, i) => [p, pts[(i + 1) % n]]);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) continue; // adjacent edges share a vertex
      if (segmentsCross(edges[i][0], edges[i][1], edges[j][0], edges[j][1])) return true;
    }
  }
  return false;
}

export function distinctCount(points) {
  return new Set(points.map((p) => `${p[0]},${p[1]}`)).size;
}

// ---- masks ------------------------------------------------------------------------------
// A mask in the page is a Uint8Array bitmap, row-major, width * height, 1 = inside. On the
// wire it is COCO RLE: {"size": [height, width], "counts": [...]}, uncompressed counts of
// alternating runs of 0 and 1 over the pixels in column-major order, starting with 0s.

export function bitmapToRle(bitmap, width, height) {
  const counts = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = bitmap[y * width + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

/** COCO's compressed string counts (pycocotools rleFrString). */
export function decodeCountsString(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

export function rleToBitmap(rle) {
  const [height, width] = rle.size;
  const counts = typeof rle.counts === "string" ? decodeCountsString(rle.counts) : rle.counts;
  const bitmap = new Uint8Array(width * height);
  let index = 0;
  let value = 0;
  for (const run of counts) {
    if (value) {
      for (let i = index; i < index + run && i < width * height; i++) {
        const x = Math.floor(i / height);
        const y = i % height;
        bitmap[y * width + x] = 1;
      }
    }
    index += run;
    value = 1 - value;
  }
  return { bitmap, width, height };
}

export function bitmapIsEmpty(bitmap) {
  for (let i = 0; i < bitmap.length; i++) if (bitmap[i]) return false;
  return true;
}

/**
 * Paint a shape into a copy of a bitmap: ``draw(ctx)`` draws in image pixels onto a canvas
 * that covers ``bounds`` ([x0, y0, x1, y1]); pixels it covers (alpha >= 128) are set, or
 * cleared when ``erase``. Only the bounds are read back, so a stroke on a large image is cheap.
 */
export function paintBitmap(bitmap, width, height, bounds, draw, { erase = false } = {}) {
  const x0 = Math.max(0, Math.floor(bounds[0]));
  const y0 = Math.max(0, Math.floor(bounds[1]));
  const x1 = Math.min(width, Math.ceil(bounds[2]));
  const y1 = Math.min(height, Math.ceil(bounds[3]));
  const out = bitmap ? bitmap.slice() : new Uint8Array(width * height);
  if (x1 <= x0 || y1 <= y0) return out;
  const canvas = document.createElement("canvas");
  canvas.width = x1 - x0;
  canvas.height = y1 - y0;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.translate(-x0, -y0);
  ctx.fillStyle = "#000";
  ctx.strokeStyle = "#000";
  draw(ctx);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      if (data[((y - y0) * canvas.width + (x - x0)) * 4 + 3] >= 128) {
        out[y * width + x] = erase ? 0 : 1;
      }
    }
  }
  return out;
}

/** A polygon filled into a mask (the "polygon" way of drawing masks). */
export function paintPolygon(bitmap, width, height, points, options) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const bounds = [Math.min(...xs) - 1, Math.min(...ys) - 1, Math.max(...xs) + 1, Math.max(...ys) + 1];
  return paintBitmap(
    bitmap,
    width,
    height,
    bounds,
    (ctx) => {
      ctx.beginPath();
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.fill();
    },
    options,
  );
}

/** A brush stroke (round caps and joins, ``size`` pixels wide) painted into a mask. */
export function paintStroke(bitmap, width, height, points, size, options) {
  const r = size / 2 + 1;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const bounds = [Math.min(...xs) - r, Math.min(...ys) - r, Math.max(...xs) + r, Math.max(...ys) + r];
  return paintBitmap(
    bitmap,
    width,
    height,
    bounds,
    (ctx) => {
      ctx.lineWidth = size;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (points.length === 1) ctx.lineTo(points[0][0] + 0.01, points[0][1]);
      ctx.stroke();
    },
    options,
  );
}

/** A data: URL picturing a bitmap in one colour (for the SVG <image> of a mask). */
const maskImages = new WeakMap();
export function bitmapImage(bitmap, width, height, color) {
  const cached = maskImages.get(bitmap);
  if (cached && cached.color === color) return cached.url;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const [r, g, b] = hexToRgb(color);
  for (let i = 0; i < bitmap.length; i++) {
    if (!bitmap[i]) continue;
    image.data[i * 4] = r;
    image.data[i * 4 + 1] = g;
    image.data[i * 4 + 2] = b;
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const url = canvas.toDataURL("image/png");
  maskImages.set(bitmap, { color, url });
  return url;
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
