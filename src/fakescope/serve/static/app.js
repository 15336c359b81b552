"use strict";

// fakescope's web page: each dropped file goes to POST /v1/detect on its own, so one unreadable
// file never hides the verdicts of the others.

const fileInput = document.getElementById("file-input");
const dropZone = document.getElementById("drop-zone");
const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const keyInput = document.getElementById("api-key");
const keySettings = document.getElementById("key-settings");
const template = document.getElementById("result-template");

class RequestError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function authHeaders() {
  const key = keyInput.value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function detect(file, explain) {
  const body = new FormData();
  body.append("files", file, file.name);
  const url = "/v1/detect" + (explain ? "?explain=true" : "");
  let response;
  try {
    response = await fetch(url, { method: "POST", body, headers: authHeaders() });
  } catch (error) {
    throw new RequestError(0, "the server could not be reached");
  }
  let payload = {};
  try {
    payload = await response.json();
  } catch (error) {
    // A proxy's HTML error page: fall back to the status text below.
  }
  if (!response.ok) {
    const detail = typeof payload.detail === "string" ? payload.detail : response.statusText;
    throw new RequestError(response.status, detail);
  }
  return payload.results[0];
}

function explainError(error, fileName) {
  // The server names the file first; the card already shows the name.
  const prefix = fileName + ": ";
  const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  switch (error.status) {
    case 401:
      keySettings.open = true;
      return "This server needs an API key: enter it under \u201cAPI key\u201d and try again.";
    case 413:
      return "This file is too large for the server: " + detail + ".";
    case 415:
      return "fakescope cannot read this file: it is " + detail + ".";
    case 422:
      return "This file could not be read; it may be damaged or cut short (" + detail + ").";
    case 503:
      return "The server is busy; try again in a moment.";
    case 504:
      return "The server took too long with this file; try a smaller one.";
    default:
      return "Something went wrong: " + detail;
  }
}

function percent(p) {
  return (p * 100).toFixed(1) + "%";
}

function newCard(file) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.querySelector(".file-name").textContent = file.name;
  card.querySelector(".verdict").textContent = "Checking\u2026";
  card.setAttribute("aria-busy", "true");
  results.prepend(card);
  return card;
}

function showPreview(card, file, result) {
  const media = card.querySelector(".media");
  media.replaceChildren();
  const url = URL.createObjectURL(file);
  if (result.kind === "video") {
    const video = document.createElement("video");
    video.src = url;
    video.controls = true;
    video.muted = true;
    video.setAttribute("aria-label", "Preview of " + file.name);
    media.append(video);
    return;
  }
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = "Preview of " + file.name;
  img.src = url;
  img.addEventListener("error", () => {
    // Formats the browser cannot show (TIFF) still get a verdict; only the preview is missing.
    frame.replaceChildren(Object.assign(document.createElement("p"), {
      className: "no-preview",
      textContent: "No preview for this format.",
    }));
  });
  frame.append(img);
  const [width, height] = result.image_size;
  result.faces.forEach((face, index) => {
    const [x1, y1, x2, y2] = face.box;
    const box = document.createElement("div");
    box.className = "face-box " + (face.p_fake >= result.threshold ? "fake" : "real");
    box.style.left = (100 * x1 / width) + "%";
    box.style.top = (100 * y1 / height) + "%";
    box.style.width = (100 * (x2 - x1) / width) + "%";
    box.style.height = (100 * (y2 - y1) / height) + "%";
    box.setAttribute("role", "img");
    box.setAttribute("aria-label", "Face " + (index + 1) + ": P(fake) " + percent(face.p_fake));
    box.title = "Face " + (index + 1) + ": P(fake) " + percent(face.p_fake);
    frame.append(box);
  });
  media.append(frame);
}

function describe(result) {
  if (result.kind === "video") {
    return result.frames_with_faces + " of " + result.frames_sampled + " sampled frames had faces" +
      (result.fallback ? "; whole frames were scored" : "");
  }
  const faces = result.faces.length;
  if (faces === 0) return "No face found: the whole image was scored.";
  return faces + (faces === 1 ? " face" : " faces") + "; the image takes its most suspicious face.";
}

function showVerdict(card, result) {
  const pFake = result.probabilities.fake;
  const fake = result.prediction === "Fake";
  card.classList.add(fake ? "is-fake" : "is-real");
  card.dataset.verdict = result.prediction;
  card.querySelector(".verdict").textContent =
    result.prediction + " \u2014 P(fake) " + percent(pFake);
  const bar = card.querySelector(".bar");
  bar.setAttribute("aria-valuenow", (pFake * 100).toFixed(1));
  bar.setAttribute("aria-label", "Probability that " + card.querySelector(".file-name").textContent + " is fake");
  bar.querySelector(".bar-fill").style.width = percent(pFake);
  bar.querySelector(".bar-threshold").style.left = percent(result.threshold);
  card.querySelector(".details").textContent =
    describe(result) + " Threshold " + percent(result.threshold) + ", " + result.detector + " v" + result.detector_version + ".";
}

function heatmapsOf(result) {
  if (result.kind === "video") {
    const driving = new Set(result.driving_frames);
    return result.timeline
      .filter((frame) => driving.has(frame.frame))
      .flatMap((frame) => frame.faces.filter((f) => f.heatmap).map((f) => ({
        src: f.heatmap, label: "Frame " + frame.frame + ": P(fake) " + percent(f.p_fake),
      })));
  }
  if (result.heatmap) return [{ src: result.heatmap, label: "Whole image: P(fake) " + percent(result.probabilities.fake) }];
  return result.faces.filter((f) => f.heatmap).map((f, i) => ({
    src: f.heatmap, label: "Face " + (i + 1) + ": P(fake) " + percent(f.p_fake),
  }));
}

async function showHeatmaps(card, file, button) {
  button.disabled = true;
  button.textContent = "Computing heat map\u2026";
  const holder = card.querySelector(".heatmaps");
  try {
    const result = await detect(file, true);
    holder.replaceChildren(...heatmapsOf(result).map(({ src, label }) => {
      const figure = document.createElement("figure");
      const img = Object.assign(document.createElement("img"), { src, alt: "Heat map. " + label });
      const caption = Object.assign(document.createElement("figcaption"), { textContent: label });
      figure.append(img, caption);
      return figure;
    }));
    button.hidden = true;
  } catch (error) {
    holder.replaceChildren(Object.assign(document.createElement("p"), {
      className: "error", textContent: explainError(error, file.name),
    }));
    button.disabled = false;
    button.textContent = "Show heat map";
  }
}

async function check(file) {
  const card = newCard(file);
  const button = card.querySelector(".explain");
  button.hidden = true;
  try {
    const result = await detect(file, false);
    showPreview(card, file, result);
    showVerdict(card, result);
    button.hidden = false;
    button.addEventListener("click", () => showHeatmaps(card, file, button));
    return true;
  } catch (error) {
    card.classList.add("is-error");
    card.dataset.verdict = "error";
    const verdict = card.querySelector(".verdict");
    verdict.textContent = explainError(error, file.name);
    verdict.setAttribute("role", "alert");
    card.querySelector(".bar").hidden = true;
    return false;
  } finally {
    card.removeAttribute("aria-busy");
  }
}

async function checkAll(files) {
  if (files.length === 0) return;
  statusLine.textContent = "Checking " + files.length + (files.length === 1 ? " file\u2026" : " files\u2026");
  const outcomes = await Promise.all(Array.from(files, check));
  const failed = outcomes.filter((ok) => !ok).length;
  statusLine.textContent = "Checked " + files.length + (files.length === 1 ? " file" : " files") +
    (failed ? "; " + failed + " could not be read." : ".");
}

fileInput.addEventListener("change", () => {
  checkAll(Array.from(fileInput.files));
  fileInput.value = "";
});

for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  checkAll(Array.from(event.dataTransfer.files));
});
// A file dropped beside the zone must not make the browser navigate away to it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
