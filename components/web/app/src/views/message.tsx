// One message of a conversation: its text (Markdown for answers), the
// sources an answer cites, the `< 2/3 >` switch between branches, and its
// actions: edit a question, regenerate an answer, rate it, note a selected
// range.

import { useMemo, useState } from "preact/hooks";
import { api } from "../api";
import { ThumbDown, ThumbUp } from "../icons";
import { renderMarkdown } from "../markdown";
import type { Message } from "../types";
import { toast } from "../ui";
import { Sources } from "./documents";

export interface Note {
  id: string;
  messageId: string;
  fromIndex: number;
  toIndex: number;
  content: string;
}

export function MessageView(props: {
  conversationId: string;
  message: Message;
  notes: Note[];
  busy: boolean;
  onSwitch: (siblingId: string) => void;
  onEdit: (message: Message, content: string) => void;
  onRegenerate: (message: Message) => void;
  onNoted: () => void;
}) {
  const { message: m, busy } = props;
  const [editing, setEditing] = useState(false);
  const [rating, setRating] = useState<"up" | "down" | null>(null);
  const [rateOpen, setRateOpen] = useState<"up" | "down" | null>(null);
  const [noteRange, setNoteRange] = useState<{ from: number; to: number; text: string } | null>(null);
  const html = useMemo(() => (m.role === "assistant" ? renderMarkdown(m.content) : ""), [m.content, m.role]);
  const index = m.siblings.indexOf(m.id);
  const base = `/api/conversations/${props.conversationId}/messages/${m.id}`;

  const pickSelection = () => {
    const selection = getSelection();
    const text = selection?.toString() ?? "";
    if (!text.trim()) return setNoteRange(null);
    // Offsets are in the stored text (UTF-16 units, as JavaScript counts).
    const from = m.content.indexOf(text);
    setNoteRange(from >= 0 ? { from, to: from + text.length, text } : null);
  };

  return (
    <article class={`message ${m.role}`} data-message-id={m.id} aria-label={m.role === "user" ? "Your message" : "Answer"}>
      <div class="who">{m.role === "user" ? "You" : (m.model ?? "assistant")}</div>
      {editing ? (
        <form
          class="edit"
          onSubmit={(e) => {
            e.preventDefault();
            const content = (new FormData(e.target as HTMLFormElement).get("content") as string).trim();
            if (content) {
              setEditing(false);
              props.onEdit(m, content);
            }
          }}
        >
          <label class="visually-hidden" for={`edit-${m.id}`}>
            Edit your message
          </label>
          <textarea id={`edit-${m.id}`} name="content" rows={3} autoFocus>
            {m.content}
          </textarea>
          <div class="row">
            <button type="submit" class="primary">
              Save and send
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : m.role === "assistant" ? (
        <div class="content markdown" onMouseUp={pickSelection} onKeyUp={pickSelection} dangerouslySetInnerHTML={{ __html: html }} />
      ) : (
        <div class="content plain" onMouseUp={pickSelection} onKeyUp={pickSelection}>
          {m.content}
        </div>
      )}
      {m.sources && m.sources.length > 0 && <Sources sources={m.sources} />}
      {m.doneReason === "cancelled" && <p class="muted small">Stopped</p>}
      {props.notes.length > 0 && (
        <ul class="notes" aria-label="Notes">
          {props.notes.map((n) => (
            <li key={n.id}>
              <q>{m.content.slice(n.fromIndex, n.toIndex)}</q> — {n.content}{" "}
              <button
                type="button"
                class="ghost small"
                aria-label="Delete note"
                onClick={() => api("DELETE", `/api/conversations/${props.conversationId}/notes/${n.id}`).then(props.onNoted, (e) => toast(e.message))}
              >
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      <div class="actions">
        {m.siblings.length > 1 && (
          <span class="branches" role="group" aria-label="Versions">
            <button type="button" class="ghost small" aria-label="Previous version" disabled={busy || index <= 0} onClick={() => props.onSwitch(m.siblings[index - 1])}>
              ‹
            </button>
            <span aria-live="polite">
              {index + 1}/{m.siblings.length}
            </span>
            <button
              type="button"
              class="ghost small"
              aria-label="Next version"
              disabled={busy || index >= m.siblings.length - 1}
              onClick={() => props.onSwitch(m.siblings[index + 1])}
            >
              ›
            </button>
          </span>
        )}
        {m.role === "user" && (
          <button type="button" class="ghost small" disabled={busy} onClick={() => setEditing(true)}>
            Edit
          </button>
        )}
        {m.role === "assistant" && (
          <>
            <button type="button" class="ghost small" disabled={busy} onClick={() => props.onRegenerate(m)}>
              Regenerate
            </button>
            <button type="button" class="ghost small" aria-pressed={rating === "up"} aria-label="Good answer" onClick={() => setRateOpen("up")}>
              <ThumbUp />
            </button>
            <button type="button" class="ghost small" aria-pressed={rating === "down"} aria-label="Bad answer" onClick={() => setRateOpen("down")}>
              <ThumbDown />
            </button>
          </>
        )}
        {noteRange && (
          <button
            type="button"
            class="ghost small"
            onClick={async () => {
              const content = prompt(`Note on “${noteRange.text.slice(0, 60)}”`);
              if (!content?.trim()) return;
              await api("POST", `${base}/notes`, { fromIndex: noteRange.from, toIndex: noteRange.to, content }).then(
                () => (setNoteRange(null), props.onNoted()),
                (e) => toast(e.message),
              );
            }}
          >
            Add note
          </button>
        )}
      </div>
      {rateOpen && (
        <form
          class="rate"
          onSubmit={async (e) => {
            e.preventDefault();
            const comment = (new FormData(e.target as HTMLFormElement).get("comment") as string).trim();
            await api("PUT", `${base}/feedback`, { rating: rateOpen, comment: comment || null }).then(
              () => (setRating(rateOpen), setRateOpen(null), toast("Thanks for the feedback")),
              (err) => toast(err.message),
            );
          }}
        >
          <label for={`comment-${m.id}`}>{rateOpen === "up" ? "What was good?" : "What went wrong?"} (optional)</label>
          <textarea id={`comment-${m.id}`} name="comment" rows={2} maxLength={2000} autoFocus />
          <div class="row">
            <button type="submit" class="primary">
              Send feedback
            </button>
            <button type="button" onClick={() => setRateOpen(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </article>
  );
}
