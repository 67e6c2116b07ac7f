// Saving a file the API serves (a compliance report, an exclusion's evidence): fetched with
// the caller's token (a plain link could not send it), then handed to the browser as a
// download. `status` says what happened: "preparing…", "downloaded <name>" or the API's error.

import { ApiError, type Api } from "./api";
import { h, text } from "./dom";

export async function saveFile(api: Api, status: HTMLElement, path: string,
                               query: Record<string, string> = {}): Promise<void> {
  text(status, "preparing…");
  try {
    const { blob, filename } = await api.download(path, query);
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    text(status, `downloaded ${filename}`);
  } catch (err) {
    text(status, err instanceof ApiError ? err.detail : String(err));
  }
}
