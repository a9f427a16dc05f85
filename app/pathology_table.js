// The 14 pathologies by probability, one row each; pressing a row (or Enter or Space on it) shows that
// pathology's map, and the row of the pathology shown is marked wherever it was picked. A small table in the page's
// own DOM: Streamlit's data grid took about a third of the browser's time to draw the result, and had to be
// re-created whenever the pathology was picked elsewhere.
// The table lives on the element and is refilled in place on every redraw.

// The test evidence's verdict, short enough for the column; its full words are the cell's tooltip.
const SHORT_EVIDENCE = { "not shown to work": "not shown", "too few cases to tell": "too few" };

function cell(row, className, text) {
  const element = row.insertCell();
  element.className = className;
  element.textContent = text;
  return element;
}

function build(root, pick) {
  const table = document.createElement("table");
  table.className = "cxr-findings";
  table.setAttribute("aria-label", "Pathologies by probability; press a row to show its map");
  table.createTHead().insertRow();
  table.createTBody();
  table.addEventListener("click", (event) => {
    const row = event.target.closest("tbody tr");
    if (row) pick(table, row);
  });
  table.addEventListener("keydown", (event) => {
    const row = event.target.closest("tbody tr");
    if (!row) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      pick(table, row);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      (event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling)?.focus();
    }
  });
  // A pathology switched in the image pane (app/image_pair/) is marked here at once, before the page's rerun.
  document.addEventListener("cxr-shown", (event) => mark(table, event.detail));
  root.appendChild(table);
  return table;
}

function mark(table, label) {
  for (const row of table.tBodies[0].rows) {
    const shown = row.dataset.label === label;
    row.setAttribute("aria-selected", String(shown));
    row.tabIndex = shown ? 0 : -1; // one tab stop; the arrow keys move between rows
  }
}

function fill(table, data) {
  const focused = table.contains(document.activeElement); // a reader moving through the rows keeps the focus
  const header = table.tHead.rows[0];
  header.replaceChildren();
  for (const column of data.columns) {
    const heading = document.createElement("th");
    heading.scope = "col";
    heading.className = column.className;
    heading.textContent = column.title;
    if (column.help) heading.title = column.help;
    header.appendChild(heading);
  }
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const finding of data.rows) {
    const row = body.insertRow();
    row.dataset.label = finding.label;
    // A label whose test evidence is not "works" is drawn faint: its probability is not to be acted on.
    row.classList.toggle("cxr-untrusted", !finding.trusted);
    cell(row, "cxr-name", finding.name).title = finding.name;
    const probability = cell(row, "cxr-probability", "");
    const bar = document.createElement("span");
    bar.className = "cxr-bar";
    bar.style.setProperty("--cxr-share", `${(100 * finding.probability).toFixed(1)}%`);
    const value = document.createElement("span");
    value.className = "cxr-value";
    value.textContent = finding.probability.toFixed(2);
    probability.append(bar, value);
    // flagged: true, false, or null where the model card has no such operating point for this label.
    cell(row, "cxr-above", finding.flagged === null ? "–" : finding.flagged ? "▲" : "").title = finding.flag_help;
    cell(row, "cxr-evidence", SHORT_EVIDENCE[finding.evidence] || finding.evidence).title = finding.evidence_help;
  }
  mark(table, data.shown);
  if (focused) body.querySelector("tr[aria-selected='true']")?.focus();
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const pick = (table, row) => {
    mark(table, row.dataset.label); // at once: the map follows when the page has redrawn
    row.focus();
    setTriggerValue("picked", row.dataset.label);
  };
  const table = parentElement.__cxrFindings || (parentElement.__cxrFindings = build(parentElement, pick));
  fill(table, data);
}
