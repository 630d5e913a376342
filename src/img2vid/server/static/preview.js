// The picked image and its fit: the server says how an image of this size becomes one the chosen model
// takes (GET fit-plan: the target size, the part of the source kept, where it lands, or its refusal in its
// own words), and this module draws that plan and uploads exactly it. It never decides a size, a crop or
// a pad itself; what it keeps (the picked image, the current plan) lives in the main module's state.

import { $, announce, sizeName } from "./ui.js";
import { currentModel } from "./form.js";

const PREVIEW_BOX = 960;
/** Files of these types already at an accepted size go as they are; any other picture is sent as a PNG. */
const SENT_AS_THEY_ARE = ["image/png", "image/jpeg", "image/webp"];

export function fitMode() { return $("fit").value; }

/** Read a picked or dropped file; the plan is asked for once its size is known. */
export async function pickFile(app, file) {
  if (!file) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    // The browser cannot show it: there is nothing to preview. The server still judges it on Generate.
    app.picked = { file, bitmap: null, width: 0, height: 0, name: file.name };
    app.plan = null;
    $("image-name").textContent = file.name;
    drawPreview(app);
    return;
  }
  app.picked = { file, bitmap, width: bitmap.width, height: bitmap.height, name: file.name };
  $("image-name").textContent = `${file.name} · ${bitmap.width}x${bitmap.height} · ${formatBytes(file.size)}`;
  $("again").disabled = false;
  await refreshPlan(app);
  announce(`Image ${file.name}, ${bitmap.width} by ${bitmap.height}. ${$("fit-note").textContent || $("image-error").textContent}`);
}

function formatBytes(n) {
  return n < 1024 * 1024 ? `${Math.max(1, Math.round(n / 1024))} KiB` : `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Ask the server how the picked image is fitted with the chosen model, fit and size; the newest answer wins. */
export function refreshPlan(app) {
  const picked = app.picked;
  if (!picked?.bitmap) { app.plan = null; drawPreview(app); return Promise.resolve(); }
  const query = new URLSearchParams({ width: picked.width, height: picked.height, fit: fitMode() });
  const model = currentModel(app);
  if (model) query.set("model", model.name);
  if ($("size").value !== "auto") query.set("size", $("size").value);
  const asked = (app.planAsked = (app.planAsked || 0) + 1);
  app.planning = (async () => {
    let plan;
    try {
      const answer = await fetch(`fit-plan?${query}`, { cache: "no-store" });
      const body = await answer.json().catch(() => ({}));
      plan = answer.ok ? body : { allowed: false, message: (body.errors || [`${answer.status} ${answer.statusText}`]).join(" ") };
    } catch {
      plan = { allowed: false, unreachable: true, message: "The server could not be reached to say how this image is fitted; try again." };
    }
    if (asked !== app.planAsked || picked !== app.picked) return;  // a newer question was asked meanwhile
    app.plan = plan;
    drawPreview(app);
  })();
  return app.planning;
}

/** The words under the preview for a plan the server allowed. */
function planNote(picked, plan) {
  const { width: w, height: h } = picked;
  if (plan.fit === "strict" || plan.unchanged) {
    return plan.unchanged && plan.fit !== "strict" ? `Already ${w}x${h}: sent as it is.` : `Sent as it is: ${w}x${h}.`;
  }
  const from = `${w}x${h} → ${sizeName(plan.target)}`;
  const [, , sw, sh] = plan.source_box;
  const [, , pw, ph] = plan.placed_box;
  if (sw === w && sh === h && pw === plan.target[0] && ph === plan.target[1] && plan.fit !== "stretch") {
    return `Resized: ${from}; the same shape, nothing cut or added.`;
  }
  if (plan.fit === "crop") {
    const cut = Math.round(100 * (1 - (sw * sh) / (w * h)));
    const where = sw < w ? "left and right" : "top and bottom";
    return `Crop: ${from}; ${cut}% cut from the ${where} (the dimmed part).`;
  }
  if (plan.fit === "pad") {
    const where = plan.placed_box[2] < plan.target[0] ? "left and right" : "top and bottom";
    return `Pad: ${from}; black bars ${where} (the striped part).`;
  }
  return `Stretch: ${from}; the picture is distorted to fill the frame.`;
}

export function drawPreview(app) {
  const { picked, plan } = app;
  const canvas = $("preview");
  const shown = !!picked?.bitmap;
  const refused = !!(plan && !plan.allowed);
  canvas.hidden = !shown;
  $("preview-empty").hidden = shown;
  $("image-error").hidden = !refused;
  $("image-error").textContent = refused ? plan.message : "";
  $("image").setAttribute("aria-invalid", refused ? "true" : "false");
  canvas.parentElement.classList.toggle("refused", refused);
  const note = plan && plan.allowed && shown ? planNote(picked, plan) : "";
  $("fit-note").textContent = note;
  if (!shown) return;
  const { bitmap, width: w, height: h } = picked;
  const ctx = canvas.getContext("2d");
  if (plan?.allowed && !plan.unchanged && plan.fit !== "crop") {
    // Pad and stretch: the target's frame, the picture where the server puts it.
    const [tw, th] = plan.target;
    const scale = PREVIEW_BOX / Math.max(tw, th);
    canvas.width = Math.round(tw * scale); canvas.height = Math.round(th * scale);
    ctx.fillStyle = stripes(ctx);
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const [x, y, pw, ph] = plan.placed_box;
    ctx.drawImage(bitmap, x * scale, y * scale, pw * scale, ph * scale);
  } else {
    // The picture itself; for a crop, the part the server cuts away dimmed.
    const scale = Math.min(1, PREVIEW_BOX / Math.max(w, h));
    canvas.width = Math.max(1, Math.round(w * scale)); canvas.height = Math.max(1, Math.round(h * scale));
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    if (plan?.allowed && !plan.unchanged) {
      const [x, y, cw, ch] = plan.source_box;
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.beginPath();
      ctx.rect(0, 0, canvas.width, canvas.height);
      ctx.rect(x * scale, y * scale, cw * scale, ch * scale);
      ctx.fill("evenodd");
      ctx.setLineDash([8, 6]);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(x * scale + 1, y * scale + 1, cw * scale - 2, ch * scale - 2);
    }
  }
  const label = refused ? `The image, ${w}x${h}: ${plan.message}` : note ? `Preview: ${note}` : `Preview: ${w}x${h}`;
  canvas.setAttribute("aria-label", label);
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

/** What the image part of the upload is: the file as it is (an accepted size, or "as is": the server
 * judges it), or a PNG of the server's plan drawn at its target size. Also whether to send `fit`. */
export async function uploadImage(app) {
  const { picked, plan } = app;
  const accepted = SENT_AS_THEY_ARE.includes(picked.file.type);
  const asIs = !plan || plan.fit === "strict" || (plan.unchanged && accepted);
  const sizes = currentModel(app)?.sizes;
  // A model that fits on the server takes the user's fit mode too (what it does with an image as it is).
  const fit = sizes?.any_size ? fitMode() : null;
  if (asIs) return { blob: picked.file, name: picked.name, target: plan?.target || [picked.width, picked.height], fit };
  const [tw, th] = plan.target;
  const canvas = document.createElement("canvas");
  canvas.width = tw; canvas.height = th;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, tw, th);
  const [sx, sy, sw, sh] = plan.source_box;
  const [px, py, pw, ph] = plan.placed_box;
  ctx.drawImage(picked.bitmap, sx, sy, sw, sh, px, py, pw, ph);
  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  return { blob, name: "image.png", target: plan.target, fit };
}
