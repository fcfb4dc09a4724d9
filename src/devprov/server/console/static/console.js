// The console's only script: the live feed (server-sent events) and delete confirmations.
"use strict";

function cell(row, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function feedRow(item) {
  const row = document.createElement("tr");
  if (!item.backlog) row.className = "new";
  row.dataset.registrationId = item.registrationId;
  cell(row, new Date(item.at * 1000).toLocaleTimeString());
  const link = document.createElement("a");
  link.href = "/console/registrations/" + encodeURIComponent(item.registrationId);
  link.textContent = item.registrationId;
  cell(row, "").appendChild(link);
  const badge = document.createElement("span");
  badge.className = "badge " + item.outcome;
  badge.textContent = item.outcome;
  cell(row, "").appendChild(badge);
  cell(row, item.hub);
  cell(row, item.enrollmentGroup);
  cell(row, item.transport);
  cell(row, item.errorCode ? item.errorCode + ": " + item.error : "");
  cell(row, item.ms, "num");
  return row;
}

function startFeed(body) {
  const state = document.getElementById("feed-state");
  const source = new EventSource(body.dataset.source);
  source.addEventListener("open", () => { state.textContent = "live"; });
  source.addEventListener("error", () => { state.textContent = "reconnecting…"; });
  source.addEventListener("registration", (message) => {
    body.insertBefore(feedRow(JSON.parse(message.data)), body.firstChild);
    while (body.rows.length > 500) body.deleteRow(-1);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const body = document.getElementById("feed");
  if (body) startFeed(body);
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
});
