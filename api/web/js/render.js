// Drawing answers on the stage: one function per geometry, used by the editor (editable, with
// handles) and by the review page (read-only overlays, one colour per annotator).

import { bitmapImage, boxCorners, rleToBitmap } from "./geometry.js";
import { s } from "./dom.js";

/**
 * Render one object into ``group``. ``obj`` is the page's form of an answer object (masks
 * carry a ``bitmap``; wire-form masks with ``rle`` are decoded once). Returns the element.
 */
export function renderObject(group, obj, { color, cls, stage, index, selected = false, dashed = false, layer = "" }) {
  const g = s("g", {
    class: `obj obj-${obj.type}${selected ? " selected" : ""}${dashed ? " dashed" : ""}`,
    "data-index": index,
    "data-layer": layer,
  });
  g.style.setProperty("--color", color);
  if (obj.type === "box") {
    const pts = boxCorners(obj).map((p) => p.join(",")).join(" ");
    g.append(s("polygon", { points: pts, class: "shape fill" }));
  } else if (obj.type === "polygon") {
    g.append(s("polygon", { points: joinPoints(obj.points), class: "shape fill" }));
  } else if (obj.type === "polyline") {
    g.append(s("polyline", { points: joinPoints(obj.points), class: "shape line" }));
  } else if (obj.type === "keypoints") {
    const names = (cls?.keypoints || []).map((k) => k.name);
    for (const [a, b] of cls?.skeleton || []) {
      const pa = obj.points[names.indexOf(a)];
      const pb = obj.points[names.indexOf(b)];
      if (pa && pb && pa[2] && pb[2]) {
        g.append(s("line", { x1: pa[0], y1: pa[1], x2: pb[0], y2: pb[1], class: "shape bone" }));
      }
    }
    obj.points.forEach(([x, y, v], n) => {
      if (!v) return;
      const dot = s("circle", {
        cx: x,
        cy: y,
        r: stage.handle * 0.8,
        class: `keypoint ${v === 1 ? "hidden-point" : "visible-point"}`,
      });
      dot.append(s("title", {}, `${names[n] || n}${v === 1 ? " (hidden)" : ""}`));
      g.append(dot);
    });
  } else if (obj.type === "mask") {
    let { bitmap, width, height } = obj;
    if (!bitmap && obj.rle) ({ bitmap, width, height } = rleToBitmap(obj.rle));
    if (bitmap) {
      g.append(
        s("image", {
          href: bitmapImage(bitmap, width, height, color),
          x: 0,
          y: 0,
          width,
          height,
          class: "mask",
          preserveAspectRatio: "none",
        }),
      );
    }
  }
  const anchor = labelAnchor(obj);
  if (anchor) {
    const text = s("text", { x: anchor[0], y: anchor[1], class: "obj-label" }, obj.label);
    text.style.fontSize = `${12 / stage.scale}px`;
    g.append(text);
  }
  group.append(g);
  return g;
}

function joinPoints(points) {
  return points.map((p) => `${p[0]},${p[1]}`).join(" ");
}

function labelAnchor(obj) {
  if (obj.type === "box") {
    const c = boxCorners(obj);
    return [Math.min(...c.map((p) => p[0])), Math.min(...c.map((p) => p[1])) - 2];
  }
  if (obj.type === "polygon" || obj.type === "polyline") return obj.points[0];
  if (obj.type === "keypoints") {
    const p = obj.points.find((q) => q[2]);
    return p ? [p[0], p[1]] : null;
  }
  return null;
}

/** A short text for an object, for lists: "car box (12, 30, 40×20)". */
export function describe(obj) {
  const r = (v) => Math.round(v);
  const attrs = Object.entries(obj.attributes || {})
    .filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`);
  let shape = "";
  if (obj.type === "box") shape = `${r(obj.w)}×${r(obj.h)}${obj.angle ? ` ${r(obj.angle)}°` : ""}`;
  else if (obj.type === "polygon" || obj.type === "polyline") shape = `${obj.points.length} points`;
  else if (obj.type === "keypoints") shape = `${obj.points.filter((p) => p[2]).length} points`;
  return [obj.label, obj.type === "tag" ? "" : obj.type, shape, attrs.join(" ")].filter(Boolean).join(" · ");
}
