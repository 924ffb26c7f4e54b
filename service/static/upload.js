/* Upload page: file -> preview + column mapping + what it will do -> POST /v1/batches -> progress bar with the rows'
 * warnings (kept in the URL as ?batch=, so a reload finds it again); and the batch list. */
"use strict";

const ROLES = ["text", "nps", "date", "channel", "id", "csat", "ces", "language", "kind"];
const PREVIEW_BYTES = 256 * 1024;
const state = { file: null, preview: null, batch: null, following: null, pollTimer: null, listTimer: null, batches: null };

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ preview
function isSpreadsheet(name) { return /\.(xlsx|xlsm)$/i.test(name); }

/** The head of a text file, cut after its last complete line (XLSX must go whole: it is a zip). */
async function previewBlob(file) {
  if (isSpreadsheet(file.name) || file.size <= PREVIEW_BYTES) return file;
  const bytes = new Uint8Array(await file.slice(0, PREVIEW_BYTES).arrayBuffer());
  let end = bytes.lastIndexOf(0x0a) + 1;
  if (end <= 0) end = bytes.length;
  const utf16 = (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff);
  if (utf16 && end % 2 === 1) end += 1;
  return new File([bytes.subarray(0, Math.min(end, bytes.length))], file.name, { type: file.type });
}

async function handleFile(file) {
  resetAll();
  if (!file) return;
  state.file = file;
  $("file-name").textContent = t("upload.reading", { name: file.name });
  try {
    const form = new FormData();
    form.append("file", await previewBlob(file), file.name);
    state.preview = await api("/v1/batches/preview", { method: "POST", body: form });
    $("file-name").textContent = file.name + " · " + fmtBytes(file.size);
    renderPreview();
  } catch (err) {
    $("file-name").textContent = file.name;
    showError($("upload-error"), err);
  }
}

function fmtBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return fmtNumber(n / 1024, 0) + " KB";
  return fmtNumber(n / 1024 / 1024, 1) + " MB";
}

function renderPreview() {
  const p = state.preview;
  if (!p) return;
  const delimiterName = {
    ";": t("delimiter.semicolon"), ",": t("delimiter.comma"), "\t": t("delimiter.tab"), "|": t("delimiter.pipe"),
  };
  $("preview-meta").textContent = t("preview.meta", {
    format: p.format.toUpperCase(),
    encoding: p.encoding || t("preview.none"),
    delimiter: p.delimiter ? delimiterName[p.delimiter] || p.delimiter : t("preview.none"),
    columns: p.columns.length,
    rows: p.rows.length,
  });
  const table = clear($("preview-table"));
  table.append(
    el("thead", {}, el("tr", {}, p.columns.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, p.rows.map((row) => el("tr", {}, p.columns.map((c) => {
      const v = row[c] === null || row[c] === undefined ? "" : String(row[c]);
      return el("td", { title: v.length > 80 ? v : null }, v.length > 80 ? v.slice(0, 79) + "…" : v);
    })))),
  );
  if (!$("mapping-roles").childElementCount) renderMapping(p.guessed_mapping || {});
  show($("preview"), true);
}

function renderMapping(guess) {
  const p = state.preview;
  const roles = clear($("mapping-roles"));
  for (const role of ROLES) {
    const select = el("select", { id: "map-" + role, name: role, dataset: { testid: "map-" + role, role } },
      el("option", { value: "", dataset: { i18n: "mapping.unused" } }, t("mapping.unused")),
      p.columns.map((c) => el("option", { value: c }, c)));
    select.value = guess[role] && p.columns.includes(guess[role]) ? guess[role] : "";
    roles.append(el("label", { class: "field" + (role === "text" ? " required" : "") },
      el("span", { dataset: { i18n: "role." + role } }, t("role." + role)),
      select,
      el("small", { class: "muted", dataset: { i18n: "role." + role + ".help" } }, t("role." + role + ".help"))));
  }
  const segs = clear($("segment-options"));
  const chosen = new Set(guess.segments || []);
  if (!p.columns.length) segs.append(el("span", { class: "muted", dataset: { i18n: "mapping.no_segments" } }));
  for (const c of p.columns) {
    segs.append(el("label", { class: "check" },
      el("input", { type: "checkbox", value: c, checked: chosen.has(c), dataset: { testid: "segment-option" } }), c));
  }
  $("dayfirst").checked = guess.dayfirst !== false;
  $("batch-name").value = state.file ? state.file.name : "";
  applyLabels($("mapping-form"));
  renderSummary();
}

// ------------------------------------------------------------ mapping summary
const SCALES = { nps: [0, 10], csat: [1, 5], ces: [1, 7] };

/** What each role of the chosen mapping will do, counted on the preview's sample (the server's column profiles;
 * the same rules as uploads.mapping_summary): [{role, column, main, detail, warn}]. */
function summaryItems(mapping) {
  const p = state.preview;
  const profiles = (p && p.profiles) || {};
  const items = [];
  const add = (role, column, main, detail) => items.push({ role, column, main, detail: detail || null, warn: !!detail });
  const of = (n, key, vars) => (n > 0 ? t(key, vars) : null);
  for (const role of ["text", "nps", "csat", "ces", "date", "id", "channel", "kind", "language"]) {
    const column = mapping[role];
    const prof = column && profiles[column];
    if (!prof) continue;
    const values = prof.values;
    if (role === "text") {
      add(role, column, t("summary.text", { column }),
        of(prof.empty, "summary.text.empty", { empty: fmtInt(prof.empty), sample: fmtInt(p.sample_rows) }));
    } else if (SCALES[role]) {
      const invalid = values - prof[role];
      add(role, column, t("summary.score", { column, scale: t("role." + role) }),
        of(invalid, "summary.score.invalid", { invalid: fmtInt(invalid), values: fmtInt(values) }));
    } else if (role === "date") {
      const invalid = values - (mapping.dayfirst ? prof.dates_dayfirst : prof.dates_monthfirst);
      add(role, column, t("summary.date", { column, order: t(mapping.dayfirst ? "summary.dayfirst" : "summary.monthfirst") }),
        of(invalid, "summary.date.invalid", { invalid: fmtInt(invalid), values: fmtInt(values) }));
    } else if (role === "id") {
      const duplicates = values - prof.distinct;
      add(role, column, t("summary.id", { column }), of(duplicates, "summary.id.duplicates", { duplicates: fmtInt(duplicates) }));
    } else if (role === "channel") {
      add(role, column, t("summary.channel", { column, distinct: fmtInt(prof.distinct) }));
    } else {
      const invalid = values - (role === "kind" ? prof.kinds : prof.languages);
      add(role, column, t("summary." + role, { column }),
        of(invalid, "summary." + role + ".invalid", { invalid: fmtInt(invalid), values: fmtInt(values) }));
    }
  }
  for (const column of mapping.segments) {
    if (profiles[column]) add("segment", column, t("summary.segment", { column, distinct: fmtInt(profiles[column].distinct) }));
  }
  const used = new Set(ROLES.map((r) => mapping[r]).filter(Boolean).concat(mapping.segments));
  const ignored = ((p && p.columns) || []).filter((c) => !used.has(c));
  if (ignored.length) add("ignored", ignored.join(", "), t("summary.ignored", { columns: ignored.join(", ") }));
  return items;
}

function renderSummary() {
  if (!state.preview || !$("map-text")) return;
  const list = clear($("mapping-summary-list"));
  for (const item of summaryItems(readMapping())) {
    list.append(el("li", { class: item.warn ? "warn" : null, dataset: { testid: "summary-" + item.role, column: item.column } },
      el("span", {}, item.main), item.detail ? el("span", { class: "muted" }, " · " + item.detail) : null));
  }
  $("mapping-summary-sample").textContent = t("summary.sample", { n: fmtInt(state.preview.sample_rows || state.preview.rows.length) });
}

function readMapping() {
  const mapping = { segments: [], dayfirst: $("dayfirst").checked };
  for (const role of ROLES) {
    const value = $("map-" + role).value;
    if (value) mapping[role] = value;
  }
  $("segment-options").querySelectorAll("input:checked").forEach((box) => mapping.segments.push(box.value));
  return mapping;
}

// ------------------------------------------------------------------- upload
function uploadBatch(file, mapping, name, piiMode) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("mapping", JSON.stringify(mapping));
    if (name) form.append("name", name);
    if (piiMode) form.append("pii_mode", piiMode);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/batches");
    for (const [header, value] of Object.entries(apiHeaders("POST"))) xhr.setRequestHeader(header, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress(e.loaded / e.total, t("upload.uploading", { pct: Math.round((100 * e.loaded) / e.total) }));
    };
    xhr.onerror = () => reject(new ApiError(0, "NetworkError", t("error.network")));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* handled below */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) return resolve(body);
      const err = body && body.error;
      reject(new ApiError(xhr.status, err ? err.code : "HTTP" + xhr.status,
        err ? err.message : t("error.generic", { status: xhr.status }), err ? err.details : null));
    };
    xhr.send(form);
  });
}

async function startAnalysis(event) {
  event.preventDefault();
  show($("upload-error"), false);
  const mapping = readMapping();
  if (!mapping.text) {
    showError($("upload-error"), t("mapping.need_text"));
    $("map-text").focus();
    return;
  }
  $("start").disabled = true;
  $("progress-name").textContent = $("batch-name").value || state.file.name;
  show($("progress"), true);
  show($("progress-done"), false);
  $("progress-status").textContent = "";
  setProgress(0, t("upload.uploading", { pct: 0 }));
  try {
    const created = await uploadBatch(state.file, mapping, $("batch-name").value.trim(), $("pii-mode").value);
    setProgress(0, t("upload.sent"));
    show($("preview"), false);
    rememberBatch(created.id);
    pollBatch(created.id);
    refreshList();
  } catch (err) {
    show($("progress"), false);
    showError($("upload-error"), err);
  } finally {
    $("start").disabled = false;
  }
}

// ----------------------------------------------------------------- progress
function setProgress(fraction, text) {
  const pct = Math.round(100 * Math.max(0, Math.min(1, fraction)));
  $("progress-fill").style.width = pct + "%";
  $("progress-bar").setAttribute("aria-valuenow", String(pct));
  $("progress-text").textContent = text;
}

function progressText(b) {
  if (b.status === "queued") return t("progress.queued");
  if (b.status === "failed") return t("progress.failed", { error: b.error || "?" });
  if (b.status === "done") {
    const errs = b.rows_error ? " " + t("progress.errors", { n: fmtInt(b.rows_error) }) + "." : "";
    return t("progress.done", { total: fmtInt(b.rows_total || b.rows_done) }) + errs;
  }
  if (b.phase === "discovering") return t("progress.discovering", { total: fmtInt(b.rows_total || b.rows_done) });
  if (b.phase === "reading" && !b.rows_total) return t("progress.reading", { done: fmtInt(b.rows_done) });
  let text = b.rows_total
    ? t("progress.analysing", { done: fmtInt(b.rows_done), total: fmtInt(b.rows_total) })
    : t("progress.analysing_unknown", { done: fmtInt(b.rows_done) });
  const eta = fmtDuration(b.eta_seconds);
  if (eta && b.eta_seconds > 0) text += " · " + t("progress.eta", { eta });
  if (b.rows_error) text += " · " + t("progress.errors", { n: fmtInt(b.rows_error) });
  return text;
}

function renderProgress() {
  const b = state.batch;
  if (!b) return;
  $("progress-name").textContent = b.name;
  const badge = $("progress-status");
  badge.className = "badge badge-" + b.status;
  badge.dataset.status = b.status;
  badge.textContent = t("status." + b.status) + (b.status === "running" && b.phase ? " · " + t("phase." + b.phase) : "");
  setProgress(b.progress, progressText(b));
  $("progress").dataset.status = b.status;
  if (b.status === "done") {
    $("progress-open").href = withLang("/ui/batches/" + encodeURIComponent(b.id));
    show($("progress-done"), true);
  }
  renderNotes(b.notes);
}

/** A row warning or error in the page's language (its code and parameters), else the server's English message. */
function noteText(prefix, code, params, message) {
  const vars = Object.assign({}, params);
  if (vars.role) vars.role = vars.role.toUpperCase();
  const key = prefix + code;
  const text = t(key, vars);
  return text === key ? message : text;
}

function noteItems(list, groups, prefix) {
  clear(list);
  for (const g of groups || []) {
    const first = g.examples[0];
    const text = first ? noteText(prefix, g.code, first.params, first.message) : g.message;
    const rows = g.examples.map((e) => fmtInt(e.row)).join(", ") + (g.count > g.examples.length ? " " + t("notes.more") : "");
    list.append(el("li", { dataset: { testid: "note", code: g.code, count: g.count } },
      el("strong", {}, fmtInt(g.count) + " × "), text, el("span", { class: "muted" }, " (" + t("notes.rows", { rows }) + ")")));
  }
}

/** The rows' warnings and errors by kind, with example rows: shown while the batch runs and once it is done. */
function renderNotes(notes) {
  const any = notes && (notes.warnings.length || notes.errors.length);
  show($("progress-notes"), !!any);
  if (!any) return;
  $("notes-summary").textContent = t("notes.summary", { rows: fmtInt(notes.rows_with_warnings), checked: fmtInt(notes.rows_checked) });
  noteItems($("notes-warnings"), notes.warnings, "warn.");
  noteItems($("notes-errors"), notes.errors, "rowerr.");
  show($("notes-errors-title"), notes.errors.length > 0);
}

// ------------------------------------------------------------ survive a reload
/** The batch followed goes into the URL (?batch=), so a reload (or a shared link) shows its progress again. */
function rememberBatch(id) {
  const url = new URL(location.href);
  if (id) url.searchParams.set("batch", id); else url.searchParams.delete("batch");
  history.replaceState(history.state, "", url);
}

function resumeBatch(id) {
  show($("progress"), true);
  show($("progress-done"), false);
  setProgress(0, "");
  pollBatch(id);
}

function pollBatch(id) {
  clearTimeout(state.pollTimer);
  state.following = id;
  const tick = async () => {
    try {
      state.batch = await api("/v1/batches/" + encodeURIComponent(id));
      renderProgress();
      if (state.batches) {  // keep the list's row in step with the bar
        const i = state.batches.findIndex((x) => x.id === id);
        if (i >= 0) { state.batches[i] = state.batch; renderList(); }
      }
      if (state.batch.status === "done" || state.batch.status === "failed") {
        refreshList();
        return;
      }
    } catch (err) {
      if (err.status === 404) {  // deleted (or another tenant's link): nothing to follow
        rememberBatch(null);
        state.batch = null;
        state.following = null;
        show($("progress"), false);
        return;
      }
      $("progress-text").textContent = apiErrorText(err) + " " + t("error.retry");
    }
    state.pollTimer = setTimeout(tick, 700);
  };
  tick();
}

// --------------------------------------------------------------- batch list
async function refreshList() {
  clearTimeout(state.listTimer);
  try {
    state.batches = (await api("/v1/batches?limit=100")).batches;
    renderList();
  } catch (err) {
    showError($("upload-error"), err);
  }
  if (!state.following && state.batches) {  // a reload mid-analysis: follow the running batch again
    const running = state.batches.find((b) => b.status === "running" || b.status === "queued");
    if (running) { rememberBatch(running.id); resumeBatch(running.id); }
  }
  if (state.batches && state.batches.some((b) => b.status === "queued" || b.status === "running")) {
    state.listTimer = setTimeout(refreshList, 3000);
  }
}

function renderList() {
  const body = clear($("batch-rows"));
  const batches = state.batches || [];
  show($("batch-empty"), batches.length === 0);
  for (const b of batches) {
    const dash = withLang("/ui/batches/" + encodeURIComponent(b.id));
    const results = "/v1/batches/" + encodeURIComponent(b.id) + "/results?format=";
    const rows = b.rows_total ? fmtInt(b.rows_done) + " / " + fmtInt(b.rows_total) : fmtInt(b.rows_done);
    const running = b.status === "running" || b.status === "queued";
    body.append(el("tr", { dataset: { testid: "batch-row", batchId: b.id, status: b.status } },
      el("td", {}, el("a", { href: dash, class: "strong" }, b.name)),
      el("td", {}, statusBadge(b.status),
        running ? el("div", { class: "progress progress-small", title: Math.round(100 * b.progress) + "%" },
          el("div", { class: "progress-fill", dataset: { pct: Math.round(100 * b.progress) } })) : null,
        b.status === "failed" && b.error ? el("div", { class: "small error-text" }, b.error) : null),
      el("td", { class: "num" }, rows),
      el("td", { class: "num" }, fmtInt(b.rows_error)),
      el("td", {}, fmtDateTime(b.created_at)),
      el("td", {}, el("div", { class: "links" },
        el("a", { href: dash, dataset: { testid: "batch-open" } }, t("batches.open")),
        el("a", { href: withLang("/ui/?batch=" + encodeURIComponent(b.id)), dataset: { testid: "batch-details" } },
          t("batches.details")),
        el("a", { href: results + "csv", download: true }, "CSV"),
        el("a", { href: results + "xlsx", download: true }, "XLSX"),
        el("a", { href: results + "jsonl", download: true }, "JSONL"),
        running ? null : el("button", { type: "button", class: "link danger", onclick: () => deleteBatch(b) },
          t("batches.delete")))),
    ));
  }
  // widths through CSSOM (the CSP forbids inline style attributes)
  body.querySelectorAll(".progress-fill[data-pct]").forEach((f) => { f.style.width = f.dataset.pct + "%"; });
}

async function deleteBatch(b) {
  if (!window.confirm(t("batches.confirm_delete", { name: b.name }))) return;
  try {
    await api("/v1/batches/" + encodeURIComponent(b.id), { method: "DELETE" });
  } catch (err) {
    showError($("upload-error"), err);
  }
  refreshList();
}

// -------------------------------------------------------------------- setup
function resetAll() {
  state.file = null;
  state.preview = null;
  clear($("mapping-roles"));
  clear($("preview-table"));
  show($("preview"), false);
  show($("upload-error"), false);
  $("file-name").textContent = "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => handleFile(e.target.files[0]));
  const zone = document.querySelector(".dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (e.dataTransfer.files.length) handleFile(e.dataTransfer.files[0]);
  });
  $("mapping-form").addEventListener("submit", startAnalysis);
  $("mapping-form").addEventListener("change", renderSummary);  // roles, segments, day-first
  $("cancel").addEventListener("click", () => { resetAll(); $("file").value = ""; });
  $("refresh").addEventListener("click", refreshList);
  onLangChange(() => { renderPreview(); renderSummary(); renderProgress(); renderList(); });
  const followed = new URLSearchParams(location.search).get("batch");
  if (followed) resumeBatch(followed);
  refreshList();
});
