// The playground: tabs, server pickers, the generate / upscale / PNG info actions and the
// keyboard shortcuts. Module scripts only, no inline code: the page runs under a strict CSP.
import { API, base64Of, describeFailure, getJSON, postJSON, sleep } from "./api.js";
import { applyParams, commonRequest, hiresFields, inpaintFields, paramsFromInfotext } from "./forms.js";
import { Gallery, decodePng } from "./gallery.js";
import { MaskEditor } from "./mask.js";
import { interrupt, pollProgress, showProgress, skip } from "./progress.js";

const $ = (id) => document.getElementById(id);
const TABS = ["txt2img", "img2img", "inpaint", "extras", "pnginfo"];
const GENERATION_TABS = new Set(["txt2img", "img2img", "inpaint"]);

const state = {
  tab: "txt2img",
  source: null, // data URL of the img2img / inpaint input
  extrasSource: null, // data URL of the image to upscale
  pngParams: null, // A1111 fields read from the last PNG
  busy: false,
  currentModel: null,
  loraWeights: {}, // LoRA name -> the weight the server was started with
};

const mask = new MaskEditor({ imageCanvas: $("image-canvas"), maskCanvas: $("mask-canvas"), brushSize: $("brush-size") });
const gallery = new Gallery({ onSend: sendTo, onError: showError });

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
    const target = { init_images: "source-zone", mask: "mask-canvas", image: "extras-zone" }[name] || name;
    const input = $(target === "denoising_strength" && state.tab === "txt2img" ? "hr_denoising_strength" : target);
    if (input) input.classList.add("invalid");
  }
}

// ---- server status and pickers ----------------------------------------------------

function setStatus(text, kind) {
  const pill = $("server-status");
  pill.textContent = text;
  pill.dataset.state = kind;
}

async function waitForServer() {
  for (;;) {
    try {
      const response = await fetch("/readyz", { credentials: "same-origin" });
      const body = await response.json();
      if (response.ok) return true;
      const failed = body.status === "failed";
      setStatus(failed ? "model failed to load" : `${body.status}…`, failed ? "error" : "loading");
      if (failed) return false;
    } catch (error) {
      setStatus("server unreachable", "error");
    }
    await sleep(1000);
  }
}

function fill(select, entries, selected) {
  select.replaceChildren(...entries.map(([value, label]) => new Option(label, value, false, value === selected)));
}

async function optional(path, fallback) {
  try {
    return await getJSON(path);
  } catch (ignored) {
    return fallback; // an older server without this route: the picker offers what it can
  }
}

async function loadServerInfo() {
  if (!(await waitForServer())) return;
  try {
    const [options, models, samplers, loras, upscalers, latentModes] = await Promise.all([
      getJSON(`${API}/options`),
      getJSON(`${API}/sd-models`),
      getJSON(`${API}/samplers`),
      optional(`${API}/loras`, []),
      optional(`${API}/upscalers`, [{ name: "None" }]),
      optional(`${API}/latent-upscale-modes`, []),
    ]);
    state.currentModel = options.sd_model_checkpoint;
    fill($("model"), models.map((m) => [m.title, m.model_name === m.title ? m.title : `${m.model_name} (${m.title})`]), options.sd_model_checkpoint);
    fill($("sampler_name"), samplers.map((s) => [s.name, s.name]), "Euler a");
    if (loras.length) {
      fill($("lora"), loras.map((l) => [l.name, l.alias && l.alias !== l.name ? `${l.alias} (${l.name})` : l.name]));
      state.loraWeights = Object.fromEntries(loras.map((l) => [l.name, l.metadata?.default_weight ?? 1]));
      $("lora-weight").value = state.loraWeights[$("lora").value];
    } else {
      fill($("lora"), [["", "none loaded"]]);
    }
    $("lora").disabled = $("add-lora").disabled = $("lora-weight").disabled = !loras.length;
    const upscalerNames = upscalers.map((u) => u.name);
    const realUpscalers = upscalerNames.filter((name) => name !== "None");
    fill($("upscaler_1"), upscalerNames.map((n) => [n, n]), realUpscalers.includes("Lanczos") ? "Lanczos" : realUpscalers[0] ?? "None");
    fill($("upscaler_2"), upscalerNames.map((n) => [n, n]), "None");
    // A1111 offers the latent modes first (its default: "Latent"), then every upscaler.
    const latent = latentModes.length ? latentModes.map((m) => m.name) : ["Latent"];
    const hires = [...latent, ...realUpscalers];
    fill($("hr_upscaler"), hires.map((n) => [n, n]), hires[0]);
    setStatus("ready", "ready");
  } catch (error) {
    setStatus("settings unreadable", "error");
    showError({ title: "Could not read the server's settings", lines: [String(error.message || error)] });
  }
}

// ---- tabs ---------------------------------------------------------------------------

function setTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("[role=tab]")) {
    const selected = button.dataset.tab === tab;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
  }
  const generating = GENERATION_TABS.has(tab);
  $("generate-form").hidden = !generating;
  $("generate-form").setAttribute("aria-labelledby", `tab-${generating ? tab : "txt2img"}`);
  $("extras-form").hidden = tab !== "extras";
  $("pnginfo-panel").hidden = tab !== "pnginfo";
  for (const section of document.querySelectorAll("[data-tabs]")) {
    section.hidden = !section.dataset.tabs.split(" ").includes(tab);
  }
  showSource();
  clearError();
}

function tabKeys(event) {
  const index = TABS.indexOf(state.tab);
  const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  const tab = TABS[(next + TABS.length) % TABS.length];
  setTab(tab);
  $(`tab-${tab}`).focus();
}

// ---- source images ------------------------------------------------------------------

function readImageFile(file, onLoad) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError({ title: "Not an image", lines: [`${file.name} is not an image file.`] });
    return;
  }
  const reader = new FileReader();
  reader.onload = () => onLoad(reader.result, file);
  reader.readAsDataURL(file);
}

function dropzone(zone, input, onLoad) {
  input.addEventListener("change", () => {
    readImageFile(input.files[0], onLoad);
    input.value = ""; // choosing the same file again still triggers change
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    readImageFile(event.dataTransfer.files[0], onLoad);
  });
}

async function setSource(dataUrl) {
  state.source = dataUrl;
  $("source-zone").classList.remove("invalid");
  if (dataUrl) await mask.setImage(dataUrl);
  showSource();
}

function showSource() {
  const has = Boolean(state.source);
  const inpaint = state.tab === "inpaint";
  $("source-preview").src = state.source || "";
  $("source-preview").hidden = !has || inpaint;
  $("source-zone").querySelector(".drop-hint").hidden = has && !inpaint;
  $("source-zone").classList.toggle("compact", has && inpaint);
  $("clear-source").hidden = !has;
  $("mask-section").hidden = !inpaint || !has;
}

function setExtrasSource(dataUrl) {
  state.extrasSource = dataUrl;
  $("extras-preview").src = dataUrl || "";
  $("extras-preview").hidden = !dataUrl;
  $("extras-zone").querySelector(".drop-hint").hidden = Boolean(dataUrl);
  $("clear-extras").hidden = !dataUrl;
  $("extras-zone").classList.remove("invalid");
}

// ---- generating ---------------------------------------------------------------------

function generationRequest() {
  const body = { ...commonRequest(), save_images: true };
  if ($("model").value && $("model").value !== state.currentModel) {
    body.override_settings = { sd_model_checkpoint: $("model").value };
  }
  if (state.tab === "txt2img") return Object.assign(body, hiresFields());
  body.init_images = state.source ? [base64Of(state.source)] : [];
  body.denoising_strength = Number($("denoising_strength").value);
  if (state.tab === "inpaint") {
    Object.assign(body, inpaintFields());
    if (state.source) body.mask = base64Of(mask.maskDataUrl());
  }
  return body;
}

async function busy(work, options) {
  if (state.busy) return;
  clearError();
  state.busy = true;
  for (const id of ["generate", "upscale"]) $(id).disabled = true;
  showProgress(true, options);
  const started = performance.now();
  try {
    await work(started);
  } catch (error) {
    showError(describeFailure(error));
  } finally {
    state.busy = false;
    for (const id of ["generate", "upscale"]) $(id).disabled = false;
    showProgress(false);
  }
}

async function generate() {
  const kind = state.tab;
  if (!GENERATION_TABS.has(kind)) return;
  if (kind === "inpaint" && state.source && !mask.hasMask()) {
    showError({ title: "Nothing to repaint", lines: ["Paint over the parts of the image to repaint first."], fields: ["mask"] });
    return;
  }
  const request = generationRequest();
  await busy(async (started) => {
    const poller = pollProgress();
    let body;
    try {
      body = await postJSON(`${API}/${kind === "txt2img" ? "txt2img" : "img2img"}`, request);
    } finally {
      poller.stop();
    }
    const seconds = (performance.now() - started) / 1000;
    const info = JSON.parse(body.info);
    const { init_images, mask: sentMask, save_images, override_settings, ...params } = request;
    const first = info.index_of_first_image || 0; // A1111 puts a grid first when it makes one
    const items = [];
    for (let i = first; i < body.images.length; i += 1) {
      const image = await decodePng(body.images[i]);
      items.push({
        ...image,
        kind,
        created: Date.now(),
        seconds,
        interrupted: Boolean(info.interrupted),
        infotext: info.infotexts?.[i] ?? "",
        params: {
          ...params,
          seed: info.all_seeds?.[i - first] ?? params.seed,
          subseed: info.all_subseeds?.[i - first] ?? params.subseed,
          sampler_name: info.sampler_name ?? params.sampler_name,
          width: info.width ?? params.width,
          height: info.height ?? params.height,
          model: info.sd_model_name,
        },
      });
    }
    await gallery.add(items.reverse());
    if (info.interrupted) {
      showError({ title: "Stopped", lines: [`Kept ${items.length} unfinished image(s).`] });
    }
  });
}

async function upscale() {
  if (!state.extrasSource) {
    showError({ title: "No image", lines: ["Extras needs an image: drop one in the box above."], fields: ["image"] });
    return;
  }
  const request = {
    image: base64Of(state.extrasSource),
    resize_mode: 0,
    upscaling_resize: Number($("upscaling_resize").value),
    upscaler_1: $("upscaler_1").value,
    upscaler_2: $("upscaler_2").value,
    extras_upscaler_2_visibility: Number($("extras_upscaler_2_visibility").value),
    show_extras_results: true,
  };
  await busy(async (started) => {
    const body = await postJSON(`${API}/extra-single-image`, request);
    const image = await decodePng(base64Of(body.image));
    const { image: ignored, ...params } = request;
    await gallery.add([{
      ...image,
      kind: "extras",
      created: Date.now(),
      seconds: (performance.now() - started) / 1000,
      infotext: htmlToText(body.html_info || ""),
      params,
    }]);
  }, { cancellable: false });
}

/** html_info is HTML from the server: shown as text, never parsed into the page. */
function htmlToText(html) {
  return html.replace(/<br\s*\/?>/gi, "\n").replace(/<[^>]*>/g, "").trim();
}

// ---- PNG info -----------------------------------------------------------------------

async function readPng(dataUrl) {
  clearError();
  $("png-preview").src = dataUrl;
  $("png-preview").hidden = false;
  $("png-zone").querySelector(".drop-hint").hidden = true;
  try {
    const body = await postJSON(`${API}/png-info`, { image: base64Of(dataUrl) });
    state.pngParams = body.info ? paramsFromInfotext(body.parameters) : null;
    const list = $("png-params");
    list.replaceChildren();
    for (const [name, value] of Object.entries(body.parameters)) {
      if (/-\d$/.test(name)) continue; // Size-1/Size-2 repeat Size
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    }
    $("png-text").textContent = body.info || "This image carries no generation parameters.";
    $("png-result").hidden = false;
    $("png-to-txt2img").disabled = $("png-to-img2img").disabled = !state.pngParams;
  } catch (error) {
    $("png-result").hidden = true;
    showError(describeFailure(error));
  }
}

// ---- send to ------------------------------------------------------------------------

async function sendTo(target, item, dataUrl) {
  if (target === "extras") {
    setExtrasSource(dataUrl);
  } else {
    if (item.kind !== "extras") applyParams(item.params);
    if (target !== "txt2img") {
      await setSource(dataUrl);
      $("width").value = item.width;
      $("height").value = item.height;
    }
  }
  setTab(target);
  window.scrollTo({ top: 0, behavior: "smooth" });
  $(`tab-${target}`).focus();
}

// ---- wiring -------------------------------------------------------------------------

function bindOutput(inputId, outputId) {
  $(inputId).addEventListener("input", () => { $(outputId).textContent = $(inputId).value; });
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function wire() {
  for (const button of document.querySelectorAll("[role=tab]")) {
    button.addEventListener("click", () => setTab(button.dataset.tab));
    button.addEventListener("keydown", tabKeys);
  }
  $("generate-form").addEventListener("submit", (event) => { event.preventDefault(); generate(); });
  $("extras-form").addEventListener("submit", (event) => { event.preventDefault(); upscale(); });
  $("interrupt").addEventListener("click", () => interrupt().catch((e) => showError(describeFailure(e))));
  $("skip").addEventListener("click", () => skip().catch((e) => showError(describeFailure(e))));
  $("random-seed").addEventListener("click", () => { $("seed").value = -1; });
  bindOutput("cfg_scale", "cfg-value");
  bindOutput("denoising_strength", "denoising-value");
  bindOutput("hr_denoising_strength", "hr-denoising-value");
  bindOutput("subseed_strength", "subseed-strength-value");
  bindOutput("brush-size", "brush-size-value");
  bindOutput("extras_upscaler_2_visibility", "visibility-value");
  $("enable_hr").addEventListener("change", () => { $("hires-options").hidden = !$("enable_hr").checked; });
  $("lora").addEventListener("change", () => { $("lora-weight").value = state.loraWeights[$("lora").value] ?? 1; });
  $("add-lora").addEventListener("click", () => {
    const prompt = $("prompt");
    const tag = `<lora:${$("lora").value}:${Number($("lora-weight").value)}>`;
    prompt.value = prompt.value.trim() ? `${prompt.value.trimEnd()} ${tag}` : tag;
    prompt.focus();
  });
  dropzone($("source-zone"), $("source-file"), (dataUrl) => setSource(dataUrl));
  $("clear-source").addEventListener("click", () => setSource(null));
  dropzone($("extras-zone"), $("extras-file"), (dataUrl) => setExtrasSource(dataUrl));
  $("clear-extras").addEventListener("click", () => setExtrasSource(null));
  dropzone($("png-zone"), $("png-file"), (dataUrl) => readPng(dataUrl));
  $("png-to-txt2img").addEventListener("click", () => {
    applyParams(state.pngParams);
    setTab("txt2img");
    $("tab-txt2img").focus();
  });
  $("png-to-img2img").addEventListener("click", async () => {
    applyParams(state.pngParams);
    await setSource($("png-preview").src);
    setTab("img2img");
    $("tab-img2img").focus();
  });
  const brush = (erasing) => {
    mask.setErasing(erasing);
    $("brush-paint").setAttribute("aria-pressed", String(!erasing));
    $("brush-erase").setAttribute("aria-pressed", String(erasing));
  };
  $("brush-paint").addEventListener("click", () => brush(false));
  $("brush-erase").addEventListener("click", () => brush(true));
  $("mask-invert").addEventListener("click", () => mask.invert());
  $("mask-clear").addEventListener("click", () => mask.clear());
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  for (const input of document.querySelectorAll("input, textarea, select")) {
    input.addEventListener("input", () => input.classList.remove("invalid"));
  }
  $("mask-canvas").addEventListener("pointerdown", () => $("mask-canvas").classList.remove("invalid"));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (state.tab === "extras") upscale();
      else generate();
    } else if (event.key === "Escape" && state.busy) {
      interrupt().catch(() => {});
    } else if (event.altKey && /^[1-5]$/.test(event.key)) {
      event.preventDefault();
      setTab(TABS[Number(event.key) - 1]);
    } else if (event.key === "?" && !isTyping(event.target)) {
      $("help").showModal();
    }
  });
}

wire();
setTab("txt2img");
gallery.load();
loadServerInfo();
