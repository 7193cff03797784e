// babelgate's dashboard. Everything shown comes from the gateway's JSON API: /admin/api/...
// (usage, series, requests, keys), /v1/providers and /v1/quota. No library, no build step.
// Text from the API (model names, key names, clients) is written with textContent only: a
// client chooses its model name, and it must never become markup here.
"use strict";

const KEY_STORE = "babelgate.adminKey";
const REFRESH_MS = 30000;
const RECENT = 25;  // requests listed
const state = { key: sessionStorage.getItem(KEY_STORE), series: null, timer: null };

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

// ------------------------------------------------------------------ formatting

const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));

// As `babelgate usage` prints it: unknown is never $0.
function fmtCost(group) {
  if (group.cost == null) return group.unpriced ? "unknown" : "–";
  const text = group.cost < 1
    ? `$${group.cost.toFixed(4)}`
    : `$${group.cost.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  return group.unpriced ? `${text} + unpriced` : text;
}

function fmtMs(ms) {
  if (ms == null) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  const today = new Date().toDateString() === when.toDateString();
  const time = when.toLocaleTimeString("en-GB", { hour12: false });
  return today ? time : `${when.toLocaleDateString("en-GB", { month: "short", day: "numeric" })} ${time}`;
}

function fmtUnix(seconds) {
  return seconds == null ? "–" : new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

// ------------------------------------------------------------------ DOM helpers

const $ = (selector) => document.querySelector(selector);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function badge(text, kind) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  td.appendChild(span);
  return td;
}

// columns: [title, numeric?]; rows: arrays of cells (strings or <td> elements).
function fillTable(table, columns, rows, empty) {
  table.replaceChildren();
  const head = document.createElement("tr");
  for (const [title, numeric] of columns) {
    const th = document.createElement("th");
    th.textContent = title;
    if (numeric) th.className = "num";
    head.appendChild(th);
  }
  table.appendChild(head);
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(empty, "empty");
    td.colSpan = columns.length;
    tr.appendChild(td);
    table.appendChild(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    row.forEach((value, i) => {
      tr.appendChild(value instanceof HTMLElement ? value : cell(value, columns[i][1] ? "num" : ""));
    });
    table.appendChild(tr);
  }
}

function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

// ------------------------------------------------------------------ sections

function renderTotals(total) {
  document.querySelector('[data-testid="total-requests"]').textContent = fmtInt(total.requests);
  document.querySelector('[data-testid="total-input"]').textContent = fmtInt(total.input_tokens);
  document.querySelector('[data-testid="total-output"]').textContent = fmtInt(total.output_tokens);
  // "$4.27 + unpriced": the note smaller, the text the same as `babelgate usage` prints.
  const cost = document.querySelector('[data-testid="total-cost"]');
  const [amount, note] = fmtCost(total).split(" + ");
  cost.textContent = amount;
  if (note) {
    const small = document.createElement("small");
    small.textContent = ` + ${note}`;
    cost.appendChild(small);
  }
  document.querySelector('[data-testid="total-errors"]').textContent = fmtInt(total.errors);
}

function renderCost(by, summary) {
  const rows = summary.groups.map((g) => [
    g.name, fmtInt(g.requests), fmtInt(g.input_tokens + g.output_tokens), fmtCost(g),
  ]);
  fillTable(document.querySelector(`[data-testid="cost-by-${by}"]`),
    [[by, false], ["requests", true], ["tokens", true], ["cost", true]], rows, "nothing yet");
}

function renderRecent(requests) {
  const rows = requests.map((r) => [
    fmtTime(r.time), r.client, r.key || "–", r.model, r.target || "(refused)",
    fmtInt(r.input_tokens), fmtInt(r.output_tokens), fmtMs(r.latency_ms),
    cell(r.error_kind ? `${r.status} ${r.error_kind}` : r.status, r.status >= 400 ? "num status-bad" : "num"),
  ]);
  fillTable(document.querySelector('[data-testid="recent"]'), [
    ["time", false], ["client", false], ["key", false], ["model", false], ["target", false],
    ["input", true], ["output", true], ["latency", true], ["status", true],
  ], rows, "no requests yet");
}

function renderProviders(providers) {
  const rows = providers.map((p) => [
    p.name, p.type, p.preset || "–", badge(p.health.state, p.health.state),
    p.models.join(", ") || "(the client's own names)",
  ]);
  fillTable(document.querySelector('[data-testid="providers"]'), [
    ["name", false], ["type", false], ["preset", false], ["health", false], ["models", false],
  ], rows, "no provider configured");
}

function renderQuota(providers, quota) {
  const windows = new Map(providers.map((p) => [p.name, p.quota]));
  const rows = quota.providers.map((q) => {
    const window = windows.get(q.name);
    const shown = window ? `${window.window}${window.reset ? ` (resets ${window.reset})` : ""}` : "–";
    const until = q.state === "ok" ? "–" : fmtTime(q.resets_at);
    return [q.name, shown, badge(q.state, q.state), until, q.reason || "–"];
  });
  fillTable(document.querySelector('[data-testid="quota"]'), [
    ["provider", false], ["quota window", false], ["state", false], ["until", false], ["reason", false],
  ], rows, "no provider configured");
}

function revokeButton(name) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "danger";
  button.textContent = "Revoke";
  button.dataset.key = name;
  // Two clicks, no confirm(): the second one within a few seconds revokes.
  button.addEventListener("click", async () => {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Click to revoke";
      setTimeout(() => { button.classList.remove("armed"); button.textContent = "Revoke"; }, 4000);
      return;
    }
    try {
      await api("/admin/api/keys/revoke", { method: "POST", body: JSON.stringify({ name }) });
      showError($("#key-error"), "");
      await loadKeys();
    } catch (error) {
      handleFailure(error, $("#key-error"));
    }
  });
  td.appendChild(button);
  return td;
}

function renderKeys(keys) {
  const money = (v) => (v == null ? "–" : `$${v.toFixed(4)}`);
  const rows = keys.map((k) => [
    k.name, `${k.prefix}…`, k.models.join(", ") || "*", k.rpm == null ? "–" : String(k.rpm),
    k.budget == null ? "–" : `$${k.budget}/${k.budget_period}`, fmtUnix(k.expires_at),
    k.admin ? "yes" : "–", money(k.spend_today), money(k.spend_month), revokeButton(k.name),
  ]);
  fillTable(document.querySelector('[data-testid="keys"]'), [
    ["name", false], ["prefix", false], ["models", false], ["rpm", true], ["budget", false],
    ["expires (UTC)", false], ["admin", false], ["today", true], ["this month", true], ["", false],
  ], rows, "no keys: the gateway is open to anyone who can reach it");
}

// ------------------------------------------------------------------ the chart

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function axisLabel(iso, stepSeconds) {
  const when = new Date(iso);
  if (stepSeconds >= 86400) return when.toLocaleDateString("en-GB", { month: "short", day: "numeric" });
  const time = when.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
  if (stepSeconds >= 6 * 3600) return `${when.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
  return time;
}

function drawChart() {
  const canvas = $("#chart");
  const series = state.series;
  if (!series || canvas.offsetParent === null) return;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = 220;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const box = { left: 64, right: width - 48, top: 12, bottom: height - 28 };
  const points = series.points;
  const tokenMax = niceMax(Math.max(0, ...points.map((p) => p.input_tokens + p.output_tokens)));
  const requestMax = niceMax(Math.max(0, ...points.map((p) => p.requests)));
  const y = (value, max) => box.bottom - (value / max) * (box.bottom - box.top);
  const slot = (box.right - box.left) / Math.max(points.length, 1);

  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {  // grid and both axes' labels
    const yy = Math.round(y((tokenMax * i) / 4, tokenMax)) + 0.5;
    ctx.strokeStyle = color("--line");
    ctx.beginPath(); ctx.moveTo(box.left, yy); ctx.lineTo(box.right, yy); ctx.stroke();
    ctx.fillStyle = color("--muted");
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(compact((tokenMax * i) / 4), box.left - 8, yy);
    ctx.textAlign = "left";
    ctx.fillText(compact((requestMax * i) / 4), box.right + 8, yy);
  }
  const barWidth = Math.max(1, slot * 0.7);
  points.forEach((p, i) => {  // stacked bars: input below, output above
    const x = box.left + i * slot + (slot - barWidth) / 2;
    const inputTop = y(p.input_tokens, tokenMax);
    const outputTop = y(p.input_tokens + p.output_tokens, tokenMax);
    ctx.fillStyle = color("--input");
    ctx.fillRect(x, inputTop, barWidth, box.bottom - inputTop);
    ctx.fillStyle = color("--output");
    ctx.fillRect(x, outputTop, barWidth, inputTop - outputTop);
  });
  ctx.strokeStyle = color("--requests");  // requests: a line on the right-hand axis
  ctx.fillStyle = color("--requests");
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach((p, i) => {
    const x = box.left + (i + 0.5) * slot;
    const yy = y(p.requests, requestMax);
    if (i === 0) ctx.moveTo(x, yy); else ctx.lineTo(x, yy);
  });
  ctx.stroke();
  points.forEach((p, i) => {
    if (!p.requests) return;
    ctx.beginPath();
    ctx.arc(box.left + (i + 0.5) * slot, y(p.requests, requestMax), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  });
  ctx.fillStyle = color("--muted");  // time labels, about six of them
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const every = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((p, i) => {
    if (i % every === 0) ctx.fillText(axisLabel(p.time, series.step_s), box.left + (i + 0.5) * slot, box.bottom + 8);
  });
  ctx.save();  // axis titles
  ctx.translate(12, (box.top + box.bottom) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center"; ctx.fillText("tokens", 0, 0);
  ctx.restore();
  if (!points.some((p) => p.requests)) {
    ctx.fillStyle = color("--muted"); ctx.font = "13px system-ui, sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText("no requests in this period", (box.left + box.right) / 2, (box.top + box.bottom) / 2);
  }
}

function compact(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return String(+value.toFixed(1));
}

// ------------------------------------------------------------------ loading

function handleFailure(error, where) {
  // Only when a key changed between the check (keyProblem) and the call.
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    showLogin(error.status === 403 ? "That key is not an admin key." : `That key was refused: ${error.message}.`);
    return;
  }
  showError(where || $("#error"), `Could not load: ${error.message}`);
}

async function loadKeys() {
  renderKeys((await api("/admin/api/keys")).data);
}

// Whether the key in hand may read the board, asked of /ui/api/key, which answers 200 either
// way: a browser writes every 401 a page fetches to its console, and a wrong key is no error
// of the page's. Null when it may; else what to tell the user.
async function keyProblem() {
  const headers = state.key ? { authorization: `Bearer ${state.key}` } : {};
  const verdict = await fetch("/ui/api/key", { headers }).then((r) => r.json());
  if (!verdict.keys_required || (verdict.accepted && verdict.admin)) return null;
  if (!state.key) return "";
  if (!verdict.accepted) return `That key was refused: ${verdict.message}.`;
  return "That key is not an admin key.";
}

async function loadAll() {
  const since = $("#period").value;
  const query = (by) => api(`/admin/api/usage?since=${since}&by=${by}`);
  try {
    const problem = await keyProblem();
    if (problem !== null) {
      showLogin(problem);
      return;
    }
    const [day, model, provider, key, series, recent, providers, quota] = await Promise.all([
      query("day"), query("model"), query("provider"), query("key"),
      api(`/admin/api/usage/series?since=${since}&buckets=48`),
      api(`/admin/api/requests?limit=${RECENT}`), api("/v1/providers"), api("/v1/quota"),
    ]);
    $("#board").hidden = false;
    $("#login").hidden = true;
    showError($("#error"), "");
    renderTotals(day.total);
    renderCost("day", day);
    renderCost("model", model);
    renderCost("provider", provider);
    renderCost("key", key);
    state.series = series;
    drawChart();
    renderRecent(recent.data);
    renderProviders(providers.data);
    renderQuota(providers.data, quota);
    await loadKeys();
    document.body.dataset.loaded = String(Date.now());  // tests wait for this
  } catch (error) {
    handleFailure(error);
  }
}

function showLogin(message) {
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  $("#board").hidden = true;
  $("#login").hidden = false;
  $("#sign-out").hidden = true;
  showError($("#login-error"), message);
  $("#login-key").focus();
}

async function start() {
  const health = await fetch("/health").then((r) => r.json());
  $("#version").textContent = `v${health.version}`;
  if (health.keys_required && !state.key) {
    showLogin("");
    return;
  }
  $("#sign-out").hidden = !state.key;
  await loadAll();
}

// ------------------------------------------------------------------ events

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("#login-key").value.trim();
  sessionStorage.setItem(KEY_STORE, state.key);
  $("#login-key").value = "";
  $("#sign-out").hidden = false;
  await loadAll();
});

$("#sign-out").addEventListener("click", () => showLogin(""));
$("#refresh").addEventListener("click", loadAll);
$("#period").addEventListener("change", loadAll);
window.addEventListener("resize", drawChart);

$("#key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const data = { name: form.name.value.trim(), admin: form.admin.checked };
  const models = form.models.value.trim();
  if (models) data.models = models.split(",").map((m) => m.trim()).filter(Boolean);
  if (form.rpm.value) data.rpm = Number(form.rpm.value);
  if (form.budget.value) { data.budget = Number(form.budget.value); data.per = form.per.value; }
  if (form.expires.value.trim()) data.expires = form.expires.value.trim();
  try {
    const made = await api("/admin/api/keys", { method: "POST", body: JSON.stringify(data) });
    $("#new-key-name").textContent = made.record.name;
    $("#new-key-value").textContent = made.key;
    $("#new-key").hidden = false;
    showError($("#key-error"), "");
    // The first key makes the gateway require keys: keep using it here when it may.
    if (!state.key && made.record.admin) {
      state.key = made.key;
      sessionStorage.setItem(KEY_STORE, made.key);
    }
    form.reset();
    await loadKeys();
  } catch (error) {
    if (error instanceof ApiError && error.status < 500 && error.status !== 401 && error.status !== 403) {
      showError($("#key-error"), error.message);
    } else {
      handleFailure(error, $("#key-error"));
    }
  }
});

setInterval(() => {
  if (!document.hidden && !$("#board").hidden) loadAll();
}, REFRESH_MS);

start().catch((error) => showError($("#error"), `Could not reach the gateway: ${error.message}`));
