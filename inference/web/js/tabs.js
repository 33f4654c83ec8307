// Tab switching (click, arrow keys, Alt+1..5) and the page-wide keyboard shortcuts.
import { $, GENERATION_TABS, TABS, clearError, state } from "./page.js";
import { interrupt } from "./progress.js";
import { showSource } from "./sources.js";

export function setTab(tab) {
  state.tab = tab;
  for (const button of document.querySelectorAll("[role=tab]")) {
    const selected = button.dataset.tab === tab;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
  }
  const generating = GENERATION_TABS.has(tab);
  $("generate-form").hidden = !generating;
  $("generate-form").setAttribute("aria-labelledby", `tab-${generating ? tab : "txt2img"}`);
  $("extras-form").hidden = tab !== "extras";
  $("pnginfo-panel").hidden = tab !== "pnginfo";
  for (const section of document.querySelectorAll("[data-tabs]")) {
    section.hidden = !section.dataset.tabs.split(" ").includes(tab);
  }
  showSource();
  clearError();
}

function tabKeys(event) {
  const index = TABS.indexOf(state.tab);
  const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  const tab = TABS[(next + TABS.length) % TABS.length];
  setTab(tab);
  $(`tab-${tab}`).focus();
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

export function wireTabs() {
  for (const button of document.querySelectorAll("[role=tab]")) {
    button.addEventListener("click", () => setTab(button.dataset.tab));
    button.addEventListener("keydown", tabKeys);
  }
}

export function wireHelp() {
  $("help-button").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
}

/** Ctrl/Cmd+Enter runs the tab's action, Escape interrupts, Alt+1..5 picks a tab, ? opens the help. */
export function wireShortcuts({ generate, upscale }) {
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (state.tab === "extras") upscale();
      else generate();
    } else if (event.key === "Escape" && state.busy) {
      interrupt().catch(() => {});
    } else if (event.altKey && /^[1-5]$/.test(event.key)) {
      event.preventDefault();
      setTab(TABS[Number(event.key) - 1]);
    } else if (event.key === "?" && !isTyping(event.target)) {
      $("help").showModal();
    }
  });
}
