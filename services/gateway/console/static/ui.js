// Small DOM helpers shared by the pages: elements, tables, the confirmation dialog, the status line.

import { token } from "./api.js";

/** An element: `el("a", {href: "#"}, "text", child)`; attributes named on… are listeners. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table with a caption, column headers and rows of cells (strings or nodes); `empty` when no rows. */
export function table(caption, headers, rows, empty = "None.") {
  if (!rows.length) return el("p", { class: "empty" }, `${caption}: ${empty}`);
  return el(
    "table",
    {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => el("td", {}, cell))))),
  );
}

/** A labelled form control: `field("Status", select)` → label + control, linked by id. */
export function field(label, control) {
  return el("div", { class: "field" }, el("label", { for: control.id }, label), control);
}

export function select(id, options, value = "") {
  return el(
    "select",
    { id, name: id },
    options.map(([optionValue, text]) => el("option", { value: optionValue, selected: optionValue === value }, text)),
  );
}

/** Says `message` in the status line (read out by screen readers); `error` styles it as a failure. Once
 * signed out, only the sign-in's own messages (`always`) are said, not those of a page that was loading. */
export function say(message, error = false, always = false) {
  if (!always && !token()) return;
  const status = document.getElementById("status");
  status.textContent = message;
  status.classList.toggle("error", error);
}

/** Asks in the modal dialog; resolves true only when the person chose `ok` (Escape or "Keep" is false). */
export function confirmAction({ title, text, ok }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = ok;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

export function money(value) {
  const amount = Number(value || 0);
  return `$${amount.toFixed(amount !== 0 && Math.abs(amount) < 0.01 ? 6 : 2)}`;
}

export function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** A status word as a badge (its class colours it; the word itself carries the meaning). */
export function badge(status) {
  return el("span", { class: `badge ${status}` }, status);
}

export function heading(text) {
  return el("h2", { id: "page-title", tabindex: "-1" }, text);
}

const drawn = new WeakMap();

/** Whether `box` should show `data` now: it differs from what is shown, and keyboard focus is not inside
 * (redrawing would drop it); records `data` as shown when so. */
export function redraw(box, data) {
  const text = JSON.stringify(data);
  if (drawn.get(box) === text || box.contains(document.activeElement)) return false;
  drawn.set(box, text);
  return true;
}
