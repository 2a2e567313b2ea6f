// Zoom and pan: the canvases keep the photo's full resolution and one CSS transform places them in the
// viewport, so painting stays exact at any zoom and large photos pan without re-rendering.

const MIN_SCALE = 1 / 64;
const MAX_SCALE = 32;

export class View {
  constructor(viewport, stage, onChange) {
    this.viewport = viewport;
    this.stage = stage;
    this.onChange = onChange;
    this.width = 0;
    this.height = 0;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
  }

  setSize(width, height) {
    this.width = width;
    this.height = height;
    this.fit();
  }

  /** The whole photo in the viewport, centred. */
  fit() {
    const box = this.viewport.getBoundingClientRect();
    if (!this.width || !box.width) return;
    this.scale = Math.min(box.width / this.width, box.height / this.height, 1) * 0.96;
    this.tx = (box.width - this.width * this.scale) / 2;
    this.ty = (box.height - this.height * this.scale) / 2;
    this.apply();
  }

  /** Zoom by `factor` keeping the point under (clientX, clientY) in place; the centre when omitted. */
  zoomAt(factor, clientX, clientY) {
    const box = this.viewport.getBoundingClientRect();
    const sx = (clientX ?? box.left + box.width / 2) - box.left;
    const sy = (clientY ?? box.top + box.height / 2) - box.top;
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    this.tx = sx - (sx - this.tx) * (scale / this.scale);
    this.ty = sy - (sy - this.ty) * (scale / this.scale);
    this.scale = scale;
    this.apply();
  }

  /** 100 %: one photo pixel per screen pixel (CSS), around the viewport's centre. */
  actualSize() {
    this.zoomAt(1 / this.scale);
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.apply();
  }

  /** Photo coordinates (pixels, fractional) of a point on the screen. */
  toPhoto(clientX, clientY) {
    const box = this.viewport.getBoundingClientRect();
    return { x: (clientX - box.left - this.tx) / this.scale, y: (clientY - box.top - this.ty) / this.scale };
  }

  apply() {
    this.stage.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.scale})`;
    this.stage.classList.toggle("pixelated", this.scale >= 2);
    this.onChange?.(this);
  }
}
