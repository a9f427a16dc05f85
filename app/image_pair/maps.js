// Drawing the maps: the model's raw grids scaled and resized as xai_core.explain does, coloured with the colour
// table, the outline's contours, and the gradient saliency picture in its colour.

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

// The outline as xai_core.overlay.outline_polygons finds it: the contours of where the map reaches the threshold
// (marching squares, the map padded with zeros so that a region touching the border closes along it), each a closed
// polygon of (x, y) in the map's pixels (pixel i's centre at i + 0.5); specks enclosing less than minArea square
// pixels (at `scale` display pixels per map pixel) are left out. Found on the heatmap's grid: the map is the model's
// few cells scaled up smoothly, so its contours are those at display size to well under a display pixel.
function outlinePolygons(map, cols, rows, threshold, [scaleX, scaleY], minArea) {
  const across = cols + 2; // the padded grid: node (r, c) is map pixel (r - 1, c - 1), zero outside the map
  const at = (r, c) => (r < 1 || c < 1 || r > rows || c > cols ? 0 : map[(r - 1) * cols + c - 1]);
  // A crossing lies on the edge from node (r, c) right (id 2n) or down (id 2n + 1), n = r * across + c; each
  // crossing joins the two cells beside its edge, so following neighbours walks each contour round to its start.
  const points = new Map();
  const links = new Map();
  const crossing = ([r, c, down]) => {
    const id = 2 * (r * across + c) + (down ? 1 : 0);
    if (!points.has(id)) {
      const from = at(r, c);
      const t = (threshold - from) / ((down ? at(r + 1, c) : at(r, c + 1)) - from);
      points.set(id, [c - 0.5 + (down ? 0 : t), r - 0.5 + (down ? t : 0)]);
    }
    return id;
  };
  const link = (a, b) => {
    for (const [from, to] of [[a, b], [b, a]]) {
      if (!links.has(from)) links.set(from, []);
      links.get(from).push(to);
    }
  };
  for (let r = 0; r <= rows; r += 1) {
    for (let c = 0; c <= cols; c += 1) {
      const corners = [at(r, c), at(r, c + 1), at(r + 1, c + 1), at(r + 1, c)]; // clockwise from the top left
      const inside = corners.map((value) => value >= threshold);
      const code = inside.reduce((sum, flag, index) => sum + (flag ? 1 << index : 0), 0);
      if (code === 0 || code === 15) continue;
      const sides = [[r, c, false], [r, c + 1, true], [r + 1, c, false], [r, c, true]]; // top, right, bottom, left
      const edges = sides.map((side, index) => (inside[index] !== inside[(index + 1) % 4] ? crossing(side) : null));
      const cut = edges.filter((id) => id !== null);
      if (cut.length === 2) {
        link(...cut);
      } else { // a saddle: the centre's value says whether the two inside corners are joined through it
        const joined = corners.reduce((sum, value) => sum + value, 0) / 4 >= threshold;
        const [top, right, bottom, left] = edges;
        if (joined === inside[0]) { link(top, right); link(bottom, left); } else { link(top, left); link(right, bottom); }
      }
    }
  }
  const polygons = [];
  const seen = new Set();
  for (const start of links.keys()) {
    if (seen.has(start)) continue;
    const polygon = [];
    let [previous, current] = [null, start];
    while (!seen.has(current)) {
      seen.add(current);
      const [x, y] = points.get(current);
      polygon.push([x * scaleX, y * scaleY]);
      const next = links.get(current).find((id) => id !== previous && !seen.has(id));
      [previous, current] = [current, next ?? start];
    }
    let twiceArea = 0;
    polygon.forEach(([x, y], index) => {
      const [nextX, nextY] = polygon[(index + 1) % polygon.length];
      twiceArea += x * nextY - nextX * y;
    });
    if (Math.abs(twiceArea) / 2 >= minArea) polygons.push(polygon);
  }
  return polygons;
}

// The outline's contours drawn as lines outline_width wide, centred on them, as xai_core.overlay draws them.
function drawOutline(canvas, map, [cols, rows], [width, height], threshold, overlay) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const [red, green, blue] = overlay.outline_colour;
  context.strokeStyle = `rgb(${red}, ${green}, ${blue})`;
  context.lineWidth = overlay.outline_width;
  context.lineJoin = "round";
  context.beginPath();
  for (const polygon of outlinePolygons(map, cols, rows, threshold, [width / cols, height / rows],
    overlay.outline_min_area)) {
    context.moveTo(...polygon[0]);
    for (const point of polygon.slice(1)) context.lineTo(...point);
    context.closePath();
  }
  context.stroke();
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
  const outlineKey = JSON.stringify([data.image, choice.label, choice.threshold]);
  if (shown.has("outline") && outline.dataset.painted !== outlineKey) {
    const grid = heatmapSize(data.size);
    drawOutline(outline, normalizedMap(viewer, choice.label, grid), grid, data.size, choice.threshold, overlay);
    outline.dataset.painted = outlineKey;
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
