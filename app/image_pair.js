// The radiograph and its overlay side by side: linked zoom and pan, the display window, and the maps drawn here.
// Streamlit calls this function again with new data on every redraw; the panes, their listeners, the zoom and the
// display window live on the element, so a new map or layer redraws one layer and the view stays as the reader left
// it. The display window only changes what is drawn: the model read the file's own pixels (xai_core.display_window).
const ZOOM_STEP = 1.25;
const MAX_ZOOM = 16;
const CODES = 65535;
const SCALE_EPS = 1e-7; // xai_core.explain's min-max eps

function build(root) {
  const pair = document.createElement("div");
  pair.className = "cxr-pair";
  const stack = (layers) => `<div class="cxr-view"><div class="cxr-stack">
      <canvas class="cxr-base"></canvas>${layers}</div></div>`;
  pair.innerHTML = `
    <div class="cxr-tools" role="toolbar" aria-label="View">
      <div class="cxr-window" role="group" aria-label="Display window">
        <label title="Presets for viewing only: the model always reads the file's own pixels">Window
          <select data-window="preset" aria-label="Window preset"></select></label>
        <label>Level <input type="range" data-window="level" aria-label="Window level">
          <output data-window="level"></output></label>
        <label>Width <input type="range" data-window="width" aria-label="Window width">
          <output data-window="width"></output></label>
        <label><input type="checkbox" data-window="invert" aria-label="Invert"> Invert</label>
        <button type="button" data-window="reset" aria-label="File's window"
          title="Back to the file's own window, not inverted">&#x21BA;</button>
      </div>
      <div class="cxr-zoom">
        <button type="button" data-zoom="in" aria-label="Zoom in" title="Zoom in">+</button>
        <button type="button" data-zoom="out" aria-label="Zoom out" title="Zoom out">&minus;</button>
        <button type="button" data-zoom="reset" aria-label="Reset view" title="Reset view (or double-click)">1:1</button>
      </div>
      <div class="cxr-map" role="group" aria-label="Map shown">
        <select data-map="label" aria-label="Pathology on the map" title="The pathology whose map is shown"></select>
        <label><input type="checkbox" data-map="heatmap"> Grad-CAM++</label>
        <label title="Gradient saliency: computed by the server for the pathology shown (a moment)"><input
          type="checkbox" data-map="saliency"> Saliency</label>
        <label title="The outline encloses where the map reaches this fraction of its maximum"><input type="checkbox"
          data-map="outline"> Outline <input type="range" data-map="threshold" min="0.05" max="0.95" step="0.05"
          aria-label="Outline threshold"> <output data-map="threshold"></output></label>
        <label>Opacity <input type="range" data-map="opacity" min="0" max="1" step="0.05" aria-label="Opacity">
          <output data-map="opacity"></output></label>
      </div>
    </div>
    <div class="cxr-panes">
      <figure class="cxr-pane" data-pane="original"><figcaption></figcaption>${stack("")}</figure>
      <figure class="cxr-pane" data-pane="overlay"><figcaption></figcaption>${stack(`
        <canvas class="cxr-layer" data-layer="heatmap"></canvas><canvas class="cxr-layer" data-layer="saliency"></canvas>
        <canvas class="cxr-layer" data-layer="outline"></canvas>`)}</figure>
    </div>
    <div class="cxr-tip" role="status" hidden></div>`;
  root.appendChild(pair);

  const control = (name, tag = "input") => pair.querySelector(`${tag}[data-window='${name}']`);
  const viewer = {
    pair,
    views: [...pair.querySelectorAll(".cxr-view")],
    stacks: [...pair.querySelectorAll(".cxr-stack")],
    bases: [...pair.querySelectorAll(".cxr-base")],
    layers: Object.fromEntries([...pair.querySelectorAll(".cxr-layer")].map((c) => [c.dataset.layer, c])),
    overlayPane: pair.querySelector("[data-pane='overlay']"),
    captions: [...pair.querySelectorAll("figcaption")],
    tip: pair.querySelector(".cxr-tip"),
    controls: { preset: control("preset", "select"), level: control("level"), width: control("width"),
                invert: control("invert"), levelText: control("level", "output"),
                widthText: control("width", "output") },
    data: null,
    picture: null, // {image, original: ImageBitmap, codes: Uint16Array} of the image drawn
    maps: new Map(), // label -> its normalised map at display size
    window: null, // {center, width} chosen by the reader; null: the file's own window
    invert: false,
    zoom: 1,
    centre: [0, 0], // the image point (display pixels) at the middle of each view
    drag: null,
    generation: 0,
    choice: null, // what the reader shows now: {label, layers, opacity, threshold}, switched here without the server
    served: null, // the same settings as the server last sent them
  };
  wireWindow(viewer);
  wireMap(viewer);

  const imagePoint = (view, event) => {
    const [width, height] = viewer.data.size;
    const box = view.getBoundingClientRect();
    const scale = viewer.zoom * fitScale(view, viewer.data.size);
    return [
      viewer.centre[0] + (event.clientX - box.left - box.width / 2) / scale,
      viewer.centre[1] + (event.clientY - box.top - box.height / 2) / scale,
      width,
      height,
    ];
  };

  const zoomAt = (view, event, factor) => {
    const [u, v] = imagePoint(view, event);
    const box = view.getBoundingClientRect();
    zoomBy(viewer, factor);
    const scale = viewer.zoom * fitScale(view, viewer.data.size);
    viewer.centre = [u - (event.clientX - box.left - box.width / 2) / scale,
                     v - (event.clientY - box.top - box.height / 2) / scale];
    place(viewer);
  };

  for (const view of viewer.views) {
    view.addEventListener("wheel", (event) => {
      event.preventDefault(); // scrolling over the images zooms them instead of moving the page
      zoomAt(view, event, event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP);
    }, { passive: false });
    view.addEventListener("dblclick", () => reset(viewer));
    view.addEventListener("pointerdown", (event) => {
      viewer.drag = { x: event.clientX, y: event.clientY };
      view.setPointerCapture(event.pointerId);
      view.classList.add("cxr-dragging");
    });
    const endDrag = () => {
      viewer.drag = null;
      view.classList.remove("cxr-dragging");
    };
    view.addEventListener("pointerup", endDrag);
    view.addEventListener("pointercancel", endDrag); // a touch taken over by the browser, a lost capture
    view.addEventListener("pointermove", (event) => {
      if (viewer.drag) {
        const scale = viewer.zoom * fitScale(view, viewer.data.size);
        viewer.centre = [viewer.centre[0] - (event.clientX - viewer.drag.x) / scale,
                         viewer.centre[1] - (event.clientY - viewer.drag.y) / scale];
        viewer.drag = { x: event.clientX, y: event.clientY };
        place(viewer);
      }
      showAttention(viewer, event, imagePoint(view, event));
    });
    view.addEventListener("pointerleave", () => { viewer.tip.hidden = true; });
  }
  pair.querySelector(".cxr-zoom").addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.zoom;
    if (!action) return;
    if (action === "reset") return reset(viewer);
    zoomBy(viewer, action === "in" ? ZOOM_STEP : 1 / ZOOM_STEP);
    place(viewer);
  });
  new ResizeObserver(() => { if (viewer.data) fitHeight(viewer); place(viewer); }).observe(pair);
  window.addEventListener("resize", () => { if (viewer.data) { fitHeight(viewer); place(viewer); } });
  return viewer;
}

// --- zoom and pan -------------------------------------------------------------------------------------------------

// Each view is data.height tall at most, less on a short screen, so that the whole film is seen without scrolling
// (1280 x 800); never under 300 px.
function fitHeight(viewer) {
  const top = viewer.views[0].getBoundingClientRect().top + window.scrollY;
  const height = Math.max(300, Math.min(viewer.data.height, window.innerHeight - top - 12));
  viewer.views.forEach((view) => { view.style.height = `${height}px`; });
}

// Zoom 1 shows the whole image; the zoom stays between 1 and MAX_ZOOM.
function zoomBy(viewer, factor) {
  viewer.zoom = Math.min(MAX_ZOOM, Math.max(1, viewer.zoom * factor));
}

// Scale at which the whole image fits its view (zoom 1).
function fitScale(view, [width, height]) {
  return Math.min(view.clientWidth / width, view.clientHeight / height);
}

function reset(viewer) {
  const [width, height] = viewer.data.size;
  viewer.zoom = 1;
  viewer.centre = [width / 2, height / 2];
  place(viewer);
}

function place(viewer) {
  if (!viewer.data) return;
  const [width, height] = viewer.data.size;
  // Keep some of the image in view: the centre stays on the image.
  viewer.centre = [Math.min(width, Math.max(0, viewer.centre[0])), Math.min(height, Math.max(0, viewer.centre[1]))];
  viewer.views.forEach((view, index) => {
    const scale = viewer.zoom * fitScale(view, viewer.data.size);
    const left = view.clientWidth / 2 - scale * viewer.centre[0];
    const top = view.clientHeight / 2 - scale * viewer.centre[1];
    const stack = viewer.stacks[index];
    stack.style.width = `${width}px`;
    stack.style.height = `${height}px`;
    stack.style.transform = `translate(${left}px, ${top}px) scale(${scale})`;
  });
  viewer.pair.dataset.zoom = viewer.zoom.toFixed(3);
}

// --- the display window -------------------------------------------------------------------------------------------

const FILE_WINDOW = "File's window";
const CUSTOM = "Custom";

function wireWindow(viewer) {
  const { preset, level, width, invert } = viewer.controls;
  preset.addEventListener("change", () => {
    const chosen = viewer.data.display.presets[preset.value];
    viewer.window = chosen ? { center: chosen[0], width: chosen[1] } : null;
    drawGrey(viewer);
  });
  const fromSliders = () => {
    viewer.window = { center: Number(level.value), width: Number(width.value) };
    drawGrey(viewer);
  };
  level.addEventListener("input", fromSliders);
  width.addEventListener("input", fromSliders);
  invert.addEventListener("change", () => {
    viewer.invert = invert.checked;
    drawGrey(viewer);
  });
  viewer.pair.querySelector("[data-window='reset']").addEventListener("click", () => {
    viewer.window = null;
    viewer.invert = false;
    drawGrey(viewer);
  });
}

// The sliders' range and the presets, once per image, in the image's own units.
function setUpWindow(viewer) {
  const { display } = viewer.data;
  const { preset, level, width } = viewer.controls;
  const span = display.high - display.low;
  const step = span >= 100 ? 1 : span / 100;
  Object.assign(level, { min: display.low, max: display.high, step });
  Object.assign(width, { min: step, max: 2 * span, step });
  preset.replaceChildren(...[FILE_WINDOW, ...Object.keys(display.presets), CUSTOM].map((name) => new Option(name)));
  preset.options[preset.options.length - 1].disabled = true;
  viewer.pair.querySelector(".cxr-window").title =
    `In the image's ${display.units}. Lung, mediastinum, bone and soft tissue are set from this film's own ` +
    "grey levels (radiographs have no Hounsfield scale). For viewing only: the model always reads the file's pixels.";
}

// The window shown in the controls: the reader's, else the file's (its full range where it has a VOI LUT).
function shownWindow(viewer) {
  const { display } = viewer.data;
  if (viewer.window) return viewer.window;
  const [center, width] = display.file_window || [(display.low + display.high) / 2, display.high - display.low];
  return { center, width };
}

function syncControls(viewer) {
  const { preset, level, width, invert, levelText, widthText } = viewer.controls;
  const { center, width: span } = shownWindow(viewer);
  level.value = center;
  width.value = span;
  const digits = (value) => (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3));
  levelText.value = digits(center);
  widthText.value = digits(span);
  invert.checked = viewer.invert;
  const presets = viewer.data.display.presets;
  const named = viewer.window && Object.keys(presets).find(
    (name) => presets[name][0] === viewer.window.center && presets[name][1] === viewer.window.width);
  preset.value = viewer.window ? named || CUSTOM : FILE_WINDOW;
}

// Both panes' radiograph: the file's own rendering, or the codes through the reader's window.
function drawGrey(viewer) {
  const picture = viewer.picture;
  if (!picture) return;
  syncControls(viewer);
  const [width, height] = viewer.data.size;
  const [first, second] = viewer.bases;
  const context = first.getContext("2d", { willReadFrequently: true });
  first.width = second.width = width;
  first.height = second.height = height;
  if (viewer.window) {
    const { low, high, inverted } = viewer.data.display;
    const { center, width: span } = viewer.window;
    const lut = new Uint8ClampedArray(CODES + 1);
    const flip = inverted !== viewer.invert;
    for (let code = 0; code <= CODES; code += 1) {
      const value = low + (code * (high - low)) / CODES;
      const grey = Math.min(1, Math.max(0, (value - center) / span + 0.5));
      lut[code] = Math.round((flip ? 1 - grey : grey) * 255);
    }
    const pixels = context.createImageData(width, height);
    const out = pixels.data;
    picture.codes.forEach((code, index) => {
      const grey = lut[code];
      out[4 * index] = out[4 * index + 1] = out[4 * index + 2] = grey;
      out[4 * index + 3] = 255;
    });
    context.putImageData(pixels, 0, 0);
  } else {
    context.drawImage(picture.original, 0, 0);
    if (viewer.invert) {
      const pixels = context.getImageData(0, 0, width, height);
      const out = pixels.data;
      for (let index = 0; index < out.length; index += 4) {
        out[index] = out[index + 1] = out[index + 2] = 255 - out[index];
      }
      context.putImageData(pixels, 0, 0);
    }
  }
  second.getContext("2d").drawImage(first, 0, 0);
  const { center, width: span } = shownWindow(viewer);
  viewer.pair.dataset.window = viewer.window ? `${center} ${span}${viewer.invert ? " inverted" : ""}`
    : `file${viewer.invert ? " inverted" : ""}`;
}

async function decodePicture(source, colourManaged) {
  const blob = await (await fetch(source)).blob();
  // The codes picture is data, not colour: no colour-space conversion may touch its bytes.
  return createImageBitmap(blob, colourManaged ? {} : { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

async function loadPicture(viewer, data) {
  const generation = ++viewer.generation;
  const [original, coded] = await Promise.all([decodePicture(data.original, true), decodePicture(data.codes, false)]);
  if (generation !== viewer.generation) return false; // a newer image arrived meanwhile
  const canvas = new OffscreenCanvas(coded.width, coded.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(coded, 0, 0);
  const rgba = context.getImageData(0, 0, coded.width, coded.height).data;
  const codes = new Uint16Array(coded.width * coded.height);
  for (let index = 0; index < codes.length; index += 1) codes[index] = (rgba[4 * index] << 8) | rgba[4 * index + 1];
  viewer.picture = { image: data.image, original, codes };
  return true;
}

// --- the map shown: pathology, layers, opacity and outline threshold, switched in the browser ------------------------

const CHOICES = ["label", "layers", "opacity", "threshold"];
const LAYER_TITLES = { heatmap: "Grad-CAM++", saliency: "saliency", outline: "outline" };

function mapControl(viewer, name, tag = "input") {
  return viewer.pair.querySelector(`${tag}[data-map='${name}']`);
}

// What the reader chose here goes to the server after it is drawn: the findings table marks its row at once, and the
// page's panels (summary, feedback, PACS, methods, downloads) follow in a rerun of the result alone, once the reader
// has paused (TELL_AFTER_MS): stepping through the pathologies with the arrow keys reruns nothing on the way.
const TELL_AFTER_MS = 300;

function tell(viewer) {
  document.dispatchEvent(new CustomEvent("cxr-shown", { detail: viewer.choice.label }));
  const choice = { ...viewer.choice };
  viewer.pair.dataset.told = JSON.stringify(choice); // data-served equals it once the server has acted on it
  clearTimeout(viewer.telling);
  viewer.telling = setTimeout(() => viewer.setStateValue("choice", choice), TELL_AFTER_MS);
}

function wireMap(viewer) {
  const redraw = () => { if (viewer.picture) drawOverlay(viewer); };
  mapControl(viewer, "label", "select").addEventListener("change", (event) => {
    viewer.choice.label = event.target.value;
    redraw();
    tell(viewer);
  });
  for (const layer of ["heatmap", "saliency", "outline"]) {
    mapControl(viewer, layer).addEventListener("change", (event) => {
      const layers = new Set(viewer.choice.layers);
      if (event.target.checked) layers.add(layer); else layers.delete(layer);
      viewer.choice.layers = ["heatmap", "saliency", "outline"].filter((name) => layers.has(name));
      redraw();
      tell(viewer);
    });
  }
  for (const setting of ["opacity", "threshold"]) {
    const slider = mapControl(viewer, setting);
    slider.addEventListener("input", (event) => { // while dragging: drawn here only
      viewer.choice[setting] = Number(event.target.value);
      redraw();
    });
    slider.addEventListener("change", () => tell(viewer)); // released: the server hears it once
  }
  // A row pressed in the findings table (app/pathology_table.js) shows its map at once; the table's own rerun
  // then brings the rest of the page along.
  const fromTable = (event) => {
    const row = event.target.closest?.(".cxr-findings tbody tr[data-label]");
    if (!row || !viewer.choice || !viewer.data.maps[row.dataset.label]) return;
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
    viewer.choice.label = row.dataset.label;
    redraw();
  };
  document.addEventListener("click", fromTable, true);
  // A new upload hides the film shown at once: nothing of it or its overlay is seen beside the next one's name.
  document.addEventListener("change", (event) => {
    if (event.target.matches?.("input[type='file']")) viewer.pair.classList.add("cxr-loading");
  }, true);
  document.addEventListener("keydown", fromTable, true);
}

// The server's settings win where they changed since it last sent them (the reader moved a page control);
// elsewhere the reader's choice made here stays.
function adopt(viewer, overlay) {
  const served = Object.fromEntries(CHOICES.map((key) => [key, overlay[key]]));
  if (!viewer.choice) viewer.choice = { ...served };
  for (const key of CHOICES) {
    if (!viewer.served || JSON.stringify(viewer.served[key]) !== JSON.stringify(served[key])) {
      viewer.choice[key] = served[key];
    }
  }
  viewer.served = served;
  viewer.pair.dataset.served = JSON.stringify(served);
}

function syncMapControls(viewer, saliencyShown) {
  const { choice, data } = viewer;
  const select = mapControl(viewer, "label", "select");
  const names = data.findings.map((finding) => finding.label).join();
  if (select.dataset.labels !== names) {
    select.replaceChildren(...data.findings.map((finding) => new Option(finding.name, finding.label)));
    select.dataset.labels = names;
  }
  select.value = choice.label;
  for (const layer of ["heatmap", "saliency", "outline"]) mapControl(viewer, layer).checked = choice.layers.includes(layer);
  for (const setting of ["opacity", "threshold"]) {
    mapControl(viewer, setting).value = choice[setting];
    mapControl(viewer, setting, "output").value = Number(choice[setting]).toFixed(2);
  }
  const name = data.findings.find((finding) => finding.label === choice.label)?.name || choice.label;
  const drawn = choice.layers.filter((layer) => layer !== "saliency" || saliencyShown);
  const titles = drawn.map((layer) => LAYER_TITLES[layer]).join(" + ") || "no overlay";
  // Gradient saliency costs a backward pass per pathology: the server computes it for the pathology shown.
  const missing = choice.layers.length > drawn.length ? " (saliency on its way)" : "";
  viewer.captions[1].textContent = viewer.captions[1].title = `${name} · ${titles}${missing}`;
}

// --- the maps -----------------------------------------------------------------------------------------------------

function bytesOf(base64) {
  return Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
}

// Bilinear with half-pixel centres (torch's align_corners=False), as xai_core.explain resizes maps.
function resize(source, rows, cols, height, width) {
  const axis = (inputs, outputs) => {
    const low = new Int32Array(outputs);
    const high = new Int32Array(outputs);
    const weight = new Float32Array(outputs);
    for (let index = 0; index < outputs; index += 1) {
      const position = Math.max(0, ((index + 0.5) * inputs) / outputs - 0.5);
      low[index] = Math.min(Math.floor(position), inputs - 1);
      high[index] = Math.min(low[index] + 1, inputs - 1);
      weight[index] = position - Math.floor(position);
    }
    return { low, high, weight };
  };
  const across = axis(cols, width);
  const down = axis(rows, height);
  const out = new Float32Array(height * width);
  for (let y = 0; y < height; y += 1) {
    const top = down.low[y] * cols;
    const bottom = down.high[y] * cols;
    const wy = down.weight[y];
    for (let x = 0; x < width; x += 1) {
      const left = across.low[x];
      const right = across.high[x];
      const wx = across.weight[x];
      const upper = source[top + left] * (1 - wx) + source[top + right] * wx;
      const lower = source[bottom + left] * (1 - wx) + source[bottom + right] * wx;
      out[y * width + x] = upper * (1 - wy) + lower * wy;
    }
  }
  return out;
}

function minMax(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const value of values) {
    if (value < low) low = value;
    if (value > high) high = value;
  }
  return values.map((value) => (value - low) / (SCALE_EPS + high - low));
}

function rawMap(viewer, label) {
  const map = viewer.data.maps[label];
  return { ...map, values: new Float32Array(bytesOf(map.raw).buffer) };
}

// The map in [0, 1] at display size exactly as xai_core.explain.normalized_cam: min-max, resize, min-max.
// At display size by default (the outline, the attention under the pointer); [width, height] for a coarser grid.
function normalizedMap(viewer, label, [width, height] = viewer.data.size) {
  const key = `${label} ${width}x${height}`;
  if (!viewer.maps.has(key)) {
    const { rows, cols, values } = rawMap(viewer, label);
    viewer.maps.set(key, minMax(resize(minMax(values), rows, cols, height, width)));
  }
  return viewer.maps.get(key);
}

// The heatmap is coloured on a grid of at most HEATMAP_GRID pixels a side and scaled up smoothly by the browser: the
// model's maps are a few cells a side (10 x 10 for a ResNet-50 at 320 px), so the picture is the same to the eye,
// and a switch colours 16 times fewer pixels than at display size.
const HEATMAP_GRID = 256;

function heatmapSize([width, height]) {
  const step = Math.max(1, Math.ceil(Math.max(width, height) / HEATMAP_GRID));
  return [Math.ceil(width / step), Math.ceil(height / step)];
}

function paint(canvas, width, height, fill) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  fill(pixels.data);
  context.putImageData(pixels, 0, 0);
}

// Where the map reaches the threshold, less that region shrunk by the line width: its rim, drawn inside it.
function outlineOf(map, width, height, threshold, lineWidth) {
  const inside = new Uint8Array(map.length);
  map.forEach((value, index) => { inside[index] = value >= threshold ? 1 : 0; });
  const shrink = (mask, step, count, length) => { // a run of lineWidth pixels along one axis must all be inside
    const out = new Uint8Array(mask.length);
    for (let line = 0; line < count; line += 1) {
      const start = line * (step === 1 ? width : 1);
      let run = 0;
      const stretch = new Int32Array(length); // inside pixels up to here along the line
      for (let at = 0; at < length; at += 1) {
        run = mask[start + at * step] ? run + 1 : 0;
        stretch[at] = run;
      }
      run = 0;
      for (let at = length - 1; at >= 0; at -= 1) {
        run = mask[start + at * step] ? run + 1 : 0;
        out[start + at * step] = stretch[at] > lineWidth && run > lineWidth ? 1 : 0;
      }
    }
    return out;
  };
  const core = shrink(shrink(inside, 1, height, width), width, width, height);
  return inside.map((value, index) => value & (1 - core[index]));
}

// Each layer is painted again only when what it shows changed (an opacity is a style; a threshold repaints only the
// outline), and nothing at all when the server sends back what the reader already sees.
function drawOverlay(viewer) {
  const { data, choice } = viewer;
  const overlay = data.overlay;
  const [width, height] = data.size;
  const shown = new Set(choice.layers);
  const saliencyShown = shown.has("saliency") && overlay.saliency_label === choice.label
    && viewer.saliency?.source === overlay.saliency;
  const drawn = JSON.stringify([data.image, choice.label, choice.layers, choice.opacity, choice.threshold,
    overlay.colormap, saliencyShown ? overlay.saliency.length : null]);
  syncMapControls(viewer, saliencyShown);
  if (viewer.overlayPane.dataset.drawn === drawn) return;
  const { heatmap, saliency, outline } = viewer.layers;
  const repaint = (canvas, key, fill, [across, down] = [width, height]) => { // unless it already shows key
    if (canvas.dataset.painted === key) return;
    paint(canvas, across, down, fill);
    canvas.dataset.painted = key;
  };
  if (shown.has("heatmap")) {
    const grid = heatmapSize(data.size);
    const map = normalizedMap(viewer, choice.label, grid);
    const lut = bytesOf(overlay.lut);
    repaint(heatmap, JSON.stringify([data.image, choice.label, overlay.colormap]), (out) => {
      for (let index = 0; index < map.length; index += 1) {
        const value = map[index];
        const entry = 3 * Math.floor(value * 255 + 0.5);
        out[4 * index] = lut[entry];
        out[4 * index + 1] = lut[entry + 1];
        out[4 * index + 2] = lut[entry + 2];
        out[4 * index + 3] = value * 255 + 0.5;
      }
    }, grid);
  }
  if (shown.has("outline")) {
    const [red, green, blue] = overlay.outline_colour;
    repaint(outline, JSON.stringify([data.image, choice.label, choice.threshold]), (out) => {
      const rim = outlineOf(normalizedMap(viewer, choice.label), width, height, choice.threshold,
        overlay.outline_width);
      for (let index = 0; index < rim.length; index += 1) {
        if (!rim[index]) continue;
        out[4 * index] = red;
        out[4 * index + 1] = green;
        out[4 * index + 2] = blue;
        out[4 * index + 3] = 255;
      }
    });
  }
  heatmap.style.opacity = saliency.style.opacity = choice.opacity;
  heatmap.hidden = !shown.has("heatmap");
  outline.hidden = !shown.has("outline");
  saliency.hidden = !saliencyShown;
  viewer.overlayPane.dataset.drawn = drawn;
  viewer.overlayPane.dataset.drawnAt = performance.now().toFixed(1);
}

// Gradient saliency arrives as a grey picture (one pathology, computed by the server on request).
async function loadSaliency(viewer, source) {
  const picture = await decodePicture(source, false);
  const [width, height] = viewer.data.size;
  const reader = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  reader.drawImage(picture, 0, 0, width, height);
  const grey = reader.getImageData(0, 0, width, height).data;
  const [red, green, blue] = viewer.data.overlay.saliency_colour;
  paint(viewer.layers.saliency, width, height, (out) => {
    for (let index = 0; index < out.length; index += 4) {
      out[index] = red;
      out[index + 1] = green;
      out[index + 2] = blue;
      out[index + 3] = grey[index];
    }
  });
  viewer.saliency = { source };
}

function showAttention(viewer, event, [u, v, width, height]) {
  if (viewer.drag || !viewer.data || u < 0 || v < 0 || u >= width || v >= height) {
    viewer.tip.hidden = true;
    return;
  }
  const label = viewer.choice.label;
  const attention = normalizedMap(viewer, label)[Math.floor(v) * width + Math.floor(u)];
  const { rows, cols, values } = rawMap(viewer, label);
  const raw = rawAt(values, rows, cols, u / width, v / height);
  viewer.tip.textContent = `attention ${attention.toFixed(2)} of this map's maximum · raw ${raw.toPrecision(3)}`;
  const box = viewer.pair.getBoundingClientRect();
  viewer.tip.style.left = `${event.clientX - box.left + 14}px`;
  viewer.tip.style.top = `${event.clientY - box.top + 14}px`;
  viewer.tip.hidden = false;
}

// The raw map at a point given as fractions of the image's width and height (bilinear, half-pixel centres).
function rawAt(values, rows, cols, across, down) {
  const clampTo = (position, size) => Math.min(size - 1, Math.max(0, position * size - 0.5));
  const x = clampTo(across, cols);
  const y = clampTo(down, rows);
  const [x0, y0] = [Math.floor(x), Math.floor(y)];
  const [x1, y1] = [Math.min(x0 + 1, cols - 1), Math.min(y0 + 1, rows - 1)];
  const [wx, wy] = [x - x0, y - y0];
  const at = (row, col) => values[row * cols + col];
  return (at(y0, x0) * (1 - wx) + at(y0, x1) * wx) * (1 - wy) + (at(y1, x0) * (1 - wx) + at(y1, x1) * wx) * wy;
}

function showPictures(viewer, data) {
  loadPicture(viewer, data).then((loaded) => {
    if (!loaded) return;
    viewer.pair.classList.remove("cxr-loading");
    drawGrey(viewer);
    drawOverlay(viewer);
  });
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const viewer = parentElement.__cxrViewer || (parentElement.__cxrViewer = build(parentElement));
  viewer.setStateValue = setStateValue;
  // A new image opens whole, in the file's window, with nothing of the previous film left on screen; a new map,
  // layer or overlay setting keeps the reader's zoom, pan and window.
  const newImage = !viewer.data || viewer.data.image !== data.image;
  viewer.data = data;
  fitHeight(viewer);
  viewer.captions[0].textContent = data.captions[0];
  if (newImage) {
    clearTimeout(viewer.telling); // a choice made on the previous film is not this one's
    delete viewer.pair.dataset.told;
    viewer.choice = null;
    viewer.served = null;
    viewer.picture = null;
    viewer.saliency = null;
    viewer.maps.clear();
    viewer.window = null;
    viewer.invert = false;
    viewer.pair.classList.add("cxr-loading");
    delete viewer.overlayPane.dataset.drawn;
    viewer.asked = false;
    setUpWindow(viewer);
    adopt(viewer, data.overlay);
    reset(viewer);
    // The radiograph's pictures come with an image's first run only (the server's reruns for the pane's switches
    // leave them out); a pane drawn anew without them asks for them once.
    if (data.original) {
      showPictures(viewer, data);
    } else {
      viewer.asked = true;
      setTriggerValue("pictures", data.image);
    }
  } else if (!viewer.picture && data.original && viewer.asked) { // the pictures asked for
    viewer.asked = false;
    showPictures(viewer, data);
  } else {
    if (viewer.picture) viewer.pair.classList.remove("cxr-loading"); // the same film again (an upload refused)
    adopt(viewer, data.overlay);
    place(viewer);
    if (viewer.picture) drawOverlay(viewer);
  }
  const saliencySource = data.overlay.saliency;
  if (saliencySource && viewer.saliency?.source !== saliencySource) {
    loadSaliency(viewer, saliencySource).then(() => { if (viewer.picture) drawOverlay(viewer); });
  }
}
