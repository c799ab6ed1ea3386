// The console's one script: the live log, the version slider, the position slider.
// Every value from the server is put in the page as text (textContent), never as markup.
"use strict";

function liveLog() {
  const table = document.getElementById("log");
  if (!table || table.dataset.live !== "true" || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const head = document.getElementById("head");
  const limit = Number(table.dataset.limit) || 50;
  const params = new URLSearchParams({
    after: table.dataset.after,
    aggregate_type: table.dataset.aggregateType || "",
    event_type: table.dataset.eventType || "",
  });
  const source = new EventSource("/live?" + params.toString());
  const body = table.tBodies[0];
  source.onopen = () => { if (status) { status.textContent = "live"; status.className = "live"; } };
  source.onerror = () => { if (status) { status.textContent = "reconnecting…"; status.className = "live off"; } };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const row = document.createElement("tr");
    row.className = "new";
    const cell = (text, className) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (className) td.className = className;
      row.appendChild(td);
      return td;
    };
    cell(event.position, "num");
    cell(event.recorded_at);
    const stream = cell("");
    const link = document.createElement("a");
    link.href = event.href; // a path the server built: always "/streams/..."
    link.textContent = event.aggregate_type + "/" + event.aggregate_id;
    stream.appendChild(link);
    cell(event.version, "num");
    cell(event.event_type);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > limit) body.deleteRow(body.rows.length - 1);
    if (head) head.textContent = Number(event.position).toLocaleString("en-US");
    const empty = document.querySelector("p.empty");
    if (empty) empty.remove();
  };
}

function versionSlider() {
  const slider = document.getElementById("version-slider");
  if (!slider) return;
  const label = document.getElementById("slider-version");
  const state = document.getElementById("state");
  const heading = document.getElementById("state-heading");
  let latest = 0;
  slider.addEventListener("input", async () => {
    const version = slider.value;
    label.textContent = version;
    const request = ++latest;
    try {
      const response = await fetch(slider.dataset.stateUrl + "?version=" + encodeURIComponent(version));
      const answer = await response.json();
      if (request !== latest) return; // a newer move is on its way
      if (!response.ok) {
        state.textContent = answer.error;
        return;
      }
      state.textContent = answer.state;
      state.dataset.version = String(answer.version);
      heading.textContent = "State after version " + answer.version;
    } catch (error) {
      if (request === latest) state.textContent = "cannot load the state: " + error;
    }
  });
}

function positionSlider() {
  const slider = document.getElementById("position-slider");
  if (!slider) return;
  const label = document.getElementById("slider-position");
  slider.addEventListener("input", () => { label.textContent = slider.value; });
  slider.addEventListener("change", () => { slider.form.submit(); });
}

document.addEventListener("DOMContentLoaded", () => {
  liveLog();
  versionSlider();
  positionSlider();
});
