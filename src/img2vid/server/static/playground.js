// The playground's script: a client of this server's image-to-video protocol, with no build step and
// nothing fetched from anywhere but this server. This module owns the page's one state object and wires
// the others to it: form.js (fields and models from GET info, the server's refusals by their fields),
// preview.js (the image and GET fit-plan's plan), job.js (following a job) and history.js (earlier jobs,
// the job's link). The server is the one judge: the page stops only an empty image; every value, size and
// prompt is judged by the server, and the page shows its words.
//
// It must never write the API key to localStorage unless the user ticks "remember key", and never submit
// a job twice for one click.

import { $, API, announce, backoffMs, clearNotice, el, problemOf, setFormStatus, showNotice, sizeName, sleep } from "./ui.js";
import {
  applyModel, authHeaders, buildForm, clearFieldErrors, currentModel, formValues, loadKey, modelNamed, rollSeed,
  saveKey, showServerErrors,
} from "./form.js";
import { drawPreview, pickFile, refreshPlan, uploadImage } from "./preview.js";
import { cancel, follow } from "./job.js";
import { addEntry, clearHistory, jobFromHash, jobHash, renderHistory } from "./history.js";

/** Everything the page knows that changes; passed to the other modules, which keep none of their own. */
const app = {
  info: null,                   // GET info's answer
  picked: null,                 // {file, bitmap, width, height, name}
  plan: null,                   // GET fit-plan's answer for the picked image, model, fit and size
  planAsked: 0,                 // which fit-plan question is the newest
  planning: Promise.resolve(),  // the plan being asked for, awaited by a submit
  picking: Promise.resolve(),   // the image being read, awaited by a submit that comes right after
  following: null,              // the job followed: {id, abort, started, ended, ticker, model, prompt, ...}
  submitting: false,
  videoUrl: null,
};

// ---------------------------------------------------------------------------------------------------
// Models and sizes

/** The sizes the chosen model takes as they are, for the size picker (none listed: "Nearest" only). */
function buildSizes() {
  const sizes = currentModel(app)?.sizes ?? app.info.sizes;
  const chosen = $("size").value;
  $("size").replaceChildren(el("option", { value: "auto", textContent: "Nearest" }),
    ...(sizes?.allowed || []).map((size) => el("option", { value: sizeName(size), textContent: sizeName(size) })));
  $("size").value = [...$("size").options].some((o) => o.value === chosen) ? chosen : "auto";
}

function chooseModel(name) {
  if (name && modelNamed(app, name)) $("model").value = name;
  applyModel(app);
  buildSizes();
  refreshPlan(app);
}

// ---------------------------------------------------------------------------------------------------
// Submitting: one click, one job

async function submit(event) {
  event.preventDefault();
  if (app.submitting || !app.info) return;
  // Disabled at once, before anything is awaited: a second click (or Enter) finds it disabled.
  app.submitting = true;
  $("generate").disabled = true;
  try {
    await app.picking;  // an image picked a moment ago may still be being read
    if (app.picked?.bitmap && (!app.plan || app.plan.unreachable)) await refreshPlan(app);
    await app.planning;
    await send();
  } finally {
    app.submitting = false;
    $("generate").disabled = false;
    setFormStatus("");
  }
}

function refuse(title, messages, field) {
  showNotice(title, messages, { source: "form" });  // stale as soon as the form changes: cleared then
  if (field?.closest("details")) field.closest("details").open = true;
  field?.focus();
  announce(`Not sent: ${messages[0] || title}`);
}

async function send() {
  clearNotice();
  clearFieldErrors(app);
  if (!app.picked) {
    // The one thing the page stops itself: nothing to send.
    $("image-error").textContent = "image is required: choose or drop an image";
    $("image-error").hidden = false;
    refuse("Not sent: choose an image first", ["image is required: choose or drop an image"], $("image"));
    return;
  }
  if (app.plan && !app.plan.allowed) {
    // The server's own refusal of this size with this fit (GET fit-plan), already shown by the image.
    refuse("Not sent: the server does not take this image as it is", [app.plan.message], $("image"));
    return;
  }
  setFormStatus("Submitting…");
  announce("Submitting.");
  saveKey();
  const model = currentModel(app);
  const values = formValues(app);
  const image = await uploadImage(app);
  const form = new FormData();
  form.append("image", image.blob, image.name);
  if (model && app.info.models.length > 1) form.append("model", model.name);
  if (image.fit) form.append("fit", image.fit);
  for (const [name, value] of Object.entries(values)) form.append(name, value);
  let answer;
  try {
    answer = await fetch(API, { method: "POST", headers: authHeaders(app), body: form });
  } catch {
    // Never sent again on its own: the job may exist (the protocol's rule on paid jobs).
    showNotice("The server could not be reached", ["Nothing was started. Check the server and press Generate again."]);
    announce("The server could not be reached.");
    return;
  }
  if (!answer.ok) {
    const problem = await problemOf(answer);
    const field = answer.status === 400 || answer.status === 413 ? showServerErrors(problem.messages) : null;
    showNotice(problem.title, problem.messages, { source: field ? "form" : "server" });
    if (field?.closest("details")) field.closest("details").open = true;
    field?.focus();
    announce(`Refused: ${problem.messages[0] || problem.title}`);
    return;
  }
  const { id } = await answer.json();
  const { prompt, negative_prompt: negative, ...numbers } = values;
  const settings = { ...numbers, size: sizeName(image.target), fit: image.fit || (app.plan?.fit === "strict" ? "as is" : app.plan?.fit) };
  if (negative) settings.negative_prompt = negative;
  const shared = { model: model && app.info.models.length > 1 ? model.name : null, prompt: prompt || null };
  addEntry(app, {
    id, at: Date.now(), state: "running", image: app.picked.name, settings,
    model: shared.model, modelTitle: model && app.info.models.length > 1 ? model.title || model.name : null, prompt: shared.prompt,
  });
  history.pushState(null, "", jobHash(id, shared));
  follow(app, id);
  // On a phone the job sits below the form: bring it into view (focus stays where it was).
  const box = $("job").getBoundingClientRect();
  if (box.top > window.innerHeight || box.bottom < 0) $("job").scrollIntoView({ behavior: "smooth", block: "start" });
}

// ---------------------------------------------------------------------------------------------------
// The job's link: #job=<id>[&model=<name>][&prompt=<text>]

function onHash() {
  const linked = jobFromHash();
  if (!linked || linked.id === app.following?.id) return;
  clearNotice();
  // The link brings back the model and prompt it was made with.
  const model = linked.model && modelNamed(app, linked.model);
  if (model && model.name !== currentModel(app)?.name) chooseModel(model.name);
  const promptBox = $("f-prompt");
  if (promptBox && linked.prompt !== null && linked.prompt !== undefined) promptBox.value = linked.prompt;
  follow(app, linked.id, { model: linked.model, modelTitle: model?.title, prompt: linked.prompt });
}

// ---------------------------------------------------------------------------------------------------
// Start: read info (retrying until the server answers), then wire everything

async function loadInfo() {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const answer = await fetch("info", { cache: "no-store" });
      if (answer.ok) return await answer.json();
    } catch { /* the server is not up yet */ }
    $("server-line").textContent = `Cannot reach the server; trying again (attempt ${attempt})…`;
    await sleep(backoffMs(attempt));
  }
}

function wire() {
  $("form").addEventListener("submit", submit);
  const staleNotice = () => { if ($("notice").dataset.source === "form") clearNotice(); };
  $("form").addEventListener("input", staleNotice);
  $("form").addEventListener("change", staleNotice);
  $("image").addEventListener("change", () => { app.picking = pickFile(app, $("image").files[0]); });
  $("model").addEventListener("change", () => chooseModel());
  $("size").addEventListener("change", () => refreshPlan(app));
  $("fit").addEventListener("change", () => refreshPlan(app));
  $("key").addEventListener("change", saveKey);
  $("remember").addEventListener("change", saveKey);
  $("cancel").addEventListener("click", () => cancel(app));
  $("retry-now").addEventListener("click", () => app.following?.wake?.());
  $("resume").addEventListener("click", () => {
    const id = app.following?.id || jobFromHash()?.id;
    if (id) { clearNotice(); follow(app, id, jobFromHash() || {}); }
  });
  $("again").addEventListener("click", () => { rollSeed(); $("form").requestSubmit(); });
  $("clear-history").addEventListener("click", () => clearHistory(app));
  window.addEventListener("hashchange", onHash);
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) app.picking = pickFile(app, file);
  });
}

async function main() {
  wire();
  renderHistory(app);
  app.info = await loadInfo();
  buildForm(app, { onRollSeed: rollSeed });
  buildSizes();
  drawPreview(app);
  $("key-row").hidden = !app.info.auth;
  loadKey();
  // Each model's sizes are in its rules' line; an older server's one rule is said here.
  const sizes = app.info.sizes.any_size ? `any size up to ${app.info.sizes.max_pixels} pixels` : app.info.sizes.describe;
  const models = app.info.models?.length > 1 ? `${app.info.models.length} models` : `sizes ${sizes}`;
  $("server-line").textContent = `img2vid ${app.info.version} · ${app.info.auth ? "key required" : "no key needed"} · ${models}`;
  $("generate").disabled = false;
  document.body.dataset.ready = "true";
  onHash();
}

main();
