// The account: profile, password, API keys (the new key shown once) and
// the caller's own usage and token budgets.

import { useEffect, useState } from "preact/hooks";
import { type User, api, errorFrom, onSession, request, sessionUser, startSession, updateUser } from "../api";
import { ErrorMessage, Field, Page, Table, formatDate, toast, useAction, useLoad } from "../ui";
import { UsageTable, type UsageRow } from "./usage";

interface ApiKey {
  id: string;
  prefix: string;
  name: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

export interface BudgetStatus {
  tokens: number;
  period: string;
  used?: number;
  remaining?: number;
  resetsAt?: string;
  [key: string]: unknown;
}

export function Account() {
  return (
    <Page title="Account">
      <Profile />
      <Password />
      <ApiKeys />
      <Usage />
      <YourData />
    </Page>
  );
}

function Profile() {
  const [user, setUser] = useState(sessionUser()!);
  useEffect(() => onSession((u) => u && setUser(u)), []);
  const [form, setForm] = useState({ username: user.username, email: user.email, currentPassword: "" });
  const [pending, error, act] = useAction();
  return (
    <section class="card" aria-labelledby="profile-title">
      <h2 id="profile-title">Profile</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            const body: Record<string, string> = {};
            if (form.username !== user.username) body.username = form.username;
            if (form.email !== user.email) {
              body.email = form.email;
              body.currentPassword = form.currentPassword;
            }
            if (Object.keys(body).length === 0) return;
            updateUser(await api<User>("PATCH", "/api/auth/me", body));
            toast(body.email ? "Saved. Confirm the new address from the mail we sent." : "Profile saved");
          });
        }}
      >
        <Field label="Username" name="username" value={form.username} required onInput={(username) => setForm((f) => ({ ...f, username }))} />
        <Field label="Email" name="email" type="email" value={form.email} required onInput={(email) => setForm((f) => ({ ...f, email }))} />
        {form.email !== user.email && (
          <Field label="Current password (to change the email)" name="profilePassword" type="password" autocomplete="current-password" onInput={(currentPassword) => setForm((f) => ({ ...f, currentPassword }))} />
        )}
        <p class="muted small">Roles: {user.roles.join(", ")}</p>
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={pending}>
          Save profile
        </button>
      </form>
    </section>
  );
}

function Password() {
  const [form, setForm] = useState({ currentPassword: "", newPassword: "" });
  const [pending, error, act] = useAction();
  return (
    <section class="card" aria-labelledby="password-title">
      <h2 id="password-title">Password</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            // Every other session ends; this one continues on the new pair.
            await startSession(await api("POST", "/api/auth/me/password", form));
            (e.target as HTMLFormElement).reset();
            toast("Password changed; other sessions were signed out");
          });
        }}
      >
        <Field label="Current password" name="currentPassword" type="password" required autocomplete="current-password" onInput={(v) => setForm((f) => ({ ...f, currentPassword: v }))} />
        <Field label="New password" name="newPassword" type="password" required minLength={8} autocomplete="new-password" onInput={(v) => setForm((f) => ({ ...f, newPassword: v }))} />
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={pending}>
          Change password
        </button>
      </form>
    </section>
  );
}

function ApiKeys() {
  const [keys, loadError, reload] = useLoad(() => api<ApiKey[]>("GET", "/api/auth/api-keys"), []);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<string | null>(null);
  const [pending, error, act] = useAction();
  return (
    <section class="card" aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <p class="muted small">For Ollama and OpenAI clients: base URL {location.origin}, the key as the bearer token.</p>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            const answer = await api<ApiKey & { key: string }>("POST", "/api/auth/api-keys", { name });
            setCreated(answer.key);
            reload();
          });
        }}
      >
        <Field label="Key name" name="keyName" required onInput={setName} />
        <button type="submit" class="primary" disabled={pending}>
          Create key
        </button>
      </form>
      <ErrorMessage error={error ?? loadError} />
      {created && (
        <div class="new-key" role="status">
          <p>Your new key. Copy it now: it is not shown again.</p>
          <code id="new-key">{created}</code>
          <button type="button" class="small" onClick={() => navigator.clipboard.writeText(created).then(() => toast("Key copied"), () => toast("Copy failed; select the key and copy it"))}>
            Copy
          </button>
          <button type="button" class="small ghost" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      <Table headings={["Name", "Key", "Created", "Last used", "State", <span class="visually-hidden">Actions</span>]} caption="Your API keys">
        {keys?.map((k) => (
          <tr key={k.id} class="api-key">
            <td>{k.name}</td>
            <td>
              <code>{k.prefix}…</code>
            </td>
            <td>{formatDate(k.createdAt)}</td>
            <td>{formatDate(k.lastUsedAt)}</td>
            <td>{k.revokedAt ? "revoked" : k.expiresAt && Date.parse(k.expiresAt) < Date.now() ? "expired" : "active"}</td>
            <td>
              {!k.revokedAt && (
                <button
                  type="button"
                  class="small danger"
                  aria-label={`Revoke ${k.name}`}
                  onClick={() => api("DELETE", `/api/auth/api-keys/${k.id}`).then(reload, (e) => toast(e.message))}
                >
                  Revoke
                </button>
              )}
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

export function BudgetLine({ label, budget }: { label: string; budget?: BudgetStatus | null }) {
  if (!budget) return null;
  return (
    <p>
      {label}: {budget.remaining ?? "?"} of {budget.tokens} tokens left this {budget.period}
      {budget.resetsAt ? `, resets ${formatDate(budget.resetsAt)}` : ""}
    </p>
  );
}

function Usage() {
  const [usage, error] = useLoad(
    () =>
      api<{ items: UsageRow[]; totals: UsageRow; budgets: { user?: BudgetStatus; apiKey?: BudgetStatus } }>("GET", "/api/usage/me"),
    [],
  );
  return (
    <section class="card" aria-labelledby="usage-title">
      <h2 id="usage-title">Usage, last 30 days</h2>
      <ErrorMessage error={error} />
      {usage && (
        <>
          <p>
            {usage.totals.requests} generations, {usage.totals.totalTokens} tokens
          </p>
          <BudgetLine label="Your budget" budget={usage.budgets.user} />
          {!usage.budgets.user && <p class="muted small">No token budget is set for you.</p>}
          <UsageTable rows={usage.items} />
        </>
      )}
    </section>
  );
}

/** Export every conversation (NDJSON), import Lamina's or Open WebUI's exports. */
function YourData() {
  const [pending, error, act] = useAction();
  const [result, setResult] = useState<string | null>(null);
  return (
    <section class="card" aria-labelledby="data-title">
      <h2 id="data-title">Your conversations</h2>
      <div class="row">
        <button
          type="button"
          disabled={pending}
          onClick={() =>
            act(async () => {
              const response = await request("GET", "/api/conversations/export");
              if (!response.ok) throw await errorFrom(response);
              const link = document.createElement("a");
              link.href = URL.createObjectURL(await response.blob());
              link.download = "lamina-conversations.ndjson";
              link.click();
              setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
            })
          }
        >
          Export all
        </button>
        <div class="field">
          <label for="import-file">Import (Lamina NDJSON or Open WebUI JSON)</label>
          <input
            id="import-file"
            type="file"
            accept=".json,.ndjson,application/json"
            disabled={pending}
            onChange={(e) => {
              const input = e.target as HTMLInputElement;
              const file = input.files?.[0];
              if (!file) return;
              act(async () => {
                const type = file.name.endsWith(".ndjson") ? "application/x-ndjson" : "application/json";
                const answer = await api<{ imported: string[]; failed: { index: number; detail: string }[] }>(
                  "POST",
                  "/api/conversations/import",
                  new Blob([file], { type }),
                );
                setResult(
                  `${answer.imported.length} imported` +
                    (answer.failed.length ? `; ${answer.failed.length} failed: ${answer.failed.map((f) => `#${f.index} ${f.detail}`).join("; ")}` : ""),
                );
                input.value = "";
              });
            }}
          />
        </div>
      </div>
      {result && <p role="status">{result}</p>}
      <ErrorMessage error={error} />
    </section>
  );
}
