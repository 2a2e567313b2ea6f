// The trimap being painted: one byte per photo pixel (0 background, 128 unknown, 255 foreground), with
// undo/redo. Brushes are rasterised here rather than drawn on a canvas, because canvas strokes are
// anti-aliased and would leave values between the three levels along every edge.

export const BACKGROUND = 0;
export const UNKNOWN = 128;
export const FOREGROUND = 255;
export const ERASE = -1; // paints back the trimap the session started from

const HISTORY_BYTES = 512 * 1024 * 1024; // undo steps kept, oldest dropped first

export class Trimap {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.values = new Uint8Array(width * height); // all background
    this.start = this.values.slice();
    this.undoStack = [];
    this.redoStack = [];
    this.stroke = null;
  }

  /** Replace the whole trimap (a blank start, an uploaded trimap, one made from a mask); undoable. */
  replace(values) {
    const step = { x: 0, y: 0, w: this.width, h: this.height, before: this.values.slice(), after: values.slice(),
      startBefore: this.start, startAfter: values.slice() };
    this.values.set(values);
    this.start = step.startAfter;
    this._push(step);
  }

  beginStroke() {
    this.stroke = { before: this.values.slice(), x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
  }

  /** Paint a round brush of `radius` px along the segment a-b (photo pixels); returns the changed box. */
  paintSegment(ax, ay, bx, by, radius, value) {
    const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - radius));
    const y0 = Math.max(0, Math.floor(Math.min(ay, by) - radius));
    const x1 = Math.min(this.width, Math.ceil(Math.max(ax, bx) + radius));
    const y1 = Math.min(this.height, Math.ceil(Math.max(ay, by) + radius));
    if (x0 >= x1 || y0 >= y1) return null;
    const dx = bx - ax, dy = by - ay;
    const length2 = dx * dx + dy * dy;
    const r2 = radius * radius;
    for (let y = y0; y < y1; y++) {
      const py = y + 0.5 - ay;
      for (let x = x0; x < x1; x++) {
        const px = x + 0.5 - ax;
        const t = length2 > 0 ? Math.min(1, Math.max(0, (px * dx + py * dy) / length2)) : 0;
        const ex = px - t * dx, ey = py - t * dy;
        if (ex * ex + ey * ey <= r2) {
          const i = y * this.width + x;
          this.values[i] = value === ERASE ? this.start[i] : value;
        }
      }
    }
    const s = this.stroke;
    if (s) {
      s.x0 = Math.min(s.x0, x0); s.y0 = Math.min(s.y0, y0);
      s.x1 = Math.max(s.x1, x1); s.y1 = Math.max(s.y1, y1);
    }
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  endStroke() {
    const s = this.stroke;
    this.stroke = null;
    if (!s || s.x0 >= s.x1) return;
    const box = { x: s.x0, y: s.y0, w: s.x1 - s.x0, h: s.y1 - s.y0 };
    const before = this._crop(s.before, box);
    const after = this._crop(this.values, box);
    if (before.every((v, i) => v === after[i])) return;
    this._push({ ...box, before, after });
  }

  get canUndo() { return this.undoStack.length > 0; }
  get canRedo() { return this.redoStack.length > 0; }

  /** Undo the last step; returns the changed box (or null). */
  undo() {
    const step = this.undoStack.pop();
    if (!step) return null;
    this._paste(step, step.before);
    if (step.startBefore) this.start = step.startBefore;
    this.redoStack.push(step);
    return step;
  }

  redo() {
    const step = this.redoStack.pop();
    if (!step) return null;
    this._paste(step, step.after);
    if (step.startAfter) this.start = step.startAfter;
    this.undoStack.push(step);
    return step;
  }

  _push(step) {
    this.undoStack.push(step);
    this.redoStack = [];
    let bytes = 0;
    for (let i = this.undoStack.length - 1; i >= 0; i--) {
      const s = this.undoStack[i];
      bytes += s.before.length * (s.startBefore ? 4 : 2);
      if (bytes > HISTORY_BYTES && i < this.undoStack.length - 1) {
        this.undoStack.splice(0, i + 1);
        break;
      }
    }
  }

  _crop(values, box) {
    const out = new Uint8Array(box.w * box.h);
    for (let y = 0; y < box.h; y++) {
      const from = (box.y + y) * this.width + box.x;
      out.set(values.subarray(from, from + box.w), y * box.w);
    }
    return out;
  }

  _paste(box, data) {
    for (let y = 0; y < box.h; y++) {
      this.values.set(data.subarray(y * box.w, (y + 1) * box.w), (box.y + y) * this.width + box.x);
    }
  }
}
