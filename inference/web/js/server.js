// The server's status pill and the pickers filled from its settings: models, samplers, LoRAs,
// upscalers and the hires latent modes.
import { API, getJSON, sleep } from "./api.js";
import { $, showError, state } from "./page.js";

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

export async function loadServerInfo() {
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
