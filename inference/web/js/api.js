// This server's own A1111 API (/sdapi/v1), same origin: a basic-auth login the browser
// made for the page is sent with every request (fetch's default same-origin credentials).

export const API = "/sdapi/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function parse(response) {
  try {
    return await response.json();
  } catch (ignored) {
    return { detail: `${response.status} ${response.statusText}` };
  }
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await parse(response);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function postJSON(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(payload ?? {}),
  });
  const body = await parse(response);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** A data: URL or plain base64 -> plain base64, which every A1111 route accepts. */
export function base64Of(dataUrl) {
  const comma = dataUrl.indexOf(",");
  return dataUrl.startsWith("data:") && comma >= 0 ? dataUrl.slice(comma + 1) : dataUrl;
}

/** FastAPI 422: {detail: [{loc, msg}]}; this server's other errors: {error, detail}. */
export function describeFailure(error) {
  if (!(error instanceof ApiError)) {
    return { title: "Could not reach the server", lines: [String(error?.message || error)], fields: [] };
  }
  const { status, body } = error;
  if (Array.isArray(body?.detail)) {
    const fields = body.detail.map((item) => String((item.loc || []).filter((part) => part !== "body")[0] ?? ""));
    const lines = body.detail.map((item) => item.msg);
    return { title: "Please fix these settings:", lines, fields };
  }
  if (status === 404 && /init image/i.test(body?.detail || "")) {
    return { title: "No input image", lines: ["This tab needs an image: drop one in the box above."], fields: ["init_images"] };
  }
  if (status === 404) return { title: "Not available on this server", lines: [body?.detail || "HTTP 404"], fields: [] };
  if (status === 429) return { title: "The server is busy", lines: [body?.detail || "Try again in a few seconds."], fields: [] };
  const detail = typeof body?.detail === "string" ? body.detail : JSON.stringify(body);
  return { title: `The server could not do it (HTTP ${status})`, lines: [detail], fields: [] };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
