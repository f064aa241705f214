// Explore: browse the model catalogue with filters and sorts, search it
// by text or meaning, and read one model's details.

import { useRoute } from "preact-iso";
import { useState } from "preact/hooks";
import { api, query } from "../api";
import type { ModelCard, Page as Paged } from "../types";
import { Choice, ErrorMessage, Page, useLoad } from "../ui";

interface Tag {
  id: string;
  name: string;
  models: number;
}

export function Explore() {
  const { params } = useRoute();
  const name = params.name ? decodeURIComponent(params.name) : "";
  return name ? <Details name={name} /> : <Catalogue />;
}

function Catalogue() {
  const [filters, setFilters] = useState({ capability: "", tag: "", installed: "", sort: "name" });
  const [search, setSearch] = useState({ q: "", mode: "hybrid" });
  const [tags] = useLoad(() => api<{ items: Tag[] }>("GET", "/api/explore/tags"), []);
  const [list, error] = useLoad(async () => {
    if (search.q.trim()) {
      return api<Paged<ModelCard & { score: number }>>("GET", `/api/explore/search${query({ q: search.q, mode: search.mode, pageSize: 50 })}`);
    }
    return api<Paged<ModelCard>>("GET", `/api/explore/models${query({ ...filters, pageSize: 100 })}`);
  }, [JSON.stringify(filters), search.q, search.mode]);
  const set = (key: keyof typeof filters) => (value: string) => setFilters((f) => ({ ...f, [key]: value }));
  return (
    <Page title="Explore models">
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <div class="field grow">
          <label for="model-search">Search</label>
          <input id="model-search" type="search" value={search.q} placeholder="e.g. small chat model" onInput={(e) => setSearch((s) => ({ ...s, q: (e.target as HTMLInputElement).value }))} />
        </div>
        <Choice
          label="Search by"
          id="mode"
          value={search.mode}
          options={[["hybrid", "Words and meaning"], ["text", "Words"], ["semantic", "Meaning"]]}
          onChange={(mode) => setSearch((s) => ({ ...s, mode }))}
        />
        <Choice
          label="Capability"
          id="capability"
          value={filters.capability}
          options={[["", "Any"], ["chat", "Chat"], ["completion", "Completion"], ["embedding", "Embedding"]]}
          onChange={set("capability")}
        />
        <Choice
          label="Tag"
          id="tag"
          value={filters.tag}
          options={[["", "Any"], ...(tags?.items ?? []).map((t): [string, string] => [t.name, `${t.name} (${t.models})`])]}
          onChange={set("tag")}
        />
        <Choice
          label="Installed"
          id="installed"
          value={filters.installed}
          options={[["", "Any"], ["true", "Installed"], ["false", "Not installed"]]}
          onChange={set("installed")}
        />
        <Choice
          label="Sort"
          id="sort"
          value={filters.sort}
          options={[["name", "Name"], ["size", "Size"], ["newest", "Newest"], ["popularity", "Most used"]]}
          onChange={set("sort")}
        />
      </form>
      {search.q.trim() && <p class="muted small">Search ignores the filters.</p>}
      <ErrorMessage error={error} />
      <ul class="cards" aria-live="polite">
        {list?.items.length === 0 && <li class="muted">No models match.</li>}
        {list?.items.map((m) => (
          <li class="card model" key={m.name}>
            <h2>
              <a href={`/explore/${encodeURIComponent(m.name)}`}>{m.title || m.name}</a>
            </h2>
            <p class="muted small">
              {m.name}
              {m.installed ? " · installed" : ""}
              {m.loaded ? " · loaded" : ""}
              {"score" in m ? ` · score ${(m.score as number).toFixed(3)}` : ""}
            </p>
            <p>{m.description}</p>
            <p class="chips">
              {[...(m.capabilities ?? []), ...(m.tags ?? [])].map((t) => (
                <span class="chip" key={t}>
                  {t}
                </span>
              ))}
            </p>
          </li>
        ))}
      </ul>
    </Page>
  );
}

const FIELDS: [string, string][] = [
  ["name", "Name"],
  ["author", "Author"],
  ["license", "Licence"],
  ["family", "Family"],
  ["parameterSize", "Parameters"],
  ["quantizationLevel", "Quantization"],
  ["contextLength", "Context length"],
  ["size", "File size (bytes)"],
  ["capabilities", "Capabilities"],
  ["languages", "Languages"],
  ["referenceLink", "Reference"],
  ["releasedAt", "Released"],
  ["uses", "Generations"],
];

function Details({ name }: { name: string }) {
  const [entry, error] = useLoad(() => api<ModelCard>("GET", `/api/explore/models/${encodeURIComponent(name)}`), [name]);
  return (
    <Page title={entry?.title || name}>
      <p>
        <a href="/explore">← All models</a>
      </p>
      <ErrorMessage error={error} />
      {entry && (
        <>
          <p>{entry.description}</p>
          <p class="muted">
            {entry.installed ? "Installed on this host" : "Not installed"}
            {entry.loaded ? ", loaded now" : ""}
          </p>
          <dl class="details">
            {FIELDS.filter(([key]) => entry[key] !== null && entry[key] !== undefined && entry[key] !== "").map(([key, label]) => (
              <div key={key}>
                <dt>{label}</dt>
                <dd>{Array.isArray(entry[key]) ? (entry[key] as string[]).join(", ") : String(entry[key])}</dd>
              </div>
            ))}
            {entry.options && Object.keys(entry.options as object).length > 0 && (
              <div>
                <dt>Recommended options</dt>
                <dd>
                  <code>{JSON.stringify(entry.options)}</code>
                </dd>
              </div>
            )}
          </dl>
        </>
      )}
    </Page>
  );
}
