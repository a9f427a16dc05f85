// The radiograph and its overlay side by side: linked zoom and pan, the display window, and the maps drawn here.
// Streamlit calls the default function below again with new data on every redraw; the panes, their listeners, the
// zoom and the display window live on the element, so a new map or layer redraws one layer and the view stays as the
// reader left it. The display window only changes what is drawn: the model read the file's own pixels
// (xai_core.display_window).
//
// The component is this folder's files joined into one script (app/main.py): pane.js (the markup, the viewer's state,
// a redraw), zoom_pan.js, display_window.js, map_choice.js (pathology, layers, opacity, threshold), maps.js (drawing
// them) and tooltip.js (the attention under the pointer). Each file only declares: nothing runs before Streamlit
// calls the default function.

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
    picture: null, // the image drawn: {image, original: ImageBitmap, codesSource, codes: Uint16Array, asked, decoding}
    maps: new Map(), // label -> its normalised map at display size
    window: null, // {center, width} chosen by the reader; null: the file's own window
    invert: false,
    zoom: 1,
    centre: [0, 0], // the image point (display pixels) at the middle of each view
    drag: null,
    generation: 0,
    choice: null, // what the reader shows now: {label, layers, opacity, threshold}, switched here without the server
    served: null, // the same settings as the server last sent them
    pending: [], // the choices told to the server (map_choice.js's choiceKey) that it has not sent back yet
  };
  wireWindow(viewer);
  wireMap(viewer);
  wireZoomPan(viewer);
  return viewer;
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
  viewer.setTriggerValue = setTriggerValue;
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
    viewer.pending = [];
    viewer.picture = null;
    delete viewer.pair.dataset.codes;
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
  receiveCodes(viewer, data);
  const saliencySource = data.overlay.saliency;
  if (saliencySource && viewer.saliency?.source !== saliencySource) {
    loadSaliency(viewer, saliencySource).then(() => { if (viewer.picture) drawOverlay(viewer); });
  }
}
