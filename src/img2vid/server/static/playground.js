// The playground's script: a client of this server's image-to-video protocol, with no build step and
// nothing fetched from anywhere but this server.
//
// It builds the form from GET info (ranges, defaults, help and the server's own words for a refusal), fits
// the picked image to an accepted size in the browser, submits once per click, follows the job (backing
// off on 429 and network errors, surviving a server restart), and keeps the job in the URL (#job=<id>) and
// in a history list in localStorage. It must never write the API key to localStorage unless the user
// ticks "remember key", and never submit a job twice for one click.

const API = "v2beta/image-to-video";
const JOB_ID = /^[0-9a-f]{64}$/;
const HISTORY_KEY = "img2vid.history";
const KEY_KEY = "img2vid.key";
const HISTORY_MAX = 20;
const MAX_SEED = 4294967294;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
};

let info = null;          // GET info's answer
let picked = null;        // {file, bitmap, width, height, type, name}
let following = null;     // {id, abort: AbortController, entry, started, ticker}
let submitting = false;
let picking = Promise.resolve();  // the image being read, awaited by a submit that comes right after
let videoUrl = null;

// ---------------------------------------------------------------------------------------------------
// Announcements, the one notice, the status line

function announce(text) {
  // Cleared first, so the same words said twice are read twice.
  const region = $("announce");
  region.textContent = "";
  requestAnimationFrame(() => { region.textContent = text; });
}

function showNotice(title, messages = [], kind = "error") {
  const notice = $("notice");
  notice.className = `notice ${kind}`;
  notice.dataset.source = "server";
  notice.replaceChildren(el("strong", { textContent: title }));
  if (messages.length === 1) notice.append(el("p", { textContent: messages[0] }));
  else if (messages.length > 1) notice.append(el("ul", {}, ...messages.map((m) => el("li", { textContent: m }))));
  notice.hidden = false;
}

function clearNotice() {
  delete $("notice").dataset.source;
  $("notice").hidden = true;
  $("notice").replaceChildren();
}

function setFormStatus(text) { $("form-status").textContent = text; }

/** The protocol's error body as a title and its messages; anything else as its HTTP status. */
async function problemOf(answer) {
  let name = answer.statusText || "error";
  let messages = [];
  try {
    const body = await answer.json();
    if (body && typeof body.name === "string") name = body.name;
    if (body && Array.isArray(body.errors)) messages = body.errors.map(String);
  } catch { /* not the protocol's body */ }
  const wait = answer.headers.get("retry-after");
  if (answer.status === 429 && wait) messages.push(`Try again in ${wait} s.`);
  return { title: `${answer.status} ${name}`, messages, name };
}

// ---------------------------------------------------------------------------------------------------
// The key: in this tab's sessionStorage (a reload keeps following a job); in localStorage only when ticked

function loadKey() {
  const remembered = localStorage.getItem(KEY_KEY);
  $("remember").checked = remembered !== null;
  $("key").value = remembered ?? sessionStorage.getItem(KEY_KEY) ?? "";
}

function saveKey() {
  const key = $("key").value.trim();
  if (key) sessionStorage.setItem(KEY_KEY, key); else sessionStorage.removeItem(KEY_KEY);
  if ($("remember").checked && key) localStorage.setItem(KEY_KEY, key); else localStorage.removeItem(KEY_KEY);
}

function authHeaders() {
  const key = $("key").value.trim();
  return info?.auth && key ? { authorization: `Bearer ${key}` } : {};
}

// ---------------------------------------------------------------------------------------------------
// Fields: built from info, checked with the server's rules and words

/** Python's repr() of a string, as the server shows a refused form value. */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of text) {
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else out += ch;
  }
  const shown = quote + out + quote;
  return shown.length > 80 ? shown.slice(0, 77) + "..." : shown;
}

// What Python's int() and float() accept (underscores between digits included); inf and nan are refused
// by the server's finiteness check anyway.
const INTEGER = /^[+-]?\d+(_\d+)*$/;
const NUMBER = /^[+-]?(\d+(_\d+)*(\.(\d+(_\d+)*)?)?|\.\d+(_\d+)*)([eE][+-]?\d+(_\d+)*)?$/;

/** {value} to send (absent when empty), or {error} in the server's words. */
function checkField(name, raw) {
  const field = info.fields[name];
  const text = raw.trim();
  if (text === "") return { value: null };
  const pattern = field.type === "integer" ? INTEGER : NUMBER;
  const number = Number(text.replaceAll("_", ""));
  if (!pattern.test(text) || !Number.isFinite(number) || number < field.min || number > field.max) {
    return { error: `${name} must be ${field.allowed}; got ${pyRepr(text)}` };
  }
  return { value: text };
}

function fieldInput(name) { return $(`f-${name}`); }

function showFieldError(name, message) {
  const input = fieldInput(name);
  const error = $(`f-${name}-error`);
  input.setAttribute("aria-invalid", message ? "true" : "false");
  error.textContent = message || "";
  error.hidden = !message;
}

function formatDefault(field) {
  if (field.default === null) return "";
  return field.type === "integer" ? String(Math.round(field.default)) : String(field.default);
}

function buildFields() {
  for (const [name, field] of Object.entries(info.fields)) {
    const id = `f-${name}`;
    const input = el("input", {
      id, name, type: "text", autocomplete: "off", spellcheck: false,
      inputMode: field.type === "integer" ? "numeric" : "decimal",
      value: formatDefault(field),
      placeholder: field.engine ? "engine default" : "",
    });
    input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
    input.addEventListener("input", () => showFieldError(name, null));
    // Checked on Generate, not on blur: an error appearing as the field loses focus would move the
    // button away from under the pointer between mouse down and mouse up.
    const deflt = field.default === null ? "" : `; default ${formatDefault(field)}`;
    const help = el("p", { id: `${id}-help`, className: "help" },
      `${field.help} `, el("code", { textContent: name }), `: ${field.allowed}${deflt}.`);
    const control = name === "seed"
      ? el("div", { className: "with-button" }, input,
          diceButton())
      : input;
    const row = el("div", { className: "field" },
      el("label", { htmlFor: id, textContent: field.label }), control, help,
      el("p", { id: `${id}-error`, className: "field-error", hidden: true }));
    $(field.engine ? "engine-fields" : "fields").append(row);
  }
}

function diceButton() {
  const button = el("button", { type: "button", id: "dice", className: "icon", title: "Random seed", onclick: rollSeed });
  button.setAttribute("aria-label", "Random seed");
  // A die drawn inline: no emoji font is needed, and nothing is fetched.
  button.innerHTML = '<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">'
    + '<rect x="3" y="3" width="18" height="18" rx="4" fill="none" stroke="currentColor" stroke-width="2"/>'
    + '<circle cx="8.5" cy="8.5" r="1.6" fill="currentColor"/><circle cx="15.5" cy="15.5" r="1.6" fill="currentColor"/>'
    + '<circle cx="12" cy="12" r="1.6" fill="currentColor"/><circle cx="15.5" cy="8.5" r="1.6" fill="currentColor"/>'
    + '<circle cx="8.5" cy="15.5" r="1.6" fill="currentColor"/></svg>';
  return button;
}

function rollSeed() {
  const values = new Uint32Array(1);
  crypto.getRandomValues(values);
  fieldInput("seed").value = String((values[0] % MAX_SEED) + 1);
  showFieldError("seed", null);
}

// ---------------------------------------------------------------------------------------------------
// The image: picked or dropped, sniffed as the server does, fitted as img2vid's fitting module does

function sniffType(bytes) {
  const starts = (...sig) => sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "png";
  if (starts(0xff, 0xd8, 0xff)) return "jpeg";
  if (bytes.length >= 12 && starts(0x52, 0x49, 0x46, 0x46) &&
      String.fromCharCode(...bytes.slice(8, 12)) === "WEBP") return "webp";
  return null;
}

const sizeName = ([w, h]) => `${w}x${h}`;
const isAllowed = (w, h) => info.sizes.allowed.some(([aw, ah]) => aw === w && ah === h);
const orientation = (w, h) => Math.sign(w - h);

/** The accepted size an image of this size becomes: closest aspect ratio, then same orientation, then area. */
function nearestSize(w, h) {
  if (isAllowed(w, h)) return [w, h];
  const key = ([sw, sh]) => [
    Math.round(Math.abs(Math.log(w / h) - Math.log(sw / sh)) * 1e9) / 1e9,
    orientation(sw, sh) === orientation(w, h) ? 0 : 1,
    Math.abs(sw * sh - w * h),
  ];
  const less = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  return info.sizes.allowed.reduce((best, size) => (less(key(size), key(best)) < 0 ? size : best));
}

function cropRect(w, h, [tw, th]) {
  const aspect = tw / th;
  if (w / h > aspect) {
    const cw = Math.max(1, Math.round(h * aspect));
    return { x: Math.floor((w - cw) / 2), y: 0, w: cw, h };
  }
  const ch = Math.max(1, Math.round(w / aspect));
  return { x: 0, y: Math.floor((h - ch) / 2), w, h: ch };
}

function padRect(w, h, [tw, th]) {
  const scale = Math.min(tw / w, th / h);
  const iw = Math.max(1, Math.min(tw, Math.round(w * scale)));
  const ih = Math.max(1, Math.min(th, Math.round(h * scale)));
  return { x: Math.floor((tw - iw) / 2), y: Math.floor((th - ih) / 2), w: iw, h: ih };
}

/** What will be sent for the picked image with the chosen size and fit, or the server's refusal. */
function plan() {
  if (!picked) return null;
  const { width: w, height: h, type, file } = picked;
  const mode = $("fit").value;
  const limit = info.max_upload_bytes;
  const tooLarge = `the request is larger than ${Math.floor(limit / (1024 * 1024))} MiB; send a smaller image`;
  if (mode === "none") {
    if (!type) return { error: "image must be a PNG, JPEG or WebP image; the upload is none of these" };
    if (w * h > info.sizes.max_pixels) {
      return { error: `image is ${w}x${h} = ${w * h} pixels; at most ${info.sizes.max_pixels} are allowed` };
    }
    if (!info.sizes.any_size && !isAllowed(w, h)) {
      return { error: `image must be ${info.sizes.describe}; got ${pyRepr(`${w}x${h}`)}` };
    }
    if (file.size + 2048 > limit) return { error: tooLarge };
    return { send: "original", target: [w, h], note: `Sent as it is: ${w}x${h}.` };
  }
  const target = $("size").value === "auto" ? nearestSize(w, h) : $("size").value.split("x").map(Number);
  if (type && target[0] === w && target[1] === h && file.size + 2048 <= limit) {
    return { send: "original", target, note: `Already ${sizeName(target)}: sent as it is.` };
  }
  const from = `${w}x${h} → ${sizeName(target)}`;
  if (mode === "crop") {
    const r = cropRect(w, h, target);
    const cut = Math.round(100 * (1 - (r.w * r.h) / (w * h)));
    const where = r.w < w ? "left and right" : "top and bottom";
    return { send: "fitted", target, mode, note: `Crop: ${from}; ${cut}% cut from the ${where} (the dimmed part).` };
  }
  if (mode === "pad") {
    const r = padRect(w, h, target);
    const where = r.w < target[0] ? "left and right" : "top and bottom";
    return { send: "fitted", target, mode, note: `Pad: ${from}; black bars ${where} (the striped part).` };
  }
  return { send: "fitted", target, mode, note: `Stretch: ${from}; the picture is distorted to fill the frame.` };
}

function drawPreview() {
  const canvas = $("preview");
  const note = $("fit-note");
  const error = $("image-error");
  const p = plan();
  canvas.hidden = !picked;
  $("preview-empty").hidden = !!picked;
  error.hidden = !(p && p.error);
  error.textContent = p?.error || "";
  $("image").setAttribute("aria-invalid", p?.error ? "true" : "false");
  canvas.parentElement.classList.toggle("refused", !!p?.error);
  note.textContent = p ? (p.error ? "" : p.note) : "";
  if (!picked) return;
  const { bitmap, width: w, height: h } = picked;
  const ctx = canvas.getContext("2d");
  const box = 960;
  if (!p.error && p.send === "fitted" && p.mode !== "crop") {
    const [tw, th] = p.target;
    const scale = box / Math.max(tw, th);
    canvas.width = Math.round(tw * scale); canvas.height = Math.round(th * scale);
    if (p.mode === "pad") {
      ctx.fillStyle = stripes(ctx);
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      const r = padRect(w, h, p.target);
      ctx.drawImage(bitmap, r.x * scale, r.y * scale, r.w * scale, r.h * scale);
    } else {
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    }
  } else {
    const scale = Math.min(1, box / Math.max(w, h));
    canvas.width = Math.max(1, Math.round(w * scale)); canvas.height = Math.max(1, Math.round(h * scale));
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    if (!p.error && p.send === "fitted") {
      const r = cropRect(w, h, p.target);
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.beginPath();
      ctx.rect(0, 0, canvas.width, canvas.height);
      ctx.rect(r.x * scale, r.y * scale, r.w * scale, r.h * scale);
      ctx.fill("evenodd");
      ctx.setLineDash([8, 6]);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(r.x * scale + 1, r.y * scale + 1, r.w * scale - 2, r.h * scale - 2);
    }
  }
  canvas.setAttribute("aria-label", p.error ? `The image, ${w}x${h}: ${p.error}` : `Preview: ${p.note}`);
}

function stripes(ctx) {
  const tile = document.createElement("canvas");
  tile.width = tile.height = 16;
  const t = tile.getContext("2d");
  t.fillStyle = "#000"; t.fillRect(0, 0, 16, 16);
  t.strokeStyle = "#3a3a3a"; t.lineWidth = 4;
  t.beginPath(); t.moveTo(-4, 20); t.lineTo(20, -4); t.stroke();
  return ctx.createPattern(tile, "repeat");
}

async function pickFile(file) {
  if (!file) return;
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    picked = null;
    drawPreview();
    $("image-name").textContent = file.name;
    $("image-error").textContent = "image must be a PNG, JPEG or WebP image; the upload is none of these";
    $("image-error").hidden = false;
    return;
  }
  picked = { file, bitmap, width: bitmap.width, height: bitmap.height, type: sniffType(head), name: file.name };
  $("image-name").textContent = `${file.name} · ${bitmap.width}x${bitmap.height} · ${formatBytes(file.size)}`;
  $("again").disabled = false;
  drawPreview();
  announce(`Image ${file.name}, ${bitmap.width} by ${bitmap.height}. ${$("fit-note").textContent || $("image-error").textContent}`);
}

function formatBytes(n) {
  return n < 1024 * 1024 ? `${Math.max(1, Math.round(n / 1024))} KiB` : `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The bytes to upload: the file itself, or a PNG of the fitted picture. */
async function imageBlob(p) {
  if (p.send === "original") return picked.file;
  const [tw, th] = p.target;
  const canvas = document.createElement("canvas");
  canvas.width = tw; canvas.height = th;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  const { bitmap, width: w, height: h } = picked;
  if (p.mode === "crop") {
    const r = cropRect(w, h, p.target);
    ctx.drawImage(bitmap, r.x, r.y, r.w, r.h, 0, 0, tw, th);
  } else if (p.mode === "pad") {
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, tw, th);
    const r = padRect(w, h, p.target);
    ctx.drawImage(bitmap, r.x, r.y, r.w, r.h);
  } else {
    ctx.drawImage(bitmap, 0, 0, tw, th);
  }
  return new Promise((done) => canvas.toBlob(done, "image/png"));
}

// ---------------------------------------------------------------------------------------------------
// History: ids and settings in localStorage, never the key

function readHistory() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(list) ? list.filter((e) => e && JOB_ID.test(e.id)) : [];
  } catch { return []; }
}

function writeHistory(list) {
  localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_MAX)));
  renderHistory();
}

function findEntry(id) { return readHistory().find((e) => e.id === id) || null; }

function updateEntry(id, changes) {
  const list = readHistory();
  const entry = list.find((e) => e.id === id);
  if (entry) { Object.assign(entry, changes); writeHistory(list); }
}

function settingsText(settings) {
  return Object.entries(settings || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
}

function renderHistory() {
  const list = readHistory();
  $("history-empty").hidden = list.length > 0;
  $("clear-history").hidden = list.length === 0;
  $("history").replaceChildren(...list.map((entry) => {
    const when = new Date(entry.at);
    const link = el("a", { href: `#job=${entry.id}`, textContent: `Job ${entry.id.slice(0, 8)}` });
    if (following && following.id === entry.id) link.setAttribute("aria-current", "true");
    return el("li", {},
      link,
      el("span", { className: `badge ${entry.state}`, textContent: entry.state === "running" ? "in progress" : entry.state }),
      el("time", { dateTime: when.toISOString(), textContent: when.toLocaleString() }),
      el("span", { className: "muted settings", textContent: settingsText(entry.settings) }));
  }));
}

// ---------------------------------------------------------------------------------------------------
// Following a job: poll, back off, survive a restart; one job followed at a time

const sleep = (ms, signal) => new Promise((done) => {
  const timer = setTimeout(done, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); done(); }, { once: true });
});

function retryAfterMs(answer, fallback) {
  const value = Number(answer?.headers.get("retry-after"));
  return Number.isFinite(value) && value > 0 ? value * 1000 : fallback;
}

/** Exponential backoff with jitter: 0.5 s doubling to 5 s, less up to a quarter. */
function backoffMs(failures) {
  return Math.min(5000, 500 * 2 ** (failures - 1)) * (1 - Math.random() * 0.25);
}

function formatElapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function setBadge(state, text) {
  const badge = $("job-badge");
  badge.className = `badge ${state}`;
  badge.textContent = text;
}

function stopFollowing() {
  if (!following) return;
  following.abort.abort();
  clearInterval(following.ticker);
  following = null;
}

function finish(state, text) {
  if (!following) return;
  const job = following;
  clearInterval(job.ticker);
  job.ticker = null;
  job.ended ??= Date.now();
  $("job-elapsed").textContent = formatElapsed(job.ended - job.started);
  $("cancel").hidden = true;
  $("reconnecting").hidden = true;
  $("job-queue").parentElement.hidden = true;
  setBadge(state, text);
  updateEntry(job.id, { state, ended: job.ended });
}

async function follow(id) {
  stopFollowing();
  const abort = new AbortController();
  const entry = findEntry(id);
  const started = entry?.at ?? Date.now();
  // A job opened again from the list keeps the times it had, rather than counting from now.
  const job = { id, abort, started, ended: entry?.ended ?? null, ticker: null, milestone: -1, queue: undefined };
  following = job;
  renderHistory();
  $("job").hidden = false;
  $("result").hidden = true;
  $("resume").hidden = true;
  $("job-id").textContent = id;
  $("job-queue").textContent = "–";
  $("job-queue").parentElement.hidden = true;
  $("progress").value = 0;
  $("percent").textContent = "0%";
  $("reconnecting").hidden = true;
  $("cancel").hidden = !info.cancel;
  $("cancel").disabled = false;
  setBadge("running", "Waiting for the server");
  const tick = () => { $("job-elapsed").textContent = formatElapsed((job.ended ?? Date.now()) - job.started); };
  tick();
  job.ticker = setInterval(tick, 1000);
  announce(`Job ${id.slice(0, 8)} started.`);

  let failures = 0;
  let pollMs = 250;
  while (!abort.signal.aborted) {
    let answer;
    try {
      answer = await fetch(`${API}/result/${id}`, {
        headers: { ...authHeaders(), accept: "video/*" }, signal: abort.signal, cache: "no-store",
      });
    } catch {
      if (abort.signal.aborted) return;
      failures += 1;
      await reconnecting(job, failures, backoffMs(failures));
      continue;
    }
    if (abort.signal.aborted) return;
    if (answer.status === 202) {
      if (failures) announce("Reconnected.");
      failures = 0;
      $("reconnecting").hidden = true;
      let body = {};
      try { body = await answer.json(); } catch { /* progress stays as it was */ }
      showProgress(job, body);
      // Soon at first (a short job shows at once), then once a second for a live bar; the server's
      // Retry-After is its guess at the end, so it only ever shortens the wait.
      await sleep(Math.min(pollMs, retryAfterMs(answer, 1000)), abort.signal);
      pollMs = Math.min(1000, pollMs * 2);
      continue;
    }
    if (answer.status === 429 || answer.status === 502 || answer.status === 503 || answer.status === 504) {
      failures += 1;
      await reconnecting(job, failures, retryAfterMs(answer, backoffMs(failures)), answer.status);
      continue;
    }
    if (answer.ok) {
      await showResult(job, answer);
      return;
    }
    const problem = await problemOf(answer);
    if (abort.signal.aborted) return;
    if (answer.status === 410 && problem.name === "cancelled") {
      finish("cancelled", "Cancelled");
      announce("The job was cancelled.");
      return;
    }
    finish("failed", "Failed");
    showNotice(problem.title, problem.messages);
    if (answer.status === 401) $("resume").hidden = false;
    return;
  }
}

async function reconnecting(job, failures, waitMs, status) {
  const line = $("reconnecting");
  const why = status === 429 ? "The server asked to slow down" : "The server cannot be reached";
  $("reconnecting-text").textContent =
    `Reconnecting… ${why}; trying again in ${Math.ceil(waitMs / 1000)} s (attempt ${failures}).`;
  if (line.hidden) announce("Connection lost; reconnecting.");
  line.hidden = false;
  // "Try now" ends the wait early (the user knows the server is back); a 429's wait is the server's.
  $("retry-now").hidden = status === 429;
  await new Promise((done) => {
    const timer = setTimeout(done, waitMs);
    job.wake = () => { clearTimeout(timer); done(); };
    job.abort.signal.addEventListener("abort", job.wake, { once: true });
  });
  job.wake = null;
}

function showProgress(job, body) {
  const fraction = Math.min(1, Math.max(0, Number(body.progress) || 0));
  $("progress").value = fraction;
  const percent = Math.round(fraction * 100);
  $("percent").textContent = `${percent}%`;
  const position = body.queue_position;
  let queue = "–";
  if (position === 0) queue = "Running";
  else if (Number.isInteger(position)) queue = `Waiting: position ${position}`;
  $("job-queue").textContent = queue;
  $("job-queue").parentElement.hidden = position === undefined;
  const running = position === 0 || (position === undefined && fraction > 0);
  setBadge("running", running ? "Running" : position > 0 ? "Queued" : "In progress");
  if (position !== job.queue) {
    job.queue = position;
    if (Number.isInteger(position)) announce(position === 0 ? "The job is running." : `Queued at position ${position}.`);
  }
  const milestone = Math.floor(percent / 25);
  if (milestone > job.milestone && percent > 0) {
    job.milestone = milestone;
    announce(`${percent}% done.`);
  }
}

async function showResult(job, answer) {
  const blob = await answer.blob();
  if (job.abort.signal.aborted) return;
  const seed = answer.headers.get("seed") || "";
  const reason = answer.headers.get("finish-reason") || "SUCCESS";
  $("progress").value = 1;
  $("percent").textContent = "100%";
  finish("done", "Done");
  if (videoUrl) URL.revokeObjectURL(videoUrl);
  videoUrl = URL.createObjectURL(blob);
  const video = $("video");
  video.src = videoUrl;
  const download = $("download");
  download.href = videoUrl;
  download.download = `img2vid-${seed}-${job.id.slice(0, 8)}.mp4`;
  const entry = findEntry(job.id);
  updateEntry(job.id, { seedUsed: seed });
  const used = { ...(entry?.settings || {}), seed, finish_reason: reason };
  $("used").replaceChildren(...Object.entries(used).filter(([k]) => k !== "seed" || seed).map(([k, v]) =>
    el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: String(v) }))));
  $("again").disabled = !picked;
  $("again").title = picked ? "" : "Choose an image first";
  $("result").hidden = false;
  announce(`Done. Seed ${seed}. The video is ready to play and download.`);
}

// ---------------------------------------------------------------------------------------------------
// Submitting: one click, one job

async function submit(event) {
  event.preventDefault();
  if (submitting || !info) return;
  // Disabled at once, before anything is awaited: a second click (or Enter) finds it disabled.
  submitting = true;
  $("generate").disabled = true;
  try {
    await picking;  // an image picked a moment ago may still be being read
    await checkAndSend();
  } finally {
    submitting = false;
    $("generate").disabled = false;
    setFormStatus("");
  }
}

async function checkAndSend() {
  clearNotice();
  const problems = [];
  const values = {};
  let firstBad = null;
  for (const name of Object.keys(info.fields)) {
    const checked = checkField(name, fieldInput(name).value);
    showFieldError(name, checked.error);
    if (checked.error) { problems.push(checked.error); firstBad ??= fieldInput(name); }
    else if (checked.value !== null) values[name] = checked.value;
  }
  const p = plan();
  if (!picked) {
    problems.unshift("image is required: choose or drop an image");
    firstBad = $("image");
  } else if (p.error) {
    problems.unshift(p.error);
    firstBad = $("image");
  }
  if (problems.length) {
    showNotice("Not sent: fix this first", problems);
    $("notice").dataset.source = "page";  // stale as soon as the form changes: cleared then
    if (firstBad?.closest("details")) firstBad.closest("details").open = true;
    firstBad?.focus();
    return;
  }

  setFormStatus("Submitting…");
  announce("Submitting.");
  saveKey();
  const form = new FormData();
  const blob = await imageBlob(p);
  form.append("image", blob, p.send === "original" ? picked.name : "image.png");
  for (const [name, value] of Object.entries(values)) form.append(name, value);
  let answer;
  try {
    answer = await fetch(API, { method: "POST", headers: authHeaders(), body: form });
  } catch {
    // Never sent again on its own: the job may exist (the protocol's rule on paid jobs).
    showNotice("The server could not be reached", ["Nothing was started. Check the server and press Generate again."]);
    announce("The server could not be reached.");
    return;
  }
  if (!answer.ok) {
    const problem = await problemOf(answer);
    showNotice(problem.title, problem.messages);
    announce(`Refused: ${problem.messages[0] || problem.title}`);
    return;
  }
  const { id } = await answer.json();
  const settings = { ...values, size: sizeName(p.target), fit: p.send === "original" ? "as is" : p.mode };
  const list = readHistory().filter((e) => e.id !== id);
  list.unshift({ id, at: Date.now(), state: "running", image: picked.name, settings });
  writeHistory(list);
  history.pushState(null, "", `#job=${id}`);
  follow(id);
  // On a phone the job sits below the form: bring it into view (focus stays where it was).
  const box = $("job").getBoundingClientRect();
  if (box.top > window.innerHeight || box.bottom < 0) $("job").scrollIntoView({ behavior: "smooth", block: "start" });
}

async function cancel() {
  if (!following) return;
  const job = following;
  $("cancel").disabled = true;
  setBadge("running", "Cancelling…");
  let answer;
  try {
    answer = await fetch(`${API}/result/${job.id}`, { method: "DELETE", headers: authHeaders() });
  } catch {
    $("cancel").disabled = false;
    showNotice("The server could not be reached", ["The job was not cancelled; try again."]);
    return;
  }
  if (following !== job) return;
  if (answer.ok) {
    job.abort.abort();
    finish("cancelled", "Cancelled");
    announce("The job was cancelled.");
    return;
  }
  const problem = await problemOf(answer);
  showNotice(problem.title, problem.messages);
  $("cancel").hidden = answer.status === 409;
  $("cancel").disabled = false;
}

function jobFromHash() {
  const match = /^#job=([0-9a-f]{64})$/.exec(location.hash);
  return match ? match[1] : null;
}

function onHash() {
  const id = jobFromHash();
  if (id && id !== following?.id) { clearNotice(); follow(id); }
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
  const staleNotice = () => { if ($("notice").dataset.source === "page") clearNotice(); };
  $("form").addEventListener("input", staleNotice);
  $("form").addEventListener("change", staleNotice);
  $("image").addEventListener("change", () => { picking = pickFile($("image").files[0]); });
  $("size").addEventListener("change", drawPreview);
  $("fit").addEventListener("change", drawPreview);
  $("key").addEventListener("change", saveKey);
  $("remember").addEventListener("change", saveKey);
  $("cancel").addEventListener("click", cancel);
  $("retry-now").addEventListener("click", () => following?.wake?.());
  $("resume").addEventListener("click", () => { const id = following?.id || jobFromHash(); if (id) { clearNotice(); follow(id); } });
  $("again").addEventListener("click", () => { rollSeed(); $("form").requestSubmit(); });
  $("clear-history").addEventListener("click", () => { localStorage.removeItem(HISTORY_KEY); renderHistory(); });
  window.addEventListener("hashchange", onHash);
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) picking = pickFile(file);
  });
}

async function main() {
  wire();
  renderHistory();
  info = await loadInfo();
  for (const size of info.sizes.allowed) $("size").append(el("option", { value: sizeName(size), textContent: sizeName(size) }));
  if (info.sizes.any_size) $("fit").value = "none";
  buildFields();
  $("key-row").hidden = !info.auth;
  loadKey();
  const sizes = info.sizes.any_size ? `any size up to ${info.sizes.max_pixels} pixels` : info.sizes.describe;
  $("server-line").textContent = `img2vid ${info.version} · ${info.auth ? "key required" : "no key needed"} · sizes ${sizes}`;
  $("generate").disabled = false;
  document.body.dataset.ready = "true";
  onHash();
}

main();
