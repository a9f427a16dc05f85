// "Draw where it really is": the reader drags one or more boxes on the radiograph for their feedback.
// Boxes are kept in the image's own pixels (data.size = [columns, rows]) and drawn in percentages, so they stay on
// the finding when the picture is enlarged. The boxes travel to the server as the component's "boxes" state; inside
// the feedback form Streamlit holds them until "Save feedback" is pressed, so drawing never reruns anything.
const MIN_SIDE = 4; // display pixels: a click, or a slip of the mouse, is not a box

function build(root, component) {
  const frame = document.createElement("div");
  frame.className = "cxr-draw";
  frame.innerHTML = `
    <div class="cxr-draw-tools" role="toolbar" aria-label="Boxes">
      <span class="cxr-draw-count" role="status" aria-live="polite"></span>
      <button type="button" data-draw="undo" title="Remove the last box drawn">Undo</button>
      <button type="button" data-draw="clear" title="Remove every box">Clear</button>
      <button type="button" data-draw="enlarge" aria-pressed="false" title="Draw on a larger picture">Enlarge</button>
    </div>
    <div class="cxr-draw-stage" aria-label="Radiograph: drag to draw a box around the finding">
      <img class="cxr-draw-film" alt="The radiograph, to draw on" draggable="false">
    </div>`;
  root.appendChild(frame);
  const drawing = {
    frame,
    stage: frame.querySelector(".cxr-draw-stage"),
    film: frame.querySelector(".cxr-draw-film"),
    count: frame.querySelector(".cxr-draw-count"),
    boxes: [],
    size: [1, 1],
    component,
  };
  const undo = () => changed(drawing, drawing.boxes.slice(0, -1));
  frame.querySelector("[data-draw='undo']").addEventListener("click", undo);
  frame.querySelector("[data-draw='clear']").addEventListener("click", () => changed(drawing, []));
  const enlarge = frame.querySelector("[data-draw='enlarge']");
  enlarge.addEventListener("click", () => {
    const large = frame.classList.toggle("cxr-draw-large");
    enlarge.setAttribute("aria-pressed", String(large));
    enlarge.textContent = large ? "Done" : "Enlarge";
  });
  listen(drawing);
  return drawing;
}

// Where a pointer event falls, in the image's pixels, kept inside the image.
function imagePoint(drawing, event) {
  const rect = drawing.film.getBoundingClientRect();
  const [columns, rows] = drawing.size;
  const clamp = (value, high) => Math.min(Math.max(value, 0), high);
  return [clamp(((event.clientX - rect.left) / rect.width) * columns, columns),
          clamp(((event.clientY - rect.top) / rect.height) * rows, rows)];
}

// The box between two points in whole image pixels, every pixel the drag touched inside it (integers: the corners
// stay exactly within the image).
function boxBetween([x0, y0], [x1, y1]) {
  const left = Math.floor(Math.min(x0, x1));
  const top = Math.floor(Math.min(y0, y1));
  const right = Math.ceil(Math.max(x0, x1));
  const bottom = Math.ceil(Math.max(y0, y1));
  return { x: left, y: top, w: right - left, h: bottom - top };
}

function listen(drawing) {
  const { stage } = drawing;
  let start = null;
  let preview = null;
  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    start = imagePoint(drawing, event);
    preview = outline(drawing, boxBetween(start, start), "cxr-draw-preview");
  });
  stage.addEventListener("pointermove", (event) => {
    if (!start) return;
    place(drawing, preview, boxBetween(start, imagePoint(drawing, event)));
  });
  const finish = (event) => {
    if (!start) return;
    const box = boxBetween(start, imagePoint(drawing, event));
    preview.remove();
    start = null;
    const shown = drawing.film.getBoundingClientRect().width / drawing.size[0]; // display pixels per image pixel
    if (event.type === "pointerup" && box.w * shown >= MIN_SIDE && box.h * shown >= MIN_SIDE) {
      changed(drawing, [...drawing.boxes, box]);
    }
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", finish);
}

function outline(drawing, box, className) {
  const element = document.createElement("div");
  element.className = className;
  drawing.stage.appendChild(element);
  place(drawing, element, box);
  return element;
}

function place(drawing, element, box) {
  const [columns, rows] = drawing.size;
  Object.assign(element.style, { left: `${(100 * box.x) / columns}%`, top: `${(100 * box.y) / rows}%`,
                                 width: `${(100 * box.w) / columns}%`, height: `${(100 * box.h) / rows}%` });
}

function redraw(drawing) {
  drawing.stage.querySelectorAll(".cxr-draw-box").forEach((element) => element.remove());
  drawing.boxes.forEach((box, index) => {
    outline(drawing, box, "cxr-draw-box").dataset.number = String(index + 1);
  });
  const n = drawing.boxes.length;
  drawing.count.textContent = n === 0 ? "Drag to draw a box" : `${n} box${n === 1 ? "" : "es"} drawn`;
  drawing.frame.dataset.boxes = String(n);
}

function changed(drawing, boxes) {
  drawing.boxes = boxes;
  redraw(drawing);
  drawing.component.setStateValue("boxes", boxes);
}

export default function (component) {
  const { data, parentElement } = component;
  const drawing = parentElement.__cxrDrawing || (parentElement.__cxrDrawing = build(parentElement, component));
  drawing.component = component;
  if (drawing.image !== data.image) { // a new film (or a new form after a save) starts with no boxes
    drawing.image = data.image;
    drawing.size = data.size;
    drawing.frame.style.setProperty("--cxr-aspect", String(data.size[0] / data.size[1])); // columns per row
    drawing.film.src = data.picture;
    drawing.boxes = [];
  }
  redraw(drawing);
}
