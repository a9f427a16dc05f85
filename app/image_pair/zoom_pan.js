// Zoom and pan, the same in both views: the wheel zooms about the pointer, a drag pans, a double-click or 1:1 shows
// the whole film; each view is as tall as the screen allows. The pointer over a view shows the attention there
// (tooltip.js).

const ZOOM_STEP = 1.25;
const MAX_ZOOM = 16;

function wireZoomPan(viewer) {
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
  viewer.pair.querySelector(".cxr-zoom").addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.zoom;
    if (!action) return;
    if (action === "reset") return reset(viewer);
    zoomBy(viewer, action === "in" ? ZOOM_STEP : 1 / ZOOM_STEP);
    place(viewer);
  });
  new ResizeObserver(() => { if (viewer.data) fitHeight(viewer); place(viewer); }).observe(viewer.pair);
  window.addEventListener("resize", () => { if (viewer.data) { fitHeight(viewer); place(viewer); } });
}

// Each view is data.height tall at most, less on a short screen, so that the whole film is seen without scrolling
// (1280 x 800), and no taller than the film at the view's width (no black bands above and below it, pushing the
// legend and the evidence off the screen); never under 300 px.
function fitHeight(viewer) {
  const top = viewer.views[0].getBoundingClientRect().top + window.scrollY;
  const [columns, rows] = viewer.data.size;
  const film = Math.ceil(viewer.views[0].clientWidth * rows / columns);
  const height = Math.max(300, Math.min(viewer.data.height, window.innerHeight - top - 12, film));
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
