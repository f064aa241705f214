// Administration (Admins only; the API checks the role again): accounts,
// installed models with live install progress, the catalogue's tags, the
// audit log and usage.

import { useRoute } from "preact-iso";
import { useState } from "preact/hooks";
import { api, errorFrom, events, query, request } from "../api";
import type { ModelCard, Page as Paged } from "../types";
import { Choice, ErrorMessage, Page, Table, formatDate, toast, useLoad } from "../ui";
import { type BudgetStatus, BudgetLine } from "./account";
import { UsageChart, type UsageRow } from "./usage";

const SECTIONS: [string, string][] = [
  ["users", "Users"],
  ["models", "Models"],
  ["tags", "Catalogue tags"],
  ["audit", "Audit log"],
  ["usage", "Usage"],
];

export function Admin() {
  const { params } = useRoute();
  const section = (params.section || "users").split("/")[0];
  return (
    <Page title="Administration">
      <nav class="tabs" aria-label="Administration">
        {SECTIONS.map(([key, label]) => (
          <a key={key} href={`/admin/${key}`} aria-current={section === key ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {section === "users" && <Users />}
      {section === "models" && <Models />}
      {section === "tags" && <Tags />}
      {section === "audit" && <Audit />}
      {section === "usage" && <Usage />}
    </Page>
  );
}

interface AdminUser {
  id: string;
  username: string;
  email: string;
  roles: string[];
  status: string;
  lockedUntil: string | null;
}

function Users() {
  const [filters, setFilters] = useState({ q: "", status: "", role: "" });
  const [page, setPage] = useState(1);
  const [users, error, reload] = useLoad(
    () => api<Paged<AdminUser>>("GET", `/api/admin/users${query({ ...filters, page, pageSize: 25 })}`),
    [JSON.stringify(filters), page],
  );
  const [limitsFor, setLimitsFor] = useState<string | null>(null);
  const act = (user: AdminUser, method: string, path: string, body?: unknown) =>
    api(method, `/api/admin/users/${user.id}${path}`, body).then(reload, (e) => toast(e.message));
  return (
    <section aria-label="Users">
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <div class="field grow">
          <label for="user-q">Name or email</label>
          <input id="user-q" type="search" onInput={(e) => (setPage(1), setFilters((f) => ({ ...f, q: (e.target as HTMLInputElement).value })))} />
        </div>
        <Choice
          label="Status"
          id="user-status"
          value={filters.status}
          options={[["", "Any"], ...["active", "locked", "deactivated", "deleted"].map((v): [string, string] => [v, v])]}
          onChange={(status) => (setPage(1), setFilters((f) => ({ ...f, status })))}
        />
        <div class="field">
          <label for="user-role">Role</label>
          <input id="user-role" onChange={(e) => setFilters((f) => ({ ...f, role: (e.target as HTMLInputElement).value }))} />
        </div>
      </form>
      <ErrorMessage error={error} />
      <Table headings={["User", "Roles", "Status", "Actions"]}>
        {users?.items.map((u) => (
          <tr key={u.id} class="user-row">
            <td>
              <strong>{u.username}</strong>
              <br />
              <span class="muted small">{u.email}</span>
            </td>
            <td>{u.roles.join(", ")}</td>
            <td>
              {u.status}
              {u.lockedUntil ? ` until ${formatDate(u.lockedUntil)}` : ""}
            </td>
            <td>
              <div class="actions">
              {u.roles.includes("Admin") ? (
                <button type="button" class="small" onClick={() => act(u, "DELETE", "/roles/Admin")}>
                  Remove Admin
                </button>
              ) : (
                <button type="button" class="small" onClick={() => act(u, "POST", "/roles/Admin")}>
                  Make Admin
                </button>
              )}
              {u.status === "locked" ? (
                <button type="button" class="small" onClick={() => act(u, "POST", "/unlock")}>
                  Unlock
                </button>
              ) : (
                <button
                  type="button"
                  class="small"
                  onClick={() => {
                    const minutes = Number(prompt("Lock for how many minutes?", "60"));
                    if (minutes > 0) act(u, "POST", "/lock", { minutes });
                  }}
                >
                  Lock
                </button>
              )}
              {u.status === "deactivated" ? (
                <button type="button" class="small" onClick={() => act(u, "POST", "/activate")}>
                  Activate
                </button>
              ) : (
                <button type="button" class="small" onClick={() => act(u, "POST", "/deactivate")}>
                  Deactivate
                </button>
              )}
              <button type="button" class="small" aria-expanded={limitsFor === u.id} onClick={() => setLimitsFor(limitsFor === u.id ? null : u.id)}>
                Limits
              </button>
              {u.status === "deleted" ? (
                <>
                  <button type="button" class="small" onClick={() => act(u, "POST", "/restore")}>
                    Restore
                  </button>
                  <button type="button" class="small danger" onClick={() => confirm(`Erase ${u.username} and all their data for good?`) && act(u, "DELETE", "?hard=true")}>
                    Erase
                  </button>
                </>
              ) : (
                <button type="button" class="small danger" onClick={() => act(u, "DELETE", "")}>
                  Delete
                </button>
              )}
              </div>
            </td>
          </tr>
        ))}
      </Table>
      {users && <Pager page={page} total={users.total} pageSize={users.pageSize} setPage={setPage} />}
      {limitsFor && <UserLimits key={limitsFor} id={limitsFor} />}
    </section>
  );
}

interface UserDetail extends AdminUser {
  budget: BudgetStatus | null;
  models: string[] | null;
}

/** One account's token budget and model list (the host enforces both). */
function UserLimits({ id }: { id: string }) {
  const [user, error, reload] = useLoad(() => api<UserDetail>("GET", `/api/admin/users/${id}`), [id]);
  const run = (promise: Promise<unknown>) => promise.then(reload, (e) => toast(e.message));
  if (!user) return <ErrorMessage error={error} />;
  return (
    <section class="card" aria-label={`Limits of ${user.username}`}>
      <h2>Limits of {user.username}</h2>
      <BudgetLine label="Budget" budget={user.budget} />
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.target as HTMLFormElement);
          run(api("PUT", `/api/admin/users/${id}/budget`, { tokens: Number(form.get("tokens")), period: form.get("period") }));
        }}
      >
        <div class="field">
          <label for="budget-tokens">Tokens</label>
          <input id="budget-tokens" name="tokens" type="number" min="1" required value={user.budget?.tokens} />
        </div>
        <div class="field">
          <label for="budget-period">Per</label>
          <select id="budget-period" name="period" value={user.budget?.period ?? "day"}>
            <option value="day">day</option>
            <option value="week">week</option>
            <option value="month">month</option>
          </select>
        </div>
        <button type="submit" class="primary">
          Set budget
        </button>
        {user.budget && (
          <button type="button" onClick={() => run(api("DELETE", `/api/admin/users/${id}/budget`))}>
            Remove budget
          </button>
        )}
      </form>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          const text = new FormData(e.target as HTMLFormElement).get("models") as string;
          const models = text.split(",").map((m) => m.trim()).filter(Boolean);
          run(models.length ? api("PUT", `/api/admin/users/${id}/models`, { models }) : api("DELETE", `/api/admin/users/${id}/models`));
        }}
      >
        <div class="field grow">
          <label for="user-models">Models this account may use (comma-separated; * for all; empty: its roles' lists)</label>
          <input id="user-models" name="models" value={(user.models ?? []).join(", ")} />
        </div>
        <button type="submit" class="primary">
          Set models
        </button>
        {user.models && (
          <button type="button" onClick={() => run(api("DELETE", `/api/admin/users/${id}/models`))}>
            Use role lists
          </button>
        )}
      </form>
    </section>
  );
}

function Pager({ page, total, pageSize, setPage }: { page: number; total: number; pageSize: number; setPage: (p: number) => void }) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" class="small" disabled={page <= 1} onClick={() => setPage(page - 1)}>
        Previous
      </button>
      <span>
        Page {page} of {pages} ({total})
      </span>
      <button type="button" class="small" disabled={page >= pages} onClick={() => setPage(page + 1)}>
        Next
      </button>
    </nav>
  );
}

interface Install {
  id: string;
  name: string;
  state: string;
  completed: number;
  total: number | null;
  error: string | null;
}

function Models() {
  const [installed, error, reload] = useLoad(
    () => api<{ items: { name: string; catalogued: boolean; loaded: boolean; store: { size: number } }[] }>("GET", "/api/admin/models"),
    [],
  );
  const [catalogue] = useLoad(() => api<Paged<ModelCard>>("GET", "/api/explore/models?pageSize=100"), []);
  const [install, setInstall] = useState<Install | null>(null);
  const [installError, setInstallError] = useState<unknown>();

  const start = async (name: string, source: string) => {
    setInstallError(undefined);
    try {
      const record = await api<Install>("POST", `/api/admin/models/${encodeURIComponent(name)}/install`, source ? { source } : {});
      setInstall(record);
      const response = await request("GET", `/api/admin/pulls/${record.id}/events`);
      if (!response.ok) throw await errorFrom(response);
      for await (const event of events(response)) {
        if (event.event === "error") throw new Error(JSON.parse(event.data).detail);
        setInstall(JSON.parse(event.data) as Install);
      }
    } catch (e) {
      setInstallError(e);
    }
    reload();
  };

  return (
    <section aria-label="Models">
      <h2>Installed</h2>
      <ErrorMessage error={error} />
      <Table headings={["Model", "Size", "State", "Actions"]}>
        {installed?.items.map((m) => (
          <tr key={m.name}>
            <td>{m.name}</td>
            <td>{(m.store.size / 1e6).toFixed(0)} MB</td>
            <td>
              {m.loaded ? "loaded" : "idle"}
              {m.catalogued ? "" : " · not catalogued"}
            </td>
            <td>
              <button
                type="button"
                class="small danger"
                onClick={() => confirm(`Remove ${m.name}'s files?`) && api("DELETE", `/api/admin/models/${encodeURIComponent(m.name)}/files`).then(reload, (e) => toast(e.message))}
              >
                Remove files
              </button>
            </td>
          </tr>
        ))}
      </Table>
      <h2>Install</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.target as HTMLFormElement);
          void start(form.get("name") as string, (form.get("source") as string).trim());
        }}
      >
        <div class="field">
          <label for="install-name">Catalogue entry</label>
          <select id="install-name" name="name">
            {catalogue?.items
              .filter((m) => !m.installed)
              .map((m) => (
                <option key={m.name}>{m.name}</option>
              ))}
          </select>
        </div>
        <div class="field grow">
          <label for="install-source">Source URL (optional: the entry's own otherwise)</label>
          <input id="install-source" name="source" type="url" />
        </div>
        <button type="submit" class="primary">
          Install
        </button>
      </form>
      <ErrorMessage error={installError} />
      {install && (
        <div class="install" aria-live="polite">
          <label for="install-progress">
            {install.name}: {install.state}
            {install.error ? ` (${install.error})` : ""}
          </label>
          <progress id="install-progress" value={install.completed} max={install.total ?? undefined} />
          <span class="muted small">
            {(install.completed / 1e6).toFixed(1)} MB{install.total ? ` of ${(install.total / 1e6).toFixed(1)} MB` : ""}
          </span>
        </div>
      )}
    </section>
  );
}

interface Tag {
  id: string;
  name: string;
  models: number;
}

function Tags() {
  const [tags, error, reload] = useLoad(() => api<{ items: Tag[] }>("GET", "/api/admin/tags"), []);
  const [catalogue, , reloadCatalogue] = useLoad(() => api<Paged<ModelCard>>("GET", "/api/explore/models?pageSize=100"), []);
  const run = (promise: Promise<unknown>) => promise.then(() => (reload(), reloadCatalogue()), (e) => toast(e.message));
  return (
    <section aria-label="Catalogue tags">
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.target as HTMLFormElement;
          run(api("POST", "/api/admin/tags", { name: new FormData(form).get("tag") })).then(() => form.reset());
        }}
      >
        <div class="field">
          <label for="new-tag">New tag</label>
          <input id="new-tag" name="tag" required maxLength={50} />
        </div>
        <button type="submit" class="primary">
          Add tag
        </button>
      </form>
      <ErrorMessage error={error} />
      <ul class="chips">
        {tags?.items.map((t) => (
          <li class="chip" key={t.id}>
            {t.name} ({t.models})
            <button type="button" class="ghost small" aria-label={`Rename tag ${t.name}`} onClick={() => {
              const name = prompt("New name", t.name);
              if (name) run(api("PATCH", `/api/admin/tags/${t.id}`, { name }));
            }}>
              ✎
            </button>
            <button type="button" class="ghost small" aria-label={`Delete tag ${t.name}`} onClick={() => run(api("DELETE", `/api/admin/tags/${t.id}`))}>
              ×
            </button>
          </li>
        ))}
      </ul>
      <h2>Entries</h2>
      <Table headings={["Model", "Tags", "Add a tag"]}>
        {catalogue?.items.map((m) => (
          <tr key={m.name}>
            <td>{m.name}</td>
            <td>
              {(m.tags ?? []).map((t) => (
                <span class="chip" key={t}>
                  {t}
                  <button type="button" class="ghost small" aria-label={`Remove ${t} from ${m.name}`} onClick={() => run(api("DELETE", `/api/admin/models/${encodeURIComponent(m.name)}/tags/${encodeURIComponent(t)}`))}>
                    ×
                  </button>
                </span>
              ))}
            </td>
            <td>
              <label class="visually-hidden" for={`tag-${m.name}`}>
                Tag for {m.name}
              </label>
              <select
                id={`tag-${m.name}`}
                onChange={(e) => {
                  const tag = (e.target as HTMLSelectElement).value;
                  if (tag) run(api("POST", `/api/admin/models/${encodeURIComponent(m.name)}/tags`, { tags: [tag] }));
                }}
              >
                <option value="">—</option>
                {tags?.items
                  .filter((t) => !(m.tags ?? []).includes(t.name))
                  .map((t) => (
                    <option key={t.id}>{t.name}</option>
                  ))}
              </select>
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

interface AuditEntry {
  id: string;
  at: string;
  action: string;
  actor: string | null;
  target: string | null;
  outcome: string;
  client: string | null;
  detail: Record<string, unknown>;
}

function Audit() {
  const [filters, setFilters] = useState({ action: "", actor: "", target: "", outcome: "", from: "", to: "" });
  const [page, setPage] = useState(1);
  const params = {
    ...filters,
    from: filters.from ? new Date(filters.from).toISOString() : "",
    to: filters.to ? new Date(filters.to).toISOString() : "",
  };
  const [entries, error] = useLoad(() => api<Paged<AuditEntry>>("GET", `/api/admin/audit${query({ ...params, page, pageSize: 50 })}`), [JSON.stringify(filters), page]);
  const set = (key: keyof typeof filters) => (e: Event) => (setPage(1), setFilters((f) => ({ ...f, [key]: (e.target as HTMLInputElement).value })));
  return (
    <section aria-label="Audit log">
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <div class="field">
          <label for="audit-action">Action (prefix*)</label>
          <input id="audit-action" placeholder="admin.user.*" onChange={set("action")} />
        </div>
        <div class="field">
          <label for="audit-actor">Actor id</label>
          <input id="audit-actor" onChange={set("actor")} />
        </div>
        <div class="field">
          <label for="audit-target">Target id</label>
          <input id="audit-target" onChange={set("target")} />
        </div>
        <Choice
          label="Outcome"
          id="audit-outcome"
          value={filters.outcome}
          options={[["", "Any"], ["success", "success"], ["failure", "failure"]]}
          onChange={(outcome) => (setPage(1), setFilters((f) => ({ ...f, outcome })))}
        />
        <div class="field">
          <label for="audit-from">From</label>
          <input id="audit-from" type="datetime-local" onChange={set("from")} />
        </div>
        <div class="field">
          <label for="audit-to">To</label>
          <input id="audit-to" type="datetime-local" onChange={set("to")} />
        </div>
      </form>
      <ErrorMessage error={error} />
      <Table headings={["When", "Action", "Actor", "Target", "Outcome", "Detail"]}>
        {entries?.items.map((a) => (
          <tr key={a.id} class="audit-row">
            <td>{formatDate(a.at)}</td>
            <td>{a.action}</td>
            <td class="small">{a.actor ?? "—"}</td>
            <td class="small">{a.target ?? "—"}</td>
            <td>{a.outcome}</td>
            <td class="small">
              <code>{JSON.stringify(a.detail)}</code>
            </td>
          </tr>
        ))}
      </Table>
      {entries && <Pager page={page} total={entries.total} pageSize={entries.pageSize} setPage={setPage} />}
    </section>
  );
}

function Usage() {
  const [groupBy, setGroupBy] = useState("day");
  const [usage, error] = useLoad(() => api<{ items: UsageRow[] }>("GET", `/api/admin/usage${query({ groupBy })}`), [groupBy]);
  return (
    <section aria-label="Usage">
      <Choice
        label="Tokens per"
        id="group-by"
        value={groupBy}
        options={[["day", "Day"], ["model", "Model"], ["user", "User"], ["key", "API key"]]}
        onChange={setGroupBy}
      />
      <ErrorMessage error={error} />
      {usage && <UsageChart rows={usage.items.map((r) => ({ ...r, model: groupBy === "day" ? "all models" : null }))} />}
      <Table headings={[groupBy, "Generations", "Tokens"]}>
        {usage?.items.map((r) => (
          <tr key={r.key}>
            <td>{r.key}</td>
            <td>{r.requests}</td>
            <td>{r.totalTokens}</td>
          </tr>
        ))}
      </Table>
    </section>
  );
}
