// A conversation's documents: upload with progress (into the
// conversation's own collection), each document's processing status
// (polled until it settles), the user's other collections to answer from,
// and the citations under answers, which open the passage they cite.

import { useEffect, useRef, useState } from "preact/hooks";
import { api, query, upload } from "../api";
import type { Collection, KnowledgeDocument, Page, Source } from "../types";
import { ErrorMessage, toast, useLoad } from "../ui";

interface Knowledge {
  collectionIds: string[];
  ownCollectionId: string | null;
  topK: number;
  minScore: number | null;
}

/** How often a pending or processing document is looked at again. */
const POLL_MS = 1000;
/** The service's limit (`knowledge_max_file_size`'s default), checked before sending. */
const MAX_FILE = 10 << 20;
let nextUpload = 0;

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1 << 20) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

export function Documents({ conversationId }: { conversationId: string }) {
  const [documents, error, reload] = useLoad(
    () => api<Page<KnowledgeDocument>>("GET", `/api/conversations/${conversationId}/documents${query({ pageSize: 100 })}`),
    [conversationId],
  );
  const [knowledge, , reloadKnowledge] = useLoad(() => api<Knowledge>("GET", `/api/conversations/${conversationId}/knowledge`), [conversationId]);
  const [collections] = useLoad(() => api<Page<Collection>>("GET", `/api/knowledge${query({ pageSize: 100 })}`), []);
  const [uploads, setUploads] = useState<{ id: number; name: string; sent: number }[]>([]);
  const [uploadError, setUploadError] = useState<unknown>();
  const [attaching, setAttaching] = useState(false);
  /** Cleared when the panel goes: the remaining files are not sent. */
  const shown = useRef(true);
  useEffect(() => () => void (shown.current = false), []);

  const settling = documents?.items.some((d) => d.status === "pending" || d.status === "processing");
  useEffect(() => {
    if (!settling && uploads.length === 0 && !error) return;
    const timer = setTimeout(reload, POLL_MS);
    return () => clearTimeout(timer);
  }, [documents, error, settling, uploads.length]);

  const add = async (files: File[]) => {
    setUploadError(undefined);
    for (const file of files) {
      if (!shown.current) return;
      if (file.size > MAX_FILE) {
        setUploadError(new Error(`${file.name} is larger than 10 MiB.`));
        continue;
      }
      const id = nextUpload++;
      setUploads((u) => [...u, { id, name: file.name, sent: 0 }]);
      try {
        await upload(`/api/conversations/${conversationId}/documents`, file, (sent) =>
          setUploads((u) => u.map((x) => (x.id === id ? { ...x, sent } : x))),
        );
      } catch (e) {
        setUploadError(e);
      } finally {
        setUploads((u) => u.filter((x) => x.id !== id));
        reload();
      }
    }
  };

  const remove = async (d: KnowledgeDocument) => {
    await api("DELETE", `/api/knowledge/${d.collectionId}/documents/${d.id}`).then(reload, (e) => toast(e.message));
  };

  /** One change at a time (the checkboxes wait), keeping the other settings. */
  const attach = async (id: string, on: boolean) => {
    if (!knowledge || attaching) return;
    const ids = on ? [...knowledge.collectionIds, id] : knowledge.collectionIds.filter((x) => x !== id);
    setAttaching(true);
    await api("PUT", `/api/conversations/${conversationId}/knowledge`, {
      collectionIds: ids,
      topK: knowledge.topK,
      minScore: knowledge.minScore,
    }).catch((e) => toast(e.message));
    reloadKnowledge();
    setAttaching(false);
  };

  const shared = collections?.items.filter((c) => !c.conversationId) ?? [];
  return (
    <section class="documents card" aria-label="Documents">
      <h2>Documents</h2>
      <p class="muted small">Answers in this conversation draw on these files and cite them as [1], [2]… PDF, DOCX, Markdown, text, HTML or CSV, up to 10 MiB each.</p>
      <label class="upload">
        <span>Add files</span>
        <input
          type="file"
          multiple
          accept=".pdf,.docx,.md,.markdown,.txt,.html,.htm,.csv"
          onChange={(e) => {
            const input = e.currentTarget;
            const files = Array.from(input.files ?? []);
            input.value = ""; // the same file can be picked again
            void add(files);
          }}
        />
      </label>
      {uploads.map((u) => (
        <p key={u.id} class="small">
          Uploading {u.name} <progress max={1} value={u.sent} aria-label={`Uploading ${u.name}`} />
        </p>
      ))}
      <ErrorMessage error={uploadError ?? error} />
      {documents && documents.items.length > 0 && (
        <ul class="document-list" aria-live="polite">
          {documents.items.map((d) => (
            <li key={d.id}>
              <span class="name">{d.name}</span>
              <span class={`status ${d.status}`} title={d.error ?? undefined}>
                {d.status === "ready" ? `ready · ${d.chunkCount} ${d.chunkCount === 1 ? "passage" : "passages"}` : d.status === "failed" ? `failed: ${d.error}` : `${d.status}…`}
              </span>
              <span class="muted small">{size(d.size)}</span>
              <button type="button" class="ghost small" aria-label={`Delete ${d.name}`} onClick={() => remove(d)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {shared.length > 0 && knowledge && (
        <fieldset>
          <legend>Also answer from</legend>
          {shared.map((c) => (
            <label key={c.id} class="check">
              <input
                type="checkbox"
                checked={knowledge.collectionIds.includes(c.id)}
                disabled={attaching}
                onChange={(e) => attach(c.id, (e.target as HTMLInputElement).checked)}
              />
              {c.name} <span class="muted small">({c.readyCount} ready)</span>
            </label>
          ))}
        </fieldset>
      )}
    </section>
  );
}

interface Chunk {
  content: string;
  page?: number | null;
  heading?: string | null;
}

/** The numbered sources under an answer; each opens the passage it cites. */
export function Sources({ sources }: { sources: Source[] }) {
  const [open, setOpen] = useState<Source | null>(null);
  const [chunk, setChunk] = useState<Chunk | null>(null);
  const [error, setError] = useState<unknown>();
  /** The passage last asked for: a slower answer for an earlier one is dropped. */
  const wanted = useRef<string | null>(null);
  const show = async (s: Source) => {
    if (open?.chunkId === s.chunkId) {
      wanted.current = null;
      return setOpen(null);
    }
    wanted.current = s.chunkId;
    setOpen(s);
    setChunk(null);
    setError(undefined);
    try {
      const passage = await api<Chunk>("GET", `/api/knowledge/${s.collectionId}/documents/${s.documentId}/chunks/${s.index}`);
      if (wanted.current === s.chunkId) setChunk(passage);
    } catch (e) {
      if (wanted.current === s.chunkId) setError(e);
    }
  };
  return (
    <div class="sources">
      <ol aria-label="Sources">
        {sources.map((s) => (
          <li key={s.chunkId}>
            <button type="button" class="source ghost small" aria-expanded={open?.chunkId === s.chunkId} title={s.snippet} onClick={() => show(s)}>
              [{s.n}] {s.documentName}
              {s.page ? ` · p. ${s.page}` : ""}
            </button>
          </li>
        ))}
      </ol>
      {open && (
        <blockquote class="passage" aria-label={`Source ${open.n}`}>
          <p class="muted small">
            [{open.n}] {open.documentName}
            {open.page ? `, page ${open.page}` : ""}
            {open.heading ? ` — ${open.heading}` : ""}
          </p>
          <ErrorMessage error={error} />
          <p class="plain">{chunk ? chunk.content : error ? "" : "…"}</p>
        </blockquote>
      )}
    </div>
  );
}
