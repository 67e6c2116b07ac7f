// The dashboard's build: web/dist (served by the API at / and /assets), no inline script
// (the API's CSP allows only 'self' scripts). `npm run dev` proxies the API of a running
// `make up` (BESSMON_API, default http://127.0.0.1:8000).
import { defineConfig } from "vite";

const api = process.env.BESSMON_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0, // every file from /assets: nothing inlined as data: URLs
    modulePreload: { polyfill: false }, // evergreen browsers only: no polyfill code
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      "/api": { target: api, ws: true, changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
