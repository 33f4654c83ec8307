// The txt2img / img2img / inpaint action: builds the request from the form, sends it while
// polling progress, and adds the images to the gallery with the parameters that made them.
import { API, base64Of, postJSON } from "./api.js";
import { commonRequest, hiresFields, inpaintFields } from "./forms.js";
import { decodePng } from "./gallery.js";
import { $, GENERATION_TABS, busy, showError, state } from "./page.js";
import { pollProgress } from "./progress.js";
import { mask } from "./sources.js";

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

export async function generate(gallery) {
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

/** The generate form's own controls: submit, the random seed, hires options and LoRA tags. */
export function wireGenerateForm(gallery) {
  $("generate-form").addEventListener("submit", (event) => { event.preventDefault(); generate(gallery); });
  $("random-seed").addEventListener("click", () => { $("seed").value = -1; });
  $("enable_hr").addEventListener("change", () => { $("hires-options").hidden = !$("enable_hr").checked; });
  $("lora").addEventListener("change", () => { $("lora-weight").value = state.loraWeights[$("lora").value] ?? 1; });
  $("add-lora").addEventListener("click", () => {
    const prompt = $("prompt");
    const tag = `<lora:${$("lora").value}:${Number($("lora-weight").value)}>`;
    prompt.value = prompt.value.trim() ? `${prompt.value.trimEnd()} ${tag}` : tag;
    prompt.focus();
  });
}
