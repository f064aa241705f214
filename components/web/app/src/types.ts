// The shapes of the conversation and explore services' answers that the app reads.

export interface Page<T> {
  items: T[];
  page: number;
  pageSize: number;
  total: number;
}

export interface Folder {
  id: string;
  name: string;
  parentId: string | null;
  children: Folder[];
  conversationCount: number;
}

export interface Conversation {
  id: string;
  title: string;
  model: string;
  folderId: string;
  pinned: boolean;
  archived: boolean;
  tags: string[];
  systemPrompt?: string | null;
  options?: Record<string, unknown> | null;
  currentMessageId?: string | null;
  updatedAt: string;
}

export interface Message {
  id: string;
  parentId: string | null;
  role: "user" | "assistant" | "system";
  content: string;
  model?: string;
  createdAt: string;
  completionTokens?: number;
  doneReason?: string | null;
  siblings: string[];
  /** The document passages the answer was given, numbered as it cites them. */
  sources?: Source[] | null;
}

/** A retrieved passage of an uploaded document. */
export interface Source {
  n: number;
  documentId: string;
  documentName: string;
  collectionId: string;
  chunkId: string;
  index: number;
  page?: number | null;
  heading?: string | null;
  snippet: string;
}

/** An uploaded document and where its processing stands. */
export interface KnowledgeDocument {
  id: string;
  collectionId: string;
  name: string;
  format: string;
  size: number;
  status: "pending" | "processing" | "ready" | "failed";
  error?: string | null;
  chunkCount: number;
  pages?: number | null;
}

/** A collection of documents. */
export interface Collection {
  id: string;
  name: string;
  conversationId?: string | null;
  documentCount: number;
  readyCount: number;
}

export interface SearchHit {
  conversationId: string;
  title: string;
  messageId: string | null;
  snippet: string;
}

export interface ModelCard {
  name: string;
  title?: string;
  description?: string;
  tags?: string[];
  capabilities?: string[];
  installed: boolean;
  loaded: boolean;
  family?: string;
  parameterSize?: string;
  quantization?: string;
  store?: Record<string, unknown> | null;
  [key: string]: unknown;
}
