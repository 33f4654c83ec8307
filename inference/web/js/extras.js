// The Extras tab: upscales one image (POST extra-single-image) into the gallery.
import { API, base64Of, postJSON } from "./api.js";
import { decodePng } from "./gallery.js";
import { $, busy, showError, state } from "./page.js";
import { dropzone } from "./sources.js";

export function setExtrasSource(dataUrl) {
  state.extrasSource = dataUrl;
  $("extras-preview").src = dataUrl || "";
  $("extras-preview").hidden = !dataUrl;
  $("extras-zone").querySelector(".drop-hint").hidden = Boolean(dataUrl);
  $("clear-extras").hidden = !dataUrl;
  $("extras-zone").classList.remove("invalid");
}

export async function upscale(gallery) {
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

export function wireExtras(gallery) {
  $("extras-form").addEventListener("submit", (event) => { event.preventDefault(); upscale(gallery); });
  dropzone($("extras-zone"), $("extras-file"), (dataUrl) => setExtrasSource(dataUrl));
  $("clear-extras").addEventListener("click", () => setExtrasSource(null));
}
