// The map shown: pathology, layers, opacity and outline threshold, switched in the browser without the server, then
// told to it once the reader pauses; the server's settings win where they changed since it last sent them.

const CHOICES = ["label", "layers", "opacity", "threshold"];
const LAYER_TITLES = { heatmap: "Grad-CAM++", saliency: "saliency", outline: "outline" };

function mapControl(viewer, name, tag = "input") {
  return viewer.pair.querySelector(`${tag}[data-map='${name}']`);
}

// What the reader chose here goes to the server after it is drawn: the findings table marks its row at once, and the
// page's panels (summary, feedback, PACS, methods, downloads) follow in a rerun of the result alone, once the reader
// has paused (TELL_AFTER_MS): stepping through the pathologies with the arrow keys reruns nothing on the way.
const TELL_AFTER_MS = 300;

// A choice as the server sends it back: its settings in CHOICES order.
function choiceKey(choice) {
  return JSON.stringify(CHOICES.map((key) => choice[key]));
}

// The reader's choice is on its way to the server (told by the pane or by the table): until the server sends it
// back, a reply to an earlier one is stale and leaves the reader's newer choice on screen (adopt).
function toldChoice(viewer) {
  const choice = { ...viewer.choice };
  // data-told: the choice the server was last told, by the pane or by the table; data-served equals it once the
  // server has acted on it
  viewer.pair.dataset.told = JSON.stringify(choice);
  viewer.pending.push(choiceKey(choice));
  return choice;
}

function tell(viewer) {
  document.dispatchEvent(new CustomEvent("cxr-shown", { detail: viewer.choice.label }));
  const choice = toldChoice(viewer);
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
    toldChoice(viewer); // the table tells the server this choice
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
// elsewhere the reader's choice made here stays. A reply to a choice told before the reader's latest one (the
// reader switched again while the server ran) changes nothing on screen.
function adopt(viewer, overlay) {
  const served = Object.fromEntries(CHOICES.map((key) => [key, overlay[key]]));
  const echoed = viewer.pending.lastIndexOf(choiceKey(served));
  const stale = echoed >= 0 && echoed < viewer.pending.length - 1;
  if (echoed >= 0) viewer.pending.splice(0, echoed + 1);
  if (!viewer.choice) viewer.choice = { ...served };
  for (const key of CHOICES) {
    if (!stale && (!viewer.served || JSON.stringify(viewer.served[key]) !== JSON.stringify(served[key]))) {
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
