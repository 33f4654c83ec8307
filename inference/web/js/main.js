// The playground's entry point: builds the gallery, wires every tab's module and loads the
// server's settings. Module scripts only, no inline code: the page runs under a strict CSP.
// page.js shared state and errors, server.js status and pickers, tabs.js tabs and shortcuts,
// sources.js input images and mask, generate.js txt2img/img2img/inpaint, extras.js upscaling,
// pnginfo.js PNG info.
import { describeFailure } from "./api.js";
import { applyParams } from "./forms.js";
import { Gallery } from "./gallery.js";
import { setExtrasSource, upscale, wireExtras } from "./extras.js";
import { generate, wireGenerateForm } from "./generate.js";
import { $, showError } from "./page.js";
import { wirePngInfo } from "./pnginfo.js";
import { interrupt, skip } from "./progress.js";
import { loadServerInfo } from "./server.js";
import { setSource, wireMaskTools, wireSource } from "./sources.js";
import { setTab, wireHelp, wireShortcuts, wireTabs } from "./tabs.js";

const gallery = new Gallery({ onSend: sendTo, onError: showError });

/** The gallery's "send to" buttons: the image (and its parameters) go to another tab. */
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

function bindOutput(inputId, outputId) {
  $(inputId).addEventListener("input", () => { $(outputId).textContent = $(inputId).value; });
}

function wire() {
  wireTabs();
  wireGenerateForm(gallery);
  wireExtras(gallery);
  $("interrupt").addEventListener("click", () => interrupt().catch((e) => showError(describeFailure(e))));
  $("skip").addEventListener("click", () => skip().catch((e) => showError(describeFailure(e))));
  bindOutput("cfg_scale", "cfg-value");
  bindOutput("denoising_strength", "denoising-value");
  bindOutput("hr_denoising_strength", "hr-denoising-value");
  bindOutput("subseed_strength", "subseed-strength-value");
  bindOutput("brush-size", "brush-size-value");
  bindOutput("extras_upscaler_2_visibility", "visibility-value");
  wireSource();
  wirePngInfo();
  wireMaskTools();
  wireHelp();
  for (const input of document.querySelectorAll("input, textarea, select")) {
    input.addEventListener("input", () => input.classList.remove("invalid"));
  }
  $("mask-canvas").addEventListener("pointerdown", () => $("mask-canvas").classList.remove("invalid"));
  wireShortcuts({ generate: () => generate(gallery), upscale: () => upscale(gallery) });
}

wire();
setTab("txt2img");
gallery.load();
loadServerInfo();
