// The playground talks to this server's own A1111 API (/sdapi/v1), same origin.
"use strict";

const API = "/sdapi/v1";
const PROGRESS_POLL_MS = 400;
const $ = (id) => document.getElementById(id);

const state = {
  mode: "txt2img",
  initImage: null, // data URL of the img2img input
  generating: false,
};

// ---- server status, model and samplers ------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function setStatus(text, kind) {
  const pill = $("server-status");
  pill.textContent = text;
  pill.dataset.state = kind;
}

async function waitForServer() {
  for (;;) {
    try {
      const response = await fetch("/readyz");
      const body = await response.json();
      if (response.ok) break;
      setStatus(body.status === "failed" ? "model failed to load" : `${body.status}…`, body.status === "failed" ? "error" : "loading");
      if (body.status === "failed") return false;
    } catch (error) {
      setStatus("server unreachable", "error");
    }
    await sleep(1000);
  }
  setStatus("ready", "ready");
  return true;
}

async function loadServerInfo() {
  if (!(await waitForServer())) return;
  try {
    const [options, samplers] = await Promise.all([getJSON(`${API}/options`), getJSON(`${API}/samplers`)]);
    $("model-name").textContent = options.sd_model_checkpoint;
    const select = $("sampler_name");
    select.replaceChildren(
      ...samplers.map((sampler) => new Option(sampler.name, sampler.name, false, sampler.name === "Euler a"))
    );
  } catch (error) {
    showError({ title: "Could not read the server's settings", lines: [String(error.message || error)] });
  }
}

// ---- the form ---------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === mode));
  }
  $("img2img-section").hidden = mode !== "img2img";
  clearError();
}

function numberOrNull(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function buildRequest() {
  const body = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    steps: numberOrNull("steps"),
    cfg_scale: Number($("cfg_scale").value),
    sampler_name: $("sampler_name").value || null,
    seed: numberOrNull("seed") ?? -1,
    batch_size: numberOrNull("batch_size"),
    save_images: true, // also listed in the StableStudio history
  };
  const width = numberOrNull("width");
  const height = numberOrNull("height");
  if (width !== null) body.width = width;
  if (height !== null) body.height = height;
  if (state.mode === "img2img") {
    body.init_images = state.initImage ? [state.initImage] : [];
    body.denoising_strength = Number($("denoising_strength").value);
  }
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  return body;
}

// ---- errors -----------------------------------------------------------------------

function clearError() {
  $("error").hidden = true;
  for (const element of document.querySelectorAll(".invalid")) element.classList.remove("invalid");
}

function showError({ title, lines = [], fields = [] }) {
  const box = $("error");
  const heading = document.createElement("strong");
  heading.textContent = title;
  box.replaceChildren(heading, document.createTextNode(lines.join("\n")));
  box.hidden = false;
  for (const name of fields) {
    const input = $(name === "init_images" ? "dropzone" : name);
    if (input) input.classList.add("invalid");
  }
}

// FastAPI 422: {detail: [{loc, msg}]}; this server's other errors: {error, detail}.
function describeFailure(status, body) {
  if (Array.isArray(body?.detail)) {
    const fields = body.detail.map((item) => String((item.loc || []).filter((part) => part !== "body")[0] ?? ""));
    const lines = body.detail.map((item) => item.msg);
    return { title: "Please fix these settings:", lines, fields };
  }
  if (status === 404 && /init image/i.test(body?.detail || "")) {
    return { title: "No input image", lines: ["Image to image needs an image: drop one in the box above."], fields: ["init_images"] };
  }
  if (status === 429) return { title: "The server is busy", lines: [body?.detail || "Try again in a few seconds."] };
  const detail = typeof body?.detail === "string" ? body.detail : JSON.stringify(body);
  return { title: `The server could not generate (HTTP ${status})`, lines: [detail] };
}

// ---- generating -------------------------------------------------------------------

async function generate(event) {
  event?.preventDefault();
  if (state.generating) return;
  clearError();
  const request = buildRequest();
  const endpoint = state.mode === "img2img" ? "img2img" : "txt2img";
  setGenerating(true);
  const started = performance.now();
  const poller = pollProgress();
  try {
    const response = await fetch(`${API}/${endpoint}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(request),
    });
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      body = { detail: `${response.status} ${response.statusText}` };
    }
    if (!response.ok) {
      showError(describeFailure(response.status, body));
      return;
    }
    const info = JSON.parse(body.info);
    addResults(endpoint, body.images, info, (performance.now() - started) / 1000);
    if (info.interrupted) {
      showError({ title: "Stopped", lines: [`Kept ${body.images.length} unfinished image(s).`] });
    }
  } catch (error) {
    showError({ title: "Could not reach the server", lines: [String(error.message || error)] });
  } finally {
    poller.stop();
    setGenerating(false);
  }
}

function setGenerating(on) {
  state.generating = on;
  $("generate").disabled = on;
  $("generate").textContent = on ? "Generating…" : "Generate";
  $("interrupt").hidden = !on;
  $("progress").hidden = !on;
  if (on) {
    $("progress-fill").style.width = "0%";
    $("progress-text").textContent = "Starting…";
  }
}

function pollProgress() {
  let stopped = false;
  (async () => {
    while (!stopped) {
      await sleep(PROGRESS_POLL_MS);
      if (stopped) break;
      try {
        const progress = await getJSON(`${API}/progress?skip_current_image=true`);
        if (stopped) break;
        const percent = Math.round(progress.progress * 100);
        $("progress-fill").style.width = `${percent}%`;
        const s = progress.state;
        $("progress-text").textContent = s.sampling_steps
          ? `Step ${s.sampling_step} of ${s.sampling_steps} · ${percent}%` +
            (progress.eta_relative > 0.5 ? ` · about ${Math.ceil(progress.eta_relative)}s left` : "")
          : progress.textinfo || "Waiting for the model…";
      } catch (ignored) {
        // A missed poll is harmless; the next one catches up.
      }
    }
  })();
  return { stop: () => { stopped = true; } };
}

async function interrupt() {
  $("interrupt").disabled = true;
  try {
    await fetch(`${API}/interrupt`, { method: "POST" });
  } finally {
    $("interrupt").disabled = false;
  }
}

// ---- the gallery ------------------------------------------------------------------

function addResults(mode, images, info, seconds) {
  $("empty").hidden = true;
  const gallery = $("gallery");
  const cards = images.map((image, index) =>
    makeCard({
      mode,
      image: `data:image/png;base64,${image}`,
      prompt: info.prompt,
      negative: info.negative_prompt,
      seed: info.all_seeds[index],
      width: info.width,
      height: info.height,
      steps: info.steps,
      cfg: info.cfg_scale,
      sampler: info.sampler_name,
      denoising: mode === "img2img" ? info.denoising_strength : null,
      seconds,
      interrupted: Boolean(info.interrupted),
    })
  );
  gallery.prepend(...cards);
}

function makeCard(result) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.classList.toggle("interrupted", result.interrupted);
  const img = card.querySelector("img");
  img.src = result.image;
  img.alt = result.prompt || "generated image";
  card.style.setProperty("--aspect", `${result.width} / ${result.height}`);
  card.querySelector(".image-link").href = result.image;
  card.querySelector(".prompt").textContent = result.prompt || "(no prompt)";
  card.querySelector(".negative").textContent = result.negative ? `Negative: ${result.negative}` : "";
  const params = {
    Seed: result.seed,
    Size: `${result.width}×${result.height}`,
    Steps: result.steps,
    CFG: result.cfg,
    Sampler: result.sampler,
    Mode: result.mode === "img2img" ? `img2img, strength ${result.denoising}` : "txt2img",
    Time: `${result.seconds.toFixed(1)} s`,
  };
  if (result.interrupted) params.Note = "stopped early";
  const list = card.querySelector(".params");
  for (const [name, value] of Object.entries(params)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    dd.dataset.param = name.toLowerCase();
    list.append(dt, dd);
  }
  const download = card.querySelector('[data-action="download"]');
  download.href = result.image;
  download.download = `${result.seed}.png`;
  card.querySelector('[data-action="reuse"]').addEventListener("click", () => reuse(result));
  card.querySelector('[data-action="init"]').addEventListener("click", () => {
    setInitImage(result.image);
    setMode("img2img");
    window.scrollTo({ top: 0, behavior: "smooth" });
  });
  return card;
}

function reuse(result) {
  $("prompt").value = result.prompt;
  $("negative_prompt").value = result.negative;
  $("seed").value = result.seed;
  $("width").value = result.width;
  $("height").value = result.height;
  $("steps").value = result.steps;
  $("cfg_scale").value = result.cfg;
  $("cfg-value").textContent = result.cfg;
  $("sampler_name").value = result.sampler;
  $("batch_size").value = 1;
  $("prompt").focus();
}

// ---- img2img input ----------------------------------------------------------------

function setInitImage(dataUrl) {
  state.initImage = dataUrl;
  const preview = $("init-preview");
  preview.src = dataUrl || "";
  preview.hidden = !dataUrl;
  $("drop-hint").hidden = Boolean(dataUrl);
  $("clear-init").hidden = !dataUrl;
  $("dropzone").classList.remove("invalid");
}

function readFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError({ title: "Not an image", lines: [`${file.name} is not an image file.`], fields: ["init_images"] });
    return;
  }
  const reader = new FileReader();
  reader.onload = () => setInitImage(reader.result);
  reader.readAsDataURL(file);
}

// ---- wiring -----------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function wire() {
  $("generate-form").addEventListener("submit", generate);
  $("interrupt").addEventListener("click", interrupt);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => setMode(tab.dataset.mode));
  $("random-seed").addEventListener("click", () => { $("seed").value = -1; });
  $("cfg_scale").addEventListener("input", (e) => { $("cfg-value").textContent = e.target.value; });
  $("denoising_strength").addEventListener("input", (e) => { $("denoising-value").textContent = e.target.value; });
  $("init-file").addEventListener("change", (e) => readFile(e.target.files[0]));
  $("clear-init").addEventListener("click", () => { setInitImage(null); $("init-file").value = ""; });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    readFile(e.dataTransfer.files[0]);
  });
  for (const input of document.querySelectorAll("input, textarea, select")) {
    input.addEventListener("input", () => input.classList.remove("invalid"));
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
  });
}

wire();
loadServerInfo();
