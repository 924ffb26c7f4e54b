/* Batch dashboard: KPI tiles, trend / driver / touchpoint / channel charts (Chart.js), topic x touchpoint and
 * touchpoint x channel heat maps, discovered themes, breakdowns, filters, and the comments behind any number with
 * evidence highlighted.  Touchpoints are what a comment is about (from its text); the channel is where it was
 * collected (the upload's channel column): two facts, shown apart.
 * Everything comes from the /v1/batches/{id}/... API; customer text goes in through textContent only. */
"use strict";

const COLORS = {
  positive: "#2e9d5b", neutral: "#9aa5b1", mixed: "#e0a100", negative: "#d64545",
  nps: "#1f4e8c", npsBand: "rgba(31, 78, 140, 0.12)", net: "#8a4fd1", volume: "rgba(120, 130, 145, 0.13)",
  grid: "rgba(0, 0, 0, 0.07)", text: "#3b4450",
};
const SENTIMENTS = ["positive", "neutral", "mixed", "negative"];
const MULTI_KEYS = ["topic", "touchpoint", "channel", "language", "segment"]; // several values each: any matches
const FILTER_KEYS = MULTI_KEYS.concat(["date_from", "date_to", "granularity"]);
const PAGE_SIZE = 20;
const THEMES_SHOWN = 8;

const $ = (id) => document.getElementById(id);
const dash = {
  batchId: document.body.dataset.batchId,
  batch: null,
  taxonomy: { topics: {}, touchpoints: {} },
  filters: {},
  base: null, // unfiltered KPIs: the filter options
  kpis: null,
  heat: null,
  channelHeat: null,
  themes: null,
  themesShowAll: false,
  charts: {},
  generation: 0,
  loadedAt: 0,
  statusTimer: null,
  themesTimer: null,
  comments: { selection: null, offset: 0, total: 0, rows: [], searchTimer: null, generation: 0 },
  compare: { aPeriod: "", bBatch: "", bPeriod: "", bPeriods: [], batches: [], result: null, generation: 0 },
};

// ----------------------------------------------------------------- naming
function themeName(kind, id, fallback) {
  const names = dash.taxonomy[kind][id];
  return (names && (names[currentLang] || names.en)) || fallback || id;
}
const topicName = (id, fallback) => themeName("topics", id, fallback);
const touchpointName = (id, fallback) => themeName("touchpoints", id, fallback);
/** A channel that is a touchpoint id is named like the touchpoint; any other by its own (lower-cased) value. */
const channelName = (id, fallback) => (dash.taxonomy.touchpoints[id] ? touchpointName(id) : fallback || id);

function periodLabel(p, granularity) {
  if (granularity === "month") {
    const [y, m] = p.period.split("-").map(Number);
    return new Intl.DateTimeFormat(locale(), { month: "short", year: "numeric", timeZone: "UTC" })
      .format(new Date(Date.UTC(y, m - 1, 1)));
  }
  if (granularity === "week") {
    const start = new Date(p.start + "T00:00:00Z");
    const day = new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short", timeZone: "UTC" }).format(start);
    return p.period.slice(5) + " · " + day;
  }
  return new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short", timeZone: "UTC" })
    .format(new Date(p.start + "T00:00:00Z"));
}

// ----------------------------------------------------------------- filters
/** The page's filters from the URL: repeated keys for several values (?topic=a&topic=b), as the API reads them. */
function readFiltersFromUrl() {
  const q = new URLSearchParams(location.search);
  const f = {};
  for (const k of FILTER_KEYS) {
    if (MULTI_KEYS.includes(k)) {
      const values = q.getAll(k).filter(Boolean);
      if (values.length) f[k] = values;
    } else if (q.get(k)) {
      f[k] = q.get(k);
    }
  }
  return f;
}

function writeFiltersToUrl() {
  const url = new URL(location.href);
  for (const k of FILTER_KEYS) {
    url.searchParams.delete(k);
    for (const v of asList(dash.filters[k])) url.searchParams.append(k, v);
  }
  history.replaceState(history.state, "", url);
}

/** A filter value as a list: several values, one, or none. */
function asList(v) {
  if (Array.isArray(v)) return v.filter((x) => x !== null && x !== undefined && x !== "");
  return v === null || v === undefined || v === "" ? [] : [v];
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const x of asList(v)) q.append(k, x);
  const s = q.toString();
  return s ? "?" + s : "";
}

function option(value, label, selected) {
  const o = el("option", { value }, label);
  if (selected) o.selected = true;
  return o;
}

/** Multi-select lists: a click or tap toggles one option (no Ctrl/⌘ needed); none selected = all. */
function toggleOnClick(select) {
  select.addEventListener("mousedown", (e) => {
    const opt = e.target;
    if (!(opt instanceof HTMLOptionElement) || opt.disabled) return;
    e.preventDefault();
    opt.selected = !opt.selected;
    select.focus();
    select.dispatchEvent(new Event("change", { bubbles: true }));
  });
}

function renderFilterOptions() {
  const base = dash.base || dash.kpis;
  const f = dash.filters;
  const present = (items) => (items || []).filter((x) => x.count > 0).map((x) => x.id);
  const byName = (kind) => (a, b) => themeName(kind, a).localeCompare(themeName(kind, b), locale());
  const withChosen = (ids, key) => ids.concat(asList(f[key]).filter((v) => !ids.includes(v)));

  const topics = withChosen(present(base && base.topics).concat(base && base.unclassified && base.unclassified.count
    ? [base.unclassified.id] : []), "topic");
  topics.sort(byName("topics"));
  clear($("f-topic")).append(...topics.map((id) => option(id, topicName(id), asList(f.topic).includes(id))));

  const tps = withChosen(present(base && base.touchpoints), "touchpoint");
  tps.sort(byName("touchpoints"));
  clear($("f-touchpoint")).append(...tps.map((id) => option(id, touchpointName(id), asList(f.touchpoint).includes(id))));

  const channels = withChosen(present(base && base.by_channel), "channel");
  channels.sort((a, b) => channelName(a).localeCompare(channelName(b), locale()));
  clear($("f-channel")).append(...channels.map((id) => option(id, channelName(id), asList(f.channel).includes(id))));

  const langs = withChosen(((base && base.by_language) || []).map((g) => g.key), "language");
  clear($("f-language")).append(...langs.map((k) => option(k, languageName(k), asList(f.language).includes(k))));

  const seg = clear($("f-segment"));
  const chosen = asList(f.segment);
  const listed = [];
  for (const [col, groups] of Object.entries((base && base.by_segment) || {})) {
    seg.append(el("optgroup", { label: col }, groups.map((g) => {
      listed.push(col + ":" + g.key);
      return option(col + ":" + g.key, g.key, chosen.includes(col + ":" + g.key));
    })));
  }
  for (const v of chosen) if (!listed.includes(v)) seg.append(option(v, v, true));

  clear($("f-granularity")).append(...["auto", "day", "week", "month"].map((g) =>
    option(g, t("gran." + g), (f.granularity || "auto") === g)));
  $("f-date-from").value = f.date_from || "";
  $("f-date-to").value = f.date_to || "";
}

function onFilterChange() {
  const f = {};
  const multi = { topic: "f-topic", touchpoint: "f-touchpoint", channel: "f-channel", language: "f-language", segment: "f-segment" };
  for (const [k, id] of Object.entries(multi)) {
    const values = Array.from($(id).selectedOptions).map((o) => o.value).filter(Boolean);
    if (values.length) f[k] = values;
  }
  for (const [k, id] of Object.entries({ date_from: "f-date-from", date_to: "f-date-to", granularity: "f-granularity" })) {
    if ($(id).value) f[k] = $(id).value;
  }
  if (f.granularity === "auto") delete f.granularity;
  dash.filters = f;
  writeFiltersToUrl();
  loadKpis();
}

// -------------------------------------------------------------------- load
async function loadBatch() {
  dash.batch = await api("/v1/batches/" + encodeURIComponent(dash.batchId));
  renderBatchHead();
  return dash.batch;
}

async function loadTaxonomy() {
  try {
    const tax = await api("/v1/taxonomy");
    for (const kind of ["topics", "touchpoints"]) {
      dash.taxonomy[kind] = Object.fromEntries(tax[kind].map((e) => [e.id, e.names]));
    }
  } catch (_) { /* not ready: fall back to the KPI labels (English) */ }
}

async function loadKpis() {
  const gen = ++dash.generation;
  document.body.dataset.loading = "true";
  show($("dash-error"), false);
  try {
    const kpis = await api("/v1/batches/" + encodeURIComponent(dash.batchId) + "/kpis" + query(dash.filters));
    if (gen !== dash.generation) return;
    dash.kpis = kpis;
    dash.loadedAt = Date.now();
    if (!Object.keys(dash.filters).some((k) => k !== "granularity")) dash.base = kpis;
    renderFilterOptions();
    renderKpis();
    renderCompareChoices();
    document.body.dataset.loading = "false";
    document.body.dataset.ready = "true";
    loadHeatmap(gen);
  } catch (err) {
    if (gen !== dash.generation) return;
    document.body.dataset.loading = "false";
    showError($("dash-error"), err);
  }
}

async function loadBase() {
  if (!Object.keys(dash.filters).some((k) => k !== "granularity")) return;
  try {
    dash.base = await api("/v1/batches/" + encodeURIComponent(dash.batchId) + "/kpis");
    renderFilterOptions();
    renderCompareChoices();
  } catch (_) { /* the filter lists then show what the filtered view has */ }
}

async function loadThemes() {
  clearTimeout(dash.themesTimer);
  try {
    dash.themes = await api("/v1/batches/" + encodeURIComponent(dash.batchId) + "/topics");
  } catch (err) {
    dash.themes = { status: "failed", error: err.message, topics: [] };
  }
  renderThemes();
  if (dash.themes.status === "pending") dash.themesTimer = setTimeout(loadThemes, 5000);
}

/** While the batch runs: refresh the status and, when rows moved on, the figures. */
function watchBatch() {
  clearTimeout(dash.statusTimer);
  if (!dash.batch || dash.batch.status === "done" || dash.batch.status === "failed") return;
  dash.statusTimer = setTimeout(async () => {
    const before = dash.batch;
    try {
      await loadBatch();
      const finished = dash.batch.status !== before.status;
      // big batches: the figures are recomputed over all rows, so not on every tick
      if (finished || (dash.batch.rows_done !== before.rows_done && Date.now() - dash.loadedAt > 15000)) {
        loadKpis();
        if (dash.batch.status === "done") loadThemes();
      }
    } catch (_) { /* keep trying */ }
    watchBatch();
  }, 4000);
}

// ------------------------------------------------------------- batch header
function renderBatchHead() {
  const b = dash.batch;
  if (!b) return;
  $("batch-name").textContent = b.name;
  document.title = "Voce · " + b.name;
  $("batch-meta").textContent = t("batch.meta", {
    rows: fmtInt(b.rows_total || b.rows_done), errors: fmtInt(b.rows_error), created: fmtDateTime(b.created_at),
    model: b.model_version || "–",
  });
  const results = "/v1/batches/" + encodeURIComponent(b.id) + "/results?format=";
  $("export-csv").href = exportHref("csv", {});  // every row, for people (exportHref below)
  $("export-xlsx").href = exportHref("xlsx", {});
  $("export-jsonl").href = results + "jsonl";  // every row, for scripts
  const banner = $("running-banner");
  if (b.status === "queued" || b.status === "running") {
    banner.textContent = t("batch.running", { pct: Math.round(100 * b.progress), phase: t("phase." + (b.phase || "reading")) });
    show(banner, true);
  } else if (b.status === "failed") {
    banner.textContent = t("progress.failed", { error: b.error || "?" });
    show(banner, true);
  } else {
    show(banner, false);
  }
}

// -------------------------------------------------------------------- tiles
function tile(testid, label, value, sub, extra) {
  return el("div", { class: "tile", dataset: { testid } },
    el("div", { class: "tile-label" }, label, extra && extra.badge ? el("span", { class: "badge badge-estimate" }, extra.badge) : null),
    el("div", { class: "tile-value", dataset: { testid: testid + "-value", value: extra && extra.raw !== undefined ? String(extra.raw) : null } }, value),
    sub.filter(Boolean).map((s) => el("div", { class: "tile-sub" }, s)),
    extra && extra.bar ? extra.bar : null);
}

function sentimentBar(s) {
  const total = SENTIMENTS.reduce((a, k) => a + s[k], 0) || 1;
  const bar = el("div", { class: "stackbar", role: "img", "aria-label": SENTIMENTS.map((k) => t("sentiment." + k) + " " + s[k]).join(", ") });
  for (const k of SENTIMENTS) {
    const seg = el("span", { class: "seg seg-" + k, title: t("sentiment." + k) + ": " + s[k] });
    seg.style.width = (100 * s[k]) / total + "%";
    bar.append(seg);
  }
  return bar;
}

function renderKpis() {
  const k = dash.kpis;
  const tiles = clear($("tiles"));
  const n = k.nps;
  tiles.append(tile("kpi-nps", t("kpi.nps"), n.value === null ? "–" : fmtNumber(n.value, 1), [
    n.value === null ? t("kpi.nps.none") : t("kpi.nps.ci", { low: fmtNumber(n.ci_low, 1), high: fmtNumber(n.ci_high, 1) }),
    n.responses ? t("kpi.nps.counts", { p: fmtInt(n.promoters), pa: fmtInt(n.passives), d: fmtInt(n.detractors) }) : null,
  ], { raw: n.value === null ? "" : n.value, badge: n.responses > 0 && n.responses < k.small_group ? t("small.badge") : null }));
  if (k.nps_estimate) {
    const e = k.nps_estimate;
    tiles.append(tile("kpi-nps-estimate", t("kpi.estimate"), fmtPercent(e.detractor_share), [
      t("kpi.estimate.sub", { rows: fmtInt(e.rows), low: fmtPercent(e.ci_low), high: fmtPercent(e.ci_high) }),
    ], { badge: t("kpi.estimate.badge"), raw: e.detractor_share }));
  }
  if (k.csat) {
    tiles.append(tile("kpi-csat", t("kpi.csat"), fmtNumber(k.csat.value, 1) + "%", [
      t("kpi.csat.sub", { n: fmtInt(k.csat.responses), low: fmtNumber(k.csat.ci_low, 1), high: fmtNumber(k.csat.ci_high, 1) }),
    ], { raw: k.csat.value }));
  }
  if (k.ces) {
    tiles.append(tile("kpi-ces", t("kpi.ces"), fmtNumber(k.ces.mean, 2), [
      t("kpi.ces.sub", { n: fmtInt(k.ces.responses) }),
      k.ces.ci_low !== null ? "95% CI " + fmtNumber(k.ces.ci_low, 2) + "–" + fmtNumber(k.ces.ci_high, 2) : null,
    ], { raw: k.ces.mean }));
  }
  const s = k.sentiment;
  tiles.append(tile("kpi-sentiment", t("kpi.sentiment"), fmtSigned(s.net, 1), [
    t("kpi.sentiment.sub", { pos: fmtInt(s.positive), neu: fmtInt(s.neutral), mix: fmtInt(s.mixed), neg: fmtInt(s.negative) }),
  ], { raw: s.net === null ? "" : s.net, bar: sentimentBar(s),
    badge: k.analysed > 0 && k.analysed < k.small_group ? t("small.badge") : null }));
  tiles.append(tile("kpi-count", t("kpi.count"), fmtInt(k.count), [
    t("kpi.count.sub", { analysed: fmtInt(k.analysed), errors: fmtInt(k.count - k.analysed) }),
  ], { raw: k.count }));
  tiles.querySelectorAll(".tile").forEach((node) => {
    node.classList.add("clickable");
    node.tabIndex = 0;
    node.addEventListener("click", () => openComments({}));
  });

  renderTrend();
  renderDrivers();
  renderTouchpoints();
  renderChannels();
  renderBreakdowns();
}

// ------------------------------------------------------------------- charts
function chartDefaults() {
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = COLORS.text;
  Chart.defaults.animation.duration = 250;
  Chart.defaults.maintainAspectRatio = false;
}

function replaceChart(name, canvas, config) {
  if (dash.charts[name]) dash.charts[name].destroy();
  dash.charts[name] = new Chart(canvas, config);
  return dash.charts[name];
}

function dropChart(name) {
  if (dash.charts[name]) dash.charts[name].destroy();
  delete dash.charts[name];
}

function renderTrend() {
  const trend = dash.kpis.trend;
  const periods = trend.periods;
  const empty = periods.length === 0;
  show($("trend-empty"), empty);
  show($("chart-trend").parentElement, !empty);
  if (empty) return dropChart("trend");
  const sigColor = (p) => (p.change < 0 ? COLORS.negative : COLORS.positive);
  const marks = (metric, color) => ({
    radius: periods.map((p) => (p.significant && p.change_metric === metric ? 7 : 3)),
    style: periods.map((p) => (p.significant && p.change_metric === metric ? "rectRot" : "circle")),
    color: periods.map((p) => (p.significant && p.change_metric === metric ? sigColor(p) : color)),
  });
  const npsMarks = marks("nps", COLORS.nps);
  const netMarks = marks("net_sentiment", COLORS.net);
  const chart = replaceChart("trend", $("chart-trend"), {
    data: {
      labels: periods.map((p) => periodLabel(p, trend.granularity)),
      datasets: [
        { type: "line", label: "ci-low", data: periods.map((p) => p.nps_ci_low), borderWidth: 0, pointRadius: 0,
          pointHitRadius: 0, fill: false, spanGaps: true, yAxisID: "y", order: 3 },
        { type: "line", label: "ci-high", data: periods.map((p) => p.nps_ci_high), borderWidth: 0, pointRadius: 0,
          pointHitRadius: 0, fill: "-1", backgroundColor: COLORS.npsBand, spanGaps: true, yAxisID: "y", order: 3 },
        { type: "line", label: t("series.nps"), data: periods.map((p) => p.nps), borderColor: COLORS.nps,
          backgroundColor: COLORS.nps, pointRadius: npsMarks.radius, pointStyle: npsMarks.style,
          pointBackgroundColor: npsMarks.color, pointBorderColor: npsMarks.color, borderWidth: 2.5, tension: 0.25,
          spanGaps: true, yAxisID: "y", order: 1 },
        { type: "line", label: t("series.net"), data: periods.map((p) => p.net_sentiment), borderColor: COLORS.net,
          backgroundColor: COLORS.net, borderDash: [6, 4], pointRadius: netMarks.radius, pointStyle: netMarks.style,
          pointBackgroundColor: netMarks.color, pointBorderColor: netMarks.color, borderWidth: 2, tension: 0.25,
          spanGaps: true, yAxisID: "y", order: 2 },
        { type: "bar", label: t("series.count"), data: periods.map((p) => p.count), backgroundColor: COLORS.volume,
          yAxisID: "volume", order: 4, barPercentage: 0.7 },
      ],
    },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        y: { suggestedMin: -20, suggestedMax: 20, grid: { color: (c) => (c.tick.value === 0 ? "#8a94a3" : COLORS.grid) },
          title: { display: true, text: "NPS / " + t("series.net") } },
        volume: { position: "right", beginAtZero: true, ticks: { precision: 0 }, grid: { display: false }, title: { display: true, text: t("series.count") } },
        x: { grid: { display: false } },
      },
      plugins: {
        legend: { labels: { filter: (item) => !item.text.startsWith("ci-"), usePointStyle: true } },
        tooltip: {
          filter: (item) => !item.dataset.label.startsWith("ci-"),
          callbacks: {
            label: (ctx) => ctx.dataset.label + ": " + fmtNumber(ctx.parsed.y, 1),
            afterBody: (items) => {
              const p = periods[items[0].dataIndex];
              const lines = [];
              if (p.nps !== null) lines.push("NPS 95% CI " + fmtNumber(p.nps_ci_low, 1) + " – " + fmtNumber(p.nps_ci_high, 1) + " (n=" + p.nps_responses + ")");
              if (p.change !== null && p.p_value !== null) {
                lines.push((p.significant ? "◆ " : "") + t("tooltip.change", { change: fmtSigned(p.change, 1), p: fmtNumber(p.p_value, 3) }));
              }
              return lines;
            },
          },
        },
      },
      onClick: (_e, items) => {
        if (!items.length) return;
        const p = periods[items[0].index];
        openComments({ period: p.period }, [t("chip.period", { v: periodLabel(p, trend.granularity) })]);
      },
      onHover: (e, items) => { e.native.target.style.cursor = items.length ? "pointer" : "default"; },
    },
  });
  chart.canvas.dataset.points = String(periods.length);
}

/** Draws each bar's 95% confidence interval as a whisker (Chart.js has no error bars). */
const whiskers = {
  id: "whiskers",
  afterDatasetsDraw(chart, _args, opts) {
    if (!opts || !opts.intervals) return;
    const { ctx, scales } = chart;
    const meta = chart.getDatasetMeta(0);
    ctx.save();
    ctx.strokeStyle = "rgba(40, 48, 60, 0.75)";
    ctx.lineWidth = 1.2;
    meta.data.forEach((bar, i) => {
      const iv = opts.intervals[i];
      if (!iv || iv[0] === null || iv[1] === null) return;
      const x0 = scales.x.getPixelForValue(iv[0]);
      const x1 = scales.x.getPixelForValue(iv[1]);
      const y = bar.y;
      ctx.beginPath();
      ctx.moveTo(x0, y); ctx.lineTo(x1, y);
      ctx.moveTo(x0, y - 4); ctx.lineTo(x0, y + 4);
      ctx.moveTo(x1, y - 4); ctx.lineTo(x1, y + 4);
      ctx.stroke();
    });
    ctx.restore();
  },
};

/** Category labels on a horizontal bar chart: whole names, wrapped onto up to three lines on narrow screens (a
 *  phone shows every driver's name; the tooltip has it too). */
function shortLabel(chart, value) {
  const label = chart.getLabelForValue(value);
  const max = chart.chart.width < 480 ? 14 : 30;
  if (label.length <= max) return label;
  const lines = [];
  let line = "";
  for (const word of label.split(/\s+/)) {
    if (line && (line + " " + word).length > max) { lines.push(line); line = word; }
    else line = line ? line + " " + word : word;
  }
  if (line) lines.push(line);
  return lines.length > 3 ? lines.slice(0, 2).concat([lines.slice(2).join(" ")]) : lines;
}

/** Room per bar: more on a phone, where names wrap onto several lines. */
const barRoom = () => (window.innerWidth < 600 ? 56 : 34);

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return "rgba(" + (n >> 16) + ", " + ((n >> 8) & 255) + ", " + (n & 255) + ", " + a + ")";
}

/** Where a theme's comments come from when they rest on one source. */
function sourceName(c) {
  return c.dimension === "channel" ? t("driver.source.channel", { v: channelName(c.value) })
    : t("driver.source.segment", { col: c.column, v: c.value });
}

/** Why a theme is (not) a driver, in words: the API's codes, translated. */
function driverNotes(x) {
  const lines = [];
  if (x.driver) lines.push(t("driver.yes", { n: fmtInt(x.nps_responses) }));
  for (const code of x.driver_notes || []) {
    lines.push(t("driver.note." + code, { n: fmtInt(x.nps_responses), min: fmtInt(dash.kpis.min_driver_support) }));
  }
  if (x.concentration) lines.push("⚠ " + t("driver.one_source", { share: fmtPercent(x.concentration.share), source: sourceName(x.concentration) }));
  return lines;
}

function renderDrivers() {
  const topics = dash.kpis.topics.filter((x) => x.impact !== null).sort((a, b) => a.impact - b.impact);
  show($("drivers-empty"), topics.length === 0);
  show($("drivers-box"), topics.length > 0);
  renderDriverNotes(topics);
  renderUnclassified();
  if (!topics.length) return dropChart("drivers");
  $("drivers-box").style.height = Math.max(180, barRoom() * topics.length + 70) + "px";
  const color = (x) => (x.impact < 0 ? COLORS.negative : COLORS.positive);
  const spread = Math.max(4, ...topics.map((x) => Math.max(Math.abs(x.impact_ci_low || 0), Math.abs(x.impact_ci_high || 0), Math.abs(x.impact))));
  const step = spread <= 10 ? 2 : spread <= 25 ? 5 : 10;
  const lim = Math.ceil((spread * 1.05) / step) * step;
  const chart = replaceChart("drivers", $("chart-drivers"), {
    type: "bar",
    data: {
      labels: topics.map((x) => topicName(x.id, x.label) + (x.concentration ? " ⚠" : "")),
      datasets: [{
        label: t("series.impact"),
        data: topics.map((x) => x.impact),
        backgroundColor: topics.map((x) => (x.driver ? color(x) : alpha(color(x), 0.22))),
        borderColor: topics.map(color),
        borderWidth: 1.5,
        borderSkipped: false,
        barPercentage: 0.75,
      }],
    },
    plugins: [whiskers],
    options: {
      indexAxis: "y",
      interaction: { mode: "index", axis: "y", intersect: false },
      scales: {
        x: { min: -lim, max: lim, ticks: { stepSize: step }, grid: { color: (c) => (c.tick.value === 0 ? "#5b6573" : COLORS.grid) },
          title: { display: true, text: t("series.impact") } },
        y: { grid: { display: false }, ticks: { autoSkip: false, callback(value) { return shortLabel(this, value); } } },
      },
      plugins: {
        whiskers: { intervals: topics.map((x) => [x.impact_ci_low, x.impact_ci_high]) },
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const x = topics[ctx.dataIndex];
              return [
                t("tooltip.impact", { impact: fmtSigned(x.impact, 1), low: fmtNumber(x.impact_ci_low, 1), high: fmtNumber(x.impact_ci_high, 1) }),
                t("tooltip.topic_nps", { nps: fmtNumber(x.nps, 1), n: fmtInt(x.count) }),
                (x.significant ? t("series.significant") : t("series.not_significant")) + (x.p_value !== null ? " (p = " + fmtNumber(x.p_value, 4) + ")" : ""),
                ...driverNotes(x),
              ];
            },
          },
        },
      },
      onClick: (_e, items) => {
        if (!items.length) return;
        const x = topics[items[0].index];
        openComments({ topic: x.id }, [t("chip.topic", { v: topicName(x.id, x.label) })]);
      },
      onHover: (e, items) => { e.native.target.style.cursor = items.length ? "pointer" : "default"; },
    },
  });
  chart.canvas.dataset.bars = String(topics.length);
  chart.canvas.dataset.topics = topics.map((x) => x.id).join(",");
  chart.canvas.dataset.drivers = topics.filter((x) => x.driver).map((x) => x.id).join(",");
  chart.canvas.setAttribute("aria-label", topics.map((x) => topicName(x.id, x.label) + ": " + fmtSigned(x.impact, 1) +
    " [" + fmtNumber(x.impact_ci_low, 1) + "; " + fmtNumber(x.impact_ci_high, 1) + "]" + (x.driver ? " · driver" : "")).join("; "));
}

/** Under the driver chart: the topics that rest on one source, said in words (also on paper). */
function renderDriverNotes(topics) {
  const box = clear($("drivers-notes"));
  const caveats = topics.filter((x) => x.concentration);
  if (!caveats.length) return;
  box.append(el("p", { class: "muted" }, t("drivers.caveats")), el("ul", {}, caveats.map((x) => el("li", {
    dataset: { testid: "driver-caveat", topic: x.id },
  }, el("strong", {}, topicName(x.id, x.label)), ": ", t("driver.one_source", {
    share: fmtPercent(x.concentration.share), source: sourceName(x.concentration),
  }), " · n = " + fmtInt(x.nps_responses)))));
}

/** The catch-all topic, apart from the drivers: "not otherwise classified"; a click opens its comments. */
function renderUnclassified() {
  const box = $("unclassified");
  const u = dash.kpis.unclassified;
  if (!u || !u.count) return show(box, false);
  clear(box).append(el("strong", {}, t("unclassified.title")), t("unclassified.line", {
    n: fmtInt(u.count), share: fmtPercent(u.share), net: fmtSigned(u.net_sentiment, 0),
  }));
  box.dataset.count = String(u.count);
  box.onclick = () => openComments({ topic: u.id }, [t("chip.topic", { v: t("unclassified.title") })]);
  box.onkeydown = (e) => { if (e.key === "Enter") box.onclick(); };
  box.tabIndex = 0;
  show(box, true);
}

/** Comments per theme by sentiment, one stacked bar each (touchpoints, channels); a click opens its comments.
 *  ``name`` picks the elements: chart-<name>, <name>-box, <name>-empty. */
function renderSentimentBars(name, items, nameOf, toParams, toChip) {
  const list = (items || []).filter((x) => x.count > 0).sort((a, b) => b.count - a.count);
  show($(name + "-empty"), list.length === 0);
  show($(name + "-box"), list.length > 0);
  if (!list.length) return dropChart(name);
  $(name + "-box").style.height = Math.max(180, barRoom() * list.length + 80) + "px";
  const chart = replaceChart(name, $("chart-" + name), {
    type: "bar",
    data: {
      labels: list.map(nameOf),
      datasets: SENTIMENTS.map((s) => ({
        label: t("sentiment." + s), data: list.map((x) => x.sentiment[s]), backgroundColor: COLORS[s], barPercentage: 0.75,
      })),
    },
    options: {
      indexAxis: "y",
      scales: { x: { stacked: true, ticks: { precision: 0 }, grid: { color: COLORS.grid }, title: { display: true, text: t("series.count") } },
        y: { stacked: true, grid: { display: false }, ticks: { autoSkip: false, callback(value) { return shortLabel(this, value); } } } },
      plugins: {
        legend: { position: "bottom", labels: { usePointStyle: true } },
        tooltip: {
          callbacks: {
            footer: (items) => {
              const x = list[items[0].dataIndex];
              const iv = (lo, hi) => (lo !== null && lo !== undefined ? " [" + fmtNumber(lo, 0) + "; " + fmtNumber(hi, 0) + "]" : "");
              const small = (flag) => (flag ? " (" + t("small.badge") + ")" : "");
              return t("series.net") + " " + fmtSigned(x.net_sentiment, 1) + iv(x.net_ci_low, x.net_ci_high) + small(x.net_small) +
                (x.nps !== null ? " · NPS " + fmtNumber(x.nps, 1) + iv(x.nps_ci_low, x.nps_ci_high) + small(x.nps_small) : "");
            },
          },
        },
      },
      onClick: (_e, items) => {
        if (!items.length) return;
        const x = list[items[0].index];
        openComments(Object.assign(toParams(x), { sentiment: SENTIMENTS[items[0].datasetIndex] }), [toChip(x)]);
      },
      onHover: (e, items) => { e.native.target.style.cursor = items.length ? "pointer" : "default"; },
    },
  });
  // what a screen reader says for the canvas: each bar's name, size and net sentiment
  chart.canvas.setAttribute("aria-label", list.map((x) => nameOf(x) + ": " + fmtInt(x.count) + ", " + t("series.net") + " " +
    fmtSigned(x.net_sentiment, 0)).join("; "));
  chart.canvas.dataset.bars = String(list.length);
  chart.canvas.dataset.ids = list.map((x) => x.id).join(",");
}

function renderTouchpoints() {
  renderSentimentBars("touchpoints", dash.kpis.touchpoints, (x) => touchpointName(x.id, x.label),
    (x) => ({ touchpoint: x.id }), (x) => t("chip.touchpoint", { v: touchpointName(x.id, x.label) }));
}

function renderChannels() {
  renderSentimentBars("channels", dash.kpis.by_channel, (x) => channelName(x.id, x.label),
    (x) => ({ channel: x.id }), (x) => t("chip.channel", { v: channelName(x.id, x.label) }));
}

// ------------------------------------------------------------------ heat map
/** Topic x touchpoint co-mentions and touchpoint x channel: the `matrix` and `touchpoint_channel` of the same
 *  /kpis answer (no extra requests). */
async function loadHeatmap(gen) {
  const tps = dash.kpis.touchpoints.filter((x) => x.count > 0).sort((a, b) => b.count - a.count);
  const topics = dash.kpis.topics.filter((x) => x.count > 0).sort((a, b) => b.count - a.count);
  const cells = {};
  for (const c of dash.kpis.matrix || []) if (c.count > 0) cells[c.topic + "|" + c.touchpoint] = c;
  const byChannel = {};
  for (const c of dash.kpis.touchpoint_channel || []) if (c.count > 0) byChannel[c.touchpoint + "|" + c.channel] = c;
  const pairs = Object.values(byChannel);
  const channels = (dash.kpis.by_channel || []).filter((x) => pairs.some((c) => c.channel === x.id))
    .sort((a, b) => b.count - a.count);
  if (gen !== dash.generation) return;
  dash.heat = { tps, topics, cells };
  dash.channelHeat = { tps: tps.filter((x) => pairs.some((c) => c.touchpoint === x.id)), channels, cells: byChannel };
  renderHeatmap();
}

/** Red (negative) to green (positive) by net sentiment, paler for cells with few comments (noisy). */
function heatColor(net, count) {
  if (net === null || net === undefined) return { bg: "#eef1f4", fg: COLORS.text };
  const v = Math.max(-1, Math.min(1, net / 100));
  const from = [246, 247, 249];
  const to = v < 0 ? [214, 69, 69] : [46, 157, 91];
  const a = Math.abs(v) * Math.min(1, 0.35 + count / 10);
  const mix = from.map((c, i) => Math.round(c + (to[i] - c) * a));
  return { bg: "rgb(" + mix.join(",") + ")", fg: a > 0.55 ? "#fff" : COLORS.text };
}

/** One heat map: a table of rows x columns whose cells are buttons opening their comments.
 *  spec: {box, empty, testid, cellTestid, label, rows, cols, cell(r, c), rowName(r), colName(c), params(r, c), chips(r, c), data(r, c)} */
function heatTable(spec) {
  const box = clear($(spec.box));
  if (!spec.rows.length || !spec.cols.length) {
    box.append(el("p", { class: "muted" }, t(spec.empty)));
    return;
  }
  const counts = spec.rows.flatMap((r) => spec.cols.map((c) => spec.cell(r, c))).filter(Boolean).map((c) => c.count);
  const max = Math.max(1, ...counts);
  box.append(el("table", { class: "heat", "aria-label": t(spec.label), dataset: { testid: spec.testid } },
    el("thead", {}, el("tr", {}, el("th", {}, ""), spec.cols.map((c) => el("th", { scope: "col" }, spec.colName(c))))),
    el("tbody", {}, spec.rows.map((r) => el("tr", {},
      el("th", { scope: "row" }, spec.rowName(r)),
      spec.cols.map((col) => {
        const c = spec.cell(r, col);
        if (!c) return el("td", { class: "heat-empty" }, "");
        const colours = heatColor(c.net_sentiment, c.count);
        const title = spec.rowName(r) + " × " + spec.colName(col) + ": " + c.count + " · " + t("series.net") + " " +
          fmtSigned(c.net_sentiment, 0) + (c.nps !== undefined && c.nps !== null ? " · NPS " + fmtNumber(c.nps, 1) : "");
        const td = el("td", {
          class: "heat-cell", tabindex: "0", role: "button", title, "aria-label": title,
          dataset: Object.assign({ testid: spec.cellTestid, count: String(c.count) }, spec.data(r, col)),
        }, el("span", { class: "heat-count" }, fmtInt(c.count)));
        td.style.backgroundColor = colours.bg;
        td.style.color = colours.fg;
        td.style.fontWeight = c.count / max > 0.5 ? "700" : "500";
        const open = () => openComments(spec.params(r, col), spec.chips(r, col));
        td.addEventListener("click", open);
        td.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
        return td;
      }))))));
}

function renderHeatmap() {
  const h = dash.heat;
  if (h) {
    heatTable({
      box: "heatmap", empty: "chart.heatmap.empty", label: "chart.heatmap", testid: "heatmap-table", cellTestid: "heat-cell",
      rows: h.topics, cols: h.tps, cell: (topic, tp) => h.cells[topic.id + "|" + tp.id],
      rowName: (topic) => topicName(topic.id, topic.label), colName: (tp) => touchpointName(tp.id, tp.label),
      params: (topic, tp) => ({ topic: topic.id, touchpoint: tp.id }),
      chips: (topic, tp) => [t("chip.topic", { v: topicName(topic.id, topic.label) }), t("chip.touchpoint", { v: touchpointName(tp.id, tp.label) })],
      data: (topic, tp) => ({ topic: topic.id, touchpoint: tp.id }),
    });
  }
  const ch = dash.channelHeat;
  if (ch) {
    heatTable({
      box: "channel-heatmap", empty: "chart.tp_channel.empty", label: "chart.tp_channel", testid: "channel-heatmap-table",
      cellTestid: "channel-heat-cell", rows: ch.tps, cols: ch.channels, cell: (tp, c) => ch.cells[tp.id + "|" + c.id],
      rowName: (tp) => touchpointName(tp.id, tp.label), colName: (c) => channelName(c.id, c.label),
      params: (tp, c) => ({ touchpoint: tp.id, channel: c.id }),
      chips: (tp, c) => [t("chip.touchpoint", { v: touchpointName(tp.id, tp.label) }), t("chip.channel", { v: channelName(c.id, c.label) })],
      data: (tp, c) => ({ touchpoint: tp.id, channel: c.id }),
    });
  }
}

// ------------------------------------------------------------------- themes
function renderThemes() {
  const box = clear($("themes"));
  const d = dash.themes;
  $("themes-meta").textContent = "";
  if (!d) return;
  if (d.status === "pending") return box.append(el("p", { class: "muted" }, t("themes.pending")));
  if (d.status === "none") return box.append(el("p", { class: "muted" }, t("themes.none")));
  if (d.status === "failed") return box.append(el("p", { class: "error-text" }, t("themes.failed", { error: d.error || "?" })));
  if (!d.topics.length) return box.append(el("p", { class: "muted" }, d.note || t("themes.empty")));
  $("themes-meta").textContent = t("themes.meta", {
    n: d.topics.length, docs: fmtInt(d.n_docs), bilingual: d.bilingual_share === null || d.bilingual_share === undefined ? "–" : fmtPercent(d.bilingual_share),
  });
  const shown = dash.themesShowAll ? d.topics : d.topics.slice(0, THEMES_SHOWN);
  for (const topic of shown) {
    const langTotal = Object.values(topic.languages).reduce((a, b) => a + b, 0) || 1;
    const mix = el("div", { class: "langmix", role: "img",
      "aria-label": Object.entries(topic.languages).map(([k, v]) => languageName(k) + " " + v).join(", ") });
    for (const [code, n] of Object.entries(topic.languages).sort((a, b) => b[1] - a[1])) {
      const seg = el("span", { class: "seg lang-" + (["it", "en"].includes(code) ? code : "other"), title: languageName(code) + ": " + n },
        n / langTotal > 0.14 ? code.toUpperCase() + " " + fmtPercent(n / langTotal) : "");
      seg.style.width = (100 * n) / langTotal + "%";
      mix.append(seg);
    }
    const kw = (code) => (topic.keywords[code] && topic.keywords[code].length
      ? el("div", { class: "keywords" }, el("span", { class: "kw-label" }, t("themes.keywords_" + code)),
        topic.keywords[code].map((w) => el("span", { class: "kw" }, w)))
      : null);
    const mapped = topic.taxonomy_topic
      ? el("p", { class: "small" }, t("themes.mapped", { topic: topicName(topic.taxonomy_topic, topic.taxonomy_label), share: fmtPercent(topic.taxonomy_share) }))
      : el("p", { class: "small muted" }, t("themes.unmapped"));
    const open = () => openComments({ discovered: String(topic.id) }, [t("chip.discovered", { v: topic.label })]);
    box.append(el("article", { class: "theme", dataset: { testid: "theme", themeId: String(topic.id) } },
      el("header", {}, el("h3", {}, (topic.labels && topic.labels[currentLang]) || topic.label), el("span", { class: "badge" }, t("themes.size", { n: fmtInt(topic.size) }))),
      mix, mapped, kw("it"), kw("en"),
      topic.representative.length ? el("details", {}, el("summary", {}, t("themes.examples")),
        el("ul", { class: "examples" }, topic.representative.map((r) => el("li", {}, r.text)))) : null,
      el("div", { class: "theme-actions" },
        el("button", { type: "button", class: "link", dataset: { testid: "theme-open" }, onclick: open }, t("themes.open") + " →"),
        el("button", {
          type: "button", class: "link small", title: t("themes.promote_hint"), dataset: { testid: "theme-taxonomy" },
          onclick: (e) => VocePromote.open(e.currentTarget.closest("article"), topic), // promote.js
        }, t("themes.promote")))));
  }
  if (d.topics.length > THEMES_SHOWN) {
    box.append(el("div", { class: "themes-more" }, el("button", {
      type: "button", dataset: { testid: "themes-toggle" },
      onclick: () => { dash.themesShowAll = !dash.themesShowAll; renderThemes(); },
    }, dash.themesShowAll ? t("themes.fewer") : t("themes.more", { n: d.topics.length }))));
  }
}

// --------------------------------------------------------------- breakdowns
const tone = (v) => (v === null || v === undefined || v === 0 ? "" : v < 0 ? "neg" : "pos");

/** A figure with its 95% interval under it; a small group is greyed (never red or green) and says so. */
function figureCell(value, lo, hi, small, n, signed) {
  const text = signed ? fmtSigned(value, 1) : fmtNumber(value, 1);
  const interval = value !== null && value !== undefined && lo !== null && lo !== undefined
    ? el("span", { class: "ci" }, "[" + fmtNumber(lo, 0) + "; " + fmtNumber(hi, 0) + "]") : null;
  return el("td", {
    class: "num " + (small ? "small-n" : tone(value)), title: small ? t("small.title", { n: fmtInt(n) }) : null,
    dataset: { small: small ? "true" : null },
  }, text, small ? el("span", { class: "badge-small" }, t("small.badge")) : null, interval);
}

function breakdownTable(groups, toParams, toChip, keyLabel) {
  return el("table", { class: "data breakdown" },
    el("thead", {}, el("tr", {}, ["breakdown.key", "breakdown.count", "breakdown.nps", "breakdown.nps_n", "breakdown.net", "breakdown.detractor"]
      .map((k, i) => el("th", { class: i ? "num" : null }, t(k), k === "breakdown.nps" || k === "breakdown.net"
        ? el("span", { class: "ci" }, t("breakdown.ci")) : null)))),
    el("tbody", {}, groups.map((g) => {
      const tr = el("tr", { class: "clickable", tabindex: "0", dataset: { testid: "breakdown-row", key: g.key } },
        el("td", {}, keyLabel(g.key)),
        el("td", { class: "num" }, fmtInt(g.count)),
        figureCell(g.nps, g.nps_ci_low, g.nps_ci_high, g.nps_small, g.nps_responses, false),
        el("td", { class: "num" }, fmtInt(g.nps_responses)),
        figureCell(g.net_sentiment, g.net_ci_low, g.net_ci_high, g.net_small, g.sentiment_rows, true),
        el("td", { class: "num" }, fmtPercent(g.detractor_estimate)));
      const open = () => openComments(toParams(g), [toChip(g)]);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      return tr;
    })));
}

function renderBreakdowns() {
  const k = dash.kpis;
  clear($("by-language")).append(breakdownTable(k.by_language, (g) => ({ language: g.key }),
    (g) => t("chip.language", { v: languageName(g.key) }), languageName));
  const seg = clear($("by-segment"));
  const cols = Object.entries(k.by_segment || {});
  if (!cols.length) seg.append(el("p", { class: "muted" }, t("breakdown.none")));
  for (const [col, groups] of cols) {
    seg.append(el("h3", { class: "subhead" }, col),
      el("div", { class: "table-scroll" }, breakdownTable(groups, (g) => ({ segment: col + ":" + g.key }),
        (g) => t("chip.segment", { col, v: g.key }), (key) => key)));
  }
}

// ----------------------------------------------------------------- comments
/** Open the list of comments behind a number: the dashboard filters plus what was clicked. */
function openComments(params, chips) {
  const base = Object.assign({}, dash.filters);
  delete base.granularity;
  const sentiment = params.sentiment || "";
  const merged = Object.assign(base, params);
  delete merged.sentiment;
  dash.comments.selection = { params: merged, chips: chips || [] };
  dash.comments.offset = 0;
  $("c-sentiment").value = sentiment;
  $("c-search").value = "";
  dash.comments.rows = [];
  renderChips();
  clear($("comment-list"));
  $("comments-count").textContent = "…";
  show($("drawer-backdrop"), true);
  show($("comments"), true);
  document.body.classList.add("drawer-open");
  loadComments();
  $("comments-close").focus();
}

function closeComments() {
  show($("comments"), false);
  show($("drawer-backdrop"), false);
  document.body.classList.remove("drawer-open");
}

function renderSentimentOptions() {
  const current = $("c-sentiment").value;
  clear($("c-sentiment")).append(option("", t("filter.all")), ...SENTIMENTS.map((s) => option(s, t("sentiment." + s), s === current)));
}

async function loadComments() {
  const c = dash.comments;
  const gen = ++c.generation;
  const params = Object.assign({}, c.selection.params, {
    sentiment: $("c-sentiment").value, q: $("c-search").value.trim(), limit: PAGE_SIZE, offset: c.offset,
  });
  $("comments").dataset.loading = "true";
  try {
    const page = await api("/v1/batches/" + encodeURIComponent(dash.batchId) + "/rows" + query(params));
    if (gen !== c.generation) return;
    c.rows = page.rows;
    c.total = page.total;
    renderComments();
  } catch (err) {
    if (gen !== c.generation) return;
    clear($("comment-list")).append(el("li", { class: "error-text" }, err.message));
  } finally {
    if (gen === c.generation) $("comments").dataset.loading = "false";
  }
}

/** Chips for the dashboard filters ``f`` that a selection ``p`` still carries (a click may replace one). */
function filterChips(f, p) {
  const chips = [];
  const same = (k) => f[k] !== undefined && p[k] === f[k];
  const names = (k, name) => asList(f[k]).map((v) => name(v)).join(", ");
  if (same("topic")) chips.push(t("chip.topic", { v: names("topic", (v) => topicName(v)) }));
  if (same("touchpoint")) chips.push(t("chip.touchpoint", { v: names("touchpoint", (v) => touchpointName(v)) }));
  if (same("channel")) chips.push(t("chip.channel", { v: names("channel", (v) => channelName(v)) }));
  if (same("language")) chips.push(t("chip.language", { v: names("language", languageName) }));
  if (same("segment")) {
    const byCol = {};
    for (const s of asList(f.segment)) {
      const [col, ...rest] = s.split(":");
      (byCol[col] = byCol[col] || []).push(rest.join(":"));
    }
    for (const [col, values] of Object.entries(byCol)) chips.push(t("chip.segment", { col, v: values.join(", ") }));
  }
  if (same("date_from")) chips.push(t("chip.from", { v: fmtDate(f.date_from) }));
  if (same("date_to")) chips.push(t("chip.to", { v: fmtDate(f.date_to) }));
  return chips;
}

function renderChips() {
  const c = dash.comments;
  const chips = c.selection.chips.slice();
  for (const text of filterChips(dash.filters, c.selection.params)) if (!chips.includes(text)) chips.push(text);
  clear($("comments-chips")).append(
    ...(chips.length ? chips : [t("chip.all")]).map((text) => el("span", { class: "chip" }, text)));
}

/** Evidence spans -> text nodes and <mark>s.  Offsets are Python indices: code points, not UTF-16 units. */
function highlighted(text, spans) {
  const chars = Array.from(text);
  const sorted = spans.filter((s) => s.length > 0 && s.offset < chars.length).sort((a, b) => a.offset - b.offset);
  const merged = [];
  for (const s of sorted) {
    const end = Math.min(chars.length, s.offset + s.length);
    const last = merged[merged.length - 1];
    if (last && s.offset <= last.end) {
      last.end = Math.max(last.end, end);
      if (!last.titles.includes(s.title)) last.titles.push(s.title);
      if (s.tone === "negative" || last.tone === "positive") last.tone = s.tone;
    } else {
      merged.push({ start: s.offset, end, titles: [s.title], tone: s.tone });
    }
  }
  const out = [];
  let at = 0;
  for (const m of merged) {
    if (m.start > at) out.push(document.createTextNode(chars.slice(at, m.start).join("")));
    out.push(el("mark", { class: "ev ev-" + (m.tone || "none"), title: m.titles.join(" · ") }, chars.slice(m.start, m.end).join("")));
    at = m.end;
  }
  if (at < chars.length) out.push(document.createTextNode(chars.slice(at).join("")));
  return out;
}

function evidenceFor(row, params) {
  const spans = [];
  const wantTopic = asList(params.topic);
  const wantTp = asList(params.touchpoint);
  for (const x of row.topics) {
    if (wantTopic.length && !wantTopic.includes(x.id)) continue;
    if (!wantTopic.length && wantTp.length) continue;
    for (const e of x.evidence || []) spans.push({ offset: e.offset, length: e.length, title: topicName(x.id), tone: x.sentiment });
  }
  for (const x of row.touchpoints) {
    if (!wantTp.includes(x.id)) continue;
    for (const e of x.evidence || []) spans.push({ offset: e.offset, length: e.length, title: touchpointName(x.id), tone: "touchpoint" });
  }
  return spans;
}

/** A comment's touchpoints, the primary one first and marked (also for screen readers). */
function touchpointTags(touchpoints) {
  const ordered = touchpoints.slice().sort((a, b) => Number(Boolean(b.primary)) - Number(Boolean(a.primary)));
  return ordered.map((x) => {
    const notes = [x.primary ? t("comments.primary") : null, x.from_channel ? t("comments.from_channel") : null].filter(Boolean);
    return el("span", {
      class: "tag tag-touchpoint" + (x.primary ? " tag-primary" : ""), title: notes.join(" · ") || null,
      dataset: { testid: "touchpoint-tag", primary: x.primary ? "true" : null },
    }, x.primary ? el("span", { class: "sr-only" }, t("comments.primary") + ": ") : null, touchpointName(x.id));
  });
}

function renderComments() {
  const c = dash.comments;
  renderChips();
  $("comments-count").textContent = t("comments.count", { total: fmtInt(c.total) });
  const list = clear($("comment-list"));
  if (!c.rows.length) list.append(el("li", { class: "muted" }, t("comments.none")));
  for (const row of c.rows) {
    const text = row.text || "";
    const meta = el("div", { class: "comment-meta" },
      el("span", { class: "strong" }, "#" + row.id),
      row.date ? el("span", {}, fmtDate(row.date)) : null,
      row.language ? el("span", {}, languageName(row.language)) : null,
      row.channel ? el("span", { dataset: { testid: "comment-channel" } }, t("comments.channel", { v: channelName(row.channel) })) : null,
      segmentTags(row),
      row.nps !== null ? el("span", { class: "badge badge-nps-" + (row.nps >= 9 ? "p" : row.nps >= 7 ? "pa" : "d") }, t("comments.nps", { nps: row.nps })) : null,
      row.sentiment ? el("span", { class: "badge badge-" + row.sentiment }, t("sentiment." + row.sentiment)) : null,
      row.detractor !== null ? el("span", { class: "muted" }, t("comments.detractor", { p: fmtPercent(row.detractor) })) : null);
    const body = row.ok
      ? el("p", { class: "comment-text", dataset: { testid: "comment-text" } }, text ? highlighted(text, evidenceFor(row, c.selection.params)) : t("comments.no_text"))
      : el("p", { class: "comment-text error-text" }, text, el("br"), t("comments.error", { message: rowErrorText(row.error) }));
    const tags = el("div", { class: "tags" },
      row.topics.map((x) => el("span", { class: "tag tag-" + x.sentiment, title: t("sentiment." + x.sentiment) }, topicName(x.id))),
      touchpointTags(row.touchpoints));
    const item = el("li", { class: "comment", dataset: { testid: "comment", row: String(row.row) } }, meta, body, tags);
    list.append(item);
    if (typeof VoceCorrections !== "undefined") VoceCorrections.decorate(item, row); // corrections.js
  }
  const from = c.total ? c.offset + 1 : 0;
  const to = Math.min(c.total, c.offset + c.rows.length);
  $("c-page").textContent = t("comments.page", { from: fmtInt(from), to: fmtInt(to), total: fmtInt(c.total) });
  $("c-prev").disabled = c.offset === 0;
  $("c-next").disabled = c.offset + PAGE_SIZE >= c.total;
}

// ----------------------------------------------------------------- comparison
/** Periods a side can be narrowed to: the months its dates span, and the trend's own periods when finer. */
function periodChoices(kpis) {
  const periods = (kpis && kpis.trend && kpis.trend.periods) || [];
  const months = [];
  if (periods.length) {  // every month from the first period's start to the last period's last day
    const last = new Date(periods[periods.length - 1].start + "T00:00:00Z");
    last.setUTCDate(last.getUTCDate() + ({ day: 0, week: 6, month: 27 }[kpis.trend.granularity] || 0));
    const end = last.toISOString().slice(0, 7);
    let [y, m] = periods[0].start.slice(0, 7).split("-").map(Number);
    for (let guard = 0; guard < 240; guard++) {
      const label = y + "-" + String(m).padStart(2, "0");
      months.push(label);
      if (label >= end) break;
      m = m === 12 ? 1 : m + 1;
      y = m === 1 ? y + 1 : y;
    }
  }
  const out = months.map((m) => ({ value: m, label: periodLabel({ period: m, start: m + "-01" }, "month") }));
  if (kpis && kpis.trend.granularity !== "month") {
    for (const p of periods) if (p.count > 0) out.push({ value: p.period, label: periodLabel(p, kpis.trend.granularity) });
  }
  return out;
}

function periodOptions(select, choices, current) {
  clear(select).append(option("", t("compare.whole"), !current),
    ...choices.map((c) => option(c.value, c.label, c.value === current)));
  if (current && !choices.some((c) => c.value === current)) select.append(option(current, current, true));
}

/** The comparison form: A = a period of this analysis; B = this or another analysis of the tenant, a period of it.
 *  The choice lives in the URL (cmp_a, cmp_b, cmp_bp), so a comparison is a link that opens compared. */
function renderCompareChoices() {
  const cmp = dash.compare;
  const mine = periodChoices(dash.base || dash.kpis);
  const months = mine.filter((c) => /^\d{4}-\d{2}$/.test(c.value));
  if (!cmp.chosen && months.length >= 2) {  // by default: last month (A) against this month (B)
    cmp.chosen = true;
    cmp.aPeriod = months[months.length - 2].value;
    cmp.bPeriod = months[months.length - 1].value;
  }
  periodOptions($("cmp-a-period"), mine, cmp.aPeriod);
  clear($("cmp-b-batch")).append(option("", t("compare.this_batch"), !cmp.bBatch),
    ...cmp.batches.filter((b) => b.id !== dash.batchId).map((b) => option(b.id, b.name + " · " + fmtDateTime(b.created_at), b.id === cmp.bBatch)));
  periodOptions($("cmp-b-period"), cmp.bBatch ? cmp.bPeriods || [] : mine, cmp.bPeriod);
}

async function initCompare() {
  const q = new URLSearchParams(location.search);
  const cmp = dash.compare;
  cmp.aPeriod = q.get("cmp_a") || "";
  cmp.bBatch = q.get("cmp_b") || "";
  cmp.bPeriod = q.get("cmp_bp") || "";
  cmp.chosen = cmp.chosen || q.has("cmp_a") || q.has("cmp_b") || q.has("cmp_bp");
  try {
    const list = await api("/v1/batches?limit=200");
    cmp.batches = list.batches.filter((b) => b.status === "done");
  } catch (_) { cmp.batches = []; }
  if (cmp.bBatch) await loadComparePeriods();
  renderCompareChoices();
  if (q.has("cmp_a") || q.has("cmp_b") || q.has("cmp_bp")) runCompare();
  else if (!cmp.result) clear($("compare-result")).append(el("p", { class: "muted" }, t("compare.empty")));
  $("compare-card").classList.toggle("no-print", !cmp.result);
}

async function loadComparePeriods() {
  const cmp = dash.compare;
  cmp.bPeriods = [];
  if (!cmp.bBatch) return;
  try {
    cmp.bPeriods = periodChoices(await api("/v1/batches/" + encodeURIComponent(cmp.bBatch) + "/kpis"));
  } catch (_) { /* the other analysis cannot be read: whole analysis only */ }
}

function writeCompareToUrl() {
  const url = new URL(location.href);
  const cmp = dash.compare;
  for (const [k, v] of [["cmp_a", cmp.aPeriod], ["cmp_b", cmp.bBatch], ["cmp_bp", cmp.bPeriod]]) {
    if (v) url.searchParams.set(k, v); else url.searchParams.delete(k);
  }
  history.replaceState(history.state, "", url);
}

async function runCompare() {
  const cmp = dash.compare;
  const gen = ++cmp.generation;
  const params = Object.assign({}, dash.filters, { a_period: cmp.aPeriod, b_period: cmp.bPeriod, b_batch: cmp.bBatch });
  delete params.granularity;
  $("compare-card").dataset.loading = "true";
  clear($("compare-result")).append(el("p", { class: "muted" }, t("compare.loading")));
  try {
    const result = await api("/v1/batches/" + encodeURIComponent(dash.batchId) + "/compare" + query(params));
    if (gen !== cmp.generation) return;
    cmp.result = result;
    renderCompare();
  } catch (err) {
    if (gen !== cmp.generation) return;
    cmp.result = null;
    clear($("compare-result")).append(el("p", { class: "error-text" }, err.message));
  } finally {
    if (gen === cmp.generation) $("compare-card").dataset.loading = "false";
    $("compare-card").classList.toggle("no-print", !cmp.result);
  }
}

/** One change B - A with its interval; ▲/▼ only when significant after the BH correction; small sides marked. */
function deltaCell(d, kind) {
  if (!d || d.diff === null || d.diff === undefined) return el("td", { class: "num delta" }, "–");
  const fmt = kind === "share" ? (v) => fmtSigned(100 * v, 1) : (v) => fmtSigned(v, 1);
  const unit = kind === "share" ? " pp" : "";
  const up = d.diff > 0;
  const cls = d.significant ? (kind === "share" ? "strong" : up ? "sig-up" : "sig-down") : "";
  return el("td", {
    class: "num delta " + cls + (d.small ? " small-n" : ""),
    title: (d.p_value !== null ? "p = " + fmtNumber(d.p_value, 4) : "") + (d.small ? " · " + t("small.title", { n: fmtInt(Math.min(d.n_a, d.n_b)) }) : ""),
    dataset: { significant: d.significant ? "true" : "false" },
  }, d.significant ? el("span", { "aria-label": t(up ? "compare.sig_up" : "compare.sig_down") }, up ? "▲ " : "▼ ") : null,
  fmt(d.diff) + unit, d.small ? el("span", { class: "badge-small" }, t("small.badge")) : null,
  d.ci_low !== null ? el("span", { class: "ci" }, "[" + fmt(d.ci_low) + "; " + fmt(d.ci_high) + "]") : null);
}

function sideValue(v, kind, n) {
  const text = v === null || v === undefined ? "–" : kind === "share" ? fmtPercent(v, 1) : kind === "count" ? fmtInt(v) : fmtNumber(v, 1);
  return el("td", { class: "num" }, text, n !== undefined && kind !== "count" ? el("span", { class: "ci" }, "n = " + fmtInt(n)) : null);
}

function renderCompare() {
  const c = dash.compare.result;
  const box = clear($("compare-result"));
  if (!c) return box.append(el("p", { class: "muted" }, t("compare.empty")));
  const k = c.kpis;
  const kpiRows = [["nps", "kpi.nps", "pts"], ["net_sentiment", "kpi.sentiment", "pts"], ["csat", "kpi.csat", "pts"], ["count", "kpi.count", "count"]]
    .filter(([key]) => k[key]).map(([key, label, kind]) => el("tr", { dataset: { testid: "compare-kpi", kpi: key } },
      el("th", { scope: "row" }, t(label)), sideValue(k[key].a, kind, k[key].n_a), sideValue(k[key].b, kind, k[key].n_b),
      kind === "count" ? el("td", { class: "num" }, fmtSigned(k[key].diff, 0)) : deltaCell(k[key], kind)));
  box.append(el("div", { class: "table-scroll" }, el("table", { class: "data compare-table", dataset: { testid: "compare-kpis" } },
    el("thead", {}, el("tr", {}, el("th", {}, t("compare.figure")), el("th", { class: "num" }, "A: " + c.a.label),
      el("th", { class: "num" }, "B: " + c.b.label), el("th", { class: "num" }, t("compare.delta")))),
    el("tbody", {}, kpiRows))));

  const themeTable = (title, items, nameOf, testid) => {
    const rows = items.filter((x) => x.count_a + x.count_b > 0);
    const anySig = (x) => x.share.significant || x.net_sentiment.significant || x.nps.significant;
    rows.sort((x, y) => Number(anySig(y)) - Number(anySig(x)) || Math.max(y.count_a, y.count_b) - Math.max(x.count_a, x.count_b));
    if (!rows.length) return [el("h3", {}, title), el("p", { class: "muted" }, t("compare.none"))];
    return [el("h3", {}, title), el("div", { class: "table-scroll" }, el("table", { class: "data compare-table", dataset: { testid } },
      el("thead", {}, el("tr", {}, ["compare.name", "compare.comments", "compare.share", "compare.net", "compare.nps"]
        .map((key, i) => el("th", { class: i ? "num" : null }, t(key))))),
      el("tbody", {}, rows.map((x) => el("tr", { dataset: { testid: testid + "-row", id: x.id } },
        el("td", { class: x.unclassified ? "muted" : null }, nameOf(x)),
        el("td", { class: "num" }, fmtInt(x.count_a) + " → " + fmtInt(x.count_b)),
        deltaCell(x.share, "share"), deltaCell(x.net_sentiment, "pts"), deltaCell(x.nps, "pts"))))))];
  };
  const topics = c.topics.slice();
  if (c.unclassified) topics.push(Object.assign({}, c.unclassified, { unclassified: true }));
  box.append(...themeTable(t("compare.topics"), topics,
    (x) => (x.unclassified ? t("unclassified.title") : topicName(x.id, x.label)), "compare-topics"));
  box.append(...themeTable(t("compare.touchpoints"), c.touchpoints, (x) => touchpointName(x.id, x.label), "compare-touchpoints"));
}

// ---------------------------------------------------------------------- print
/** What the printed page says on top: the analysis, its filters in words, when it was printed. */
function fillPrintMeta() {
  const chips = filterChips(dash.filters, dash.filters);
  $("print-meta").textContent = t("print.meta", {
    name: dash.batch ? dash.batch.name : "", filters: chips.length ? chips.join(" · ") : t("print.no_filters"),
    when: fmtDateTime(new Date().toISOString()),
  });
}

function resizeCharts() { for (const chart of Object.values(dash.charts)) chart.resize(); }

/** One chart as a PNG on a white background (Chart.js draws on a transparent canvas), named after the analysis. */
function downloadChartPng(name) {
  const chart = dash.charts[name];
  if (!chart) return;
  const src = chart.canvas;
  const out = document.createElement("canvas");
  out.width = src.width;
  out.height = src.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(src, 0, 0);
  const stem = ((dash.batch && dash.batch.name) || "voce").replace(/\.[^.]*$/, "");
  const a = el("a", { href: out.toDataURL("image/png"), download: stem + "-" + name + ".png", hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------- comment card
/** A comment's segment values (the columns mapped as segments), as "column: value". */
function segmentTags(row) {
  const cols = (dash.batch && dash.batch.mapping && dash.batch.mapping.segments) || [];
  const values = row.columns || {};
  return cols.filter((col) => values[col] !== null && values[col] !== undefined && String(values[col]).trim() !== "")
    .map((col) => el("span", { class: "segment", dataset: { testid: "comment-segment" } }, t("chip.segment", { col, v: String(values[col]) })));
}

// -------------------------------------------------------------------- setup
function rerender() {
  renderBatchHead();
  if (dash.kpis) { renderFilterOptions(); renderKpis(); }
  renderHeatmap();
  renderThemes();
  renderSentimentOptions();
  if (!$("comments").hidden && dash.comments.selection) renderComments();
  renderCompareChoices();
  renderCompare();
  $("home-link").href = withLang("/ui/");
  $("back-link").href = withLang("/ui/");
}

// ------------------------------------------------- exports people open (GET /v1/batches/{id}/export)
/** The people's export of a selection: the dashboard's filters, or a comments list's (its filters plus sentiment,
 *  discovered theme, search), labelled in the page's language; CSV in the upload's own delimiter and encoding. */
function exportHref(format, params) {
  const q = new URLSearchParams({ format, lang: currentLang });
  for (const [k, v] of Object.entries(params || {})) {
    if (k === "granularity" || k === "limit" || k === "offset") continue;
    for (const x of Array.isArray(v) ? v : [v]) if (x !== null && x !== undefined && x !== "") q.append(k, String(x));
  }
  return "/v1/batches/" + encodeURIComponent(dash.batchId) + "/export?" + q.toString();
}

/** Each export link gets its href when it is about to be used, so it always carries the current selection. */
function wireExports() {
  const view = () => dash.filters;
  const list = () => Object.assign({}, dash.comments.selection ? dash.comments.selection.params : {},
    { sentiment: $("c-sentiment").value, q: $("c-search").value.trim() });
  for (const [id, format, params] of [["export-view-xlsx", "xlsx", view], ["export-view-csv", "csv", view],
    ["export-list-xlsx", "xlsx", list], ["export-list-csv", "csv", list]]) {
    const a = $(id);
    if (!a) continue;
    const update = () => { a.href = exportHref(format, params()); };
    update();
    for (const ev of ["pointerenter", "focus", "click"]) a.addEventListener(ev, update);
  }
}
document.addEventListener("DOMContentLoaded", wireExports);

document.addEventListener("DOMContentLoaded", async () => {
  chartDefaults();
  dash.filters = readFiltersFromUrl();
  renderSentimentOptions();
  $("home-link").href = withLang("/ui/");
  $("back-link").href = withLang("/ui/");
  $("filters").addEventListener("change", onFilterChange);
  for (const id of ["f-topic", "f-touchpoint", "f-channel", "f-language", "f-segment"]) toggleOnClick($(id));
  $("print").addEventListener("click", () => { fillPrintMeta(); window.print(); });
  document.querySelectorAll("[data-png]").forEach((b) => b.addEventListener("click", () => downloadChartPng(b.dataset.png)));
  window.addEventListener("beforeprint", () => { fillPrintMeta(); resizeCharts(); });
  window.addEventListener("afterprint", resizeCharts);
  $("compare-form").addEventListener("submit", (e) => { e.preventDefault(); writeCompareToUrl(); runCompare(); });
  $("cmp-a-period").addEventListener("change", (e) => { dash.compare.aPeriod = e.target.value; dash.compare.chosen = true; });
  $("cmp-b-period").addEventListener("change", (e) => { dash.compare.bPeriod = e.target.value; dash.compare.chosen = true; });
  $("cmp-b-batch").addEventListener("change", async (e) => {
    dash.compare.bBatch = e.target.value;
    dash.compare.bPeriod = "";
    dash.compare.chosen = true;
    await loadComparePeriods();
    renderCompareChoices();
  });
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("f-reset").addEventListener("click", () => {
    dash.filters = {};
    writeFiltersToUrl();
    renderFilterOptions();
    loadKpis();
  });
  $("comments-close").addEventListener("click", closeComments);
  $("drawer-backdrop").addEventListener("click", closeComments);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("comments").hidden) closeComments(); });
  $("c-sentiment").addEventListener("change", () => { dash.comments.offset = 0; loadComments(); });
  $("c-search").addEventListener("input", () => {
    clearTimeout(dash.comments.searchTimer);
    dash.comments.searchTimer = setTimeout(() => { dash.comments.offset = 0; loadComments(); }, 300);
  });
  $("c-prev").addEventListener("click", () => { dash.comments.offset = Math.max(0, dash.comments.offset - PAGE_SIZE); loadComments(); });
  $("c-next").addEventListener("click", () => { dash.comments.offset += PAGE_SIZE; loadComments(); });
  onLangChange(rerender);

  try {
    await Promise.all([loadBatch(), loadTaxonomy()]);
  } catch (err) {
    showError($("dash-error"), err);
    return;
  }
  loadKpis();
  loadBase();
  loadThemes();
  initCompare();
  watchBatch();
});
