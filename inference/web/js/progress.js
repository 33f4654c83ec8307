// Live progress while a generation runs: polls GET progress, shows the bar, the step and
// the server's current_image preview when it sends one; Interrupt and Skip act on the server.
import { API, getJSON, postJSON, sleep } from "./api.js";

const POLL_MS = 400;
const $ = (id) => document.getElementById(id);

export function showProgress(on, { cancellable = true } = {}) {
  $("progress").hidden = !on;
  $("skip").hidden = $("interrupt").hidden = !cancellable;
  if (on) render(0, "Starting…");
  $("progress-preview").hidden = true;
}

function render(percent, text) {
  $("progress-fill").style.width = `${percent}%`;
  $("progress").querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(percent));
  $("progress-text").textContent = text;
}

/** Polls until stop() is called. */
export function pollProgress() {
  let stopped = false;
  (async () => {
    while (!stopped) {
      await sleep(POLL_MS);
      if (stopped) break;
      try {
        const progress = await getJSON(`${API}/progress`);
        if (stopped) break;
        const percent = Math.round(progress.progress * 100);
        const s = progress.state;
        let text = progress.textinfo || "Waiting for the model…";
        if (s.sampling_steps) {
          text = `Step ${s.sampling_step} of ${s.sampling_steps} · ${percent}%`;
          if (progress.eta_relative > 0.5) text += ` · about ${Math.ceil(progress.eta_relative)}s left`;
        }
        render(percent, text);
        if (progress.current_image) {
          $("progress-preview").src = `data:image/png;base64,${progress.current_image}`;
          $("progress-preview").hidden = false;
        }
      } catch (ignored) {
        // A missed poll is harmless; the next one catches up.
      }
    }
  })();
  return { stop: () => { stopped = true; } };
}

export async function interrupt() {
  $("progress-text").textContent = "Interrupting…";
  await postJSON(`${API}/interrupt`);
}

export async function skip() {
  $("progress-text").textContent = "Skipping this batch…";
  await postJSON(`${API}/skip`);
}
