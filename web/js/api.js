// The API client: every call goes to /api on this origin (CloudFront routes /api/* to API
// Gateway; the local runtime does the same). Errors become ApiError with the API's message.

import { getToken } from "./auth.js";

export const API_BASE = "/api";

/** True for the error fetch() throws when its signal aborts (the page was left). */
export function isAbort(error) {
  return Boolean(error) && error.name === "AbortError";
}

export class ApiError extends Error {
  constructor(status, code, message, field, data) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.data = data || null;
  }
}

function errorOf(status, data) {
  const error = data && typeof data === "object" ? data.error || data : null;
  const message =
    (error && typeof error.message === "string" && error.message) ||
    (status === 401 || status === 403 ? "You are not signed in, or your sign-in has expired." : null) ||
    (status === 429 ? "Too many requests: please wait a moment and try again." : null) ||
    (status >= 500 ? "The service had a problem. Please try again in a moment." : null) ||
    `The request failed (HTTP ${status}).`;
  return new ApiError(status, (error && error.code) || `http_${status}`, message, error && error.field, data);
}

/**
 * api("POST", "/subscriptions", {body: {...}}) -> parsed JSON (or text for non-JSON answers).
 * Options: body (JSON-encoded unless raw is given), raw (a string/Blob sent as is, with
 * contentType), auth (send the admin's ID token), signal (AbortSignal), accept,
 * signOutOn401 (false: a 401 is only this call's error; else the console signs out, see app.js).
 */
export async function api(method, path, options = {}) {
  const headers = { Accept: options.accept || "application/json" };
  let body;
  if (options.raw !== undefined) {
    body = options.raw;
    headers["Content-Type"] = options.contentType || "application/octet-stream";
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] = "application/json";
  }
  if (options.auth) {
    const token = getToken();
    // the Cognito ID token itself: what API Gateway's Cognito authorizer reads
    if (token) headers.Authorization = token;
  }
  let response;
  try {
    response = await fetch(API_BASE + path, { method, headers, body, signal: options.signal, credentials: "same-origin" });
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ApiError(0, "network", "Could not reach Mailroom. Check your connection and try again.");
  }
  const type = response.headers.get("Content-Type") || "";
  let data = null;
  try {
    data = type.includes("json") ? await response.json() : await response.text();
  } catch (error) {
    if (isAbort(error)) throw error; // the page was left: nobody waits
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && options.auth && options.signOutOn401 !== false) {
      window.dispatchEvent(new CustomEvent("mailroom:unauthorized"));
    }
    throw errorOf(response.status, data);
  }
  if (options.withHeaders) return { data, headers: response.headers };
  return data;
}

/** The admin API: like api() with the admin's ID token. */
export function admin(method, path, options = {}) {
  return api(method, `/admin${path}`, { ...options, auth: true });
}
