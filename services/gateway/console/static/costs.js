// Costs: today and the month, the daily spend chart with the forecast's band, spend by provider and by
// model (totals, and each day's as one line per provider / model), thresholds, and alerts with acknowledge.

import { call } from "./api.js";
import { badge, el, heading, money, say, table, when } from "./ui.js";

const LOOKBACK_DAYS = 30;
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 760;
const HEIGHT = 260;
const PAD = { left: 64, right: 16, top: 16, bottom: 32 };
const FORECAST_DAYS = 7;
const SERIES_STYLES = 6; // console.css: .series.s0 … .s5, each a colour and a dash pattern

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** A chart with nothing drawn yet: its accessible label, the x axis, the top value's and $0's ticks on the y axis,
 * and `dates` ([x, text, anchor] each) under the axis. `top` is the scale's top, 10 % above the highest value. */
function chartFrame(id, label, top, y, dates) {
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, id,
    class: "chart" });
  chart.append(svg("title", {}, label));
  const axisY = HEIGHT - PAD.bottom;
  chart.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: axisY, y2: axisY, class: "axis" }));
  chart.append(svg("text", { x: PAD.left - 6, y: y(top / 1.1) + 4, class: "tick", "text-anchor": "end" }, money(top / 1.1)));
  chart.append(svg("text", { x: PAD.left - 6, y: axisY + 4, class: "tick", "text-anchor": "end" }, "$0"));
  for (const [x, text, anchor] of dates) {
    chart.append(svg("text", { x, y: HEIGHT - 8, class: "tick", "text-anchor": anchor }, text));
  }
  return chart;
}

/** The daily history (one point per day) and, after it, the next 7 days' forecast as a band. */
export function spendChart(forecast) {
  const history = forecast.history.map((d) => ({ date: d.date, cost: Number(d.cost) }));
  const week = forecast.next7Days;
  const band = { low: Number(week.lower) / FORECAST_DAYS, mid: Number(week.total) / FORECAST_DAYS,
    high: Number(week.upper) / FORECAST_DAYS };
  const days = history.length + FORECAST_DAYS;
  const top = Math.max(band.high, ...history.map((d) => d.cost), 0.01) * 1.1;
  const x = (i) => PAD.left + (i + 0.5) * ((WIDTH - PAD.left - PAD.right) / days);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const label = `Daily spend over ${history.length} days, ${money(history.reduce((s, d) => s + d.cost, 0))} in all; ` +
    `next 7 days forecast ${money(week.total)} (${money(week.lower)} to ${money(week.upper)}, 95%).`;
  const dates = history.length ? [[x(0), history[0].date, "start"],
    [x(history.length - 1), history[history.length - 1].date, "middle"]] : [];
  const chart = chartFrame("spend-chart", label, top, y, dates);
  const first = x(history.length) - 8;
  const last = x(days - 1) + 8;
  chart.append(svg("polygon", { class: "band",
    points: `${first},${y(band.high)} ${last},${y(band.high)} ${last},${y(band.low)} ${first},${y(band.low)}` },
  svg("title", {}, `forecast: ${money(band.mid)} a day, ${money(band.low)} to ${money(band.high)} (95%)`)));
  chart.append(svg("line", { class: "forecast", x1: first, x2: last, y1: y(band.mid), y2: y(band.mid) }));
  chart.append(svg("polyline", { class: "spend", points: history.map((d, i) => `${x(i)},${y(d.cost)}`).join(" ") }));
  history.forEach((d, i) => {
    chart.append(svg("circle", { class: "point", cx: x(i), cy: y(d.cost), r: 3.5, "data-date": d.date,
      "data-cost": d.cost }, svg("title", {}, `${d.date}: ${money(d.cost)}`)));
  });
  return chart;
}

/** Each day's spend per provider or model (a breakdown by day split by it): one line per key, labelled in a
 * legend, and the same figures as a table for the keyboard and screen readers. */
export function seriesChart(id, what, breakdown) {
  const days = breakdown.groups.map((g) => g.key);
  const keys = (breakdown.groups[0]?.parts || []).map((p) => p.key);
  const series = keys.map((key, k) => ({ key, style: `s${k % SERIES_STYLES}`,
    costs: breakdown.groups.map((g) => Number(g.parts[k].cost)) }));
  const top = Math.max(0.01, ...series.flatMap((s) => s.costs)) * 1.1;
  const x = (i) => PAD.left + (i + 0.5) * ((WIDTH - PAD.left - PAD.right) / Math.max(days.length, 1));
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const total = (s) => s.costs.reduce((sum, cost) => sum + cost, 0);
  const label = `Daily spend by ${what} from ${days[0]} to ${days[days.length - 1]}: ` +
    (series.map((s) => `${s.key} ${money(total(s))}`).join(", ") || "nothing spent") + ".";
  const dates = days.length ? [[x(0), days[0], "start"], [x(days.length - 1), days[days.length - 1], "end"]] : [];
  const chart = chartFrame(id, label, top, y, dates);
  for (const s of series) {
    const line = svg("g", { class: `series ${s.style}`, "data-key": s.key });
    line.append(svg("polyline", { class: "line", points: s.costs.map((cost, i) => `${x(i)},${y(cost)}`).join(" ") }));
    s.costs.forEach((cost, i) => line.append(svg("circle", { class: "point", cx: x(i), cy: y(cost), r: 3,
      "data-date": days[i], "data-cost": cost }, svg("title", {}, `${s.key}, ${days[i]}: ${money(cost)}`))));
    chart.append(line);
  }
  const swatch = (s) => svg("svg", { class: `swatch series ${s.style}`, "aria-hidden": "true", viewBox: "0 0 24 8" },
    svg("line", { class: "line", x1: 0, x2: 24, y1: 4, y2: 4 }));
  const legend = el("ul", { class: "legend", "aria-label": `Lines: one per ${what}` },
    series.map((s) => el("li", { "data-key": s.key }, swatch(s), `${s.key}: ${money(total(s))}`)));
  const figures = el("details", {}, el("summary", {}, `Daily spend by ${what}, as a table`),
    table(`Daily spend by ${what} (USD)`, ["Day", ...keys],
      days.map((day, i) => [day, ...series.map((s) => money(s.costs[i]))]), "nothing spent."));
  return el("figure", { class: "series-chart" }, chart, legend, figures);
}

function bars(caption, breakdown) {
  const rows = breakdown.groups.map((g) => [g.key, money(g.cost),
    el("meter", { min: 0, max: 100, value: Number(g.share), "aria-label": `${g.key}: ${g.share}%` }),
    `${Number(g.share).toFixed(1)}%`, String(g.requests)]);
  return table(caption, ["", "Cost", "Share", "", "Calls"], rows, "nothing spent.");
}

function alertRow(alert, reload) {
  const ack = alert.acknowledged
    ? `acknowledged by ${alert.acknowledgedBy}`
    : el("button", { type: "button", class: "ack", "data-alert-id": alert.id, "aria-label": `Acknowledge: ${alert.message}`,
      onclick: async () => {
      try {
        await call("PUT", "/api/v2/costs/alerts", { body: { alertId: alert.id, acknowledged: true } });
        say("Alert acknowledged.");
      } catch (error) {
        say(`Acknowledge: ${error.message}`, true);
      }
      reload();
    } }, "Acknowledge");
  return [when(alert.timestamp), badge(alert.severity), alert.message, money(alert.currentValue),
    money(alert.threshold), ack];
}

/** The costs page. */
export async function costsPage(root) {
  const since = new Date(Date.now() - LOOKBACK_DAYS * 86400000).toISOString().slice(0, 10);
  async function load() {
    const daily = (splitBy) => call("GET", "/api/v2/costs/breakdown", { query: { groupBy: "day", splitBy, from: since } });
    const [stats, forecast, providers, models, thresholds, alerts, dailyProviders, dailyModels] = await Promise.all([
      call("GET", "/api/v2/costs/stats"),
      call("GET", "/api/v2/costs/forecast", { query: { lookbackDays: LOOKBACK_DAYS } }),
      call("GET", "/api/v2/costs/breakdown", { query: { groupBy: "provider", from: since } }),
      call("GET", "/api/v2/costs/breakdown", { query: { groupBy: "model", from: since } }),
      call("GET", "/api/v2/costs/thresholds"),
      call("GET", "/api/v2/costs/alerts"),
      daily("provider"),
      daily("model"),
    ]);
    const w7 = forecast.next7Days;
    const w30 = forecast.next30Days;
    root.replaceChildren(
      heading("Costs"),
      el("dl", { class: "facts" },
        el("dt", {}, "Today"), el("dd", { id: "today-total" }, money(stats.todayTotal)),
        el("dt", {}, "This month"), el("dd", {}, money(stats.monthTotal)),
        el("dt", {}, "Next 7 days"), el("dd", {}, `${money(w7.total)} (${money(w7.lower)}–${money(w7.upper)})`),
        el("dt", {}, "Next 30 days"), el("dd", {}, `${money(w30.total)} (${money(w30.lower)}–${money(w30.upper)})`),
        el("dt", {}, "Forecast method"), el("dd", {}, `${forecast.method}, ${forecast.historyDays} days fitted`)),
      el("h3", {}, `Daily spend, last ${LOOKBACK_DAYS} days, and the forecast`),
      el("figure", {}, spendChart(forecast),
        el("figcaption", {}, "Points: each day's spend (UTC). Band: the next 7 days' forecast per day, 95% interval.")),
      el("div", { class: "columns" },
        bars(`By provider, since ${since}`, providers), bars(`By model, since ${since}`, models)),
      el("h3", {}, `Daily spend by provider, since ${since}`),
      seriesChart("provider-chart", "provider", dailyProviders),
      el("h3", {}, `Daily spend by model, since ${since}`),
      seriesChart("model-chart", "model", dailyModels),
      table("Thresholds", ["Name", "Period", "Limit", "Scope", "Action", "Enabled"],
        thresholds.thresholds.map((t) => [t.name || "—", t.type, money(t.threshold), t.userId || "global", t.action,
          t.enabled ? "yes" : "no"])),
      table(`Alerts (${alerts.summary.unacknowledged} not acknowledged)`,
        ["Raised", "Severity", "Message", "Spent", "Limit", ""], alerts.alerts.map((a) => alertRow(a, reload))),
    );
  }
  const reload = () => load().catch((error) => say(`Costs: ${error.message}`, true));
  await reload();
  return () => {};
}
