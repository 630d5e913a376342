// Following a job: poll its result, back off on 429 and network errors, survive a server restart, show
// progress, the video and what was used; cancel it. One job is followed at a time; which one, and the
// video's object URL, live in the main module's state object (`app.following`, `app.videoUrl`).

import { $, API, announce, backoffMs, el, problemOf, showNotice, sleep } from "./ui.js";
import { authHeaders } from "./form.js";
import { findEntry, renderHistory, updateEntry } from "./history.js";

function retryAfterMs(answer, fallback) {
  const value = Number(answer?.headers.get("retry-after"));
  return Number.isFinite(value) && value > 0 ? value * 1000 : fallback;
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

export function stopFollowing(app) {
  if (!app.following) return;
  app.following.abort.abort();
  clearInterval(app.following.ticker);
  app.following = null;
}

function finish(app, state, text) {
  const job = app.following;
  if (!job) return;
  clearInterval(job.ticker);
  job.ticker = null;
  job.ended ??= Date.now();
  $("job-elapsed").textContent = formatElapsed(job.ended - job.started);
  $("cancel").hidden = true;
  $("reconnecting").hidden = true;
  $("job-queue").parentElement.hidden = true;
  setBadge(state, text);
  updateEntry(app, job.id, { state, ended: job.ended });
}

/** Follow job `id` until it ends; `shared` is what its link said ({model, prompt}), for a job not in the list. */
export async function follow(app, id, shared = {}) {
  stopFollowing(app);
  const abort = new AbortController();
  const entry = findEntry(id);
  // A job opened again from the list keeps the times it had, rather than counting from now.
  const job = {
    id, abort, started: entry?.at ?? Date.now(), ended: entry?.ended ?? null, ticker: null, milestone: -1, queue: undefined,
    model: entry?.modelTitle || entry?.model || shared.modelTitle || shared.model || null,
    prompt: entry?.prompt ?? shared.prompt ?? null,
  };
  app.following = job;
  renderHistory(app);
  $("job").hidden = false;
  $("result").hidden = true;
  $("resume").hidden = true;
  $("job-id").textContent = id;
  $("job-model").textContent = job.model || "";
  $("job-model").parentElement.hidden = !job.model;
  $("job-queue").textContent = "–";
  $("job-queue").parentElement.hidden = true;
  $("progress").value = 0;
  $("percent").textContent = "0%";
  $("reconnecting").hidden = true;
  $("cancel").hidden = !app.info.cancel;
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
        headers: { ...authHeaders(app), accept: "video/*" }, signal: abort.signal, cache: "no-store",
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
      await showResult(app, job, answer);
      return;
    }
    const problem = await problemOf(answer);
    if (abort.signal.aborted) return;
    if (answer.status === 410 && problem.name === "cancelled") {
      finish(app, "cancelled", "Cancelled");
      announce("The job was cancelled.");
      return;
    }
    finish(app, "failed", "Failed");
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

async function showResult(app, job, answer) {
  const blob = await answer.blob();
  if (job.abort.signal.aborted) return;
  const seed = answer.headers.get("seed") || "";
  const reason = answer.headers.get("finish-reason") || "SUCCESS";
  $("progress").value = 1;
  $("percent").textContent = "100%";
  finish(app, "done", "Done");
  if (app.videoUrl) URL.revokeObjectURL(app.videoUrl);
  app.videoUrl = URL.createObjectURL(blob);
  $("video").src = app.videoUrl;
  const download = $("download");
  download.href = app.videoUrl;
  download.download = `img2vid-${seed}-${job.id.slice(0, 8)}.mp4`;
  const entry = findEntry(job.id);
  updateEntry(app, job.id, { seedUsed: seed });
  const used = {
    ...(job.model ? { model: job.model } : {}),
    ...(job.prompt ? { prompt: job.prompt } : {}),
    ...(entry?.settings || {}),
    seed,
    finish_reason: reason,
  };
  $("used").replaceChildren(...Object.entries(used).filter(([k]) => k !== "seed" || seed).map(([k, v]) =>
    el("div", { className: k === "prompt" ? "wide" : "" }, el("dt", { textContent: k }), el("dd", { textContent: String(v) }))));
  $("again").disabled = !app.picked;
  $("again").title = app.picked ? "" : "Choose an image first";
  $("result").hidden = false;
  announce(`Done. Seed ${seed}. The video is ready to play and download.`);
}

export async function cancel(app) {
  const job = app.following;
  if (!job) return;
  $("cancel").disabled = true;
  setBadge("running", "Cancelling…");
  let answer;
  try {
    answer = await fetch(`${API}/result/${job.id}`, { method: "DELETE", headers: authHeaders(app) });
  } catch {
    $("cancel").disabled = false;
    showNotice("The server could not be reached", ["The job was not cancelled; try again."]);
    return;
  }
  if (app.following !== job) return;
  if (answer.ok) {
    job.abort.abort();
    finish(app, "cancelled", "Cancelled");
    announce("The job was cancelled.");
    return;
  }
  const problem = await problemOf(answer);
  showNotice(problem.title, problem.messages);
  $("cancel").hidden = answer.status === 409;
  $("cancel").disabled = false;
}
