// Delivery: the accounts sending now (their campaigns, how far, the next planned send, the platform window
// in use and its next free slot), the paused ones, pause and resume (admin: the gateway answers 403 to another
// token).

import { call } from "./api.js";
import { badge, confirmAction, el, field, heading, redraw, say, table, when } from "./ui.js";

const FLAGS = "/api/admin/feature-flags";
const REFRESH_MS = 3000;
const MAX_CAMPAIGNS = 20; // campaigns whose status is read for their next slot, per refresh

/** Each account's window as the rate-limiter's plan holds it (null: it could not be read just now). */
async function windows(accounts) {
  const read = await Promise.all(accounts.map((account) =>
    call("GET", `/api/admin/accounts/${encodeURIComponent(account)}/window`).catch(() => null)));
  return new Map(accounts.map((account, i) => [account, read[i]]));
}

/** "3 of 10 this minute" (and the hour's, when capped): what the account's sends use of the limits now. */
function inUse(w) {
  if (!w) return "—";
  const { accountLimit, windowS, hourlyLimit } = w.limits;
  // The enforced window carries the safety margin (61 s for the platform's minute).
  const span = Math.round(windowS / 60) === 1 ? "this minute" : `in ${windowS} s`;
  const hour = hourlyLimit ? `; ${w.inHour} of ${hourlyLimit} this hour` : "";
  return `${w.inWindow} of ${accountLimit} ${span}${hour}`;
}

function nextFree(w) {
  if (!w) return "—";
  return w.nextFreeAt === w.at ? "now" : when(w.nextFreeAt);
}

/** What a window row shows, without `at` (it changes every read): the rows are redrawn when this does. */
function shown(w) {
  return w && [inUse(w), nextFree(w), w.plannedAhead];
}

async function setPaused(accountId, pause) {
  if (pause) {
    const ok = await confirmAction({ title: `Pause ${accountId}?`, ok: "Pause account",
      text: "Every delivery from this creator account is held, on every replica, until it is resumed. " +
        "New campaigns for it are still accepted and wait too." });
    if (!ok) return;
  }
  try {
    await call("PUT", `/api/admin/accounts/${encodeURIComponent(accountId)}/${pause ? "pause" : "resume"}`);
    say(`${accountId} ${pause ? "paused: its deliveries are held" : "resumed"}.`);
  } catch (error) {
    say(`${pause ? "Pause" : "Resume"}: ${error.message}`, true);
  }
}

/** The delivering campaigns by account: how many, sent of total, and the earliest planned send. */
async function sending() {
  const page = await call("GET", "/api/v2/campaigns", { query: { status: "delivering", limit: 100 } });
  const views = await Promise.all(page.workflows.slice(0, MAX_CAMPAIGNS).map((w) =>
    call("GET", "/api/v2/campaigns/status", { query: { workflowId: w.workflowId } }).catch(() => null)));
  const accounts = new Map();
  for (const w of views.filter(Boolean)) {
    const account = w.accountId || w.userId;
    const row = accounts.get(account) || { campaigns: 0, sent: 0, total: 0, next: null };
    const p = w.progress || { sent: 0, total: 0, nextSlotAt: null };
    row.campaigns += 1;
    row.sent += p.sent;
    row.total += p.total;
    if (p.nextSlotAt && (!row.next || p.nextSlotAt < row.next)) row.next = p.nextSlotAt;
    accounts.set(account, row);
  }
  return [...accounts.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function pauseButton(account, paused, reload) {
  return el("button", { type: "button", "data-account": account, class: paused ? "" : "danger",
    onclick: async () => {
      await setPaused(account, !paused);
      // Its row changes or goes: the focus moves to the page's title, so the tables may be redrawn.
      document.getElementById("page-title").focus();
      reload();
    } },
  paused ? `Resume ${account}` : `Pause ${account}…`);
}

export async function deliveryPage(root) {
  const now = el("div", { id: "sending-accounts" });
  const held = el("div", { id: "paused-accounts" });
  async function load() {
    const [flags, accounts] = await Promise.all([call("GET", FLAGS), sending()]);
    const paused = new Set(flags.pausedAccounts);
    const planned = await windows([...new Set([...accounts.map(([account]) => account), ...paused])]);
    const seen = (account) => shown(planned.get(account));
    if (redraw(now, { accounts, paused: [...paused], windows: accounts.map(([account]) => seen(account)) })) {
      now.replaceChildren(table("Sending now",
        ["Account", "Campaigns", "Sent", "Next send", "Window in use", "Next free slot", "State", ""],
        accounts.map(([account, r]) => [account, String(r.campaigns), `${r.sent} of ${r.total}`, when(r.next),
          inUse(planned.get(account)), nextFree(planned.get(account)),
          badge(paused.has(account) ? "paused" : "sending"), pauseButton(account, paused.has(account), reload)]),
        "no campaign is delivering."));
    }
    if (redraw(held, { paused: flags.pausedAccounts, windows: flags.pausedAccounts.map(seen) })) {
      held.replaceChildren(table("Paused accounts", ["Account", "Window in use", "Next free slot", ""],
        flags.pausedAccounts.map((account) => [account, inUse(planned.get(account)), nextFree(planned.get(account)),
          pauseButton(account, true, reload)]),
        "none: every account sends."));
    }
  }
  const reload = () => load().catch((error) => say(`Delivery: ${error.message}`, true));
  const account = el("input", { id: "pause-account", name: "account", required: true, size: 24 });
  const form = el("form", { class: "filters", "aria-label": "Pause an account", onsubmit: async (event) => {
    event.preventDefault();
    await setPaused(account.value.trim(), true);
    reload();
  } }, field("Creator account", account), el("button", { type: "submit" }, "Pause…"));
  root.replaceChildren(heading("Delivery"),
    el("p", {}, "Each account sends within the platform's limits; the next send is the earliest slot planned " +
      "for its campaigns. The window in use counts the sends the rate limiter planned in the platform's " +
      "rolling window ending now, and the next free slot is when one more send would fit. A paused " +
      "account's deliveries are held (nothing sent, no attempt spent) and go out within those limits once " +
      "it is resumed."),
    now, form, held);
  await reload();
  const timer = setInterval(reload, REFRESH_MS);
  return () => clearInterval(timer);
}
