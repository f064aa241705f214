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
