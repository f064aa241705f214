// The app's entry: restores the session from the refresh cookie, then
// routes. The chat is the landing view; admin pages load on demand.

import { render } from "preact";
import { ErrorBoundary, LocationProvider, Route, Router, lazy, useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { type User, logout, onSession, refresh, sessionUser } from "./api";
import { installCopyButtons } from "./markdown";
import { Toasts } from "./ui";
import { ConfirmEmail, ForgotPassword, Login, Register, ResetPassword } from "./views/auth";
import { Chat } from "./views/chat";
import "./styles.css";

const Explore = lazy(() => import("./views/explore").then((m) => m.Explore));
const Account = lazy(() => import("./views/account").then((m) => m.Account));
const Admin = lazy(() => import("./views/admin").then((m) => m.Admin));
const Shared = lazy(() => import("./views/shared").then((m) => m.Shared));

/** Routes anyone may open without an account. */
const PUBLIC = ["/login", "/register", "/forgot-password", "/reset-password", "/confirm-email", "/shared/"];

function useSession(): [User | null, boolean] {
  const [user, setUser] = useState(sessionUser());
  const [ready, setReady] = useState(false);
  useEffect(() => {
    const stop = onSession(setUser);
    refresh().finally(() => setReady(true));
    return stop;
  }, []);
  return [user, ready];
}

function Shell() {
  const [user, ready] = useSession();
  const { path, route } = useLocation();
  const isPublic = PUBLIC.some((p) => path === p || (p.endsWith("/") && path.startsWith(p)));
  useEffect(() => {
    if (ready && !user && !isPublic) route("/login", true);
  }, [ready, user, isPublic]);
  useEffect(() => {
    const theme = localStorage.getItem("lamina-theme");
    if (theme) document.documentElement.dataset.theme = theme;
  }, []);
  if (!ready) return <p class="loading">Loading…</p>;
  const isAdmin = !!user?.roles?.includes("Admin");
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a href="/" class="brand">
          Lamina
        </a>
        {user && (
          <nav aria-label="Main">
            <a href="/" aria-current={path === "/" || path.startsWith("/c/") ? "page" : undefined}>
              Chat
            </a>
            <a href="/explore" aria-current={path.startsWith("/explore") ? "page" : undefined}>
              Explore
            </a>
            <a href="/account" aria-current={path.startsWith("/account") ? "page" : undefined}>
              Account
            </a>
            {isAdmin && (
              <a href="/admin" aria-current={path.startsWith("/admin") ? "page" : undefined}>
                Admin
              </a>
            )}
          </nav>
        )}
        <span class="spacer" />
        <button
          type="button"
          class="ghost"
          aria-label="Switch between light and dark"
          onClick={() => {
            const root = document.documentElement;
            const dark = root.dataset.theme
              ? root.dataset.theme === "dark"
              : matchMedia("(prefers-color-scheme: dark)").matches;
            root.dataset.theme = dark ? "light" : "dark";
            localStorage.setItem("lamina-theme", root.dataset.theme); // a display preference, never a credential
          }}
        >
          ◐
        </button>
        {user && (
          <button type="button" class="ghost" onClick={() => logout().then(() => route("/login"))}>
            Log out <span class="account-name">{user.username}</span>
          </button>
        )}
      </header>
      <ErrorBoundary>
        <Router>
          <Route path="/login" component={Login} />
          <Route path="/register" component={Register} />
          <Route path="/forgot-password" component={ForgotPassword} />
          <Route path="/reset-password" component={ResetPassword} />
          <Route path="/confirm-email" component={ConfirmEmail} />
          <Route path="/shared/:id" component={Shared} />
          <Route path="/explore/:name*" component={user ? Explore : Nothing} />
          <Route path="/account" component={user ? Account : Nothing} />
          <Route path="/admin/:section*" component={isAdmin ? Admin : NotAllowed} />
          <Route path="/c/:id" component={user ? Chat : Nothing} />
          <Route path="/" component={user ? Chat : Nothing} />
          <Route default component={NotFound} />
        </Router>
      </ErrorBoundary>
      <Toasts />
    </>
  );
}

const Nothing = () => null;

function NotAllowed() {
  return (
    <main class="page" id="main">
      <h1>Not allowed</h1>
      <p>This page is for administrators.</p>
    </main>
  );
}

function NotFound() {
  return (
    <main class="page" id="main">
      <h1>Not found</h1>
      <p>
        There is nothing here. <a href="/">Back to the chat</a>
      </p>
    </main>
  );
}

installCopyButtons();
render(
  <LocationProvider>
    <Shell />
  </LocationProvider>,
  document.getElementById("app")!,
);
