// Input images: the file drop zones, and the img2img / inpaint source with its mask editor.
import { MaskEditor } from "./mask.js";
import { $, showError, state } from "./page.js";

export const mask = new MaskEditor({ imageCanvas: $("image-canvas"), maskCanvas: $("mask-canvas"), brushSize: $("brush-size") });

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

/** Calls onLoad(dataUrl, file) with an image chosen in input or dropped on zone. */
export function dropzone(zone, input, onLoad) {
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

export async function setSource(dataUrl) {
  state.source = dataUrl;
  $("source-zone").classList.remove("invalid");
  if (dataUrl) await mask.setImage(dataUrl);
  showSource();
}

/** Shows the source as a preview (img2img) or under the mask editor (inpaint). */
export function showSource() {
  const has = Boolean(state.source);
  const inpaint = state.tab === "inpaint";
  $("source-preview").src = state.source || "";
  $("source-preview").hidden = !has || inpaint;
  $("source-zone").querySelector(".drop-hint").hidden = has && !inpaint;
  $("source-zone").classList.toggle("compact", has && inpaint);
  $("clear-source").hidden = !has;
  $("mask-section").hidden = !inpaint || !has;
}

export function wireSource() {
  dropzone($("source-zone"), $("source-file"), (dataUrl) => setSource(dataUrl));
  $("clear-source").addEventListener("click", () => setSource(null));
}

export function wireMaskTools() {
  const brush = (erasing) => {
    mask.setErasing(erasing);
    $("brush-paint").setAttribute("aria-pressed", String(!erasing));
    $("brush-erase").setAttribute("aria-pressed", String(erasing));
  };
  $("brush-paint").addEventListener("click", () => brush(false));
  $("brush-erase").addEventListener("click", () => brush(true));
  $("mask-invert").addEventListener("click", () => mask.invert());
  $("mask-clear").addEventListener("click", () => mask.clear());
}
