// The page: open a photo, make its trimap (blank, from a trimap file, from a rough mask, painted), predict,
// look at the alpha and the cutout, download them. The server decodes every file (so the page paints on
// exactly the pixels the model sees, 16-bit and TIFF included) and checks every input with the same code
// and words as `dim predict`; the page keeps the trimap and the results.

import { ApiError, health, postForm, randomId, watchProgress } from "./api.js";
import { bitmapOf, channel, encodeGrayPng, pixelsOf } from "./png.js";
import { Trimap } from "./trimap.js";
import { View } from "./view.js";

const $ = (id) => document.getElementById(id);
const canvases = { photo: $("photo"), overlay: $("overlay"), alpha: $("alpha"), cutout: $("cutout") };
const context = (name) => canvases[name].getContext("2d");

// overlay colour of each trimap level; keep in step with --bgcolour, --unknown and --fg in style.css
const LEVEL_COLOURS = [[0, [40, 70, 210]], [128, [255, 190, 0]], [255, [0, 200, 90]]];
const OVERLAY_LUT = new Uint8Array(256 * 4);
for (const [level, rgb] of LEVEL_COLOURS) OVERLAY_LUT.set([...rgb, 255], level * 4);

const state = {
  file: null, // the photo as picked: sent with every request, so the server reads it as dim predict would
  stem: "photo",
  trimap: null,
  overlay: null, // ImageData of the overlay canvas
  alpha: null, // Uint8Array of the last prediction
  cutout: null, // its RGBA PNG, as the server sent it
  view: "trimap",
  stroke: null, // {last} while painting
  pan: null, // {x, y} while dragging the view
  spaceDown: false,
  lastPoint: null, // end of the last stroke, for Shift+click lines
  busy: false,
};

const view = new View($("viewport"), $("stage"), () => {
  $("zoom-value").textContent = `${Math.round(view.scale * 100)} %`;
  updateCursor();
});

// ---- messages --------------------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function showNotices(notices) {
  const list = $("notices");
  list.replaceChildren(...notices.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  list.hidden = notices.length === 0;
}

function setStatus(text, done = null, total = null) {
  $("status").textContent = text;
  const bar = $("progress");
  bar.hidden = done === null;
  if (total) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute("value"); // indeterminate
  }
}

/** Run one user action: busy while it runs, its error shown in the server's words. */
async function run(status, action) {
  if (state.busy) return;
  state.busy = true;
  document.body.dataset.busy = "true";
  $("predict").disabled = true;
  $("error").hidden = true;
  showNotices([]);
  setStatus(status, 0);
  try {
    await action();
  } catch (err) {
    setStatus("");
    showError(err instanceof ApiError ? err.message : `the page failed: ${err.message}`);
  } finally {
    state.busy = false;
    document.body.dataset.busy = "false";
    $("predict").disabled = false;
  }
}

// ---- photo and trimap ------------------------------------------------------------------------------

const stemOf = (name) => name.replace(/\.[^.]*$/, "") || "photo";

async function openPhoto(file) {
  await run(`reading ${file.name}…`, async () => {
    const { blob, notices } = await postForm("/api/image", { image: [file, file.name] });
    const bitmap = await bitmapOf(blob);
    const { width, height } = bitmap;
    for (const canvas of Object.values(canvases)) {
      canvas.width = width;
      canvas.height = height;
    }
    context("photo").drawImage(bitmap, 0, 0);
    Object.assign(state, { file, stem: stemOf(file.name), trimap: new Trimap(width, height), alpha: null,
      cutout: null, lastPoint: null });
    state.overlay = context("overlay").createImageData(width, height);
    renderOverlay();
    document.body.classList.add("has-photo");
    document.body.classList.remove("has-result");
    $("image-info").textContent = `${file.name}: ${width} × ${height} px`;
    view.setSize(width, height);
    setView("trimap");
    updateHistory();
    setStatus("paint the object (F), its edge (U) and the background (B), then predict");
    showNotices(notices);
  });
}

/** Redraw the overlay inside `box` (photo pixels), the whole trimap by default. */
function renderOverlay(box = null) {
  const { width, height, values } = state.trimap;
  const { x, y, w, h } = box ?? { x: 0, y: 0, w: width, h: height };
  const data = state.overlay.data;
  for (let row = y; row < y + h; row++) {
    for (let i = row * width + x, end = i + w; i < end; i++) {
      const c = values[i] * 4;
      const j = i * 4;
      data[j] = OVERLAY_LUT[c];
      data[j + 1] = OVERLAY_LUT[c + 1];
      data[j + 2] = OVERLAY_LUT[c + 2];
      data[j + 3] = OVERLAY_LUT[c + 3];
    }
  }
  context("overlay").putImageData(state.overlay, 0, 0, x, y, w, h);
}

function afterEdit() {
  updateHistory();
  if (state.alpha) setStatus("the trimap changed since the last prediction; predict again to update the alpha");
}

function updateHistory() {
  $("undo").disabled = !state.trimap?.canUndo;
  $("redo").disabled = !state.trimap?.canRedo;
}

async function trimapFrom(fields, label) {
  await run(`reading ${label}…`, async () => {
    const { blob, notices } = await postForm("/api/trimap", { image: [state.file, state.file.name], ...fields });
    state.trimap.replace(channel(pixelsOf(await bitmapOf(blob)), 0));
    renderOverlay();
    afterEdit();
    setStatus(`trimap from ${label}; paint to correct it, then predict`);
    showNotices(notices);
  });
}

function undoRedo(step) {
  if (step) {
    renderOverlay(step);
    afterEdit();
  }
}

// ---- predict and results ---------------------------------------------------------------------------

function showProgress(progress) {
  if (progress.stage === "waiting") setStatus(`waiting for the model (${progress.ahead} ahead)…`, 0);
  else if (progress.stage === "predicting" && progress.total) {
    setStatus(`predicting: tile ${progress.done} of ${progress.total}`, progress.done, progress.total);
  } else if (progress.stage === "predicting") setStatus("predicting…", 0);
  else if (progress.stage === "cutout") setStatus("estimating the foreground colours…", 0);
}

async function predict() {
  if (!state.trimap) return;
  await run("sending…", async () => {
    const started = performance.now();
    const { width, height, values } = state.trimap;
    const trimapPng = await encodeGrayPng(width, height, values);
    const id = randomId();
    const stop = watchProgress(id, showProgress);
    try {
      const { blob, notices } = await postForm(`/api/predict?output=cutout&progress=${id}`,
        { image: [state.file, state.file.name], trimap: [trimapPng, `${state.stem}_trimap.png`] });
      stop();
      await showResult(blob);
      setStatus(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      showNotices(notices);
    } finally {
      stop();
    }
  });
}

/** Show a cutout PNG: its alpha channel is the alpha, byte for byte the one dim predict writes. */
async function showResult(blob) {
  const bitmap = await bitmapOf(blob);
  const alpha = channel(pixelsOf(bitmap), 3);
  const gray = context("alpha").createImageData(bitmap.width, bitmap.height);
  for (let i = 0, j = 0; i < alpha.length; i++, j += 4) {
    gray.data[j] = gray.data[j + 1] = gray.data[j + 2] = alpha[i];
    gray.data[j + 3] = 255;
  }
  context("alpha").putImageData(gray, 0, 0);
  context("cutout").clearRect(0, 0, bitmap.width, bitmap.height);
  context("cutout").drawImage(bitmap, 0, 0);
  Object.assign(state, { alpha, cutout: blob });
  document.body.classList.add("has-result");
  setView("alpha");
}

function setView(name) {
  state.view = name;
  canvases.photo.hidden = canvases.overlay.hidden = name !== "trimap";
  canvases.alpha.hidden = name !== "alpha";
  canvases.cutout.hidden = name !== "cutout";
  for (const button of document.querySelectorAll("button.view")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === name));
  }
  updateCursor();
}

function setBackdrop() {
  const colour = document.querySelector("input[name=backdrop]:checked").value === "colour";
  canvases.cutout.classList.toggle("checker", !colour);
  canvases.cutout.style.background = colour ? $("backdrop-colour").value : "";
}

function download(blob, name) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

// ---- painting, zoom and pan ------------------------------------------------------------------------

const tool = () => document.querySelector("input[name=tool]:checked").value;
const brushSize = () => Number($("brush-size").value);
const panMode = () => state.spaceDown || tool() === "pan" || state.view !== "trimap";

function setBrushSize(size) {
  const value = Math.max(1, Math.min(Number($("brush-size").max), Math.round(size)));
  $("brush-size").value = value;
  $("brush-size-value").textContent = `${value} px`;
  updateCursor();
}

function updateCursor(event = null) {
  const cursor = $("brush-cursor");
  const viewport = $("viewport");
  const painting = Boolean(state.trimap) && !panMode();
  viewport.classList.toggle("painting", painting);
  viewport.classList.toggle("panning", Boolean(state.trimap) && !painting);
  if (event) {
    const box = viewport.getBoundingClientRect();
    cursor.style.left = `${event.clientX - box.left}px`;
    cursor.style.top = `${event.clientY - box.top}px`;
  }
  const diameter = Math.max(4, brushSize() * view.scale);
  cursor.style.width = cursor.style.height = `${diameter}px`;
  cursor.hidden = !painting || !cursor.style.left;
}

function paint(from, to) {
  const value = Number(tool());
  const box = state.trimap.paintSegment(from.x, from.y, to.x, to.y, brushSize() / 2, value);
  if (box) renderOverlay(box);
}

function onPointerDown(event) {
  if (!state.trimap || (event.button !== 0 && event.button !== 1)) return;
  event.preventDefault();
  $("viewport").setPointerCapture(event.pointerId);
  if (event.button === 1 || panMode()) {
    state.pan = { x: event.clientX, y: event.clientY };
    $("viewport").classList.add("dragging");
    return;
  }
  const point = view.toPhoto(event.clientX, event.clientY);
  state.trimap.beginStroke();
  paint(event.shiftKey && state.lastPoint ? state.lastPoint : point, point);
  state.stroke = { last: point };
}

function onPointerMove(event) {
  updateCursor(event);
  if (state.pan) {
    view.panBy(event.clientX - state.pan.x, event.clientY - state.pan.y);
    state.pan = { x: event.clientX, y: event.clientY };
  } else if (state.stroke) {
    for (const e of event.getCoalescedEvents?.() ?? [event]) {
      const point = view.toPhoto(e.clientX, e.clientY);
      paint(state.stroke.last, point);
      state.stroke.last = point;
    }
  }
}

function onPointerUp() {
  if (state.stroke) {
    state.trimap.endStroke();
    state.lastPoint = state.stroke.last;
    state.stroke = null;
    afterEdit();
  }
  state.pan = null;
  $("viewport").classList.remove("dragging");
}

function onWheel(event) {
  if (!state.trimap) return;
  event.preventDefault();
  const pixels = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
  view.zoomAt(Math.exp(-pixels * 0.0015), event.clientX, event.clientY);
}

// ---- keyboard --------------------------------------------------------------------------------------

const TOOL_KEYS = { f: "255", u: "128", b: "0", e: "-1", h: "pan" };
const VIEWS = ["trimap", "alpha", "cutout"];

function onKeyDown(event) {
  if (event.target.matches("input[type=number], input[type=text]")) return;
  const key = event.key.toLowerCase();
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && key === "enter") predict();
  else if (ctrl && key === "z") undoRedo(event.shiftKey ? state.trimap?.redo() : state.trimap?.undo());
  else if (ctrl && key === "y") undoRedo(state.trimap?.redo());
  else if (ctrl) return;
  else if (Object.hasOwn(TOOL_KEYS, key)) document.querySelector(`input[name=tool][value="${TOOL_KEYS[key]}"]`).checked = true;
  else if (key === "[" || key === "]") setBrushSize(key === "]" ? brushSize() * 1.25 + 1 : brushSize() / 1.25 - 1);
  else if (key === "0") view.fit();
  else if (key === "1") view.actualSize();
  else if (key === "+" || key === "=") view.zoomAt(1.25);
  else if (key === "-") view.zoomAt(0.8);
  else if (key === "v" && state.alpha) setView(VIEWS[(VIEWS.indexOf(state.view) + 1) % VIEWS.length]);
  else if (key === " ") state.spaceDown = true;
  else return;
  event.preventDefault();
  updateCursor();
}

function onKeyUp(event) {
  if (event.key === " ") {
    state.spaceDown = false;
    updateCursor();
  }
}

// ---- wiring ----------------------------------------------------------------------------------------

/** Call `handler(file)` when a file is picked, and clear the input so the same file can be picked again. */
function onFile(input, handler) {
  $(input).addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) handler(file);
  });
}

function wire() {
  onFile("image-input", openPhoto);
  onFile("trimap-input", (file) => trimapFrom(
    { trimap: [file, file.name], trimap_tolerant: String($("tolerant").checked) }, file.name));
  onFile("mask-input", (file) => trimapFrom(
    { mask: [file, file.name], band: $("band").value }, `${file.name} (band ${$("band").value} px)`));
  $("start-blank").onclick = () => {
    state.trimap.replace(new Uint8Array(state.trimap.values.length));
    renderOverlay();
    afterEdit();
  };
  $("undo").onclick = () => undoRedo(state.trimap.undo());
  $("redo").onclick = () => undoRedo(state.trimap.redo());
  $("predict").onclick = predict;
  $("brush-size").oninput = () => setBrushSize(brushSize());
  $("opacity").oninput = () => {
    canvases.overlay.style.opacity = $("opacity").value / 100;
    $("opacity-value").textContent = `${$("opacity").value} %`;
  };
  $("opacity").oninput();
  for (const button of document.querySelectorAll("button.view")) button.onclick = () => setView(button.dataset.view);
  for (const radio of document.querySelectorAll("input[name=backdrop]")) radio.onchange = setBackdrop;
  $("backdrop-colour").oninput = () => {
    document.querySelector("input[name=backdrop][value=colour]").checked = true;
    setBackdrop();
  };
  $("download-alpha").onclick = async () => download(
    await encodeGrayPng(state.trimap.width, state.trimap.height, state.alpha), `${state.stem}_alpha.png`);
  $("download-cutout").onclick = () => download(state.cutout, `${state.stem}_cutout.png`);
  $("download-trimap").onclick = async () => download(
    await encodeGrayPng(state.trimap.width, state.trimap.height, state.trimap.values), `${state.stem}_trimap.png`);
  $("zoom-in").onclick = () => view.zoomAt(1.25);
  $("zoom-out").onclick = () => view.zoomAt(0.8);
  $("zoom-fit").onclick = () => view.fit();
  $("zoom-actual").onclick = () => view.actualSize();
  for (const input of document.querySelectorAll("input[name=tool]")) input.onchange = () => updateCursor();

  const viewport = $("viewport");
  viewport.addEventListener("pointerdown", onPointerDown);
  viewport.addEventListener("pointermove", onPointerMove);
  viewport.addEventListener("pointerup", onPointerUp);
  viewport.addEventListener("pointercancel", onPointerUp);
  viewport.addEventListener("pointerleave", () => { $("brush-cursor").hidden = true; });
  viewport.addEventListener("wheel", onWheel, { passive: false });
  viewport.addEventListener("contextmenu", (event) => event.preventDefault());
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("resize", () => view.fit());

  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    document.body.classList.add("dragover");
  });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragover"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    document.body.classList.remove("dragover");
    const file = event.dataTransfer.files[0];
    if (file) openPhoto(file);
  });
}

async function showModel() {
  try {
    const info = await health();
    $("model").textContent = `DIM stage ${info.model.stage} · ${info.model.checkpoint} · ${info.device} · `
      + `${info.precision} · dimatting ${info.version}`;
  } catch (err) {
    showError(err.message);
  }
}

wire();
document.body.dataset.busy = "false";
showModel();
