// The playground's small shared helpers: finding and making elements, the one notice, announcements, the
// protocol's error body, waits and backoff. Stateless: every module may import it, none keeps state here.

export const API = "v2beta/image-to-video";

export const $ = (id) => document.getElementById(id);

export const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
};

/** Said to a screen reader; cleared first, so the same words said twice are read twice. */
export function announce(text) {
  const region = $("announce");
  region.textContent = "";
  requestAnimationFrame(() => { region.textContent = text; });
}

/** The one notice under the form. `source` "form": about the form's values, stale once the form changes. */
export function showNotice(title, messages = [], { kind = "error", source = "server" } = {}) {
  const notice = $("notice");
  notice.className = `notice ${kind}`;
  notice.dataset.source = source;
  notice.replaceChildren(el("strong", { textContent: title }));
  if (messages.length === 1) notice.append(el("p", { textContent: messages[0] }));
  else if (messages.length > 1) notice.append(el("ul", {}, ...messages.map((m) => el("li", { textContent: m }))));
  notice.hidden = false;
}

export function clearNotice() {
  const notice = $("notice");
  delete notice.dataset.source;
  notice.hidden = true;
  notice.replaceChildren();
}

export function setFormStatus(text) { $("form-status").textContent = text; }

/** The protocol's error body as a title and its messages (the server's own words); else the HTTP status. */
export async function problemOf(answer) {
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

export const sleep = (ms, signal) => new Promise((done) => {
  const timer = setTimeout(done, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); done(); }, { once: true });
});

/** Exponential backoff with jitter: 0.5 s doubling to 5 s, less up to a quarter. */
export function backoffMs(failures) {
  return Math.min(5000, 500 * 2 ** (failures - 1)) * (1 - Math.random() * 0.25);
}

export const sizeName = ([w, h]) => `${w}x${h}`;
