// The web app in a real browser (Debian's Chromium, driven by
// playwright-core) against a real `lamina` with the real model. Started by
// tests/tests/web.rs, which passes the host's address and the admin's
// credentials in the environment; screenshots go to LAMINA_SCREENSHOTS.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const BASE = process.env.LAMINA_URL;
const SHOTS = process.env.LAMINA_SCREENSHOTS ?? "screenshots";
const PASSWORD = "Correct-horse-1";
const TIMEOUT = 60_000;
mkdirSync(SHOTS, { recursive: true });

let browser;
/** Problems the page reported: CSP violations, uncaught errors. */
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.LAMINA_TEST_CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});
after(async () => {
  await browser?.close();
  assert.deepEqual(pageErrors, [], "the pages reported errors");
});

async function newPage(viewport = { width: 1280, height: 800 }, colorScheme = "light") {
  const context = await browser.newContext({ baseURL: BASE, viewport, colorScheme });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) pageErrors.push(m.text());
  });
  return page;
}

/** The mark under an answer that was stopped. */
const stopped = (page) => page.locator("p.muted", { hasText: /^Stopped$/ }).first();
const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const unique = (prefix) => `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** An API call from the test itself (its own session), to check what the UI did. */
async function apiCall(method, path, token, body) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function login(name, password = PASSWORD) {
  const { status, body } = await apiCall("POST", "/api/auth/login", null, { login: name, password });
  assert.equal(status, 200, JSON.stringify(body));
  return body.accessToken;
}

async function registerInBrowser(page, username) {
  await page.goto("/register");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByLabel("Message", { exact: true }).waitFor();
}

/** Sends `text` from the composer and waits until the answer is stored. */
async function ask(page, text) {
  const answers = await page.locator("article.message.assistant:not(.streaming)").count();
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("article.message.assistant:not(.streaming)").nth(answers).waitFor();
  await page.locator("article.streaming").waitFor({ state: "detached" });
}

test("a new user chats: streamed answer, stop, regenerate and branches, search, rating, API keys", async () => {
  const page = await newPage();
  const username = unique("ada");
  await registerInBrowser(page, username);
  await shot(page, "01-empty-chat");

  // The first load (the chat view is in the entry chunk; other views load
  // on demand): its scripts, compressed as sent, within 150 KB.
  const scriptBytes = await page.evaluate(() =>
    performance
      .getEntriesByType("resource")
      .filter((r) => r.initiatorType === "script" || r.name.endsWith(".js"))
      .reduce((sum, r) => sum + r.encodedBodySize, 0),
  );
  console.log(`first load: ${scriptBytes} bytes of compressed JavaScript`);
  assert.ok(scriptBytes > 10_000 && scriptBytes <= 150 * 1024, `${scriptBytes} bytes`);

  // The session lives in memory and the HttpOnly cookie only: a reload renews it silently.
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length - (localStorage.getItem("lamina-theme") ? 1 : 0)), 0);
  await page.reload();
  await page.getByRole("button", { name: `Log out ${username}` }).waitFor();

  // The first message creates the conversation; the answer streams in.
  await page.getByLabel("Message", { exact: true }).fill("Say hello to the zebra named Quillfeather.");
  await page.getByRole("button", { name: "Send" }).click();
  const streaming = page.locator("article.streaming .content");
  await page.waitForFunction(() => {
    const live = document.querySelector("article.streaming .content");
    return live && live.getAttribute("aria-busy") === "true" && live.textContent.trim().length > 1 && live.textContent !== "…";
  });
  assert.ok((await streaming.textContent()).length > 0, "text appeared while streaming");
  await streaming.waitFor({ state: "detached" });
  await page.waitForURL(/\/c\/[0-9a-f-]+$/);
  // Screen readers hear the whole answer once it is complete.
  assert.ok((await page.locator("#answer-announcer").textContent()).trim().length > 0, "the answer is announced");
  const conversationId = page.url().split("/c/")[1];
  const firstAnswer = page.locator("article.message.assistant").first();
  assert.ok((await firstAnswer.locator(".content").textContent()).trim().length > 0, "the stored answer is shown");
  await shot(page, "02-chat-answer");

  // Stop a long answer as soon as it starts: it is stored as stopped.
  await page.getByRole("button", { name: "Settings" }).click();
  await page.getByLabel("Max answer tokens").fill("1500");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByLabel("Message", { exact: true }).fill("Write a very long story about a dragon who learns to bake bread, with many chapters.");
  await page.getByRole("button", { name: "Send" }).click();
  await page.waitForFunction(() => (document.querySelector("article.streaming .content")?.textContent ?? "").replace("…", "").trim().length > 0);
  await page.getByRole("button", { name: "Stop" }).click();
  await page.locator("article.streaming").waitFor({ state: "detached" });
  await stopped(page).waitFor();

  // Regenerate the last answer (shorter now): a second version, and the switch between them.
  await page.getByRole("button", { name: "Settings" }).click();
  await page.getByLabel("Max answer tokens").fill("40");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.getByRole("button", { name: "Regenerate" }).last().click();
  await page.locator("article.streaming").waitFor();
  await page.locator("article.streaming").waitFor({ state: "detached" });
  const versions = page.getByRole("group", { name: "Versions" }).last();
  await versions.getByText("2/2").waitFor();
  await versions.getByRole("button", { name: "Previous version" }).click();
  await page.getByRole("group", { name: "Versions" }).last().getByText("1/2").waitFor();
  await stopped(page).waitFor(); // the first version is the stopped one
  await shot(page, "03-branches");

  // Search as you type finds the conversation by a word of the first message.
  await page.getByLabel("Search conversations").fill("Quillfeath");
  const hit = page.locator(".results a").first();
  await hit.waitFor();
  assert.match(await hit.getAttribute("href"), new RegExp(conversationId));
  assert.ok(await hit.locator("mark").count() > 0, "the match is marked");
  await page.getByLabel("Search conversations").fill("");

  // Rate the first answer with a comment; the service has it.
  await page.getByRole("button", { name: "Good answer" }).first().click();
  await page.getByLabel("What was good? (optional)").fill("friendly");
  await page.getByRole("button", { name: "Send feedback" }).click();
  await page.getByText("Thanks for the feedback").waitFor();
  const token = await login(username);
  const path = await apiCall("GET", `/api/conversations/${conversationId}/messages`, token);
  const rated = path.body.items.find((m) => m.role === "assistant");
  const feedback = await apiCall("GET", `/api/conversations/${conversationId}/messages/${rated.id}/feedback`, token);
  assert.equal(feedback.status, 200);
  assert.equal(feedback.body.rating, "up");
  assert.equal(feedback.body.comment, "friendly");

  // An API key: shown once, works, then revoked from the list.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Account", exact: true }).click();
  await page.getByLabel("Key name").fill("laptop");
  await page.getByRole("button", { name: "Create key" }).click();
  const key = (await page.locator("#new-key").textContent()).trim();
  assert.match(key, /^lam_[0-9a-f]{64}$/);
  assert.equal((await apiCall("GET", "/api/tags", key)).status, 200);
  await shot(page, "04-account");
  await page.getByRole("button", { name: "Revoke laptop" }).click();
  await page.locator("tr.api-key", { hasText: "revoked" }).waitFor();
  assert.equal((await apiCall("GET", "/api/tags", key)).status, 401);
  await page.context().close();
});

test("an administrator sees users and the audit log; a user gets no admin page and the API refuses them", async () => {
  const username = unique("bob");
  const { status } = await apiCall("POST", "/api/auth/register", null, { username, email: `${username}@example.com`, password: PASSWORD });
  assert.equal(status, 201);

  const admin = await newPage();
  await admin.goto("/login");
  await admin.getByLabel("Username or email").fill(process.env.LAMINA_ADMIN_LOGIN);
  await admin.getByLabel("Password").fill(process.env.LAMINA_ADMIN_PASSWORD);
  await admin.getByRole("button", { name: "Log in" }).click();
  await admin.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin", exact: true }).click();
  await admin.getByLabel("Name or email").fill(username);
  await admin.locator("tr.user-row", { hasText: username }).waitFor();
  await shot(admin, "05-admin-users");
  await admin.getByRole("link", { name: "Audit log" }).click();
  // Unfiltered, the admin's own login is there; filtered, only registrations.
  await admin.locator("tr.audit-row", { hasText: "login" }).first().waitFor();
  await admin.getByLabel("Action (prefix*)").fill("register");
  await admin.getByLabel("Action (prefix*)").press("Enter");
  await admin.waitForFunction(() => {
    const actions = [...document.querySelectorAll("tr.audit-row td:nth-child(2)")].map((td) => td.textContent);
    return actions.length > 0 && actions.every((a) => a === "register");
  });
  await shot(admin, "06-admin-audit");
  await admin.context().close();

  const user = await newPage();
  await user.goto("/login");
  await user.getByLabel("Username or email").fill(username);
  await user.getByLabel("Password").fill(PASSWORD);
  await user.getByRole("button", { name: "Log in" }).click();
  await user.getByLabel("Message", { exact: true }).waitFor();
  assert.equal(await user.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin", exact: true }).count(), 0);
  await user.goto("/admin/users");
  await user.getByRole("heading", { name: "Not allowed" }).waitFor();
  await user.context().close();
  const token = await login(username);
  assert.equal((await apiCall("GET", "/api/admin/users", token)).status, 403);
  assert.equal((await apiCall("GET", "/api/admin/audit", token)).status, 403);
});

test("chat with the keyboard only, on a phone-sized screen in dark mode", async () => {
  const username = unique("kay");
  const { status } = await apiCall("POST", "/api/auth/register", null, { username, email: `${username}@example.com`, password: PASSWORD });
  assert.equal(status, 201);
  const page = await newPage({ width: 390, height: 844 }, "dark");
  await page.goto("/login");
  const tabTo = async (id) => {
    for (let i = 0; i < 40; i++) {
      if (await page.evaluate((id) => document.activeElement?.id === id, id)) return;
      await page.keyboard.press("Tab");
    }
    assert.fail(`Tab never reached #${id}`);
  };
  await tabTo("field-login");
  await page.keyboard.type(username);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByLabel("Message", { exact: true }).waitFor();
  await tabTo("composer");
  await page.keyboard.type("Name one colour.");
  await page.keyboard.press("Enter");
  await page.locator("article.message.assistant:not(.streaming)").first().waitFor();
  await page.locator("article.streaming").waitFor({ state: "detached" });
  await shot(page, "07-phone-keyboard");
  // Ctrl+Shift+O starts a new chat.
  await page.keyboard.press("Control+Shift+O");
  await page.waitForURL(`${BASE}/`);
  await page.getByText("Ask anything").waitFor();
  await page.context().close();
});

/** The token in the newest link mailed to `email` whose subject matches (the dev mailbox, read as the admin). */
async function mailedToken(email, subject) {
  const admin = await login(process.env.LAMINA_ADMIN_LOGIN, process.env.LAMINA_ADMIN_PASSWORD);
  for (let i = 0; i < 100; i++) {
    const { status, body } = await apiCall("GET", `/api/outbox/mail?to=${encodeURIComponent(email)}`, admin);
    assert.equal(status, 200, JSON.stringify(body));
    const mail = body.find((m) => subject.test(m.subject));
    const token = mail?.body.match(/token=([0-9A-Za-z_-]+)/)?.[1];
    if (token) return token;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no mail "${subject}" to ${email}`);
}

test("the mailed links confirm the address and reset the password; logging out ends the session", async () => {
  const page = await newPage();
  const username = unique("cat");
  const email = `${username}@example.com`;
  await registerInBrowser(page, username);

  await page.goto(`/confirm-email?token=${await mailedToken(email, /confirm/i)}`);
  await page.getByText("Your address is confirmed").waitFor();

  await page.getByRole("button", { name: /^Log out/ }).click();
  await page.waitForURL(`${BASE}/login`);
  await page.reload();
  await page.getByRole("button", { name: "Log in" }).waitFor(); // the refresh cookie is gone

  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Send reset link" }).click();
  await page.getByText("a reset link is on its way").waitFor();
  await page.goto(`/reset-password?token=${await mailedToken(email, /reset/i)}`);
  await page.getByLabel("New password").fill("Another-horse-2");
  await page.getByRole("button", { name: "Set password" }).click();
  await page.waitForURL(`${BASE}/login`);
  await page.getByLabel("Username or email").fill(username);
  await page.getByLabel("Password").fill("Another-horse-2");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByLabel("Message", { exact: true }).waitFor();
  await page.context().close();
});

test("explore lists and finds models and shows one's details", async () => {
  const page = await newPage();
  const username = unique("eve");
  await registerInBrowser(page, username);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Explore", exact: true }).click();
  await page.locator(".cards li", { hasText: "gemma3:270m" }).waitFor();
  // Filters: embedding models only.
  await page.getByLabel("Capability").selectOption("embedding");
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll(".cards li.model")].map((c) => c.textContent);
    return cards.length > 0 && cards.every((c) => c.includes("all-minilm"));
  });
  // A search ranks with a score.
  await page.getByLabel("Search", { exact: true }).fill("smollm2");
  await page.getByLabel("Search by").selectOption("text");
  const hit = page.locator(".cards li", { hasText: "score" }).filter({ hasText: "smollm2:135m" });
  await hit.waitFor();
  await hit.locator("h2 a").click();
  await page.waitForURL(/\/explore\/smollm2/);
  await page.getByText("Installed on this host").waitFor();
  await shot(page, "08-explore-details");
  await page.context().close();
});

test("documents: upload with progress to ready, and an answer whose citation opens the passage", async () => {
  const page = await newPage();
  const username = unique("eve");
  await registerInBrowser(page, username);
  const token = await login(username);
  const created = await apiCall("POST", "/api/conversations", token, { model: "smollm2:135m", options: { temperature: 0, num_predict: 12 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await page.goto(`/c/${created.body.id}`);

  await page.getByRole("button", { name: "Documents" }).click();
  await page.getByLabel("Add files").setInputFiles({
    name: "harbour.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("Harbour notes.\n\nThe lighthouse keeper is named Oswin Tarrant.\n"),
  });
  const row = page.locator(".document-list li", { hasText: "harbour.txt" });
  await row.locator(".status.ready").waitFor();
  assert.equal((await row.locator(".status").textContent()).trim(), "ready · 1 passage");

  await ask(page, "Who is the lighthouse keeper?");
  const source = page.locator("article.message.assistant").last().getByRole("button", { name: /^\[1\] harbour\.txt/ });
  await source.click();
  const passage = page.getByLabel("Source 1");
  await passage.getByText(/Oswin Tarrant/).waitFor();
  await shot(page, "09-citations");

  // The stored answer has the same source the browser showed.
  const path = await apiCall("GET", `/api/conversations/${created.body.id}/messages`, token);
  const answer = path.body.items.find((m) => m.role === "assistant");
  assert.equal(answer.sources[0].documentName, "harbour.txt");
  await page.context().close();
});
