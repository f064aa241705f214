// The chat: the sidebar, the active branch of one conversation, and the
// composer. Answers stream token by token (fetch + SSE, with the bearer
// token); Stop asks the service to end the generation, which then stores
// the partial answer.

import { useLocation, useRoute } from "preact-iso";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, errorFrom, events, query, request } from "../api";
import { renderMarkdown } from "../markdown";
import type { Conversation, Message, ModelCard, Page, Source } from "../types";
import { ErrorMessage, toast, useLoad } from "../ui";
import { Documents, Sources } from "./documents";
import { type Note, MessageView } from "./message";
import { Sidebar } from "./sidebar";

/** A first message typed before its conversation existed, sent once it does. */
let pendingFirstMessage: { conversationId: string; content: string } | null = null;

interface Streaming {
  /** The path shown above the answer while it streams. */
  base: Message[];
  question?: string;
  text: string;
  /** What the conversation's documents gave the answer (the `sources` event). */
  sources?: Source[];
}

async function allMessages(id: string): Promise<Message[]> {
  const messages: Message[] = [];
  for (let page = 1; ; page++) {
    const batch = await api<Page<Message>>("GET", `/api/conversations/${id}/messages${query({ page, pageSize: 100 })}`);
    messages.push(...batch.items);
    if (messages.length >= batch.total || batch.items.length === 0) return messages;
  }
}

export function Chat() {
  const { params, query: search } = useRoute();
  const { route } = useLocation();
  const id = params.id as string | undefined;
  /** The conversation on screen: answers for any other are dropped. */
  const shownId = useRef(id);
  const reading = useRef<AbortController | null>(null);
  const [announcement, setAnnouncement] = useState("");
  const [sidebarVersion, setSidebarVersion] = useState(0);
  const changed = () => setSidebarVersion((v) => v + 1);
  const [conversation, setConversation] = useState<Conversation | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [notes, setNotes] = useState<Note[]>([]);
  const [loadError, setLoadError] = useState<unknown>();
  const [streaming, setStreaming] = useState<Streaming | null>(null);
  const [sendError, setSendError] = useState<unknown>();
  const [draft, setDraft] = useState("");
  const [model, setModel] = useState<string>("");
  const [showSettings, setShowSettings] = useState(false);
  const [showDocuments, setShowDocuments] = useState(false);
  const [shareLink, setShareLink] = useState<string | null>(null);
  const [models] = useLoad(
    () => api<Page<ModelCard>>("GET", `/api/explore/models${query({ installed: true, capability: "chat", pageSize: 100 })}`),
    [],
  );
  const composer = useRef<HTMLTextAreaElement>(null);
  const bottom = useRef<HTMLDivElement>(null);

  const load = async (conversationId: string) => {
    try {
      const [c, m, n] = await Promise.all([
        api<Conversation>("GET", `/api/conversations/${conversationId}`),
        allMessages(conversationId),
        api<{ items: Note[] }>("GET", `/api/conversations/${conversationId}/notes`),
      ]);
      if (shownId.current !== conversationId) return; // the user has moved on
      setConversation(c);
      setModel(c.model);
      setMessages(m);
      setNotes(n.items);
      setLoadError(undefined);
    } catch (e) {
      if (shownId.current === conversationId) setLoadError(e);
    }
  };

  useEffect(() => {
    shownId.current = id;
    // Leaving a streaming answer: stop reading it (the service still
    // finishes and stores it), and show this conversation's own state.
    reading.current?.abort();
    setStreaming(null);
    setShareLink(null);
    setShowDocuments(false);
    setSendError(undefined);
    setLoadError(undefined);
    if (!id) {
      setConversation(null);
      setMessages([]);
      setNotes([]);
      composer.current?.focus();
      return;
    }
    load(id).then(() => {
      if (pendingFirstMessage?.conversationId === id) {
        const { content } = pendingFirstMessage;
        pendingFirstMessage = null;
        void send(`/api/conversations/${id}/messages`, { content }, [], content);
      } else if (search.at) {
        document.querySelector(`[data-message-id="${CSS.escape(search.at)}"]`)?.scrollIntoView({ block: "center" });
      }
    });
  }, [id, search.at]);

  useEffect(() => {
    bottom.current?.scrollIntoView({ block: "end" });
  }, [messages, streaming?.text]);

  useEffect(() => {
    const keys = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        route("/");
      } else if (e.key === "Escape" && streaming) {
        void stop();
      }
    };
    addEventListener("keydown", keys);
    return () => removeEventListener("keydown", keys);
  });

  /** Streams one answer from `url`, showing `base` (and the question) above it. */
  async function send(url: string, body: Record<string, unknown>, base: Message[], question?: string) {
    const conversationId = url.split("/")[3];
    const controller = new AbortController();
    reading.current = controller;
    setSendError(undefined);
    setAnnouncement("");
    setStreaming({ base, question, text: "" });
    let answer = "";
    try {
      const response = await request("POST", url, { ...body, stream: true }, controller.signal);
      if (!response.ok) throw await errorFrom(response);
      for await (const event of events(response)) {
        if (event.event === "sources") {
          const { items } = JSON.parse(event.data) as { items: Source[] };
          setStreaming((s) => s && { ...s, sources: items });
        } else if (event.event === "token") {
          const { delta } = JSON.parse(event.data) as { delta: string };
          answer += delta;
          setStreaming((s) => s && { ...s, text: s.text + delta });
        } else if (event.event === "error") {
          const problem = JSON.parse(event.data) as { status?: number; detail?: string; title?: string };
          throw new ApiError(problem.status ?? 500, problem.detail ?? problem.title ?? "the answer failed", problem);
        }
      }
    } catch (e) {
      if (!controller.signal.aborted) setSendError(e);
    } finally {
      changed();
      if (!controller.signal.aborted && shownId.current === conversationId) {
        await load(conversationId); // the stored answer replaces the streamed one without a flash
        setStreaming(null);
        setAnnouncement(answer); // read out once, complete
        composer.current?.focus();
      }
    }
  }

  async function stop() {
    if (!conversation) return;
    await api("POST", `/api/conversations/${conversation.id}/stop`).catch((e: ApiError) => {
      if (e.status !== 409) toast(e.message); // 409: it had already finished
    });
  }

  async function submit() {
    const content = draft.trim();
    if (!content || streaming) return;
    setDraft("");
    if (!conversation) {
      try {
        const created = await api<Conversation>("POST", "/api/conversations", model ? { model } : {});
        pendingFirstMessage = { conversationId: created.id, content };
        changed();
        route(`/c/${created.id}`);
      } catch (e) {
        setDraft(content);
        setSendError(e);
      }
      return;
    }
    await send(`/api/conversations/${conversation.id}/messages`, { content }, messages, content);
  }

  const switchBranch = async (siblingId: string) => {
    await api("PATCH", `/api/conversations/${conversation!.id}`, { currentMessageId: siblingId }).catch((e) => toast(e.message));
    await load(conversation!.id);
  };

  const pathUpTo = (m: Message) => messages.slice(0, messages.findIndex((x) => x.id === m.id));

  const chooseModel = async (name: string) => {
    setModel(name);
    if (conversation) {
      await api("PATCH", `/api/conversations/${conversation.id}`, { model: name }).catch((e) => toast(e.message));
    }
  };

  const share = async () => {
    try {
      const answer = await api<{ shareId: string }>("POST", `/api/conversations/${conversation!.id}/share`);
      setShareLink(`${location.origin}/shared/${answer.shareId}`);
    } catch (e) {
      toast((e as Error).message);
    }
  };

  const shown = streaming ? streaming.base : messages;
  const selectedModel = models?.items.find((m) => m.name === model);
  return (
    <div class="chat-layout">
      <Sidebar version={sidebarVersion} changed={changed} activeId={id} />
      <main class="chat" id="main" tabIndex={-1}>
        <header class="chat-header">
          <h1 class="title">{conversation?.title ?? "New chat"}</h1>
          <label for="model" class="visually-hidden">
            Model
          </label>
          <select id="model" value={model} onChange={(e) => chooseModel((e.target as HTMLSelectElement).value)}>
            {!model && <option value="">Default model</option>}
            {models?.items.map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
              </option>
            ))}
            {model && !selectedModel && <option value={model}>{model}</option>}
          </select>
          {selectedModel && (
            <a class="muted small" href={`/explore/${encodeURIComponent(selectedModel.name)}`} title={selectedModel.description}>
              {[selectedModel.parameterSize, selectedModel.quantization ?? (selectedModel.quantizationLevel as string)].filter(Boolean).join(" · ") || "details"}
            </a>
          )}
          {conversation && (
            <>
              <button type="button" class="ghost" aria-expanded={showSettings} onClick={() => setShowSettings(!showSettings)}>
                Settings
              </button>
              <button type="button" class="ghost" aria-expanded={showDocuments} onClick={() => setShowDocuments(!showDocuments)}>
                Documents
              </button>
              <button type="button" class="ghost" onClick={share}>
                Share
              </button>
            </>
          )}
        </header>
        {shareLink && (
          <p class="share" role="status">
            Anyone with this link can read the conversation: <a href={shareLink}>{shareLink}</a>{" "}
            <button type="button" class="small" onClick={() => navigator.clipboard.writeText(shareLink).then(() => toast("Link copied"))}>
              Copy
            </button>
          </p>
        )}
        {showSettings && conversation && (
          <Settings conversation={conversation} done={() => (setShowSettings(false), load(conversation.id))} />
        )}
        {showDocuments && conversation && <Documents conversationId={conversation.id} />}
        <ErrorMessage error={loadError} />
        <section class="messages" aria-label="Messages">
          {!id && !streaming && <p class="empty">Ask anything. Enter sends, Shift+Enter starts a new line.</p>}
          {shown.map((m) => (
            <MessageView
              key={m.id}
              conversationId={conversation?.id ?? ""}
              message={m}
              notes={notes.filter((n) => n.messageId === m.id)}
              busy={!!streaming}
              onSwitch={switchBranch}
              onEdit={(edited, content) =>
                send(`/api/conversations/${conversation!.id}/messages`, { content, parentId: edited.parentId }, pathUpTo(edited), content)
              }
              onRegenerate={(answer) => send(`/api/conversations/${conversation!.id}/messages/${answer.id}/regenerate`, {}, pathUpTo(answer))}
              onNoted={() => load(conversation!.id)}
            />
          ))}
          {streaming?.question && (
            <article class="message user" aria-label="Your message">
              <div class="who">You</div>
              <div class="content plain">{streaming.question}</div>
            </article>
          )}
          {streaming && (
            <article class="message assistant streaming" aria-label="Answer">
              <div class="who">{model}</div>
              <div
                class="content markdown"
                aria-busy="true"
                dangerouslySetInnerHTML={{ __html: streaming.text ? renderMarkdown(streaming.text) : "<p class=\"muted\">…</p>" }}
              />
              {streaming.sources && streaming.sources.length > 0 && <Sources sources={streaming.sources} />}
            </article>
          )}
          <div ref={bottom} />
        </section>
        <div class="visually-hidden" aria-live="polite" id="answer-announcer">
          {streaming ? "Answering…" : announcement}
        </div>
        <ErrorMessage error={sendError} />
        <form
          class="composer"
          onSubmit={(e) => {
            e.preventDefault();
            void submit();
          }}
        >
          <label for="composer" class="visually-hidden">
            Message
          </label>
          <textarea
            id="composer"
            ref={composer}
            rows={2}
            placeholder="Send a message"
            value={draft}
            onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
                e.preventDefault();
                void submit();
              }
            }}
          />
          {streaming ? (
            <button type="button" class="danger" onClick={stop} title="Stop (Esc)">
              Stop
            </button>
          ) : (
            <button type="submit" class="primary" disabled={!draft.trim()}>
              Send
            </button>
          )}
        </form>
      </main>
    </div>
  );
}

/** The conversation's system prompt and generation options. */
function Settings({ conversation, done }: { conversation: Conversation; done: () => void }) {
  const options = (conversation.options ?? {}) as Record<string, number | undefined>;
  const [error, setError] = useState<unknown>();
  return (
    <form
      class="settings card"
      onSubmit={async (e) => {
        e.preventDefault();
        const form = new FormData(e.target as HTMLFormElement);
        const number = (name: string) => {
          const text = (form.get(name) as string).trim();
          return text === "" ? undefined : Number(text);
        };
        // The service replaces `options` whole: keep the keys this form does not show.
        const next: Record<string, unknown> = { ...(conversation.options ?? {}) };
        for (const key of ["temperature", "num_predict", "num_ctx"]) {
          const value = number(key);
          if (value === undefined) delete next[key];
          else next[key] = value;
        }
        const systemPrompt = (form.get("systemPrompt") as string).trim();
        try {
          await api("PATCH", `/api/conversations/${conversation.id}`, {
            systemPrompt: systemPrompt || null,
            options: Object.keys(next).length ? next : null,
          });
          done();
        } catch (err) {
          setError(err);
        }
      }}
    >
      <div class="field">
        <label for="systemPrompt">System prompt</label>
        <textarea id="systemPrompt" name="systemPrompt" rows={3} maxLength={32000}>
          {conversation.systemPrompt ?? ""}
        </textarea>
      </div>
      <div class="row">
        <div class="field">
          <label for="temperature">Temperature</label>
          <input id="temperature" name="temperature" type="number" step="0.1" min="0" max="2" value={options.temperature ?? ""} />
        </div>
        <div class="field">
          <label for="num_predict">Max answer tokens</label>
          <input id="num_predict" name="num_predict" type="number" min="1" value={options.num_predict ?? ""} />
        </div>
        <div class="field">
          <label for="num_ctx">Context tokens</label>
          <input id="num_ctx" name="num_ctx" type="number" min="256" value={options.num_ctx ?? ""} />
        </div>
      </div>
      <ErrorMessage error={error} />
      <button type="submit" class="primary">
        Save settings
      </button>
    </form>
  );
}
