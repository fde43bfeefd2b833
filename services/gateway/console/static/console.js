// The console's entry point: sign-in, and the pages by the address's fragment (#/workflows, #/workflows/<id>,
// #/costs, #/delivery, #/admin).

import { claims, forget, setToken, takeTokenFromFragment, token } from "./api.js";
import { adminPage } from "./admin.js";
import { costsPage } from "./costs.js";
import { deliveryPage } from "./delivery.js";
import { say } from "./ui.js";
import { detailPage, listPage } from "./workflows.js";

let cleanup = () => {};

function route() {
  const path = window.location.hash.replace(/^#/, "") || "/workflows";
  const detail = /^\/workflows\/([0-9a-f-]{36})$/.exec(path);
  if (detail) return [(root) => detailPage(root, detail[1]), "/workflows"];
  const pages = { "/workflows": listPage, "/costs": costsPage, "/delivery": deliveryPage, "/admin": adminPage };
  return [pages[path] || listPage, pages[path] ? path : "/workflows"];
}

async function show() {
  cleanup();
  cleanup = () => {};
  const signedIn = Boolean(token());
  document.getElementById("sign-in").hidden = signedIn;
  document.getElementById("who").hidden = !signedIn;
  // A fresh root per page: a page still loading when the person moves on writes into a detached node.
  const root = document.createElement("div");
  document.getElementById("page").replaceChildren(root);
  if (!signedIn) {
    document.getElementById("token").focus();
    return;
  }
  const who = claims() || {};
  document.getElementById("who-name").textContent = `${who.sub || "?"}${who.role === "admin" ? " (admin)" : ""}`;
  const [page, current] = route();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${current}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  try {
    cleanup = (await page(root)) || (() => {});
  } catch (error) {
    say(error.message, true);
  }
  const title = document.getElementById("page-title");
  if (title) title.focus({ preventScroll: true });
}

takeTokenFromFragment();
document.getElementById("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(document.getElementById("token").value);
  document.getElementById("token").value = "";
  if (window.location.hash.startsWith("#/")) show();
  else window.location.hash = "#/workflows"; // hashchange shows it
});
document.getElementById("sign-out").addEventListener("click", () => {
  forget();
  show();
});
window.addEventListener("ho:signed-out", (event) => {
  show();
  say(`Signed out: ${event.detail || "the token was refused"}. Paste a valid token.`, true, true);
});
window.addEventListener("hashchange", () => {
  takeTokenFromFragment();
  show();
});
show();
