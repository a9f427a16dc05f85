// The radiograph and its overlay side by side, with linked zoom and pan and the attention under the pointer.
// Streamlit calls this function again with new data on every redraw; the panes, their listeners and the
// zoom live on the element, so a new overlay only swaps one picture and the view stays where the reader left it.
const ZOOM_STEP = 1.25;
const MAX_ZOOM = 16;

function build(root) {
  const pair = document.createElement("div");
  pair.className = "cxr-pair";
  pair.innerHTML = `
    <div class="cxr-tools" role="toolbar" aria-label="View">
      <button type="button" data-zoom="in" aria-label="Zoom in" title="Zoom in">+</button>
      <button type="button" data-zoom="out" aria-label="Zoom out" title="Zoom out">&minus;</button>
      <button type="button" data-zoom="reset" aria-label="Reset view" title="Reset view (or double-click)">Reset</button>
    </div>
    <div class="cxr-panes">
      <figure class="cxr-pane" data-pane="original"><figcaption></figcaption>
        <div class="cxr-view"><img draggable="false" alt="Radiograph"></div></figure>
      <figure class="cxr-pane" data-pane="overlay"><figcaption></figcaption>
        <div class="cxr-view"><img draggable="false" alt="Overlay"></div></figure>
    </div>
    <div class="cxr-tip" role="status" hidden></div>`;
  root.appendChild(pair);

  const viewer = {
    pair,
    views: [...pair.querySelectorAll(".cxr-view")],
    images: [...pair.querySelectorAll(".cxr-view img")],
    captions: [...pair.querySelectorAll("figcaption")],
    tip: pair.querySelector(".cxr-tip"),
    data: null,
    hover: null,
    zoom: 1,
    centre: [0, 0], // the image point (display pixels) at the middle of each view
    drag: null,
  };

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
      showAttention(viewer, view, event, imagePoint(view, event));
    });
    view.addEventListener("pointerleave", () => { viewer.tip.hidden = true; });
  }
  pair.querySelector(".cxr-tools").addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.zoom;
    if (!action) return;
    if (action === "reset") return reset(viewer);
    zoomBy(viewer, action === "in" ? ZOOM_STEP : 1 / ZOOM_STEP);
    place(viewer);
  });
  new ResizeObserver(() => place(viewer)).observe(pair);
  return viewer;
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
    const image = viewer.images[index];
    image.style.width = `${width}px`;
    image.style.height = `${height}px`;
    image.style.transform = `translate(${left}px, ${top}px) scale(${scale})`;
  });
  viewer.pair.dataset.zoom = viewer.zoom.toFixed(3);
}

function bytesOf(base64) {
  return Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
}

// The grids arrive as base64: attention as uint8 (value x 255), raw as little-endian float32.
function decodeHover(hover) {
  return {
    rows: hover.rows,
    cols: hover.cols,
    attention: bytesOf(hover.attention),
    raw: new Float32Array(bytesOf(hover.raw).buffer),
  };
}

function showAttention(viewer, view, event, [u, v, width, height]) {
  const hover = viewer.hover;
  if (viewer.drag || u < 0 || v < 0 || u >= width || v >= height) {
    viewer.tip.hidden = true;
    return;
  }
  const cell = Math.floor((v / height) * hover.rows) * hover.cols + Math.floor((u / width) * hover.cols);
  viewer.tip.textContent =
    `attention ${(hover.attention[cell] / 255).toFixed(2)} of this map's maximum · raw ${hover.raw[cell].toPrecision(3)}`;
  const box = viewer.pair.getBoundingClientRect();
  viewer.tip.style.left = `${event.clientX - box.left + 14}px`;
  viewer.tip.style.top = `${event.clientY - box.top + 14}px`;
  viewer.tip.hidden = false;
}

export default function (component) {
  const { data, parentElement } = component;
  const viewer = parentElement.__cxrViewer || (parentElement.__cxrViewer = build(parentElement));
  // A new image opens whole; a new map, layer or display window keeps the reader's zoom and pan.
  const newImage = !viewer.data || viewer.data.image !== data.image;
  if (!viewer.data || viewer.data.hover.raw !== data.hover.raw) viewer.hover = decodeHover(data.hover);
  viewer.data = data;
  viewer.views.forEach((view) => { view.style.height = `${data.height}px`; });
  data.captions.forEach((text, index) => { viewer.captions[index].textContent = text; });
  [data.original, data.overlay].forEach((source, index) => {
    if (viewer.images[index].getAttribute("src") !== source) viewer.images[index].setAttribute("src", source);
  });
  viewer.images[1].alt = `Overlay: ${data.captions[1]}`;
  if (newImage) reset(viewer); else place(viewer);
}
