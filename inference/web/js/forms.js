// Reading the generation form into an A1111 request, and filling it back from the
// parameters of an earlier image (gallery) or of a PNG's infotext (PNG info).

const $ = (id) => document.getElementById(id);

function numberOrNull(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

/** The fields every generation tab sends (A1111 names). */
export function commonRequest() {
  const body = {
    prompt: $("prompt").value,
    negative_prompt: $("negative_prompt").value,
    steps: numberOrNull("steps"),
    cfg_scale: Number($("cfg_scale").value),
    sampler_name: $("sampler_name").value || null,
    seed: numberOrNull("seed") ?? -1,
    batch_size: numberOrNull("batch_size"),
    width: numberOrNull("width"),
    height: numberOrNull("height"),
    subseed: numberOrNull("subseed") ?? -1,
    subseed_strength: Number($("subseed_strength").value),
  };
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  return body;
}

export function hiresFields() {
  if (!$("enable_hr").checked) return {};
  return {
    enable_hr: true,
    hr_scale: Number($("hr_scale").value),
    hr_upscaler: $("hr_upscaler").value,
    hr_second_pass_steps: numberOrNull("hr_second_pass_steps") ?? 0,
    denoising_strength: Number($("hr_denoising_strength").value),
  };
}

export function inpaintFields() {
  return {
    mask_blur: numberOrNull("mask_blur") ?? 0,
    inpainting_fill: Number($("inpainting_fill").value),
    inpaint_full_res: $("inpaint_full_res").value === "true",
    inpaint_full_res_padding: numberOrNull("inpaint_full_res_padding") ?? 0,
  };
}

function setValue(id, value) {
  if (value === undefined || value === null || value === "") return;
  const element = $(id);
  if (element.tagName === "SELECT" && ![...element.options].some((option) => option.value === String(value))) {
    // A sampler or upscaler this server does not have: keep the current choice.
    return;
  }
  element.value = value;
  element.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Fills the form from A1111 request fields (as the gallery stores them). */
export function applyParams(params) {
  setValue("prompt", params.prompt ?? "");
  $("negative_prompt").value = params.negative_prompt ?? "";
  for (const key of ["steps", "cfg_scale", "sampler_name", "seed", "width", "height", "subseed", "subseed_strength"]) {
    setValue(key, params[key]);
  }
  if (!(params.subseed_strength > 0)) setValue("subseed_strength", 0);
  else $("variation-section").open = true;
  $("batch_size").value = 1;
  $("enable_hr").checked = Boolean(params.enable_hr);
  $("enable_hr").dispatchEvent(new Event("change"));
  if (params.enable_hr) {
    setValue("hr_scale", params.hr_scale);
    setValue("hr_upscaler", params.hr_upscaler);
    setValue("hr_second_pass_steps", params.hr_second_pass_steps);
    setValue("hr_denoising_strength", params.denoising_strength);
  } else if (params.denoising_strength != null) {
    setValue("denoising_strength", params.denoising_strength);
  }
  if (params.model) setValue("model", params.model);
}

/** POST png-info's `parameters` (infotext names: "Steps", "CFG scale", ...) -> A1111 request fields. */
export function paramsFromInfotext(fields) {
  const params = {
    prompt: fields.Prompt ?? "",
    negative_prompt: fields["Negative prompt"] ?? "",
    steps: fields.Steps,
    sampler_name: fields.Sampler,
    cfg_scale: fields["CFG scale"],
    seed: fields.Seed,
    width: fields["Size-1"],
    height: fields["Size-2"],
    model: fields.Model,
  };
  if (fields["Variation seed"] !== undefined) {
    params.subseed = fields["Variation seed"];
    params.subseed_strength = fields["Variation seed strength"] ?? 0;
  }
  if (fields["Hires upscale"] !== undefined || fields["Hires upscaler"] !== undefined) {
    params.enable_hr = true;
    params.hr_scale = fields["Hires upscale"] ?? 2;
    params.hr_upscaler = fields["Hires upscaler"];
    params.hr_second_pass_steps = fields["Hires steps"] ?? 0;
  }
  if (fields["Denoising strength"] !== undefined) params.denoising_strength = fields["Denoising strength"];
  return params;
}
