// GETs against the UI API (relative URLs: the page works under /ui/ directly and through
// `kubectl proxy`). Errors carry the Kubernetes Status message when the server sent one.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function getJSON(path) {
  let resp;
  try {
    resp = await fetch(path, {headers: {Accept: "application/json"}, credentials: "same-origin"});
  } catch {
    throw new ApiError(0, "The API server cannot be reached.");
  }
  if (!resp.ok) throw new ApiError(resp.status, await statusMessage(resp));
  return resp.json();
}

async function statusMessage(resp) {
  try {
    const body = await resp.json();
    if (body && body.message) return body.message;
  } catch { /* not JSON */ }
  if (resp.status === 401) return "Not logged in: run `pocketkube ui` for a new login link, or open the page through `kubectl proxy`.";
  return `${resp.status} ${resp.statusText}`;
}

export const enc = encodeURIComponent;
