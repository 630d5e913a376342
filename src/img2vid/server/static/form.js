// The settings form: built from GET info (fields, ranges in the server's words, defaults, the models and
// their rules), read as the text the user typed, and marked with the server's own refusals. It has no
// number or range rules of its own: the server judges every value and the page shows what it says next to
// the field it names. The key is kept in this tab's sessionStorage, in localStorage only when ticked.

import { $, el } from "./ui.js";

const KEY_KEY = "img2vid.key";
const MAX_SEED = 4294967294;
/** Text fields a model may take besides the numeric ones: shown only for a model that reads them. */
const TEXT_FIELDS = ["prompt", "negative_prompt"];

// ---------------------------------------------------------------------------------------------------
// The key

export function loadKey() {
  const remembered = localStorage.getItem(KEY_KEY);
  $("remember").checked = remembered !== null;
  $("key").value = remembered ?? sessionStorage.getItem(KEY_KEY) ?? "";
}

export function saveKey() {
  const key = $("key").value.trim();
  if (key) sessionStorage.setItem(KEY_KEY, key); else sessionStorage.removeItem(KEY_KEY);
  if ($("remember").checked && key) localStorage.setItem(KEY_KEY, key); else localStorage.removeItem(KEY_KEY);
}

export function authHeaders(app) {
  const key = $("key").value.trim();
  return app.info?.auth && key ? { authorization: `Bearer ${key}` } : {};
}

// ---------------------------------------------------------------------------------------------------
// Models: the ones GET info lists (none from an older server: then every field is the one model's)

/** The model chosen in the picker, or null when the server lists none. */
export function currentModel(app) {
  const models = app.info?.models;
  if (!Array.isArray(models) || models.length === 0) return null;
  return models.find((m) => m.name === $("model").value) || models.find((m) => m.default) || models[0];
}

export function modelNamed(app, name) {
  return (app.info?.models || []).find((m) => m.name === name) || null;
}

/** Whether a field is read by the chosen model (every numeric field, with no models listed). */
export function takes(app, name) {
  const model = currentModel(app);
  if (!model) return !TEXT_FIELDS.includes(name);
  return Array.isArray(model.fields) ? model.fields.includes(name) : !TEXT_FIELDS.includes(name);
}

function buildModelPicker(app) {
  const models = app.info.models;
  if (!Array.isArray(models) || models.length === 0) return;
  const picker = $("model");
  picker.replaceChildren(...models.map((m) =>
    el("option", { value: m.name, textContent: m.title && m.title !== m.name ? `${m.title} (${m.name})` : m.name })));
  picker.value = (models.find((m) => m.default) || models[0]).name;
  // One model: nothing to pick, but its rules are still shown.
  $("model-row").hidden = models.length < 2;
  $("model-note").hidden = false;
}

/** The chosen model's frame and size rules, in the server's words, shown before anything is sent. */
function showModelRules(model) {
  const note = $("model-note");
  if (!model) { note.hidden = true; return; }
  const frames = model.frames_rule?.describe;
  const sizes = model.sizes?.describe;
  note.replaceChildren(
    el("strong", { textContent: model.title || model.name }),
    frames ? el("span", { textContent: ` · Frames: ${frames}` }) : null,
    sizes ? el("span", { textContent: ` · Sizes: ${sizes}` }) : null,
    model.takes_prompt ? el("span", { textContent: " · Takes a prompt" }) : null);
  note.hidden = false;
}

// ---------------------------------------------------------------------------------------------------
// Fields

function defaultOf(app, name) {
  const model = currentModel(app);
  if (model?.defaults && Object.hasOwn(model.defaults, name)) return model.defaults[name];
  return app.info.fields[name]?.default ?? null;
}

function formatNumber(field, value) {
  if (value === null || value === undefined) return "";
  return field.type === "integer" ? String(Math.round(value)) : String(value);
}

function showFieldError(input, error, message) {
  input.setAttribute("aria-invalid", message ? "true" : "false");
  error.textContent = message || "";
  error.hidden = !message;
}

function fieldRow(id, label, control, help) {
  const row = el("div", { className: "field", id: `${id}-row` },
    el("label", { htmlFor: id, textContent: label }), control, help,
    el("p", { id: `${id}-error`, className: "field-error", hidden: true }));
  return row;
}

export function buildForm(app, { onRollSeed }) {
  buildModelPicker(app);
  for (const [name, field] of Object.entries(app.info.fields)) {
    const id = `f-${name}`;
    const input = el("input", {
      id, name, type: "text", autocomplete: "off", spellcheck: false,
      inputMode: field.type === "integer" ? "numeric" : "decimal",
    });
    input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
    // Checked by the server on Generate, not on blur: an error appearing as the field loses focus would
    // move the button away from under the pointer between mouse down and mouse up.
    input.addEventListener("input", () => { input.dataset.touched = "true"; clearFieldError(name); });
    const control = name === "seed" ? el("div", { className: "with-button" }, input, diceButton(onRollSeed)) : input;
    $(field.engine ? "engine-fields" : "fields").append(fieldRow(id, field.label, control, el("p", { id: `${id}-help`, className: "help" })));
  }
  const texts = app.info.texts || {};
  for (const name of TEXT_FIELDS) {
    const text = texts[name];
    if (!text) continue;
    const id = `f-${name}`;
    const box = el("textarea", { id, name, rows: name === "prompt" ? 3 : 2, spellcheck: true });
    box.setAttribute("aria-describedby", `${id}-help ${id}-error`);
    box.addEventListener("input", () => clearFieldError(name));
    const limit = text.max_chars ? ` At most ${text.max_chars} characters.` : "";
    const row = fieldRow(id, text.label || name, box, el("p", { id: `${id}-help`, className: "help", textContent: `${text.help || ""}${limit}` }));
    row.hidden = true;
    $("text-fields").append(row);
  }
  applyModel(app);
}

/** Show the fields the chosen model reads (and only those), with its defaults and its rules. */
export function applyModel(app) {
  const model = currentModel(app);
  showModelRules(model);
  for (const [name, field] of Object.entries(app.info.fields)) {
    const input = $(`f-${name}`);
    $(`f-${name}-row`).hidden = !takes(app, name);
    const value = defaultOf(app, name);
    const shown = formatNumber(field, value);
    // A protocol field starts at its default; an engine field stays empty (the model's default) unless typed.
    if (!input.dataset.touched) input.value = field.engine ? "" : shown;
    input.placeholder = field.engine ? (shown ? `default ${shown}` : "engine default") : "";
    const help = $(`f-${name}-help`);
    help.replaceChildren(`${field.help} `, el("code", { textContent: name }), `: ${field.allowed}${shown ? `; default ${shown}` : ""}.`);
    if (name === "frames" && model?.frames_rule?.describe) help.append(` ${model.title || model.name}: ${model.frames_rule.describe}.`);
  }
  for (const name of TEXT_FIELDS) {
    const row = $(`f-${name}-row`);
    if (!row) continue;
    row.hidden = !takes(app, name);
    const value = defaultOf(app, name);
    $(`f-${name}`).placeholder = typeof value === "string" && value ? `default: ${value}` : "";
  }
  $("engine").hidden = [...$("engine-fields").children].every((row) => row.hidden);
}

function diceButton(onRollSeed) {
  const button = el("button", { type: "button", id: "dice", className: "icon", title: "Random seed", onclick: onRollSeed });
  button.setAttribute("aria-label", "Random seed");
  // A die drawn inline: no emoji font is needed, and nothing is fetched.
  button.innerHTML = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">'
    + '<rect x="3" y="3" width="18" height="18" rx="4" fill="none" stroke="currentColor" stroke-width="2"/>'
    + '<circle cx="8.5" cy="8.5" r="1.6" fill="currentColor"/><circle cx="15.5" cy="15.5" r="1.6" fill="currentColor"/>'
    + '<circle cx="12" cy="12" r="1.6" fill="currentColor"/><circle cx="15.5" cy="8.5" r="1.6" fill="currentColor"/>'
    + '<circle cx="8.5" cy="15.5" r="1.6" fill="currentColor"/></svg>';
  return button;
}

export function rollSeed() {
  const values = new Uint32Array(1);
  crypto.getRandomValues(values);
  const input = $("f-seed");
  input.value = String((values[0] % MAX_SEED) + 1);
  input.dataset.touched = "true";
  clearFieldError("seed");
}

/** What the form sends besides the image: each shown field's text as typed (empty: left out). */
export function formValues(app) {
  const values = {};
  for (const name of [...Object.keys(app.info.fields), ...TEXT_FIELDS]) {
    const input = $(`f-${name}`);
    if (!input || !takes(app, name)) continue;
    const text = name in app.info.fields ? input.value.trim() : input.value;
    if (text.trim() !== "") values[name] = text;
  }
  return values;
}

// ---------------------------------------------------------------------------------------------------
// The server's refusals, each next to the field it names

function errorTarget(name) {
  if (name === "image") return { input: $("image"), error: $("image-error") };
  if (name === "model") return { input: $("model"), error: $("model-error") };
  if (name === "fit" || name === "size") return { input: $(name), error: $("fit-error") };
  const input = $(`f-${name}`);
  return input ? { input, error: $(`f-${name}-error`) } : null;
}

export function clearFieldError(name) {
  const target = errorTarget(name);
  if (target) showFieldError(target.input, target.error, null);
}

export function clearFieldErrors(app) {
  for (const name of [...Object.keys(app.info.fields), ...TEXT_FIELDS, "model", "fit"]) clearFieldError(name);
}

/** Each message shown by the field it starts with ("cfg_scale must be ..."; "frames is 10; ..."); the
 * first such field's input, to focus. Messages that name no field are left to the notice. */
export function showServerErrors(messages) {
  let first = null;
  const shown = new Map();
  for (const message of messages) {
    const name = /^[a-z_]+/.exec(message)?.[0];
    const target = name && errorTarget(name);
    if (!target || target.input.closest("[hidden]")) continue;
    shown.set(target, [...(shown.get(target) || []), message]);
    first ??= target.input;
  }
  for (const [target, texts] of shown) showFieldError(target.input, target.error, texts.join(" "));
  return first;
}
