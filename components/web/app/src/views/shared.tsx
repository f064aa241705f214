// A shared snapshot of a conversation: public, read-only.

import { useRoute } from "preact-iso";
import { api } from "../api";
import { renderMarkdown } from "../markdown";
import { ErrorMessage, Page, useLoad } from "../ui";

interface Snapshot {
  title: string;
  model: string;
  sharedAt: string;
  messages: { role: string; content: string; model: string | null }[];
}

export function Shared() {
  const { params } = useRoute();
  const [snapshot, error] = useLoad(() => api<Snapshot>("GET", `/api/shared/${encodeURIComponent(params.id)}`), [params.id]);
  return (
    <Page title={snapshot?.title ?? "Shared conversation"}>
      <ErrorMessage error={error} />
      {snapshot && (
        <section class="messages">
          <p class="muted small">
            {snapshot.model} · shared {new Date(snapshot.sharedAt).toLocaleString()}
          </p>
          {snapshot.messages.map((m, i) => (
            <article key={i} class={`message ${m.role}`}>
              <div class="who">{m.role === "user" ? "User" : (m.model ?? "assistant")}</div>
              {m.role === "assistant" ? (
                <div class="content markdown" dangerouslySetInnerHTML={{ __html: renderMarkdown(m.content) }} />
              ) : (
                <div class="content plain">{m.content}</div>
              )}
            </article>
          ))}
        </section>
      )}
    </Page>
  );
}
