// The display window (level, width, presets, invert, the file's own window) applied in the browser to the film's
// 16-bit display codes; and the radiograph's two pictures, each decoded once per image. For viewing only: the model
// read the file's own pixels (xai_core.display_window).

const CODES = 65535;
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

// Both panes' radiograph: the file's own rendering, or the codes through the reader's window (drawn once the
// codes are here: the first window picked for a film waits for them).
function drawGrey(viewer) {
  const picture = viewer.picture;
  if (!picture) return;
  syncControls(viewer);
  if (viewer.window && !picture.codes) {
    needCodes(viewer, picture);
    return;
  }
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

// The 16-bit codes from their picture (red the high byte, green the low byte).
async function decodeCodes(source) {
  const coded = await decodePicture(source, false);
  const canvas = new OffscreenCanvas(coded.width, coded.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(coded, 0, 0);
  const rgba = context.getImageData(0, 0, coded.width, coded.height).data;
  const codes = new Uint16Array(coded.width * coded.height);
  for (let index = 0; index < codes.length; index += 1) codes[index] = (rgba[4 * index] << 8) | rgba[4 * index + 1];
  return codes;
}

// The film's codes are two thirds of its pictures' bytes and only a window the reader picks needs them: the server
// sends them when the pane first asks (app/image_pane.py), and they are decoded then, and marked on the pane
// (data-codes).
function needCodes(viewer, picture) {
  if (picture.decoding) return;
  if (!picture.codesSource) {
    if (!picture.asked) viewer.setTriggerValue("codes", picture.image);
    picture.asked = true;
    return;
  }
  picture.decoding = decodeCodes(picture.codesSource).then((codes) => {
    picture.codes = codes;
    if (viewer.picture !== picture) return;
    viewer.pair.dataset.codes = picture.image;
    drawGrey(viewer);
  });
}

// The codes the server sent for the film shown, once the pane asked.
function receiveCodes(viewer, data) {
  const picture = viewer.picture;
  if (!data.codes || !picture || picture.image !== data.image || picture.codesSource) return;
  picture.codesSource = data.codes;
  if (viewer.window) needCodes(viewer, picture);
}

async function loadPicture(viewer, data) {
  const generation = ++viewer.generation;
  const original = await decodePicture(data.original, true);
  if (generation !== viewer.generation) return false; // a newer image arrived meanwhile
  viewer.picture = { image: data.image, original, codesSource: data.codes, codes: null, asked: false, decoding: null };
  return true;
}
