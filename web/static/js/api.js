// The dashboard's API client: same-origin JSON with the session cookie. A lapsed session sends the
// user to the login page and back to where they were afterwards.

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSessionEnded = () => {};
let onPasswordChange = () => {};

/** Set by the router: what to do when a call finds the session gone or a password change due. */
export function setHandlers({ sessionEnded, passwordChange }) {
  onSessionEnded = sessionEnded;
  onPasswordChange = passwordChange;
}

export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { accept: "application/json" } };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, "The gateway cannot be reached. Check that it is running.", "network");
  }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await response.json().catch(() => null) : null;
  if (response.ok) return data;
  const error = data && data.error ? data.error : {};
  const failure = new ApiError(response.status, error.message || `HTTP ${response.status}`, error.code);
  if (response.status === 401 && !path.startsWith("/api/auth/login")) {
    failure.redirected = true;
    onSessionEnded();
  } else if (response.status === 403 && error.code === "password_change_required") {
    failure.redirected = true;
    onPasswordChange();
  }
  throw failure;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

/** Query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
