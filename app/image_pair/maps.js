// Drawing the maps: the model's raw grids scaled and resized as xai_core.explain does, coloured with the colour
// table, the outline's rim, and the gradient saliency picture in its colour.

const SCALE_EPS = 1e-7; // xai_core.explain's min-max eps

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
