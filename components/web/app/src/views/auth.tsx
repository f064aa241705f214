// Signing in and everything around it: register, log in, forgotten and
// reset passwords, email confirmation (the links the auth service mails).

import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api, startSession } from "../api";
import { ErrorMessage, Field, Page, useAction } from "../ui";

interface TokenAnswer {
  accessToken?: string;
  expiresAt?: string;
}

export function Login() {
  const { route } = useLocation();
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [pending, error, act] = useAction();
  return (
    <Page title="Log in">
      <form
        class="card narrow"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            const tokens = await api<TokenAnswer>("POST", "/api/auth/login", { login, password });
            await startSession(tokens as { accessToken: string });
            route("/");
          });
        }}
      >
        <Field label="Username or email" name="login" required autocomplete="username" onInput={setLogin} />
        <Field label="Password" name="password" type="password" required autocomplete="current-password" onInput={setPassword} />
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={pending}>
          Log in
        </button>
        <p>
          <a href="/register">Create an account</a> · <a href="/forgot-password">Forgot your password?</a>
        </p>
      </form>
    </Page>
  );
}

export function Register() {
  const { route } = useLocation();
  const [form, setForm] = useState({ username: "", email: "", password: "" });
  const [done, setDone] = useState(false);
  const [pending, error, act] = useAction();
  const set = (key: keyof typeof form) => (value: string) => setForm((f) => ({ ...f, [key]: value }));
  if (done) {
    return (
      <Page title="Check your email">
        <p class="card narrow">We sent a confirmation link to {form.email}. Open it, then log in.</p>
      </Page>
    );
  }
  return (
    <Page title="Create an account">
      <form
        class="card narrow"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            const answer = await api<TokenAnswer>("POST", "/api/auth/register", form);
            if (answer.accessToken) {
              await startSession(answer as { accessToken: string });
              route("/");
            } else {
              setDone(true); // the address must be confirmed before logging in
            }
          });
        }}
      >
        <Field label="Username" name="username" required autocomplete="username" onInput={set("username")} />
        <Field label="Email" name="email" type="email" required autocomplete="email" onInput={set("email")} />
        <Field label="Password" name="password" type="password" required minLength={8} autocomplete="new-password" onInput={set("password")} />
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={pending}>
          Create account
        </button>
        <p>
          Already have one? <a href="/login">Log in</a>
        </p>
      </form>
    </Page>
  );
}

export function ForgotPassword() {
  const [email, setEmail] = useState("");
  const [sent, setSent] = useState(false);
  const [pending, error, act] = useAction();
  return (
    <Page title="Reset your password">
      <form
        class="card narrow"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            await api("POST", "/api/auth/password/forgot", { email });
            setSent(true);
          });
        }}
      >
        {sent ? (
          <p role="status">If {email} belongs to an account, a reset link is on its way.</p>
        ) : (
          <>
            <Field label="Email" name="email" type="email" required autocomplete="email" onInput={setEmail} />
            <ErrorMessage error={error} />
            <button type="submit" class="primary" disabled={pending}>
              Send reset link
            </button>
          </>
        )}
        <p>
          <a href="/login">Back to log in</a>
        </p>
      </form>
    </Page>
  );
}

/** Opened from the mailed link `/reset-password?token=…`. */
export function ResetPassword() {
  const { query, route } = useLocation();
  const [password, setPassword] = useState("");
  const [pending, error, act] = useAction();
  return (
    <Page title="Choose a new password">
      <form
        class="card narrow"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            await api("POST", "/api/auth/password/reset", { token: query.token ?? "", newPassword: password });
            route("/login");
          });
        }}
      >
        {!query.token && <p class="error">This link has no reset token; ask for a new one.</p>}
        <Field label="New password" name="newPassword" type="password" required minLength={8} autocomplete="new-password" onInput={setPassword} />
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={pending || !query.token}>
          Set password
        </button>
      </form>
    </Page>
  );
}

/** Opened from the mailed link `/confirm-email?token=…`: confirms at once. */
export function ConfirmEmail() {
  const { query } = useLocation();
  const [state, setState] = useState<"working" | "done" | unknown>("working");
  useEffect(() => {
    api("POST", "/api/auth/email/confirm", { token: query.token ?? "" }).then(
      () => setState("done"),
      (e) => setState(e),
    );
  }, [query.token]);
  return (
    <Page title="Confirm your email">
      <div class="card narrow" aria-live="polite">
        {state === "working" && <p>Confirming…</p>}
        {state === "done" && (
          <p>
            Your address is confirmed. <a href="/login">Log in</a>
          </p>
        )}
        {state !== "working" && state !== "done" && <ErrorMessage error={state} />}
      </div>
    </Page>
  );
}
