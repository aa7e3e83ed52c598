// The JSON API, with the page's link as the bearer token.
//
// The token is the last part of the page's address (/work/<token>, /review/<token>). Every
// failure becomes an ApiError carrying the status, the message and the field errors the
// server sent ({"error", "message", "errors": [{"field", "message"}]}).

export class ApiError extends Error {
  constructor(status, message, errors = [], body = null) {
    super(message);
    this.status = status;
    this.errors = errors;
    this.body = body;
  }

  /** The link no longer works (expired, revoked, forged) or is for something else. */
  get isLinkProblem() {
    return this.status === 401 || this.status === 403;
  }
}

export function tokenFromLocation(location = window.location) {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

export class Api {
  constructor(token, { retries = 3 } = {}) {
    this.token = token;
    this.retries = retries;
  }

  /** A same-origin URL that an <img> can load (a GET that carries the link in its query). */
  imageUrl(url) {
    if (!url) return url;
    if (!url.startsWith("/")) return url; // already a presigned or public URL
    const sep = url.includes("?") ? "&" : "?";
    return `${url}${sep}access_token=${encodeURIComponent(this.token)}`;
  }

  async request(method, path, body) {
    let lastError = null;
    // Only network failures are retried: a POST carries an idempotency key, so a retry after
    // a lost reply is counted once.
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      let response;
      try {
        response = await fetch(path, {
          method,
          headers: {
            Authorization: `Bearer ${this.token}`,
            ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          cache: "no-store",
        });
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
        continue;
      }
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      if (!response.ok) {
        const message =
          (payload && payload.message) || `${response.status} ${response.statusText}`;
        throw new ApiError(response.status, message, (payload && payload.errors) || [], payload);
      }
      return payload;
    }
    throw new ApiError(0, `the server could not be reached (${lastError})`);
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }
}

export function newIdempotencyKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID().replaceAll("-", "");
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
