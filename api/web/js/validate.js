// The server's validation of an answer (schemas/annotations.py: validate_response), ported
// rule for rule, with the same fields and the same messages, so that the page refuses what
// the server would refuse, and says it the same way, before anything is sent.
//
// validateResponse(ontology, objects, imageSize) -> [{field, message}], empty when acceptable.
// ``imageSize`` is [width, height], or null when the image's size is not known (the server
// then skips the bounds checks too). Objects are the wire form ({"type", "label", ...}).

import { boxCorners, distinctCount, selfIntersects, shoelace } from "./geometry.js";

export const MAX_POINTS = 2000;
const GEOMETRY_FIELDS = {
  tag: [],
  box: ["x", "y", "w", "h", "angle"],
  polygon: ["points"],
  polyline: ["points"],
  keypoints: ["points"],
  mask: ["rle"],
};

// ---- Python's way of printing values, for messages identical to the server's -------------

export function pyStr(s) {
  const text = String(s);
  if (text.includes("'") && !text.includes('"')) return `"${text.replaceAll("\\", "\\\\")}"`;
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

export function pyList(items) {
  return `[${items.map(pyStr).join(", ")}]`;
}

/** repr() of a Python float. */
export function pyFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (Object.is(x, -0)) return "-0.0";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e16 || a < 1e-4)) {
    const [mant, exp] = x.toExponential().split("e");
    const sign = exp[0] === "-" ? "-" : "+";
    return `${mant}e${sign}${exp.replace(/^[-+]/, "").padStart(2, "0")}`;
  }
  return Number.isInteger(x) ? `${x}.0` : String(x);
}

/** format(x, ".1f"): like toFixed(1), but an exact tie (x.25, x.75) goes to the even digit,
 * as Python rounds it, where toFixed rounds it up. */
export function fixed1(x) {
  let out;
  if (Number.isInteger(x * 4) && !Number.isInteger(x * 2)) {
    const low = Math.floor(x * 10); // exact: x * 10 is k + 0.5
    out = ((low % 2 === 0 ? low : low + 1) / 10).toFixed(1);
  } else {
    out = x.toFixed(1);
  }
  return out === "0.0" && (x < 0 || Object.is(x, -0)) ? "-0.0" : out;
}

const isNumber = (v) => typeof v === "number";
const finite = (v) => isNumber(v) && Number.isFinite(v);

// ---- the schema: what pydantic refuses before validate_response runs ----------------------

function schemaErrors(objects, err) {
  objects.forEach((obj, i) => {
    const at = `objects.${i}`;
    if (typeof obj.label !== "string" || obj.label.length < 1) err(`${at}.label`, "give a class");
    else if ([...obj.label].length > 64) err(`${at}.label`, "at most 64 characters");
    if (!(obj.type in GEOMETRY_FIELDS)) err(`${at}.type`, "unknown geometry type");
    if (Array.isArray(obj.points) && obj.points.length > MAX_POINTS)
      err(`${at}.points`, `at most ${MAX_POINTS} points`);
  });
}

// ---- validate_response ----------------------------------------------------------------

export function validateResponse(ontology, objects, imageSize = null) {
  const errors = [];
  const err = (field, message) => errors.push({ field, message });
  schemaErrors(objects, err);
  if (errors.length) return errors;

  const classes = ontology.classes;
  const byName = (name) => classes.find((c) => c.name === name);
  const maxObjects = ontology.max_objects ?? 500;
  const multiLabel = !!ontology.multi_label;
  const tagClasses = classes.filter((c) => (c.geometry || "tag") === "tag");
  const isClassification = classes.every((c) => (c.geometry || "tag") === "tag");

  if (objects.length > maxObjects)
    err("objects", `${objects.length} objects; this campaign allows ${maxObjects}`);
  const tags = [];
  objects.forEach((obj, i) => {
    const at = `objects.${i}`;
    const cls = byName(obj.label);
    if (!cls) {
      err(
        `${at}.label`,
        `unknown class ${pyStr(obj.label)}; expected one of ${pyList(classes.map((c) => c.name))}`,
      );
      return;
    }
    const geometry = cls.geometry || "tag";
    if (geometry !== obj.type) {
      err(`${at}.type`, `class ${pyStr(cls.name)} is drawn as ${geometry}, not ${obj.type}`);
      return;
    }
    checkAttributes(cls, obj.attributes || {}, at, err);
    if (obj.type === "tag") tags.push(obj.label);
    else if (obj.type === "box") checkBox(cls, obj, imageSize, at, err);
    else if (obj.type === "polygon") {
      checkPoints(obj.points, imageSize, at, err, 3, "polygon");
      const distinct = distinctCount(obj.points);
      if (distinct >= 3 && selfIntersects(obj.points))
        err(`${at}.points`, "the polygon crosses itself; redraw it without crossings");
      else if (distinct >= 3 && Math.abs(shoelace(obj.points)) < 1e-9)
        err(`${at}.points`, "the polygon has zero area");
    } else if (obj.type === "polyline") checkPoints(obj.points, imageSize, at, err, 2, "polyline");
    else if (obj.type === "keypoints") checkKeypoints(cls, obj, imageSize, at, err);
    else if (obj.type === "mask") checkMask(obj, imageSize, at, err);
  });

  if (tagClasses.length) {
    if (!multiLabel && isClassification && tags.length !== 1)
      err("objects", "give exactly one tag: this is single-label");
    else if (!multiLabel && tags.length > 1)
      err("objects", "give at most one tag: this is single-label");
  }
  if (tags.length !== new Set(tags).size) err("objects", "a class is tagged more than once");
  return errors;
}

function checkAttributes(cls, values, at, err) {
  const specs = cls.attributes || [];
  for (const [name, value] of Object.entries(values)) {
    const spec = specs.find((a) => a.name === name);
    if (!spec) {
      err(`${at}.attributes.${name}`, `class ${pyStr(cls.name)} has no attribute ${pyStr(name)}`);
      continue;
    }
    const problem = attributeProblem(spec, value);
    if (problem) err(`${at}.attributes.${name}`, problem);
  }
  for (const spec of specs) {
    const value = values[spec.name];
    const missing =
      value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length);
    if (spec.required && missing) err(`${at}.attributes.${spec.name}`, "this attribute is required");
  }
}

export function attributeProblem(spec, value) {
  if (value === null || value === undefined) return null;
  const options = spec.options || [];
  if (spec.kind === "single") {
    if (typeof value !== "string" || !options.includes(value)) return `must be one of ${pyList(options)}`;
  } else if (spec.kind === "multi") {
    if (!Array.isArray(value) || value.some((v) => !options.includes(v)))
      return `must be a list of values from ${pyList(options)}`;
    if (new Set(value).size !== value.length) return "a value is listed twice";
  } else if (spec.kind === "number") {
    if (!finite(value)) return "must be a number";
    if (spec.minimum !== null && spec.minimum !== undefined && value < spec.minimum)
      return `must be at least ${pyFloat(spec.minimum)}`;
    if (spec.maximum !== null && spec.maximum !== undefined && value > spec.maximum)
      return `must be at most ${pyFloat(spec.maximum)}`;
  } else if (spec.kind === "text") {
    if (typeof value !== "string") return "must be text";
    const maxLength = spec.max_length ?? 500;
    if ([...value].length > maxLength) return `must be at most ${maxLength} characters`;
  }
  return null;
}

function inside(x, y, size) {
  if (!(Number.isFinite(x) && Number.isFinite(y))) return false;
  if (!size) return true;
  return x >= 0 && x <= size[0] && y >= 0 && y <= size[1];
}

const sizeText = (size) => (size ? `${size[0]}x${size[1]}` : "unknown-size");

function checkBox(cls, box, size, at, err) {
  const angle = box.angle ?? 0;
  if (![box.x, box.y, box.w, box.h, angle].every(finite)) {
    err(at, "box coordinates must be finite numbers");
    return;
  }
  if (box.w <= 0 || box.h <= 0) {
    err(box.w <= 0 ? `${at}.w` : `${at}.h`, "the box has zero area");
    return;
  }
  if (angle !== 0 && !cls.rotated)
    err(`${at}.angle`, `boxes of class ${pyStr(cls.name)} are not rotated; angle must be 0`);
  const corners = boxCorners({ ...box, angle });
  for (let n = 0; n < corners.length; n++) {
    const [x, y] = corners[n];
    if (!inside(x, y, size)) {
      err(at, `corner ${n} (${fixed1(x)}, ${fixed1(y)}) is outside the ${sizeText(size)} image`);
      return;
    }
  }
}

function checkPoints(points, size, at, err, minimum, kind) {
  for (let n = 0; n < points.length; n++) {
    const p = points[n];
    if (!inside(p[0], p[1], size)) {
      err(`${at}.points.${n}`, `(${pyFloat(p[0])}, ${pyFloat(p[1])}) is outside the ${sizeText(size)} image`);
      return;
    }
  }
  if (distinctCount(points) < minimum)
    err(`${at}.points`, `a ${kind} needs at least ${minimum} distinct points`);
}

function checkKeypoints(cls, obj, size, at, err) {
  const defs = cls.keypoints || [];
  if (obj.points.length !== defs.length) {
    err(
      `${at}.points`,
      `give all ${defs.length} keypoints of ${pyStr(cls.name)} in order ` +
        "(visibility 0 for one that is not labeled)",
    );
    return;
  }
  obj.points.forEach(([x, y, v], n) => {
    if (v !== 0 && !inside(x, y, size))
      err(
        `${at}.points.${n}`,
        `${defs[n].name} (${pyFloat(x)}, ${pyFloat(y)}) is outside the ${sizeText(size)} image`,
      );
  });
  if (obj.points.every((p) => p[2] === 0)) err(`${at}.points`, "no keypoint is labeled");
}

function checkMask(obj, size, at, err) {
  const [h, w] = obj.rle.size;
  if (size && (w !== size[0] || h !== size[1])) {
    err(`${at}.rle.size`, `the mask is ${w}x${h} but the image is ${size[0]}x${size[1]}`);
    return;
  }
  const counts = obj.rle.counts;
  if (Array.isArray(counts)) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (counts.some((c) => c < 0)) err(`${at}.rle.counts`, "run lengths cannot be negative");
    else if (total !== h * w) err(`${at}.rle.counts`, `run lengths add up to ${total}, not ${h * w}`);
    else if (!counts.filter((_, i) => i % 2 === 1).some((c) => c)) err(`${at}.rle`, "the mask is empty");
  } else if (!counts) err(`${at}.rle.counts`, "empty compressed counts");
}

/** "objects.3.points.2" -> 3 (the object a field error is about), or null. */
export function objectIndexOf(field) {
  const m = /^objects\.(\d+)/.exec(field || "");
  return m ? Number(m[1]) : null;
}
