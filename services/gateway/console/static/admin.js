// The admin page: the feature flags (the kill switch behind a confirmation) and the dead letters with replay.
// The gateway answers 403 to a token without role admin.

import { call, parameterEnum } from "./api.js";
import { badge, confirmAction, el, field, heading, say, select, table, when } from "./ui.js";

const FLAGS = "/api/admin/feature-flags";

function flagsView(flags, reload) {
  const on = flags.hybridOrchestratorEnabled;
  const kill = el("button", { type: "button", id: "kill-switch", class: on ? "danger" : "", onclick: async () => {
    const ok = await confirmAction(on
      ? { title: "Stop all work?", ok: "Stop everything",
        text: "New workflows are refused (503 disabled) and nothing more is sent or generated for the accepted " +
          "ones, on every replica, until the switch is on again. Nothing is lost." }
      : { title: "Resume all work?", ok: "Resume everything",
        text: "Held sends and generations go through within about a second, within the platform's limits." });
    if (!ok) return;
    try {
      await call("PUT", FLAGS, { body: { hybridOrchestratorEnabled: !on, expectedVersion: flags.version } });
      say(on ? "Kill switch: everything is stopped." : "Kill switch: work resumed.");
    } catch (error) {
      say(`Kill switch: ${error.message}`, true);
    }
    reload();
  } }, on ? "Stop everything (kill switch)…" : "Resume everything…");
  const rollout = el("input", { id: "rollout", type: "number", min: 0, max: 100, value: flags.rolloutPercentage });
  const rolloutForm = el("form", { class: "filters", "aria-label": "Rollout", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await call("PUT", FLAGS, { body: { rolloutPercentage: Number(rollout.value), expectedVersion: flags.version } });
      say(`Rollout: ${rollout.value}%.`);
    } catch (error) {
      say(`Rollout: ${error.message}`, true);
    }
    reload();
  } }, field("Rollout percentage", rollout), el("button", { type: "submit" }, "Save"));
  return [
    el("h3", {}, "Feature flags"),
    el("dl", { class: "facts" },
      el("dt", {}, "Orchestrator"), el("dd", { id: "orchestrator-state" }, badge(on ? "running" : "stopped")),
      el("dt", {}, "Allow list"), el("dd", {}, flags.allowList.join(", ") || "—"),
      el("dt", {}, "Version"), el("dd", {}, `${flags.version}, changed ${when(flags.updatedAt)} by ${flags.updatedBy || "—"}`),
      el("dt", {}, "Store"), el("dd", {}, flags.store)),
    kill, rolloutForm,
  ];
}

function deadLetterRows(service, letters, reload) {
  return letters.map((d) => [el("code", {}, d.id.slice(0, 18)), d.type || "—", d.reason, when(d.deadLetteredAt),
    d.workflowId || "—", String(d.replays),
    el("button", { type: "button", class: "replay", "aria-label": `Replay ${d.id}`, onclick: async () => {
      try {
        const answer = await call("POST", "/api/admin/dead-letters/replay", { body: { service, id: d.id } });
        say(`Replayed ${answer.replayed}.`);
      } catch (error) {
        say(`Replay: ${error.message}`, true);
      }
      reload();
    } }, "Replay")]);
}

/** Admin: the feature flags and a service's dead letters. */
export async function adminPage(root) {
  const services = await parameterEnum("listDeadLetters", "service");
  const flagsBox = el("section", { id: "flags", "aria-label": "Feature flags" });
  const lettersBox = el("div", { id: "dead-letters" });
  const service = select("dlq-service", services.map((s) => [s, s]), "router");
  const replayAll = el("button", { type: "button", id: "replay-all" }, "Replay all…");

  async function loadFlags() {
    try {
      flagsBox.replaceChildren(...flagsView(await call("GET", FLAGS), loadFlags));
    } catch (error) {
      say(`Flags: ${error.message}`, true);
    }
  }
  async function loadLetters() {
    try {
      const answer = await call("GET", "/api/admin/dead-letters", { query: { service: service.value, limit: 50 } });
      lettersBox.replaceChildren(table(`${answer.service}: ${answer.depth} dead letters`,
        ["Id", "Type", "Reason", "Dead since", "Workflow", "Replays", ""],
        deadLetterRows(answer.service, answer.deadLetters, loadLetters), "the queue is empty."));
    } catch (error) {
      say(`Dead letters: ${error.message}`, true);
    }
  }
  replayAll.addEventListener("click", async () => {
    const ok = await confirmAction({ title: `Replay every dead letter of ${service.value}?`, ok: "Replay all",
      text: "Each goes back to its queue with its tries renewed; one that fails again is dead-lettered again. " +
        "Fix the cause first: the reason says what it was." });
    if (!ok) return;
    try {
      const answer = await call("POST", "/api/admin/dead-letters/replay", { body: { service: service.value, all: true } });
      say(`Replayed ${answer.replayed}.`);
    } catch (error) {
      say(`Replay: ${error.message}`, true);
    }
    loadLetters();
  });
  const form = el("form", { class: "filters", "aria-label": "Dead letters", onsubmit: (event) => {
    event.preventDefault();
    loadLetters();
  } }, field("Service", service), el("button", { type: "submit" }, "Show"), replayAll);
  root.replaceChildren(heading("Admin"), flagsBox, el("h3", {}, "Dead letters"), form, lettersBox);
  await Promise.all([loadFlags(), loadLetters()]);
  return () => {};
}
