// The PNG info tab: reads the generation parameters a PNG carries (POST png-info) and sends
// them to txt2img or, with the image, to img2img.
import { API, base64Of, describeFailure, postJSON } from "./api.js";
import { applyParams, paramsFromInfotext } from "./forms.js";
import { $, clearError, showError, state } from "./page.js";
import { dropzone, setSource } from "./sources.js";
import { setTab } from "./tabs.js";

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

export function wirePngInfo() {
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
}
