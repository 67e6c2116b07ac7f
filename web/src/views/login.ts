// #/login — sign in with a local user (POST /auth/token). Users of an identity provider,
// and `make up`'s link, bring their token in the address instead (#token=…).
import { ApiError, type Api } from "../api";
import { h, text } from "../dom";

export function loginView(api: Api, message: string, done: (token: string) => void):
    HTMLElement {
  const user = h("input", { name: "username", autocomplete: "username", required: true,
                            "aria-label": "username" });
  const pass = h("input", { name: "password", type: "password", required: true,
                            autocomplete: "current-password", "aria-label": "password" });
  const error = h("p", { class: "login-error", role: "alert" }, message);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "login panel", onsubmit: async (ev: Event) => {
    ev.preventDefault();
    button.disabled = true;
    text(error, "");
    try {
      done(await api.login(user.value.trim(), pass.value));
    } catch (err) {
      text(error, err instanceof ApiError && err.status === 401 ? "Wrong username or password."
        : err instanceof ApiError ? err.detail : String(err));
      button.disabled = false;
    }
  } },
  h("h1", {}, "bessmon"), h("p", { class: "meta" }, "Sign in to the fleet dashboard."),
  h("label", {}, "Username", user), h("label", {}, "Password", pass), button, error);
  return h("div", { class: "view login-view" }, form);
}
