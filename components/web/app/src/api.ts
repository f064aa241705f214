// The one way the app talks to Lamina: JSON over fetch with the access
// token (kept in memory only) as a bearer, a silent refresh through the
// HttpOnly refresh cookie when it expires, and every problem+json answer
// turned into an ApiError with a readable message.

/** An API answer that was not 2xx, or no answer at all (offline). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly problem: Record<string, unknown> = {},
    /** Seconds the server asked us to wait (429/503 `Retry-After`). */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** What the auth service says about the signed-in account. */
export interface User {
  id: string;
  username: string;
  email: string;
  roles: string[];
  emailConfirmed?: boolean;
  [key: string]: unknown;
}

interface Tokens {
  accessToken: string;
  expiresAt?: string;
  user?: User;
}

let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<(user: User | null) => void>();
let currentUser: User | null = null;

/** Calls `listener` whenever the signed-in account changes (null: signed out). */
export function onSession(listener: (user: User | null) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function sessionUser(): User | null {
  return currentUser;
}

/** Takes the account as the server now has it (after a profile change). */
export function updateUser(user: User): void {
  currentUser = user;
  listeners.forEach((l) => l(user));
}

let renewTimer: ReturnType<typeof setTimeout> | undefined;

function setSession(tokens: Tokens | null, user?: User | null) {
  accessToken = tokens?.accessToken ?? null;
  clearTimeout(renewTimer);
  // Renew a minute before the access token expires, so requests rarely meet a 401.
  const expires = tokens?.expiresAt ? Date.parse(tokens.expiresAt) : NaN;
  if (Number.isFinite(expires)) {
    renewTimer = setTimeout(() => void refresh(), Math.max(5_000, expires - Date.now() - 60_000));
  }
  const next = tokens ? (user ?? tokens.user ?? currentUser) : null;
  if (next !== currentUser) {
    currentUser = next;
    listeners.forEach((l) => l(next));
  }
}

/** Takes the tokens a register or login answer carries. */
export async function startSession(tokens: Tokens): Promise<void> {
  accessToken = tokens.accessToken;
  setSession(tokens, tokens.user ?? (await api<User>("GET", "/api/auth/me")));
}

/**
 * Renews the access token with the refresh cookie. One refresh at a time,
 * across tabs too (Web Locks): the auth service ends a session whose
 * refresh token is presented twice.
 */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const run = async () => {
      const response = await fetch("/api/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      if (!response.ok) return false;
      setSession((await response.json()) as Tokens);
      return true;
    };
    try {
      return navigator.locks ? await navigator.locks.request("lamina-refresh", run) : await run();
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Signs out here and on the server (the refresh cookie is cleared). */
export async function logout(): Promise<void> {
  try {
    await api("POST", "/api/auth/logout");
  } finally {
    setSession(null);
  }
}

/** Reads a problem+json (or any) error answer into an ApiError. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let problem: Record<string, unknown> = {};
  try {
    problem = await response.json();
  } catch {
    // not JSON: keep the status line
  }
  const retry = Number(response.headers.get("retry-after"));
  const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : undefined;
  const errors = Array.isArray(problem.errors)
    ? (problem.errors as { field?: string; message?: string }[])
        .map((e) => [e.field, e.message].filter(Boolean).join(": "))
        .join("; ")
    : "";
  let message =
    (typeof problem.detail === "string" && problem.detail) ||
    (typeof problem.error === "string" && problem.error) ||
    (typeof problem.title === "string" && problem.title) ||
    `${response.status} ${response.statusText}`;
  if (errors) message = `${message} (${errors})`;
  if (response.status === 429) {
    message = retryAfter ? `${message} Try again in ${formatWait(retryAfter)}.` : message;
  } else if (response.status >= 500) {
    message = `The server could not answer (${response.status}): ${message}`;
  }
  return new ApiError(response.status, message, problem, retryAfter);
}

export function formatWait(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.ceil(seconds / 3600)} h`;
}

/** A raw authenticated request; refreshes once on 401. */
export async function request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
  const send = () => {
    const headers: Record<string, string> = {};
    if (accessToken) headers.authorization = `Bearer ${accessToken}`;
    let payload: BodyInit | undefined;
    if (body instanceof FormData) {
      payload = body;
    } else if (body instanceof Blob) {
      headers["content-type"] = body.type || "application/json";
      payload = body;
    } else if (body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    return fetch(path, { method, headers, body: payload, signal, credentials: "same-origin" });
  };
  let response: Response;
  try {
    response = await send();
    if (response.status === 401 && accessToken && !path.startsWith("/api/auth/refresh")) {
      if (await refresh()) {
        response = await send();
      } else {
        setSession(null);
      }
    }
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, "Lamina cannot be reached. Check your connection and try again.");
  }
  return response;
}

/** A JSON request: the parsed answer, or an ApiError. */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(method, path, body);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/**
 * Uploads `file` as the `file` field of a multipart form (XMLHttpRequest:
 * fetch cannot report upload progress), calling `progress` with the
 * fraction sent; refreshes once on 401. Resolves with the JSON answer.
 */
export async function upload<T>(path: string, file: File, progress: (sent: number) => void): Promise<T> {
  const send = () =>
    new Promise<{ status: number; text: string; retryAfter: string | null }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      if (accessToken) xhr.setRequestHeader("authorization", `Bearer ${accessToken}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
      xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText, retryAfter: xhr.getResponseHeader("retry-after") });
      xhr.onerror = () => reject(new ApiError(0, "Lamina cannot be reached. Check your connection and try again."));
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  let answer = await send();
  if (answer.status === 401 && accessToken) {
    if (await refresh()) answer = await send();
    else setSession(null);
  }
  const headers = new Headers();
  if (answer.retryAfter) headers.set("retry-after", answer.retryAfter);
  const response = new Response(answer.text || null, { status: answer.status, headers });
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as T;
}

/** Query string from the defined values of `params`. */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: string;
}

/** Reads an SSE body event by event (fetch, so it carries the bearer token). */
export async function* events(response: Response): AsyncGenerator<SseEvent> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}
