// optiroute-mw live dashboard: polls ./stats and redraws in place (no libraries, no CDN).
// Every figure is written with textContent: names in the data come from callers.
"use strict";

const params = new URLSearchParams(location.search);
const INTERVAL_S = Math.max(0.2, Number(params.get("interval")) || 2);
const TIMEOUT_MS = 5000;
const KEY = "optiroute-master-key";
const SVG = "http://www.w3.org/2000/svg";
let lastAt = null; // when the figures on screen (kept when the endpoint fails) were made
let timer = null;

const fmt = {
  usd: (v) => "$" + Number(v).toFixed(6),
  pct: (v) => (v * 100).toFixed(1) + "%",
  pct100: (v) => Number(v).toFixed(1) + "%",
  ms: (v) => Number(v).toFixed(v < 10 ? 3 : 1) + " ms",
  int: (v) => String(Math.round(v)),
  text: (v) => String(v),
};
const show = (v, kind) => (v === null || v === undefined ? "–" : fmt[kind](v));
const dig = (obj, path) => path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);
const clock = (t) => new Date(t * 1000).toTimeString().slice(0, 8);
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function setStatus(text, kind) {
  const pill = $("status");
  pill.textContent = text;
  pill.className = "pill " + kind;
}

function render(stats) {
  for (const node of document.querySelectorAll("[data-stat]")) {
    node.textContent = show(dig(stats, node.dataset.stat), node.dataset.fmt);
  }
  drawMoney(stats.series);
  drawTraffic(stats.series);
  drawShares($("by_model"), stats.by_model, "model");
  drawShares($("by_tier"), stats.by_tier, "tier");
  drawCircuits(stats.circuits);
  drawRecent(stats.recent);
}

function emptyNote(svg, text) {
  svg.append(el("text", { x: 12, y: 24 }, text, SVG));
}

function drawMoney(series) {
  const svg = $("money");
  svg.replaceChildren();
  if (!series.length || !series[series.length - 1].baseline_usd && !series[series.length - 1].spend_usd) {
    return emptyNote(svg, "no spend in this window yet");
  }
  const W = 1200, H = 220, L = 70, B = 22, T = 12;
  const top = Math.max(...series.map((p) => Math.max(p.baseline_usd, p.spend_usd))) || 1;
  const x = (i) => L + (i * (W - L - 8)) / Math.max(1, series.length - 1);
  const y = (v) => H - B - (v * (H - B - T)) / top;
  const line = (key) => series.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
  const back = series.map((p, i) => `L${x(i).toFixed(1)},${y(p.spend_usd).toFixed(1)}`).reverse().join("");
  svg.append(
    el("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }, null, SVG),
    el("path", { class: "saved", d: line("baseline_usd") + back + "Z" }, null, SVG),
    el("path", { class: "baseline", d: line("baseline_usd") }, null, SVG),
    el("path", { class: "spend", d: line("spend_usd") }, null, SVG),
    el("text", { x: 4, y: T + 8 }, fmt.usd(top), SVG),
    el("text", { x: 4, y: H - B }, "$0", SVG),
    el("text", { x: L, y: H - 6 }, clock(series[0].t), SVG),
    el("text", { x: W - 56, y: H - 6 }, clock(series[series.length - 1].t), SVG),
    el("text", { x: L + 8, y: T + 8, class: "legend" }, "— spend   - - baseline", SVG),
  );
}

function drawTraffic(series) {
  const svg = $("traffic");
  svg.replaceChildren();
  const top = Math.max(0, ...series.map((p) => p.requests));
  if (!top) return emptyNote(svg, "no requests in this window yet");
  const W = 400, H = 220, B = 22, T = 12, L = 30;
  const step = (W - L) / series.length;
  const h = (v) => (v * (H - B - T)) / top;
  series.forEach((p, i) => {
    const bx = (L + i * step + step * 0.1).toFixed(1), bw = Math.max(1, step * 0.8).toFixed(1);
    svg.append(el("rect", { class: "bar", x: bx, width: bw, y: H - B - h(p.requests), height: h(p.requests) }, null, SVG));
    if (p.cache_hits) {
      svg.append(el("rect", { class: "bar hit", x: bx, width: bw, y: H - B - h(p.cache_hits), height: h(p.cache_hits) }, null, SVG));
    }
  });
  svg.append(
    el("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }, null, SVG),
    el("text", { x: 2, y: T + 8 }, String(top), SVG),
    el("text", { x: L, y: H - 6 }, clock(series[0].t), SVG),
  );
}

function drawShares(box, rows, key) {
  box.replaceChildren();
  if (!rows.length) return box.append(el("p", { class: "empty" }, "no requests yet"));
  for (const row of rows) {
    const fill = el("div", { class: "fill" });
    fill.style.width = (row.share * 100).toFixed(1) + "%";
    const track = el("div", { class: "track" });
    track.append(fill);
    const line = el("div", { class: "row", "data-name": row[key] });
    line.append(
      el("span", { class: "name", title: row[key] }, row[key]),
      track,
      el("span", { class: "num" }, `${fmt.pct(row.share)} · ${row.requests}`),
    );
    box.append(line);
  }
}

function drawCircuits(circuits) {
  const body = $("circuits");
  body.replaceChildren();
  if (!circuits.length) return body.append(el("tr", {}, "no deployments"));
  for (const c of circuits) {
    const tr = el("tr", { "data-deployment": c.deployment });
    const cell = el("td");
    cell.append(el("span", { class: "state " + c.state }, c.state.replace("_", "-")));
    tr.append(el("td", {}, c.deployment), cell);
    body.append(tr);
  }
}

function drawRecent(rows) {
  const body = $("recent");
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr");
    tr.append(el("td", { colspan: 10, class: "empty" }, "no requests yet"));
    return body.append(tr);
  }
  for (const r of rows) {
    const tr = el("tr", { "data-request-id": r.request_id });
    const cells = [
      clock(r.ts), r.request_id.slice(0, 12), r.tenant,
      `${r.requested_model} → ${r.model ?? "–"}`, r.tier ?? "–", r.cache, String(r.status),
      fmt.ms(r.latency_ms), fmt.usd(r.cost_usd), fmt.usd(Math.max(0, r.baseline_cost_usd - r.cost_usd)),
    ];
    for (const c of cells) tr.append(el("td", {}, c));
    body.append(tr);
  }
}

function offline(reason) {
  const banner = $("offline");
  const kept = lastAt ? `showing the figures from ${clock(lastAt)}` : "no figures yet";
  banner.textContent = `Stats endpoint unreachable (${reason}): ${kept}; retrying every ${INTERVAL_S} s.`;
  banner.hidden = false;
  setStatus("offline", "down");
}

async function poll() {
  clearTimeout(timer);
  const controller = new AbortController();
  const cut = setTimeout(() => controller.abort(), TIMEOUT_MS);
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = "Bearer " + key;
  try {
    const response = await fetch(`stats?minutes=${$("window").value}`, {
      cache: "no-store", headers, signal: controller.signal,
    });
    if (response.status === 401) {
      $("keyform").hidden = false;
      setStatus("key needed", "down");
    } else if (!response.ok) {
      offline(`HTTP ${response.status}`);
    } else {
      const stats = await response.json();
      render(stats);
      lastAt = stats.generated_at;
      $("offline").hidden = true;
      $("keyform").hidden = true;
      setStatus("live · " + clock(stats.generated_at), "live");
      document.body.dataset.updated = String(stats.generated_at);
    }
  } catch (err) {
    offline(err.name === "AbortError" ? "timed out" : "network error");
  } finally {
    clearTimeout(cut);
    timer = setTimeout(poll, INTERVAL_S * 1000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("interval").textContent = String(INTERVAL_S);
  $("window").addEventListener("change", poll);
  $("keyform").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value);
    poll();
  });
  poll();
});
