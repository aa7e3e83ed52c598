// The annotation editor: tools for every geometry of the ontology, selection and editing,
// attributes, undo and redo, and keyboard shortcuts. Used by the annotation page, and by the
// review page when an expert edits an answer.
//
// Objects are immutable plain objects in the wire form of schemas/annotations.py, except
// masks, which carry a bitmap ({type: "mask", label, attributes, bitmap, width, height}) and
// become RLE only when sent. Every change replaces the list, so undo is a stack of lists.

import { clear, colorFor, h, s } from "./dom.js";
import { bitmapIsEmpty, bitmapToRle, boxCorners, paintPolygon, paintStroke, rleToBitmap } from "./geometry.js";
import { describe, renderObject } from "./render.js";
import { isTyping, round2 } from "./stage.js";

const HISTORY = 200;
const DOUBLE_CLICK_MS = 350;

export class Editor {
  /**
   * @param stage   a Stage (stage.js)
   * @param panels  {tools, tags, objects, details, hint}: containers the editor fills
   * @param ontology the campaign's ontology (schemas/ontology.py, as JSON)
   */
  constructor(stage, panels, ontology, { onchange = () => {} } = {}) {
    this.stage = stage;
    this.panels = panels;
    this.ontology = ontology;
    this.onchange = onchange;
    this.classes = ontology.classes.map((c, i) => ({ ...c, geometry: c.geometry || "tag", color: colorFor(i), key: i + 1 }));
    this.shapeClasses = this.classes.filter((c) => c.geometry !== "tag");
    this.tagClasses = this.classes.filter((c) => c.geometry === "tag");
    this.objects = [];
    this.undoStack = [];
    this.redoStack = [];
    this.selected = null;
    this.active = this.shapeClasses[0] || null;
    this.mode = this.active ? "draw" : "select";
    this.drawing = null;
    this.drag = null;
    this.lastClick = { t: 0, p: [0, 0] };
    this.brush = 24;
    this.erasing = false;
    this.maskTool = "brush";
    this.problems = new Map(); // object index -> [messages]
    this.enabled = true;

    const svg = stage.svg;
    svg.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    svg.addEventListener("dblclick", (e) => this.onDoubleClick(e));
    svg.addEventListener("contextmenu", (e) => e.preventDefault());
    window.addEventListener("pointermove", (e) => this.onPointerMove(e));
    window.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.keyHandler = (e) => this.onKey(e);
    window.addEventListener("keydown", this.keyHandler);
    stage.onchange = () => this.render();
    this.renderPanels();
  }

  // ---- state ----------------------------------------------------------------------------

  classOf(label) {
    return this.classes.find((c) => c.name === label) || null;
  }

  /** Load an answer (wire form) to edit, with an empty history. */
  load(objects = []) {
    this.objects = objects.map((o) => fromWire(o));
    this.undoStack = [];
    this.redoStack = [];
    this.selected = null;
    this.drawing = null;
    this.problems = new Map();
    this.render();
    this.renderPanels();
  }

  /** The answer in the wire form the server takes. */
  wireObjects() {
    return this.objects.map(toWire);
  }

  commit(objects, selected = this.selected) {
    this.undoStack.push({ objects: this.objects, selected: this.selected });
    if (this.undoStack.length > HISTORY) this.undoStack.shift();
    this.redoStack = [];
    this.objects = objects;
    this.selected = selected !== null && selected < objects.length ? selected : null;
    this.changed();
  }

  undo() {
    if (this.drawing) return this.cancelDrawing();
    const previous = this.undoStack.pop();
    if (!previous) return;
    this.redoStack.push({ objects: this.objects, selected: this.selected });
    ({ objects: this.objects, selected: this.selected } = previous);
    this.changed();
  }

  redo() {
    const next = this.redoStack.pop();
    if (!next) return;
    this.undoStack.push({ objects: this.objects, selected: this.selected });
    ({ objects: this.objects, selected: this.selected } = next);
    this.changed();
  }

  changed() {
    if (this.problems.size) this.problems = new Map(); // shown again at the next check
    this.render();
    this.renderPanels();
    this.onchange();
  }

  add(obj) {
    this.commit([...this.objects, obj], this.objects.length);
  }

  replace(index, obj) {
    const next = this.objects.slice();
    next[index] = obj;
    this.commit(next, index);
  }

  remove(index) {
    if (index === null || index === undefined) return;
    const next = this.objects.filter((_, i) => i !== index);
    this.commit(next, index === this.selected ? null : this.keepSelection(next));
  }

  /** Where the selected object is in a new list (the same object, by identity), or null. */
  keepSelection(next) {
    const kept = this.selected !== null ? next.indexOf(this.objects[this.selected]) : -1;
    return kept >= 0 ? kept : null;
  }

  select(index) {
    this.selected = index;
    this.render();
    this.renderPanels();
  }

  setActive(cls) {
    if (!cls) return;
    if (cls.geometry === "tag") {
      this.toggleTag(cls);
      return;
    }
    this.cancelDrawing();
    this.active = cls;
    this.mode = "draw";
    if (this.selected !== null && this.objects[this.selected]?.label !== cls.name) this.selected = null;
    this.render();
    this.renderPanels();
  }

  setMode(mode) {
    this.cancelDrawing();
    this.mode = mode;
    this.render();
    this.renderPanels();
  }

  /** Mark objects with the problems validation found ([{field, message}]). */
  showProblems(errors, indexOf) {
    this.problems = new Map();
    for (const e of errors) {
      const i = indexOf(e.field);
      if (i === null) continue;
      this.problems.set(i, [...(this.problems.get(i) || []), `${e.field}: ${e.message}`]);
    }
    const first = [...this.problems.keys()][0];
    if (first !== undefined && this.objects[first]?.type !== "tag") this.selected = first;
    this.render();
    this.renderPanels();
  }

  // ---- tags -------------------------------------------------------------------------------

  toggleTag(cls) {
    const index = this.objects.findIndex((o) => o.type === "tag" && o.label === cls.name);
    if (index >= 0) {
      this.remove(index);
      return;
    }
    let objects = this.objects;
    if (!this.ontology.multi_label) objects = objects.filter((o) => o.type !== "tag");
    const next = [...objects, { type: "tag", label: cls.name, attributes: {} }];
    this.commit(next, this.keepSelection(next));
  }

  // ---- pointer ----------------------------------------------------------------------------

  point(e) {
    return this.stage.clamp(this.stage.toImage(e));
  }

  onPointerDown(e) {
    if (!this.enabled || e.button !== 0 || this.stage.panning) return;
    this.stage.svg.focus({ preventScroll: true });
    const p = this.point(e);
    const handle = e.target.closest?.("[data-handle]");
    if (handle && this.selected !== null && !this.drawing) {
      this.drag = { kind: "handle", handle: handle.dataset.handle, index: this.selected, start: p, original: this.objects[this.selected] };
      e.preventDefault();
      return;
    }
    if (this.placing) {
      this.placeKeypoint(p, e.shiftKey ? 1 : 2);
      return;
    }
    if (this.mode === "draw" && this.active) {
      this.drawPointerDown(e, p);
      return;
    }
    const shape = e.target.closest?.(".obj[data-layer='edit']");
    if (shape) {
      const index = Number(shape.dataset.index);
      this.select(index);
      const obj = this.objects[index];
      if (obj.type !== "mask") this.drag = { kind: "move", index, start: p, original: obj, moved: false };
    } else {
      this.select(null);
    }
  }

  drawPointerDown(e, p) {
    const g = this.active.geometry;
    const now = performance.now();
    const repeat =
      now - this.lastClick.t < DOUBLE_CLICK_MS &&
      Math.hypot(p[0] - this.lastClick.p[0], p[1] - this.lastClick.p[1]) < this.stage.handle;
    this.lastClick = { t: now, p };
    if (g === "box") {
      this.drawing = { kind: "box", start: p, current: p };
    } else if (g === "polygon" || g === "polyline" || (g === "mask" && this.maskTool === "polygon")) {
      const kind = g === "mask" ? "maskpoly" : g;
      if (!this.drawing) {
        this.drawing = { kind, points: [p], hover: p };
      } else if (repeat) {
        return; // the second click of a double click: dblclick finishes the shape
      } else if (
        kind !== "polyline" &&
        this.drawing.points.length >= 3 &&
        Math.hypot(p[0] - this.drawing.points[0][0], p[1] - this.drawing.points[0][1]) < this.stage.handle * 1.5
      ) {
        this.finishDrawing();
        return;
      } else {
        this.drawing.points.push(p);
      }
    } else if (g === "keypoints") {
      if (!this.drawing) {
        this.drawing = { kind: "keypoints", points: this.active.keypoints.map(() => [0, 0, 0]), next: 0 };
      }
      this.drawing.points[this.drawing.next] = [p[0], p[1], e.shiftKey ? 1 : 2];
      this.drawing.next++;
      if (this.drawing.next >= this.drawing.points.length) {
        this.finishDrawing();
        return;
      }
    } else if (g === "mask") {
      this.drawing = { kind: "stroke", points: [p], erase: this.erasing || e.altKey };
    }
    this.render();
    this.renderHint();
  }

  onPointerMove(e) {
    if (!this.enabled) return;
    if (this.drag) {
      const p = this.point(e);
      const obj = dragged(this.drag, p, this.stage, this.classOf(this.drag.original.label));
      if (obj) {
        this.drag.moved = true;
        this.drag.live = obj;
        this.objects = this.objects.map((o, i) => (i === this.drag.index ? obj : o));
        this.render();
      }
      return;
    }
    if (!this.drawing) return;
    const p = this.point(e);
    if (this.drawing.kind === "box") this.drawing.current = p;
    else if (this.drawing.kind === "stroke") this.drawing.points.push(p);
    else if ("hover" in this.drawing) this.drawing.hover = p;
    else return;
    this.renderOverlay();
  }

  onPointerUp() {
    if (this.drag) {
      const { index, original, live, moved } = this.drag;
      this.drag = null;
      if (moved && live) {
        // The live edit becomes one undoable step.
        this.objects = this.objects.map((o, i) => (i === index ? original : o));
        this.replace(index, live);
      }
      return;
    }
    if (this.drawing && (this.drawing.kind === "box" || this.drawing.kind === "stroke")) {
      this.finishDrawing();
    }
  }

  onDoubleClick(e) {
    if (this.drawing && ["polygon", "polyline", "maskpoly"].includes(this.drawing.kind)) {
      this.finishDrawing();
      return;
    }
    // Double click on an edge of the selected polygon or polyline adds a vertex there.
    const obj = this.selected !== null ? this.objects[this.selected] : null;
    if (obj && (obj.type === "polygon" || obj.type === "polyline") && this.mode === "select") {
      const p = this.point(e);
      const at = nearestEdge(obj.points, p, obj.type === "polygon");
      if (at.distance < this.stage.handle * 2) {
        const points = obj.points.slice();
        points.splice(at.index + 1, 0, p);
        this.replace(this.selected, { ...obj, points });
      }
    }
  }

  // ---- drawing ----------------------------------------------------------------------------

  cancelDrawing() {
    const had = !!this.drawing || !!this.placing;
    this.drawing = null;
    this.placing = null;
    if (had) {
      this.render();
      this.renderHint();
    }
  }

  finishDrawing() {
    const d = this.drawing;
    const cls = this.active;
    this.drawing = null;
    if (!d || !cls) return;
    const base = { type: cls.geometry, label: cls.name, attributes: {} };
    if (d.kind === "box") {
      const [x0, y0] = d.start;
      const [x1, y1] = d.current;
      const w = Math.abs(x1 - x0);
      const hgt = Math.abs(y1 - y0);
      if (w * this.stage.scale < 3 || hgt * this.stage.scale < 3) {
        this.render(); // a click, not a drag: no box
        return;
      }
      this.add({ ...base, x: round2(Math.min(x0, x1)), y: round2(Math.min(y0, y1)), w: round2(w), h: round2(hgt), angle: 0 });
    } else if (d.kind === "polygon" || d.kind === "polyline") {
      const points = dedupe(d.points);
      const minimum = d.kind === "polygon" ? 3 : 2;
      if (points.length < minimum) {
        this.render();
        this.renderHint();
        return;
      }
      this.add({ ...base, points });
    } else if (d.kind === "keypoints") {
      this.add({ ...base, points: d.points });
    } else if (d.kind === "stroke" || d.kind === "maskpoly") {
      this.paintMask(d);
    }
    this.renderHint();
  }

  paintMask(d) {
    const cls = this.active;
    const [w, hgt] = [this.stage.width, this.stage.height];
    let index = this.selected;
    if (index !== null && this.objects[index]?.label !== cls.name) index = null;
    if (index === null && this.ontology.segmentation === "semantic") {
      const existing = this.objects.findIndex((o) => o.type === "mask" && o.label === cls.name);
      if (existing >= 0) index = existing;
    }
    if (d.kind === "maskpoly" && dedupe(d.points).length < 3) {
      this.render();
      return;
    }
    const current = index !== null ? this.objects[index].bitmap : null;
    if (!current && d.erase) {
      this.render();
      return;
    }
    const options = { erase: d.erase };
    const bitmap =
      d.kind === "stroke"
        ? paintStroke(current, w, hgt, d.points, this.brush, options)
        : paintPolygon(current, w, hgt, d.points, options);
    if (index === null) {
      this.add({ type: "mask", label: cls.name, attributes: {}, bitmap, width: w, height: hgt });
    } else if (bitmapIsEmpty(bitmap)) {
      this.remove(index); // erased away
    } else {
      this.replace(index, { ...this.objects[index], bitmap });
    }
  }

  /** Re-place one keypoint of the selected object (from the details panel). */
  startPlacing(index, n) {
    this.placing = { index, n };
    this.renderHint();
  }

  placeKeypoint(p, v) {
    const { index, n } = this.placing;
    this.placing = null;
    const obj = this.objects[index];
    const points = obj.points.map((q, i) => (i === n ? [p[0], p[1], v] : q));
    this.replace(index, { ...obj, points });
    this.renderHint();
  }

  // ---- keyboard ---------------------------------------------------------------------------

  onKey(e) {
    if (!this.enabled) return;
    const typing = isTyping(e);
    const mod = e.ctrlKey || e.metaKey;
    if (e.key === "Escape") {
      if (typing) e.target.blur();
      else if (this.drawing || this.placing) this.cancelDrawing();
      else if (this.selected !== null) this.select(null);
      else this.setMode("select");
      return;
    }
    if (typing) return;
    if (mod && e.key.toLowerCase() === "z") {
      e.preventDefault();
      if (e.shiftKey) this.redo();
      else this.undo();
      return;
    }
    if (mod && e.key.toLowerCase() === "y") {
      e.preventDefault();
      this.redo();
      return;
    }
    if (mod || e.altKey) return;
    if (/^[1-9]$/.test(e.key)) {
      this.setActive(this.classes[Number(e.key) - 1]);
    } else if (e.key === "v" || e.key === "V") {
      this.setMode("select");
    } else if (e.key === "Enter") {
      if (this.drawing) {
        e.preventDefault();
        this.finishDrawing();
      }
    } else if (e.key === "Backspace" || e.key === "Delete") {
      if (this.drawing?.points && e.key === "Backspace" && this.drawing.kind !== "stroke") {
        e.preventDefault();
        if (this.drawing.kind === "keypoints") {
          if (this.drawing.next > 0) this.drawing.points[--this.drawing.next] = [0, 0, 0];
        } else {
          this.drawing.points.pop();
          if (!this.drawing.points.length) this.drawing = null;
        }
        this.render();
        this.renderHint();
      } else if (this.selected !== null) {
        e.preventDefault();
        this.remove(this.selected);
      }
    } else if (e.key === "n" || e.key === "N") {
      if (this.drawing?.kind === "keypoints") {
        this.drawing.next++; // this point is not labeled (visibility 0)
        if (this.drawing.next >= this.drawing.points.length) this.finishDrawing();
        else this.renderHint();
      } else if (this.active?.geometry === "mask") {
        this.select(null); // the next stroke starts a new mask
      }
    } else if (e.key === "e" || e.key === "E") {
      this.erasing = !this.erasing;
      this.renderPanels();
    } else if (e.key === "[") {
      this.brush = Math.max(1, Math.round(this.brush / 1.25));
      this.renderPanels();
    } else if (e.key === "]") {
      this.brush = Math.min(500, Math.round(this.brush * 1.25) + 1);
      this.renderPanels();
    } else if (e.key === "+" || e.key === "=") {
      this.stage.zoom(1.25);
    } else if (e.key === "-") {
      this.stage.zoom(0.8);
    } else if (e.key === "0") {
      this.stage.fit();
    } else if (e.key === "Tab") {
      e.preventDefault();
      const shapes = this.objects.map((o, i) => (o.type === "tag" ? -1 : i)).filter((i) => i >= 0);
      if (!shapes.length) return;
      const at = shapes.indexOf(this.selected);
      this.select(shapes[(at + (e.shiftKey ? shapes.length - 1 : 1)) % shapes.length]);
    } else if (e.key.startsWith("Arrow") && this.selected !== null) {
      e.preventDefault();
      const step = (e.shiftKey ? 10 : 1);
      const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
      const obj = this.objects[this.selected];
      const moved = translate(obj, d[0], d[1], this.stage);
      if (moved) this.replace(this.selected, moved);
    }
  }

  // ---- rendering --------------------------------------------------------------------------

  render() {
    const { layers } = this.stage;
    clear(layers);
    this.objects.forEach((obj, index) => {
      if (obj.type === "tag") return;
      const cls = this.classOf(obj.label);
      const g = renderObject(layers, obj, {
        color: cls?.color || "#888",
        cls,
        stage: this.stage,
        index,
        selected: index === this.selected,
        layer: "edit",
      });
      if (this.problems.has(index)) g.classList.add("invalid");
    });
    this.renderOverlay();
  }

  renderOverlay() {
    const { overlay } = this.stage;
    clear(overlay);
    const r = this.stage.handle;
    const obj = this.selected !== null ? this.objects[this.selected] : null;
    if (obj && !this.drawing) {
      for (const [name, [x, y]] of handlesOf(obj, this.stage, this.classOf(obj.label))) {
        overlay.append(s("circle", { cx: x, cy: y, r, class: `handle handle-${name.split(":")[0]}`, "data-handle": name }));
      }
    }
    const d = this.drawing;
    if (!d) return;
    const color = this.active?.color || "#fff";
    const g = s("g", { class: "drawing" });
    g.style.setProperty("--color", color);
    if (d.kind === "box") {
      const [x0, y0] = d.start;
      const [x1, y1] = d.current;
      g.append(s("rect", { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0), class: "shape fill" }));
    } else if (d.kind === "stroke") {
      const path = s("polyline", { points: d.points.map((p) => p.join(",")).join(" "), class: `brush${d.erase ? " erase" : ""}` });
      path.style.strokeWidth = `${this.brush}px`;
      g.append(path);
    } else if (d.kind === "keypoints") {
      renderObject(g, { type: "keypoints", label: this.active.name, points: d.points }, { color, cls: this.active, stage: this.stage, index: -1 });
    } else {
      const pts = [...d.points, d.hover].map((p) => p.join(",")).join(" ");
      g.append(s("polyline", { points: pts, class: "shape line" }));
      d.points.forEach(([x, y], i) => g.append(s("circle", { cx: x, cy: y, r: i === 0 ? r * 1.3 : r * 0.8, class: i === 0 ? "handle first" : "handle" })));
    }
    overlay.append(g);
  }

  renderPanels() {
    this.renderTools();
    this.renderTags();
    this.renderObjects();
    this.renderDetails();
    this.renderHint();
  }

  renderTools() {
    const el = this.panels.tools;
    if (!el) return;
    clear(el);
    el.append(
      h(
        "button.tool",
        { type: "button", title: "Select and edit (V)", onclick: () => this.setMode("select"), "aria-pressed": String(this.mode === "select") },
        "Select",
        h("kbd", {}, "V"),
      ),
    );
    for (const cls of this.shapeClasses) {
      const button = h(
        "button.tool.class-button",
        {
          type: "button",
          title: `Draw ${cls.name} (${cls.geometry})${cls.key <= 9 ? ` — key ${cls.key}` : ""}`,
          onclick: () => this.setActive(cls),
          "aria-pressed": String(this.mode === "draw" && this.active === cls),
          dataset: { class: cls.name },
        },
        h("span.swatch", {}),
        `${cls.name}`,
        h("small", {}, cls.geometry),
        cls.key <= 9 ? h("kbd", {}, String(cls.key)) : null,
      );
      button.style.setProperty("--color", cls.color);
      el.append(button);
    }
    if (this.mode === "draw" && this.active?.geometry === "mask") {
      el.append(
        h(
          "div.mask-tools",
          {},
          h("label", {}, h("input", { type: "radio", name: "mask-tool", checked: this.maskTool === "brush", onchange: () => { this.maskTool = "brush"; this.cancelDrawing(); } }), "brush"),
          h("label", {}, h("input", { type: "radio", name: "mask-tool", checked: this.maskTool === "polygon", onchange: () => { this.maskTool = "polygon"; this.cancelDrawing(); } }), "polygon"),
          h("label", {}, h("input", { type: "checkbox", checked: this.erasing, onchange: (e) => { this.erasing = e.target.checked; } }), "erase ", h("kbd", {}, "E")),
          h(
            "label",
            {},
            "size ",
            h("input", { type: "range", min: 1, max: 200, value: String(this.brush), oninput: (e) => { this.brush = Number(e.target.value); } }),
            h("kbd", {}, "["),
            h("kbd", {}, "]"),
          ),
          h("button", { type: "button", onclick: () => this.select(null), title: "The next stroke starts a new mask (N)" }, "new mask"),
        ),
      );
    }
  }

  renderTags() {
    const el = this.panels.tags;
    if (!el) return;
    clear(el);
    if (!this.tagClasses.length) {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    el.append(h("h3", {}, this.ontology.multi_label ? "Tags (any that apply)" : "Tag (one)"));
    for (const cls of this.tagClasses) {
      const index = this.objects.findIndex((o) => o.type === "tag" && o.label === cls.name);
      const row = h(
        "div.tag",
        {},
        h(
          "label.tag-choice",
          {},
          h("input", {
            type: this.ontology.multi_label ? "checkbox" : "radio",
            name: "tag",
            checked: index >= 0,
            onchange: () => this.toggleTag(cls),
          }),
          h("span.swatch", {}),
          cls.name,
          cls.key <= 9 ? h("kbd", {}, String(cls.key)) : null,
        ),
      );
      row.style.setProperty("--color", cls.color);
      if (cls.description) row.append(h("div.help", {}, cls.description));
      if (index >= 0 && (cls.attributes || []).length) row.append(this.attributeForm(index));
      if (this.problems.has(index)) row.append(problemList(this.problems.get(index)));
      el.append(row);
    }
  }

  renderObjects() {
    const el = this.panels.objects;
    if (!el) return;
    clear(el);
    const shapes = this.objects.map((o, i) => [o, i]).filter(([o]) => o.type !== "tag");
    el.append(h("h3", {}, `Objects (${shapes.length})`));
    if (!shapes.length) el.append(h("p.help", {}, "Nothing drawn yet."));
    const list = h("ol.object-list", {});
    for (const [obj, i] of shapes) {
      const cls = this.classOf(obj.label);
      const item = h(
        "li",
        {
          class: `${i === this.selected ? "selected" : ""} ${this.problems.has(i) ? "invalid" : ""}`,
          onclick: () => this.select(i),
          dataset: { index: String(i) },
        },
        h("span.swatch", {}),
        h("span.desc", {}, describe(obj)),
        h("button.icon", { type: "button", title: "Delete (Del)", "aria-label": `delete ${obj.label}`, onclick: (e) => { e.stopPropagation(); this.remove(i); } }, "×"),
      );
      item.style.setProperty("--color", cls?.color || "#888");
      list.append(item);
    }
    el.append(list);
  }

  renderDetails() {
    const el = this.panels.details;
    if (!el) return;
    clear(el);
    const index = this.selected;
    const obj = index !== null ? this.objects[index] : null;
    if (!obj || obj.type === "tag") {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    const cls = this.classOf(obj.label);
    const title = h("h3", {}, h("span.swatch", {}), `${obj.label} · ${obj.type}`);
    title.style.setProperty("--color", cls?.color || "#888");
    el.append(title);
    if (cls?.description) el.append(h("p.help", {}, cls.description));
    const others = this.relabelChoices(obj);
    if (others.length > 1) {
      const select = h("select", { "aria-label": "class", onchange: (e) => this.relabel(index, e.target.value) });
      for (const c of others) select.append(h("option", { value: c.name, selected: c.name === obj.label }, c.name));
      el.append(h("label.attr.relabel", {}, "class ", select));
    }
    if ((cls?.attributes || []).length) el.append(this.attributeForm(index));
    if (obj.type === "keypoints") el.append(this.keypointForm(index));
    if (obj.type === "box" && cls?.rotated) {
      el.append(
        h("label.attr", {}, "angle°", h("input", {
          type: "number", step: "any", value: String(obj.angle || 0),
          onchange: (e) => this.replace(index, { ...obj, angle: Number(e.target.value) || 0 }),
        })),
      );
    }
    if (this.problems.has(index)) el.append(problemList(this.problems.get(index)));
    el.append(h("button.danger", { type: "button", onclick: () => this.remove(index) }, "Delete object"));
  }

  /** The classes an object can be relabeled to: the same geometry (and, for keypoints, the
   * same number of points). */
  relabelChoices(obj) {
    return this.shapeClasses.filter(
      (c) => c.geometry === obj.type && (obj.type !== "keypoints" || (c.keypoints || []).length === obj.points.length),
    );
  }

  /** Give an object another class; it keeps the attributes the new class also has. */
  relabel(index, name) {
    const obj = this.objects[index];
    const cls = this.classOf(name);
    if (!cls || name === obj.label) return;
    const names = new Set((cls.attributes || []).map((a) => a.name));
    const attributes = Object.fromEntries(Object.entries(obj.attributes || {}).filter(([k]) => names.has(k)));
    this.replace(index, { ...obj, label: name, attributes });
  }

  attributeForm(index) {
    const obj = this.objects[index];
    const cls = this.classOf(obj.label);
    const form = h("div.attributes", {});
    for (const spec of cls.attributes || []) {
      const value = obj.attributes?.[spec.name];
      const set = (v) => {
        const attributes = { ...obj.attributes };
        if (v === undefined || v === "" || (Array.isArray(v) && !v.length)) delete attributes[spec.name];
        else attributes[spec.name] = v;
        this.replace(index, { ...obj, attributes });
      };
      const name = `${spec.name}${spec.required ? " *" : ""}`;
      const group = h("fieldset.attr", { dataset: { attribute: spec.name } }, h("legend", {}, name));
      if (spec.kind === "single") {
        for (const option of spec.options) {
          group.append(
            h("label.pill", {}, h("input", {
              type: "radio", name: `attr-${index}-${spec.name}`, checked: value === option,
              onchange: () => set(option),
            }), option),
          );
        }
        if (!spec.required && value !== undefined) {
          group.append(h("button.link", { type: "button", onclick: () => set(undefined) }, "clear"));
        }
      } else if (spec.kind === "multi") {
        const chosen = Array.isArray(value) ? value : [];
        for (const option of spec.options) {
          group.append(
            h("label.pill", {}, h("input", {
              type: "checkbox", checked: chosen.includes(option),
              onchange: (e) => set(e.target.checked ? [...chosen, option] : chosen.filter((v) => v !== option)),
            }), option),
          );
        }
      } else if (spec.kind === "number") {
        group.append(h("input", {
          type: "number", step: "any", value: value ?? "",
          min: spec.minimum ?? undefined, max: spec.maximum ?? undefined,
          "aria-label": spec.name,
          onchange: (e) => set(e.target.value === "" ? undefined : Number(e.target.value)),
        }));
      } else {
        group.append(h("input", {
          type: "text", value: value ?? "", maxLength: spec.max_length ?? 500, "aria-label": spec.name,
          onchange: (e) => set(e.target.value),
        }));
      }
      form.append(group);
    }
    return form;
  }

  keypointForm(index) {
    const obj = this.objects[index];
    const cls = this.classOf(obj.label);
    const list = h("ol.keypoints", {});
    cls.keypoints.forEach((kp, n) => {
      const v = obj.points[n]?.[2] ?? 0;
      const select = h("select", {
        "aria-label": `${kp.name} visibility`,
        onchange: (e) => {
          const nv = Number(e.target.value);
          if (nv !== 0 && v === 0) {
            this.startPlacing(index, n);
            e.target.value = "0";
            return;
          }
          const points = obj.points.map((q, i) => (i === n ? [q[0], q[1], nv] : q));
          this.replace(index, { ...obj, points });
        },
      });
      for (const [value, text] of [[2, "visible"], [1, "hidden"], [0, "not labeled"]]) {
        select.append(h("option", { value: String(value), selected: v === value }, text));
      }
      list.append(
        h("li", {}, h("span", {}, kp.name), select, h("button.link", { type: "button", onclick: () => this.startPlacing(index, n) }, "place")),
      );
    });
    return h("div", {}, h("h4", {}, "Keypoints"), list);
  }

  renderHint() {
    const el = this.panels.hint;
    if (!el) return;
    let text = "";
    const d = this.drawing;
    if (this.placing) {
      const obj = this.objects[this.placing.index];
      text = `Click where ${this.classOf(obj.label).keypoints[this.placing.n].name} is (Shift+click: hidden). Esc cancels.`;
    } else if (d?.kind === "keypoints") {
      const kp = this.active.keypoints[d.next];
      text = `Click ${kp.name} (${d.next + 1} of ${d.points.length}). Shift+click: hidden · N: not labeled · Backspace: back · Enter: done.`;
    } else if (d && ["polygon", "maskpoly"].includes(d.kind)) {
      text = `${d.points.length} points. Click to add; click the first point, double-click or Enter to close. Backspace removes the last.`;
    } else if (d?.kind === "polyline") {
      text = `${d.points.length} points. Click to add; double-click or Enter to finish.`;
    } else if (this.mode === "draw" && this.active) {
      const g = this.active.geometry;
      text = {
        box: `Drag to draw a ${this.active.name} box.`,
        polygon: `Click the corners of the ${this.active.name} polygon.`,
        polyline: `Click the points of the ${this.active.name} line.`,
        keypoints: `Click the ${this.active.name}'s keypoints in order, starting with ${this.active.keypoints[0]?.name}.`,
        mask: this.maskTool === "brush" ? `Paint the ${this.active.name} mask${this.erasing ? " (erasing)" : ""}.` : `Click a polygon to fill into the ${this.active.name} mask.`,
      }[g];
    } else {
      text = "Click an object to select it; drag it or its handles to edit.";
    }
    el.textContent = text;
  }

  destroy() {
    this.enabled = false;
    window.removeEventListener("keydown", this.keyHandler);
  }
}

// ---- helpers ----------------------------------------------------------------------------

function problemList(messages) {
  return h("ul.problems", {}, messages.map((m) => h("li", {}, m)));
}

export function fromWire(o) {
  const obj = toWire(o.type === "mask" && o.bitmap ? o : { ...o, bitmap: undefined });
  if (obj.type === "mask" && obj.rle) {
    const { bitmap, width, height } = rleToBitmap(obj.rle);
    delete obj.rle;
    return { ...obj, bitmap, width, height };
  }
  return obj;
}

const WIRE_FIELDS = {
  tag: [],
  box: ["x", "y", "w", "h", "angle"],
  polygon: ["points"],
  polyline: ["points"],
  keypoints: ["points"],
  mask: [],
};

/** The wire form: exactly the schema's fields (a consensus object's confidence and support,
 * say, are left out; the server refuses unknown fields). */
export function toWire(obj) {
  const out = { type: obj.type, label: obj.label, attributes: structuredClone(obj.attributes || {}) };
  for (const field of WIRE_FIELDS[obj.type] || []) {
    if (obj[field] !== undefined) out[field] = structuredClone(obj[field]);
  }
  if (obj.type === "mask") out.rle = obj.bitmap ? bitmapToRle(obj.bitmap, obj.width, obj.height) : obj.rle;
  return out;
}

function dedupe(points) {
  return points.filter((p, i) => i === 0 || p[0] !== points[i - 1][0] || p[1] !== points[i - 1][1]);
}

function handlesOf(obj, stage, cls) {
  if (obj.type === "box") {
    const corners = boxCorners(obj).map((p, i) => [`corner:${i}`, p]);
    if (cls?.rotated) {
      const [a, b] = boxCorners(obj);
      const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      const theta = ((obj.angle || 0) * Math.PI) / 180;
      const off = 24 / stage.scale;
      corners.push(["rotate", [mid[0] + off * Math.sin(theta), mid[1] - off * Math.cos(theta)]]);
    }
    return corners;
  }
  if (obj.type === "polygon" || obj.type === "polyline") return obj.points.map((p, i) => [`vertex:${i}`, p]);
  if (obj.type === "keypoints") return obj.points.map((p, i) => [`kp:${i}`, p]).filter(([, p]) => p[2]);
  return [];
}

/** The object as it is while a handle or the whole object is dragged to ``p``. */
function dragged(drag, p, stage, cls) {
  const o = drag.original;
  if (drag.kind === "move") {
    return translate(o, p[0] - drag.start[0], p[1] - drag.start[1], stage);
  }
  const [kind, n] = drag.handle.split(":");
  const i = Number(n);
  if (kind === "corner") {
    // The opposite corner stays put; the box spans the diagonal in its own rotated frame.
    const fixed = boxCorners(o)[(i + 2) % 4];
    const theta = ((o.angle || 0) * Math.PI) / 180;
    const dx = p[0] - fixed[0];
    const dy = p[1] - fixed[1];
    const w = Math.abs(dx * Math.cos(theta) + dy * Math.sin(theta));
    const hgt = Math.abs(-dx * Math.sin(theta) + dy * Math.cos(theta));
    if (w < 1 || hgt < 1) return null;
    const cx = (fixed[0] + p[0]) / 2;
    const cy = (fixed[1] + p[1]) / 2;
    return { ...o, x: round2(cx - w / 2), y: round2(cy - hgt / 2), w: round2(w), h: round2(hgt) };
  }
  if (kind === "rotate") {
    const cx = o.x + o.w / 2;
    const cy = o.y + o.h / 2;
    let angle = (Math.atan2(p[0] - cx, -(p[1] - cy)) * 180) / Math.PI;
    if (angle > 180) angle -= 360;
    return { ...o, angle: Math.round(angle * 10) / 10 };
  }
  if (kind === "vertex") return { ...o, points: o.points.map((q, j) => (j === i ? p : q)) };
  if (kind === "kp") return { ...o, points: o.points.map((q, j) => (j === i ? [p[0], p[1], q[2]] : q)) };
  return null;
}

/** The object moved by (dx, dy), kept inside the image. */
function translate(o, dx, dy, stage) {
  const W = stage.width;
  const H = stage.height;
  if (o.type === "box") {
    const c = boxCorners(o);
    const minX = Math.min(...c.map((q) => q[0]));
    const maxX = Math.max(...c.map((q) => q[0]));
    const minY = Math.min(...c.map((q) => q[1]));
    const maxY = Math.max(...c.map((q) => q[1]));
    dx = Math.min(Math.max(dx, -minX), W - maxX);
    dy = Math.min(Math.max(dy, -minY), H - maxY);
    return { ...o, x: round2(o.x + dx), y: round2(o.y + dy) };
  }
  if (o.points) {
    const live = o.points.filter((q) => o.type !== "keypoints" || q[2]);
    if (!live.length) return null;
    dx = Math.min(Math.max(dx, -Math.min(...live.map((q) => q[0]))), W - Math.max(...live.map((q) => q[0])));
    dy = Math.min(Math.max(dy, -Math.min(...live.map((q) => q[1]))), H - Math.max(...live.map((q) => q[1])));
    return {
      ...o,
      points: o.points.map((q) =>
        o.type === "keypoints" ? (q[2] ? [round2(q[0] + dx), round2(q[1] + dy), q[2]] : q) : [round2(q[0] + dx), round2(q[1] + dy)],
      ),
    };
  }
  return null;
}

function nearestEdge(points, p, closed) {
  let best = { index: -1, distance: Infinity };
  const n = points.length;
  for (let i = 0; i < (closed ? n : n - 1); i++) {
    const a = points[i];
    const b = points[(i + 1) % n];
    const d = segmentDistance(p, a, b);
    if (d < best.distance) best = { index: i, distance: d };
  }
  return best;
}

function segmentDistance(p, a, b) {
  const vx = b[0] - a[0];
  const vy = b[1] - a[1];
  const len = vx * vx + vy * vy;
  const t = len ? Math.max(0, Math.min(1, ((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / len)) : 0;
  return Math.hypot(p[0] - (a[0] + t * vx), p[1] - (a[1] + t * vy));
}
