// Small shared pieces: error messages, toasts with undo, a hook for
// loading data, and form fields with labels.

import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";

/** An error as a readable, announced message (nothing for null). */
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <p class="error" role="alert">
      {message}
    </p>
  );
}

/** Loads something, reloads on demand: `[value, error, reload]`. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): [T | undefined, unknown, () => void] {
  const [value, setValue] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (v) => live && (setValue(() => v), setError(undefined)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return [value, error, useCallback(() => setTick((t) => t + 1), [])];
}

/** Runs an action, keeping its pending state and error for the form that started it. */
export function useAction(): [boolean, unknown, (run: () => Promise<unknown>) => Promise<boolean>] {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>();
  const act = useCallback(async (run: () => Promise<unknown>) => {
    setPending(true);
    setError(undefined);
    try {
      await run();
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setPending(false);
    }
  }, []);
  return [pending, error, act];
}

/** A labelled input. */
export function Field(props: {
  label: string;
  name: string;
  type?: string;
  value?: string;
  required?: boolean;
  autocomplete?: string;
  minLength?: number;
  onInput?: (value: string) => void;
}) {
  const id = `field-${props.name}`;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <input
        id={id}
        name={props.name}
        type={(props.type ?? "text") as "text"}
        value={props.value}
        required={props.required}
        autocomplete={props.autocomplete}
        minLength={props.minLength}
        onInput={(e) => props.onInput?.((e.target as HTMLInputElement).value)}
      />
    </div>
  );
}

interface Toast {
  id: number;
  text: string;
  undo?: () => void;
}

let toastId = 0;
let pushToast: (toast: Toast) => void = () => {};

/** Shows a short message, with an Undo button when `undo` is given. */
export function toast(text: string, undo?: () => void) {
  pushToast({ id: ++toastId, text, undo });
}

/** The page's toasts, announced politely. */
export function Toasts() {
  const [toasts, setToasts] = useState<Toast[]>([]);
  useEffect(() => {
    pushToast = (t) => {
      setToasts((all) => [...all, t]);
      setTimeout(() => setToasts((all) => all.filter((x) => x.id !== t.id)), t.undo ? 8000 : 4000);
    };
  }, []);
  return (
    <div class="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div class="toast" key={t.id}>
          <span>{t.text}</span>
          {t.undo && (
            <button
              type="button"
              onClick={() => {
                t.undo!();
                setToasts((all) => all.filter((x) => x.id !== t.id));
              }}
            >
              Undo
            </button>
          )}
        </div>
      ))}
    </div>
  );
}

/** A simple page frame with a heading. */
export function Page({ title, children }: { title: string; children: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · Lamina`;
  }, [title]);
  return (
    <main class="page" id="main" tabIndex={-1}>
      <h1>{title}</h1>
      {children}
    </main>
  );
}

/** Whether an error means "not signed in". */
export const isUnauthorized = (e: unknown) => e instanceof ApiError && e.status === 401;

/** Dates in the reader's locale. */
export const formatDate = (value?: string | number | null) =>
  value ? new Date(value).toLocaleString() : "—";

/** A labelled `<select>`; `options` are `[value, text]` pairs. */
export function Choice(props: {
  label: string;
  id: string;
  value?: string;
  options: [string, string][];
  onChange: (value: string) => void;
}) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <select id={props.id} value={props.value} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}>
        {props.options.map(([value, text]) => (
          <option key={value} value={value}>
            {text}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A table with column headings; `children` are its rows. */
export function Table({ headings, caption, children }: { headings: ComponentChildren[]; caption?: string; children: ComponentChildren }) {
  return (
    <table>
      {caption && <caption class="visually-hidden">{caption}</caption>}
      <thead>
        <tr>
          {headings.map((heading, i) => (
            <th scope="col" key={i}>
              {heading}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
