// The attention under the pointer: this map's normalised value and the raw map's, in a small tip beside it.

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
