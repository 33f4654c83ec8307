// What every part of the playground shares: the element lookup, the page's state, the error
// box and the busy guard that keeps one request in flight at a time.
import { describeFailure } from "./api.js";
import { showProgress } from "./progress.js";

export const $ = (id) => document.getElementById(id);
export const TABS = ["txt2img", "img2img", "inpaint", "extras", "pnginfo"];
export const GENERATION_TABS = new Set(["txt2img", "img2img", "inpaint"]);

export const state = {
  tab: "txt2img",
  source: null, // data URL of the img2img / inpaint input
  extrasSource: null, // data URL of the image to upscale
  pngParams: null, // A1111 fields read from the last PNG
  busy: false,
  currentModel: null,
  loraWeights: {}, // LoRA name -> the weight the server was started with
};

export function clearError() {
  $("error").hidden = true;
  for (const element of document.querySelectorAll(".invalid")) element.classList.remove("invalid");
}

export function showError({ title, lines = [], fields = [] }) {
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

/** Runs work(startedMs) with the action buttons disabled and the progress bar shown. */
export async function busy(work, options) {
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
