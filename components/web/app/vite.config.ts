import { defineConfig } from "vite";

// The app is served by the `web` component from the files this build
// writes to dist/ (embedded at compile time): no dev-only plugins, no
// inline scripts (the component's Content-Security-Policy forbids them).
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    target: "es2022",
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
  server: { proxy: { "/api": "http://127.0.0.1:3000", "/v1": "http://127.0.0.1:3000" } },
});
