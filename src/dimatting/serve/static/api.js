// The server's HTTP API as seen from the page. Errors come back as {"error": "<one line>"}, the same
// words `dim predict` prints, and are thrown as ApiError with that line.

export class ApiError extends Error {}

/** A random id for GET /api/progress/<id> (crypto.randomUUID needs a secure context; this does not). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (typeof body.error === "string") return body.error;
  } catch {
    // not JSON: a proxy or a crash; fall through to the status line
  }
  return `the server answered ${response.status} ${response.statusText}`;
}

async function call(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message}); is dim serve still running?`);
  }
  if (!response.ok) throw new ApiError(await errorOf(response));
  return response;
}

export async function health() {
  return (await call("/api/health")).json();
}

/** POST a form of {name: Blob | string | [Blob, fileName]}; returns {blob, notices}. */
export async function postForm(path, fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) form.append(name, value[0], value[1]);
    else form.append(name, value);
  }
  const response = await call(path, { method: "POST", body: form });
  const notices = JSON.parse(response.headers.get("X-Dimatting-Notices") || "[]");
  return { blob: await response.blob(), notices };
}

/** Poll the progress of the prediction sent with `?progress=<id>` until stop() is called. The first poll
 * waits one interval: the id exists once the server has admitted the request. */
export function watchProgress(id, onUpdate, intervalMs = 250) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const response = await fetch(`/api/progress/${id}`);
      if (response.ok && !stopped) onUpdate(await response.json());
    } catch {
      // the prediction's own request reports a lost server
    }
    if (!stopped) setTimeout(tick, intervalMs);
  };
  setTimeout(tick, intervalMs);
  return () => { stopped = true; };
}
