// The researchers' page: sign in with the research token, filter, browse, count, download.
// The token lives only in this tab's sessionStorage and travels only in the Authorization
// header, never in a URL. Every text from the server is inserted with textContent.
"use strict";

(function () {
  const TEXTS = window.RESEARCH_TEXTS;
  const TOKEN_KEY = "research-token";
  const RUN_ID = /^[0-9a-f]{32}$/;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let lang = "de";
  let filters = {}; // the filters applied: API parameter → value
  let next = null; // the next page's URL from the API
  let formats = [];
  let deviceFilter = false;

  // ------------------------------------------------------------------ texts

  function t(key, args) {
    const table = TEXTS[lang] || TEXTS.en;
    const template = table[key] !== undefined ? table[key] : (TEXTS.en[key] || key);
    return template.replace(/\{(\w+)\}/g, (whole, name) =>
      (args && name in args ? String(args[name]) : whole));
  }

  // Sets an element's text from a key and remembers it, so a language switch re-renders it.
  function label(node, key, args) {
    node.dataset.i18n = key;
    if (args) node.dataset.i18nArgs = JSON.stringify(args);
    else delete node.dataset.i18nArgs;
    node.textContent = t(key, args);
    return node;
  }

  // A UTC instant shown in the browser's time zone, in the page's language.
  function localTime(node) {
    const date = new Date(node.dataset.time);
    node.textContent = Number.isNaN(date.getTime()) ? node.dataset.time : date.toLocaleString(lang);
    return node;
  }

  function relabel() {
    for (const node of document.querySelectorAll("td[data-time]")) localTime(node);
    for (const node of document.querySelectorAll("[data-i18n]")) {
      const args = node.dataset.i18nArgs ? JSON.parse(node.dataset.i18nArgs) : undefined;
      node.textContent = t(node.dataset.i18n, args);
    }
    document.title = t("title");
  }

  function setLanguage(next) {
    lang = window.PageLanguage.apply(next, TEXTS, "research-lang");
    relabel();
    showFormatDescription();
  }

  function initialLanguage() {
    return window.PageLanguage.initial(TEXTS, "research-lang");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function message(node, key, args) {
    if (!key) { node.hidden = true; node.textContent = ""; delete node.dataset.i18n; return; }
    label(node, key, args);
    node.hidden = false;
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  // ------------------------------------------------------------------ the API, with the token

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  class ApiError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  // Only this server's own /api/ paths are fetched with the token.
  async function api(path) {
    if (!path.startsWith("/api/")) throw new ApiError(0, "not an API path");
    const answer = await fetch(path, {
      headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
      cache: "no-store",
    });
    if (answer.status === 401 || answer.status === 403) {
      signOut("expired");
      throw new ApiError(answer.status, "token");
    }
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      const text = body && body.error && body.error.message ? body.error.message : answer.status;
      throw new ApiError(answer.status, String(text));
    }
    return answer;
  }

  function query(extra) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(Object.assign({}, filters, extra || {}))) {
      if (value) params.set(name, value);
    }
    const text = params.toString();
    return text ? "?" + text : "";
  }

  // ------------------------------------------------------------------ sign-in

  async function signIn(event) {
    event.preventDefault();
    const given = $("token").value.trim();
    const box = $("signin-error");
    if (!given) { message(box, "emptyToken"); return; }
    $("signin-button").disabled = true;
    try {
      // Checked against a research endpoint before it is kept: a wrong token is said at once.
      const answer = await fetch("/api/stats", {
        headers: { Authorization: "Bearer " + given, Accept: "application/json" },
        cache: "no-store",
      });
      if (answer.status === 401 || answer.status === 403) {
        message(box, "wrongToken");
        $("token").select();
        return;
      }
      if (!answer.ok) { message(box, "apiError", { message: answer.status }); return; }
      sessionStorage.setItem(TOKEN_KEY, given);
      $("token").value = "";
      message(box, null);
      await openWorkspace();
    } catch (e) {
      message(box, "offline");
    } finally {
      $("signin-button").disabled = false;
    }
  }

  function signOut(reason) {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    $("workspace").hidden = true;
    $("signin").hidden = false;
    message($("signin-error"), reason || null);
  }

  async function openWorkspace() {
    $("signin").hidden = true;
    $("workspace").hidden = false;
    await Promise.all([loadConfigs(), loadFormats(), detectDeviceFilter()]);
    await refresh();
  }

  // ------------------------------------------------------------------ filters

  async function loadConfigs() {
    const select = $("f-config");
    try {
      const body = await (await fetch("/api/configs")).json();
      for (const config of Array.isArray(body.configs) ? body.configs : []) {
        if (select.querySelector("option[value='" + CSS.escape(String(config.name)) + "']")) continue;
        const option = el("option", null, config.name);
        option.value = String(config.name);
        select.append(option);
      }
    } catch (e) { /* the filter keeps "any" */ }
  }

  // The device filter arrives with a later server version: offered when the API says so.
  async function detectDeviceFilter() {
    try {
      const spec = await (await fetch("/api/openapi.json")).json();
      const operation = spec.paths && spec.paths["/api/runs"] && spec.paths["/api/runs"].get;
      const names = ((operation && operation.parameters) || []).map((p) => p && p.name);
      deviceFilter = names.includes("device_id");
    } catch (e) { deviceFilter = false; }
    $("f-device").disabled = !deviceFilter;
    label($("f-device-hint"), deviceFilter ? "deviceAvailable" : "deviceUnavailable");
  }

  function localToUtc(value) {
    if (!value) return "";
    const date = new Date(value); // datetime-local is the browser's local time
    return Number.isNaN(date.getTime()) ? "" : date.toISOString();
  }

  function readFilters() {
    const chosen = {
      config: $("f-config").value,
      status: $("f-status").value,
      since: localToUtc($("f-since").value),
      until: localToUtc($("f-until").value),
      session_id: $("f-session").value.trim(),
    };
    if (deviceFilter) chosen.device_id = $("f-device").value.trim();
    return chosen;
  }

  async function applyFilters(event) {
    if (event) event.preventDefault();
    filters = readFilters();
    await refresh();
  }

  async function resetFilters() {
    $("filters").reset();
    filters = {};
    await refresh();
  }

  async function refresh() {
    message($("filters-error"), null);
    try {
      const [stats, page] = await Promise.all([api("/api/stats" + query()), api("/api/runs" + query({ limit: "25" }))]);
      showStats(await stats.json());
      $("runs-table").tBodies[0].replaceChildren();
      showRuns(await page.json());
    } catch (e) {
      if (e instanceof ApiError && e.message === "token") return;
      message($("filters-error"), e instanceof ApiError ? "apiError" : "offline", { message: e.message });
    }
  }

  // ------------------------------------------------------------------ statistics

  function showStats(stats) {
    label($("stats-total"), "statsTotal", { runs: Number(stats.runs) || 0, inFlight: Number(stats.runs_in_flight) || 0 });
    drawBars($("chart-status"), stats.by_status || {}, (key) => ({ key: "status_" + key }));
    drawBars($("chart-config"), stats.by_config || {}, (key) => ({ text: key }));
  }

  // A horizontal bar chart drawn as SVG elements: one row per key, its name and its count.
  function drawBars(svg, counts, name) {
    const entries = Object.entries(counts).filter(([, n]) => Number(n) > 0)
      .sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
    const row = 28;
    const labelWidth = 150;
    const width = 480;
    const max = Math.max(1, ...entries.map(([, n]) => Number(n)));
    for (const old of svg.querySelectorAll("g")) old.remove();
    svg.setAttribute("viewBox", "0 0 " + width + " " + Math.max(row, entries.length * row));
    const desc = [];
    if (!entries.length) {
      const g = document.createElementNS(SVG, "g");
      g.append(label(svgText(10, 19, "chart-empty"), "chartEmpty"));
      svg.append(g);
    }
    entries.forEach(([key, count], index) => {
      const y = index * row;
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "bar");
      g.dataset.key = String(key);
      g.dataset.count = String(count);
      const shown = name(key);
      const text = svgText(0, y + 19, "bar-name");
      if (shown.key) label(text, shown.key); else text.textContent = String(shown.text);
      const rect = document.createElementNS(SVG, "rect");
      const barWidth = Math.max(2, ((width - labelWidth - 60) * Number(count)) / max);
      rect.setAttribute("x", String(labelWidth));
      rect.setAttribute("y", String(y + 5));
      rect.setAttribute("width", String(barWidth));
      rect.setAttribute("height", String(row - 10));
      rect.setAttribute("class", "bar-rect status-" + String(key).replace(/[^a-z0-9_-]/gi, ""));
      const value = svgText(labelWidth + barWidth + 6, y + 19, "bar-count");
      value.textContent = String(count);
      g.append(text, rect, value);
      svg.append(g);
      desc.push(String(key) + ": " + String(count));
    });
    svg.querySelector("desc").textContent = desc.join(", ");
  }

  function svgText(x, y, className) {
    const node = document.createElementNS(SVG, "text");
    node.setAttribute("x", String(x));
    node.setAttribute("y", String(y));
    node.setAttribute("class", className);
    return node;
  }

  // ------------------------------------------------------------------ runs

  function showRuns(page) {
    const body = $("runs-table").tBodies[0];
    for (const run of Array.isArray(page.runs) ? page.runs : []) {
      if (!RUN_ID.test(String(run.run_id))) continue;
      const tr = el("tr");
      tr.dataset.runId = run.run_id;
      const when = el("td", "time");
      when.dataset.time = String(run.started_at);
      tr.append(localTime(when));
      tr.append(el("td", null, run.config || ""));
      tr.append(label(el("td", "status"), "status_" + String(run.status)));
      tr.append(el("td", "number", run.items));
      tr.append(el("td", "pseudonym", run.session_pseudonym || ""));
      const cell = el("td", "journey");
      const link = label(el("a"), "json");
      link.href = "/api/runs/" + run.run_id; // reachable by its id alone: no token needed
      link.target = "_blank";
      link.rel = "noopener";
      const toggle = label(el("button", "secondary small"), "show");
      toggle.type = "button";
      toggle.setAttribute("aria-expanded", "false");
      toggle.addEventListener("click", () => toggleJourney(tr, toggle));
      cell.append(link, " ", toggle);
      tr.append(cell);
      body.append(tr);
    }
    next = typeof page.next === "string" && page.next.startsWith("/api/runs?") ? page.next : null;
    $("more").hidden = next === null;
    $("runs-empty").hidden = body.rows.length > 0;
  }

  async function more() {
    if (!next) return;
    $("more").disabled = true;
    try {
      showRuns(await (await api(next)).json());
    } catch (e) {
      if (!(e instanceof ApiError && e.message === "token")) message($("filters-error"), "offline");
    } finally {
      $("more").disabled = false;
    }
  }

  // A compact view of one run's journey under its row: stage, item type, text.
  async function toggleJourney(tr, toggle) {
    const open = tr.nextElementSibling && tr.nextElementSibling.classList.contains("journey-row");
    if (open) {
      tr.nextElementSibling.remove();
      label(toggle, "show");
      toggle.setAttribute("aria-expanded", "false");
      return;
    }
    const row = el("tr", "journey-row");
    const cell = el("td");
    cell.colSpan = 6;
    cell.append(label(el("p"), "loading"));
    row.append(cell);
    tr.after(row);
    label(toggle, "hide");
    toggle.setAttribute("aria-expanded", "true");
    try {
      const record = await (await fetch("/api/runs/" + tr.dataset.runId)).json();
      const list = el("ol", "items");
      for (const item of Array.isArray(record.items) ? record.items : []) {
        const li = el("li");
        li.append(label(el("span", "item-stage"), "stage", { n: Number(item.stage) }));
        li.append(el("span", "item-type", item.item_type));
        if (item.content !== null && item.content !== undefined) li.append(el("span", "item-content", item.content));
        list.append(li);
      }
      cell.replaceChildren(list);
    } catch (e) {
      cell.replaceChildren(label(el("p", "error"), "offline"));
    }
  }

  // ------------------------------------------------------------------ batch downloads

  async function loadFormats() {
    const select = $("format");
    try {
      const body = await (await fetch("/api/formats")).json();
      formats = (Array.isArray(body.formats) ? body.formats : [])
        .filter((f) => f && f.available !== false && /^[a-z0-9_-]+$/.test(String(f.name)));
    } catch (e) { formats = []; }
    select.replaceChildren();
    for (const format of formats) {
      const option = el("option", null, format.name + " (." + format.extension + ")");
      option.value = format.name;
      select.append(option);
    }
    showFormatDescription();
  }

  function showFormatDescription() {
    const format = formats.find((f) => f.name === $("format").value);
    $("format-description").textContent = format ? String(format.description || "") : "";
  }

  // Fetched with the token in the header (a plain link could not carry it), read chunk by
  // chunk to show the bytes received, then handed to the browser as a file from a Blob.
  async function download() {
    const name = $("format").value;
    const progress = $("download-progress");
    if (!name) return;
    $("download").disabled = true;
    label(progress, "downloading", { size: bytes(0) });
    try {
      const answer = await fetch("/api/exports" + query({ format: name }), {
        headers: { Authorization: "Bearer " + token() },
        cache: "no-store",
      });
      if (answer.status === 401 || answer.status === 403) { signOut("expired"); return; }
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        throw new Error(body && body.error ? String(body.error.message) : String(answer.status));
      }
      const reader = answer.body.getReader();
      const chunks = [];
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        received += value.length;
        label(progress, "downloading", { size: bytes(received) });
      }
      const disposition = answer.headers.get("Content-Disposition") || "";
      const found = /filename="([A-Za-z0-9_.-]+)"/.exec(disposition);
      const file = found ? found[1] : "runs_" + name + ".zip";
      const url = URL.createObjectURL(new Blob(chunks, { type: "application/zip" }));
      const link = el("a");
      link.href = url;
      link.download = file;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      label(progress, "downloaded", { name: file, size: bytes(received) });
    } catch (e) {
      label(progress, "downloadFailed", { message: e.message || String(e) });
    } finally {
      $("download").disabled = false;
    }
  }

  // ------------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", () => {
    setLanguage(initialLanguage());
    for (const button of document.querySelectorAll("button.lang")) {
      button.addEventListener("click", () => setLanguage(button.dataset.lang));
    }
    $("signin").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut(null));
    $("filters").addEventListener("submit", applyFilters);
    $("reset").addEventListener("click", resetFilters);
    $("more").addEventListener("click", more);
    $("format").addEventListener("change", showFormatDescription);
    $("download").addEventListener("click", download);
    if (token()) openWorkspace();
  });
})();
