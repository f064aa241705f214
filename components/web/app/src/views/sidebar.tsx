// The chat's sidebar: search as you type, the folder tree with its
// conversations (drag a conversation onto a folder to move it), pinned
// ones first, and each conversation's menu (rename, pin, archive, tag,
// move, delete with undo).

import DOMPurify from "dompurify";
import { useLocation } from "preact-iso";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, query } from "../api";
import { Pin } from "../icons";
import type { Conversation, Folder, Page, SearchHit } from "../types";
import { ErrorMessage, toast, useLoad } from "../ui";

export function Sidebar({ version, changed, activeId }: { version: number; changed: () => void; activeId?: string }) {
  const [view, setView] = useState<"live" | "archived" | "trash">("live");
  const [folders, folderError, reloadFolders] = useLoad(() => api<Folder>("GET", "/api/folders"), [version]);
  const [pages, setPages] = useState(1);
  const [list, listError] = useLoad(async () => {
    // The trash holds archived conversations too: the service lists them apart.
    const archived = view === "trash" ? [false, true] : [view === "archived"];
    const lists = await Promise.all(
      archived.map((a) => loadPages(query({ archived: a, deleted: view === "trash" || undefined }), pages)),
    );
    return { items: lists.flatMap((l) => l.items), more: lists.some((l) => l.more) };
  }, [version, view, pages]);
  const [search, setSearch] = useState("");
  const conversations = list?.items ?? [];
  const pinned = conversations.filter((c) => c.pinned);
  const move = async (id: string, folderId: string) => {
    await api("PATCH", `/api/conversations/${id}`, { folderId }).catch((e) => toast(e.message));
    changed();
  };
  return (
    <aside class="sidebar" aria-label="Conversations">
      <a class="button primary new-chat" href="/" title="New chat (Ctrl+Shift+O)">
        + New chat
      </a>
      <SearchBox value={search} onChange={setSearch} />
      <label for="sidebar-view" class="visually-hidden">
        Show
      </label>
      <select id="sidebar-view" value={view} onChange={(e) => setView((e.target as HTMLSelectElement).value as typeof view)}>
        <option value="live">Conversations</option>
        <option value="archived">Archived</option>
        <option value="trash">Trash</option>
      </select>
      {!search && view === "trash" && <Trash items={conversations} changed={changed} />}
      {!search && list?.more && (
        <button type="button" class="ghost small" onClick={() => setPages((p) => p + 1)}>
          More conversations
        </button>
      )}
      {!search && view !== "trash" && (
        <>
          <ErrorMessage error={folderError ?? listError} />
          {pinned.length > 0 && (
            <section aria-label="Pinned">
              <h2 class="section-title">Pinned</h2>
              <ul class="conversations">
                {pinned.map((c) => (
                  <ConversationItem key={c.id} conversation={c} folders={folders} active={c.id === activeId} changed={changed} />
                ))}
              </ul>
            </section>
          )}
          {folders && (
            <ul class="tree" role="tree" aria-label="Folders">
              <FolderNode
                folder={folders}
                conversations={conversations.filter((c) => !c.pinned)}
                all={folders}
                activeId={activeId}
                changed={() => (reloadFolders(), changed())}
                move={move}
              />
            </ul>
          )}
        </>
      )}
    </aside>
  );
}

/** The first `pages` pages (100 each, newest first) of a conversation list. */
async function loadPages(filters: string, pages: number): Promise<{ items: Conversation[]; more: boolean }> {
  const items: Conversation[] = [];
  for (let page = 1; page <= pages; page++) {
    const batch = await api<Page<Conversation>>("GET", `/api/conversations${filters}${filters ? "&" : "?"}page=${page}&pageSize=100`);
    items.push(...batch.items);
    if (items.length >= batch.total) return { items, more: false };
  }
  return { items, more: true };
}

/** Deleted conversations: restore, or delete for good. */
function Trash({ items, changed }: { items: Conversation[]; changed: () => void }) {
  const run = (promise: Promise<unknown>) => promise.then(changed, (e) => toast(e.message));
  return (
    <ul class="conversations" aria-label="Trash">
      {items.length === 0 && <li class="muted">The trash is empty.</li>}
      {items.map((c) => (
        <li class="conversation" key={c.id}>
          <span class="trashed">{c.title}</span>
          <button type="button" class="ghost small" onClick={() => run(api("POST", `/api/conversations/${c.id}/restore`))}>
            Restore
          </button>
          <button
            type="button"
            class="ghost small danger"
            aria-label={`Delete ${c.title} for good`}
            onClick={() => confirm(`Delete “${c.title}” for good?`) && run(api("DELETE", `/api/conversations/${c.id}?permanent=true`))}
          >
            ×
          </button>
        </li>
      ))}
    </ul>
  );
}

function SearchBox({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  const [hits, setHits] = useState<SearchHit[]>([]);
  const [error, setError] = useState<unknown>();
  const { route } = useLocation();
  useEffect(() => {
    if (!value.trim()) return setHits([]);
    let current = true; // a slower, older answer never replaces a newer one
    const timer = setTimeout(() => {
      api<Page<SearchHit>>("GET", `/api/conversations/search${query({ q: value, pageSize: 20 })}`).then(
        (page) => current && (setHits(page.items), setError(undefined)),
        (e) => current && setError(e),
      );
    }, 150);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [value]);
  /** Opens a hit; a matching message off the active branch becomes the active branch. */
  const open = async (event: Event, hit: SearchHit) => {
    event.preventDefault();
    if (hit.messageId) {
      await api("PATCH", `/api/conversations/${hit.conversationId}`, { currentMessageId: hit.messageId }).catch(() => {});
    }
    onChange("");
    route(`/c/${hit.conversationId}?at=${hit.messageId ?? ""}`);
  };
  useEffect(() => {
    const focus = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
        e.preventDefault();
        document.getElementById("search")?.focus();
      }
    };
    addEventListener("keydown", focus);
    return () => removeEventListener("keydown", focus);
  }, []);
  return (
    <div class="search">
      <label for="search" class="visually-hidden">
        Search conversations
      </label>
      <input
        id="search"
        type="search"
        placeholder="Search (Ctrl+K)"
        value={value}
        onInput={(e) => onChange((e.target as HTMLInputElement).value)}
      />
      <ErrorMessage error={error} />
      {value.trim() && (
        <ul class="results" aria-live="polite" aria-label="Search results">
          {hits.length === 0 && <li class="muted">No matches</li>}
          {hits.map((hit) => (
            <li key={hit.conversationId}>
              <a href={`/c/${hit.conversationId}`} onClick={(e) => open(e, hit)}>
                <strong>{hit.title}</strong>
                {/* The service escapes the text and marks matches; sanitised again here. */}
                <span class="snippet" dangerouslySetInnerHTML={{ __html: DOMPurify.sanitize(hit.snippet, { ALLOWED_TAGS: ["mark"] }) }} />
              </a>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function FolderNode(props: {
  folder: Folder;
  conversations: Conversation[];
  all: Folder;
  activeId?: string;
  changed: () => void;
  move: (conversationId: string, folderId: string) => void;
}) {
  const { folder, conversations } = props;
  const [open, setOpen] = useState(true);
  const [over, setOver] = useState(false);
  const mine = conversations.filter((c) => c.folderId === folder.id);
  const addFolder = async () => {
    const name = prompt("Folder name");
    if (!name) return;
    await api("POST", "/api/folders", { name, parentId: folder.id }).catch((e) => toast(e.message));
    props.changed();
  };
  const renameFolder = async () => {
    const name = prompt("New name", folder.name);
    if (!name || name === folder.name) return;
    await api("PATCH", `/api/folders/${folder.id}`, { name }).catch((e) => toast(e.message));
    props.changed();
  };
  const removeFolder = async () => {
    await api("DELETE", `/api/folders/${folder.id}?recursive=true`).then(
      () => toast(`Folder ${folder.name} deleted; its conversations moved up`),
      (e) => toast(e.message),
    );
    props.changed();
  };
  return (
    <li role="treeitem" aria-expanded={open}>
      <div
        class={`folder ${over ? "drop" : ""}`}
        onDragOver={(e) => (e.preventDefault(), setOver(true))}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          const id = e.dataTransfer?.getData("text/x-lamina-conversation");
          if (id) props.move(id, folder.id);
        }}
      >
        <button type="button" class="ghost twisty" aria-label={open ? `Collapse ${folder.name}` : `Expand ${folder.name}`} onClick={() => setOpen(!open)}>
          {open ? "▾" : "▸"}
        </button>
        <span class="folder-name">{folder.name}</span>
        <button type="button" class="ghost small" aria-label={`New folder in ${folder.name}`} onClick={addFolder}>
          +
        </button>
        {folder.parentId && (
          <>
            <button type="button" class="ghost small" aria-label={`Rename folder ${folder.name}`} onClick={renameFolder}>
              ✎
            </button>
            <button type="button" class="ghost small" aria-label={`Delete folder ${folder.name}`} onClick={removeFolder}>
              ×
            </button>
          </>
        )}
      </div>
      {open && (
        <ul role="group">
          {folder.children.map((child) => (
            <FolderNode key={child.id} {...props} folder={child} />
          ))}
          {mine.map((c) => (
            <ConversationItem key={c.id} conversation={c} folders={props.all} active={c.id === props.activeId} changed={props.changed} />
          ))}
        </ul>
      )}
    </li>
  );
}

function flatten(folder: Folder, depth = 0): { folder: Folder; depth: number }[] {
  return [{ folder, depth }, ...folder.children.flatMap((c) => flatten(c, depth + 1))];
}

function ConversationItem({ conversation: c, folders, active, changed }: { conversation: Conversation; folders?: Folder; active: boolean; changed: () => void }) {
  const { route } = useLocation();
  const [menu, setMenu] = useState(false);
  const [editing, setEditing] = useState<"title" | "tags" | null>(null);
  const menuRef = useRef<HTMLDivElement>(null);
  const patch = async (body: Record<string, unknown>) => {
    await api("PATCH", `/api/conversations/${c.id}`, body).catch((e) => toast(e.message));
    setMenu(false);
    changed();
  };
  const remove = async () => {
    setMenu(false);
    try {
      await api("DELETE", `/api/conversations/${c.id}`);
    } catch (e) {
      return toast((e as Error).message);
    }
    if (active) route("/");
    changed();
    toast(`Deleted “${c.title}”`, async () => {
      await api("POST", `/api/conversations/${c.id}/restore`).catch((e) => toast(e.message));
      changed();
    });
  };
  useEffect(() => {
    if (menu) menuRef.current?.querySelector("button")?.focus();
  }, [menu]);
  if (editing) {
    const initial = editing === "title" ? c.title : c.tags.join(", ");
    return (
      <li>
        <form
          class="inline-edit"
          onSubmit={(e) => {
            e.preventDefault();
            const value = (new FormData(e.target as HTMLFormElement).get("value") as string).trim();
            setEditing(null);
            patch(editing === "title" ? { title: value } : { tags: value.split(",").map((t) => t.trim()).filter(Boolean) });
          }}
        >
          <label class="visually-hidden" for={`edit-${c.id}`}>
            {editing === "title" ? "Title" : "Tags, separated by commas"}
          </label>
          <input id={`edit-${c.id}`} name="value" value={initial} autoFocus onKeyDown={(e) => e.key === "Escape" && setEditing(null)} />
        </form>
      </li>
    );
  }
  return (
    <li class={`conversation ${active ? "active" : ""}`}>
      <a
        href={`/c/${c.id}`}
        aria-current={active ? "page" : undefined}
        draggable
        onDragStart={(e) => e.dataTransfer?.setData("text/x-lamina-conversation", c.id)}
      >
        {c.pinned && (
          <span class="pinned" title="pinned">
            <Pin />
            <span class="visually-hidden">pinned: </span>
          </span>
        )}
        {c.title}
        {c.tags.length > 0 && <span class="tags"> {c.tags.map((t) => `#${t}`).join(" ")}</span>}
      </a>
      <button type="button" class="ghost small" aria-haspopup="menu" aria-expanded={menu} aria-label={`Actions for ${c.title}`} onClick={() => setMenu(!menu)}>
        ⋯
      </button>
      {menu && (
        <div class="menu" role="menu" ref={menuRef} onKeyDown={(e) => e.key === "Escape" && setMenu(false)}>
          <button role="menuitem" type="button" onClick={() => (setMenu(false), setEditing("title"))}>
            Rename
          </button>
          <button role="menuitem" type="button" onClick={() => patch({ pinned: !c.pinned })}>
            {c.pinned ? "Unpin" : "Pin"}
          </button>
          <button role="menuitem" type="button" onClick={() => patch({ archived: !c.archived })}>
            {c.archived ? "Unarchive" : "Archive"}
          </button>
          <button role="menuitem" type="button" onClick={() => (setMenu(false), setEditing("tags"))}>
            Tags…
          </button>
          {folders &&
            flatten(folders)
              .filter(({ folder }) => folder.id !== c.folderId)
              .map(({ folder, depth }) => (
                <button role="menuitem" type="button" key={folder.id} onClick={() => patch({ folderId: folder.id })}>
                  Move to {"· ".repeat(depth)}
                  {folder.name}
                </button>
              ))}
          <button role="menuitem" type="button" class="danger" onClick={remove}>
            Delete
          </button>
        </div>
      )}
    </li>
  );
}
