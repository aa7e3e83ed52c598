// The picture and what is drawn on it: an SVG whose "world" group is in image pixels, zoomed
// and panned by one transform. Strokes keep their screen width at every zoom
// (vector-effect: non-scaling-stroke); handles are sized by 1 / scale.

import { clear, s } from "./dom.js";

const MIN_SCALE = 0.05;
const MAX_SCALE = 40;

export class Stage {
  constructor(container) {
    this.container = container;
    this.svg = s("svg", { class: "stage-svg", tabindex: "-1", "aria-label": "image" });
    this.world = s("g", { class: "world" });
    this.image = s("image", { class: "stage-image", x: 0, y: 0, preserveAspectRatio: "none" });
    this.reference = s("g", { class: "reference" }); // read-only answers (review page)
    this.layers = s("g", { class: "layers" }); // the editor's objects
    this.overlay = s("g", { class: "overlay" }); // handles and the shape being drawn
    this.world.append(this.image, this.reference, this.layers, this.overlay);
    this.svg.append(this.world);
    container.append(this.svg);
    this.width = 0;
    this.height = 0;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.onchange = () => {};
    this.panning = null;
    this.spaceHeld = false;

    this.svg.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.svg.addEventListener("pointerdown", (e) => this.maybeStartPan(e), true);
    window.addEventListener("pointermove", (e) => this.movePan(e));
    window.addEventListener("pointerup", () => this.endPan());
    window.addEventListener("keydown", (e) => {
      if (e.code === "Space" && !isTyping(e)) {
        this.spaceHeld = true;
        this.svg.classList.add("can-pan");
        e.preventDefault();
      }
    });
    window.addEventListener("keyup", (e) => {
      if (e.code === "Space") {
        this.spaceHeld = false;
        this.svg.classList.remove("can-pan");
      }
    });
    new ResizeObserver(() => this.fitIfUnset()).observe(container);
  }

  /** Show an image; resolves once it has loaded, with its natural [width, height]. */
  load(url, knownSize = null) {
    return new Promise((resolve, reject) => {
      const probe = new Image();
      probe.decoding = "async";
      probe.referrerPolicy = "no-referrer";
      probe.onload = () => {
        const size = [probe.naturalWidth, probe.naturalHeight];
        this.width = size[0];
        this.height = size[1];
        this.image.setAttribute("width", String(this.width));
        this.image.setAttribute("height", String(this.height));
        this.image.setAttribute("href", url);
        this.fitted = false;
        this.fit();
        resolve(size);
      };
      probe.onerror = () => reject(new Error("the image could not be loaded"));
      probe.src = url;
      if (knownSize) {
        this.width = knownSize[0];
        this.height = knownSize[1];
      }
    });
  }

  clearImage() {
    this.image.removeAttribute("href");
    clear(this.reference);
    clear(this.layers);
    clear(this.overlay);
  }

  fitIfUnset() {
    if (!this.fitted) this.fit();
  }

  fit() {
    const box = this.svg.getBoundingClientRect();
    if (!this.width || !box.width || !box.height) return;
    const margin = 16;
    this.scale = Math.min((box.width - margin) / this.width, (box.height - margin) / this.height);
    this.tx = (box.width - this.width * this.scale) / 2;
    this.ty = (box.height - this.height * this.scale) / 2;
    this.fitted = true;
    this.apply();
  }

  apply() {
    this.world.setAttribute(
      "transform",
      `translate(${this.tx} ${this.ty}) scale(${this.scale})`,
    );
    this.svg.style.setProperty("--handle", String(6 / this.scale));
    this.onchange();
  }

  /** Zoom by ``factor`` keeping the screen point (sx, sy) (relative to the SVG) in place. */
  zoom(factor, sx = null, sy = null) {
    const box = this.svg.getBoundingClientRect();
    const cx = sx ?? box.width / 2;
    const cy = sy ?? box.height / 2;
    const next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    const ix = (cx - this.tx) / this.scale;
    const iy = (cy - this.ty) / this.scale;
    this.scale = next;
    this.tx = cx - ix * next;
    this.ty = cy - iy * next;
    this.fitted = true;
    this.apply();
  }

  pan(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.apply();
  }

  onWheel(e) {
    e.preventDefault();
    const box = this.svg.getBoundingClientRect();
    if (e.ctrlKey || !e.shiftKey) {
      this.zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - box.left, e.clientY - box.top);
    } else {
      this.pan(-e.deltaY, 0);
    }
  }

  maybeStartPan(e) {
    // Middle button, or space held with any button: pan, and keep the tools out of it.
    if (e.button === 1 || (this.spaceHeld && e.button === 0) || this.panMode) {
      this.panning = { x: e.clientX, y: e.clientY };
      this.svg.classList.add("panning");
      e.stopPropagation();
      e.preventDefault();
    }
  }

  movePan(e) {
    if (!this.panning) return;
    this.pan(e.clientX - this.panning.x, e.clientY - this.panning.y);
    this.panning = { x: e.clientX, y: e.clientY };
  }

  endPan() {
    if (!this.panning) return;
    this.panning = null;
    this.svg.classList.remove("panning");
  }

  /** Image pixel coordinates of a pointer event. */
  toImage(e) {
    const box = this.svg.getBoundingClientRect();
    return [
      (e.clientX - box.left - this.tx) / this.scale,
      (e.clientY - box.top - this.ty) / this.scale,
    ];
  }

  /** A point kept inside the image (what the person meant when they overshot the edge). */
  clamp([x, y]) {
    return [
      Math.min(this.width, Math.max(0, round2(x))),
      Math.min(this.height, Math.max(0, round2(y))),
    ];
  }

  /** Handle radius in image pixels: a constant size on screen. */
  get handle() {
    return 6 / this.scale;
  }
}

export function round2(v) {
  return Math.round(v * 100) / 100;
}

export function isTyping(e) {
  const t = e.target;
  return (
    t instanceof HTMLElement &&
    (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))
  );
}
