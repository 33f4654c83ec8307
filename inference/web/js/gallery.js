// The gallery: thumbnails of everything made in this browser (kept in IndexedDB), and a
// viewer window with the image's parameters and "send to" buttons.
import { addItem, allItems, clearItems, deleteItem } from "./store.js";

const $ = (id) => document.getElementById(id);

export class Gallery {
  /** onSend(target, item, dataUrl): target is txt2img, img2img, inpaint or extras. */
  constructor({ onSend, onError }) {
    this.onSend = onSend;
    this.onError = onError;
    this.urls = new Map(); // id -> object URL of the stored blob
    this.items = [];
    this.open = null;
    $("viewer-close").addEventListener("click", () => $("viewer").close());
    $("viewer").addEventListener("close", () => { this.open = null; });
    $("viewer-delete").addEventListener("click", () => this.remove(this.open));
    $("clear-gallery").addEventListener("click", () => this.clear());
    for (const button of document.querySelectorAll("#viewer [data-send]")) {
      button.addEventListener("click", async () => {
        const item = this.open;
        if (!item) return;
        $("viewer").close();
        this.onSend(button.dataset.send, item, await blobToDataUrl(item.blob));
      });
    }
  }

  async load() {
    try {
      this.items = await allItems();
    } catch (error) {
      this.onError({ title: "The gallery could not be read from this browser's storage", lines: [String(error)] });
      this.items = [];
    }
    this.render();
  }

  /** Stores and shows new results; items: [{blob, kind, params, infotext, ...}], newest last. */
  async add(items) {
    for (const item of items) {
      try {
        item.id = await addItem(item);
      } catch (error) {
        // Still shown for this visit; only the reload loses it.
        this.onError({ title: "Could not keep the image in this browser's storage", lines: [String(error)] });
        item.id = `unsaved-${Math.random()}`;
      }
      this.items.unshift(item);
    }
    this.render();
  }

  async remove(item) {
    if (!item) return;
    $("viewer").close();
    if (typeof item.id === "number") await deleteItem(item.id);
    this.items = this.items.filter((other) => other !== item);
    this.render();
  }

  async clear() {
    if (this.items.length && !window.confirm(`Delete all ${this.items.length} images from this browser?`)) return;
    await clearItems();
    this.items = [];
    this.render();
  }

  urlOf(item) {
    if (!this.urls.has(item.id)) this.urls.set(item.id, URL.createObjectURL(item.blob));
    return this.urls.get(item.id);
  }

  render() {
    const list = $("gallery");
    const alive = new Set(this.items.map((item) => item.id));
    for (const [id, url] of this.urls) {
      if (!alive.has(id)) {
        URL.revokeObjectURL(url);
        this.urls.delete(id);
      }
    }
    list.replaceChildren(...this.items.map((item, index) => this.thumbnail(item, index)));
    $("empty").hidden = this.items.length > 0;
    $("gallery-count").textContent = this.items.length ? `(${this.items.length})` : "";
  }

  thumbnail(item, index) {
    const entry = document.createElement("li");
    entry.className = "thumb";
    entry.dataset.kind = item.kind;
    entry.classList.toggle("interrupted", Boolean(item.interrupted));
    const button = document.createElement("button");
    button.type = "button";
    const what = item.params.prompt || (item.kind === "extras" ? "upscaled image" : "no prompt");
    button.setAttribute("aria-label", `Open image ${index + 1}: ${what}`);
    const img = document.createElement("img");
    img.src = this.urlOf(item);
    img.alt = "";
    img.width = item.width;
    img.height = item.height;
    button.append(img);
    button.addEventListener("click", () => this.show(item));
    const caption = document.createElement("span");
    caption.className = "caption small muted";
    caption.textContent = `${kindLabel(item.kind)} · ${item.width}×${item.height}`;
    entry.append(button, caption);
    return entry;
  }

  show(item) {
    this.open = item;
    const image = $("viewer-image");
    image.src = this.urlOf(item);
    image.alt = item.params.prompt || "image";
    $("viewer-title").textContent = kindLabel(item.kind);
    const list = $("viewer-params");
    list.replaceChildren();
    for (const [name, value] of describe(item)) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dd.dataset.param = name.toLowerCase().replace(/\W+/g, "-");
      list.append(dt, dd);
    }
    $("viewer-infotext").textContent = item.infotext || "";
    $("viewer-infotext").hidden = !item.infotext;
    const download = $("viewer-download");
    download.href = this.urlOf(item);
    download.download = `${item.kind}-${item.params.seed ?? item.id}.png`;
    $("viewer").showModal();
  }
}

export function kindLabel(kind) {
  return { txt2img: "Text to image", img2img: "Image to image", inpaint: "Inpaint", extras: "Extras" }[kind] || kind;
}

/** The rows of the viewer's parameter list. */
function describe(item) {
  const p = item.params;
  const rows = [];
  if (item.kind === "extras") {
    rows.push(["Upscaler", p.upscaler_1], ["Scale", p.upscaling_resize]);
    if (p.upscaler_2 && p.upscaler_2 !== "None" && p.extras_upscaler_2_visibility > 0) {
      rows.push(["Second upscaler", `${p.upscaler_2} at ${p.extras_upscaler_2_visibility}`]);
    }
  } else {
    rows.push(["Prompt", p.prompt || "(none)"]);
    if (p.negative_prompt) rows.push(["Negative prompt", p.negative_prompt]);
    rows.push(["Seed", p.seed], ["Steps", p.steps], ["Sampler", p.sampler_name], ["CFG", p.cfg_scale]);
    if (item.kind !== "txt2img") rows.push(["Denoising", p.denoising_strength]);
    if (p.enable_hr) {
      rows.push(["Hires", `×${p.hr_scale} ${p.hr_upscaler}, ${p.hr_second_pass_steps || p.steps} steps, denoising ${p.denoising_strength}`]);
    }
    if (p.subseed_strength > 0) rows.push(["Variation", `seed ${p.subseed}, strength ${p.subseed_strength}`]);
    if (p.model) rows.push(["Model", p.model]);
  }
  rows.push(["Size", `${item.width}×${item.height}`]);
  if (item.seconds != null) rows.push(["Time", `${item.seconds.toFixed(1)} s`]);
  if (item.interrupted) rows.push(["Note", "stopped early"]);
  return rows;
}

export function blobToDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** base64 PNG -> {blob, width, height}. */
export async function decodePng(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: "image/png" });
  const bitmap = await createImageBitmap(blob);
  const size = { width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return { blob, ...size };
}
