// Earlier jobs, kept in this browser's localStorage (ids, model, prompt and settings; never the key), and
// the job's link: #job=<id>, with &model= and &prompt= where they were chosen, so a shared link brings the
// model and prompt back. It keeps no state of its own: the list lives in localStorage, the job followed in
// the main module's state object, passed in.

import { $, el } from "./ui.js";

const HISTORY_KEY = "img2vid.history";
const HISTORY_MAX = 20;
const JOB_ID = /^[0-9a-f]{64}$/;

export function readHistory() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(list) ? list.filter((e) => e && JOB_ID.test(e.id)) : [];
  } catch { return []; }
}

export function writeHistory(app, list) {
  localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_MAX)));
  renderHistory(app);
}

export function clearHistory(app) {
  localStorage.removeItem(HISTORY_KEY);
  renderHistory(app);
}

export function findEntry(id) { return readHistory().find((e) => e.id === id) || null; }

export function updateEntry(app, id, changes) {
  const list = readHistory();
  const entry = list.find((e) => e.id === id);
  if (entry) { Object.assign(entry, changes); writeHistory(app, list); }
}

export function addEntry(app, entry) {
  writeHistory(app, [entry, ...readHistory().filter((e) => e.id !== entry.id)]);
}

/** The link of a job: `#job=<id>`, plus `&model=` and `&prompt=` when given. */
export function jobHash(id, { model, prompt } = {}) {
  const params = new URLSearchParams({ job: id });
  if (model) params.set("model", model);
  if (prompt) params.set("prompt", prompt);
  return "#" + params.toString();
}

/** {id, model, prompt} from the URL's fragment, or null when it names no job. */
export function jobFromHash(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const id = params.get("job");
  if (!id || !JOB_ID.test(id)) return null;
  return { id, model: params.get("model") || null, prompt: params.get("prompt") };
}

function settingsText(settings) {
  return Object.entries(settings || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
}

export function renderHistory(app) {
  const list = readHistory();
  $("history-empty").hidden = list.length > 0;
  $("clear-history").hidden = list.length === 0;
  $("history").replaceChildren(...list.map((entry) => {
    const when = new Date(entry.at);
    const link = el("a", { href: jobHash(entry.id, entry), textContent: `Job ${entry.id.slice(0, 8)}` });
    if (app.following && app.following.id === entry.id) link.setAttribute("aria-current", "true");
    return el("li", {},
      link,
      el("span", { className: `badge ${entry.state}`, textContent: entry.state === "running" ? "in progress" : entry.state }),
      el("time", { dateTime: when.toISOString(), textContent: when.toLocaleString() }),
      entry.modelTitle ? el("span", { className: "model", textContent: entry.modelTitle }) : null,
      entry.prompt ? el("q", { className: "prompt", textContent: entry.prompt }) : null,
      el("span", { className: "muted settings", textContent: settingsText(entry.settings) }));
  }));
}
