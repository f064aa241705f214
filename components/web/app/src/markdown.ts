// Model output as safe HTML: Markdown by marked, code highlighted by
// highlight.js (a few common languages, to keep the bundle small),
// everything sanitised by DOMPurify before it reaches the page.

import DOMPurify from "dompurify";
import { Marked } from "marked";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";

for (const [name, language] of Object.entries({ bash, css, javascript, json, python, rust, sql, typescript, xml })) {
  hljs.registerLanguage(name, language);
}

const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    code({ text, lang }) {
      const language = (lang ?? "").split(/\s/)[0];
      const body = language && hljs.getLanguage(language)
        ? hljs.highlight(text, { language, ignoreIllegals: true }).value
        : escape(text);
      return `<div class="code"><div class="code-bar"><span>${escape(language || "text")}</span>` +
        `<button type="button" class="copy" data-copy>Copy</button></div>` +
        `<pre><code class="hljs">${body}</code></pre></div>`;
    },
  },
});

/** Renders Markdown to sanitised HTML. */
export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false }) as string;
  // No style (the CSP refuses it), no ids or names (they could shadow the
  // page's own), no images (only this origin may serve them).
  return DOMPurify.sanitize(html, {
    ADD_ATTR: ["data-copy"],
    FORBID_TAGS: ["style", "form", "input", "img"],
    FORBID_ATTR: ["style", "id", "name"],
  });
}

/** Copies a code block's text when its Copy button is pressed (one listener for the page). */
export function installCopyButtons(): void {
  document.addEventListener("click", async (event) => {
    const button = (event.target as HTMLElement).closest<HTMLButtonElement>("[data-copy]");
    const code = button?.closest(".code")?.querySelector("code");
    if (!button || !code) return;
    try {
      await navigator.clipboard.writeText(code.textContent ?? "");
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
}
