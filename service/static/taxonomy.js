/* The taxonomy page (issue 15): the tenant's topics and touchpoints, edited entry by entry (add, edit names,
 * descriptions and examples, rename the id, merge, retire), YAML import/export, and the versions with their changes
 * and a rollback.  Every save is PATCH/PUT /v1/taxonomy and becomes a new version. */
"use strict";

const tax = { data: null, section: "topics", editing: null, versions: [] };
const $t = (id) => document.getElementById(id);

function nameOf(entry) {
  return entry.names[currentLang] || entry.names.en || entry.names.it || entry.id;
}

/** A refusal in the page's language: the detail code when known, else the server's message. */
async function taxSend(method, path, body) {
  const headers = Object.assign(apiHeaders(method), body ? { "Content-Type": "application/json" } : {});
  const response = await fetch(path, { method, headers, credentials: "same-origin", body: body ? JSON.stringify(body) : undefined });
  if (response.status === 401) toSignIn();
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const e = (data && data.error) || {};
    const d = e.details && e.details[0];
    const key = d && d.code ? "tax.err." + d.code : "";
    const text = key ? t(key, d) : "";
    throw new Error(text && text !== key ? text : e.message || t("error.generic", { status: response.status }));
  }
  return data;
}

function flash(message, isError) {
  const box = isError ? $t("tax-error") : $t("tax-info");
  show(isError ? $t("tax-info") : $t("tax-error"), false);
  box.textContent = message;
  show(box, true);
}

async function loadTaxonomyPage() {
  try {
    const [data, versions] = await Promise.all([api("/v1/taxonomy"), api("/v1/taxonomy/versions")]);
    tax.data = data;
    tax.versions = versions.versions;
  } catch (err) {
    flash(err.message, true);
    return;
  }
  renderTaxonomyPage();
}

function renderTaxonomyPage() {
  const d = tax.data;
  if (!d) return;
  $t("tax-meta").textContent = d.stored
    ? t("tax.meta", { label: d.version, n: d.number, topics: d.topics.length, touchpoints: d.touchpoints.length })
    : t("tax.meta_configured", { label: d.version, topics: d.topics.length, touchpoints: d.touchpoints.length });
  document.querySelectorAll(".tab").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.section === tax.section)));
  const body = clear($t("tax-table").querySelector("tbody"));
  for (const entry of d[tax.section]) {
    body.append(el("tr", { dataset: { testid: "tax-row", id: entry.id } },
      el("td", {}, el("code", {}, entry.id)),
      el("td", {}, entry.names.it || "–"),
      el("td", {}, entry.names.en || "–"),
      el("td", {}, String((entry.examples || []).length)),
      el("td", {}, el("button", { type: "button", class: "link", dataset: { testid: "tax-edit" }, onclick: () => edit(entry) }, t("tax.edit")))));
  }
  renderVersions();
}

function changeText(c) {
  const section = t("tax.section_" + c.section);
  if (c.kind === "added") return t("tax.change_added", { section, id: c.id, name: c.after || c.id });
  if (c.kind === "removed") return t("tax.change_removed", { section, id: c.id });
  if (c.kind === "mode") return t("tax.change_mode", { section, before: c.before, after: c.after });
  if (c.field === "examples" || c.field === "channels") {
    return t("tax.change_list", { id: c.id, field: t("tax.field_" + c.field), plus: (c.after || []).length, minus: (c.before || []).length });
  }
  return t("tax.change_field", { id: c.id, field: c.field, before: c.before || "–", after: c.after || "–" });
}

function renderVersions() {
  const list = clear($t("tax-versions"));
  if (!tax.versions.length) list.append(el("li", { class: "muted" }, t("tax.no_versions")));
  const active = tax.data && tax.data.number;
  for (const v of tax.versions) {
    list.append(el("li", { dataset: { testid: "tax-version", version: String(v.version) } },
      el("strong", {}, "v" + v.version), " · " + v.author + " · " + fmtDateTime(v.created_at),
      v.restored_from ? " · " + t("tax.restored", { v: v.restored_from }) : "",
      v.message ? el("div", {}, v.message) : null,
      el("ul", {}, v.changes.slice(0, 12).map((c) => el("li", {}, changeText(c))),
        v.changes.length > 12 ? el("li", {}, t("tax.more_changes", { n: v.changes.length - 12 })) : null),
      v.version !== active ? el("button", {
        type: "button", class: "link", dataset: { testid: "tax-rollback" },
        onclick: () => rollback(v.version),
      }, t("tax.rollback")) : el("span", { class: "badge badge-done" }, t("tax.active"))));
  }
}

function edit(entry) {
  tax.editing = entry;
  const f = $t("tax-form");
  f.reset();
  $t("tax-editor-title").textContent = entry ? t("tax.editing", { id: entry.id }) : t("tax.adding", { section: t("tax.section_" + tax.section) });
  if (entry) {
    f.elements.id.value = entry.id;
    f.elements.name_it.value = entry.names.it || "";
    f.elements.name_en.value = entry.names.en || "";
    f.elements.desc_it.value = (entry.descriptions || {}).it || "";
    f.elements.desc_en.value = (entry.descriptions || {}).en || "";
    f.elements.examples.value = (entry.examples || []).join("\n");
  }
  const into = clear($t("tax-merge").elements.into);
  for (const other of tax.data[tax.section]) {
    if (entry && other.id !== entry.id) into.append(el("option", { value: other.id }, nameOf(other) + " (" + other.id + ")"));
  }
  show($t("tax-merge"), Boolean(entry));
  show($t("tax-editor"), true);
  f.elements.id.focus();
}

async function saveEdits(edits, message) {
  const v = await taxSend("PATCH", "/v1/taxonomy", { edits, message: message || null, expect_version: tax.data.number || 0 });
  flash(t("tax.saved", { v: v.version }), false);
  show($t("tax-editor"), false);
  await loadTaxonomyPage();
}

async function onSave(e) {
  e.preventDefault();
  const f = $t("tax-form");
  const val = (name) => f.elements[name].value.trim();
  const names = {};
  const descriptions = {};
  if (val("name_it")) names.it = val("name_it");
  if (val("name_en")) names.en = val("name_en");
  descriptions.it = val("desc_it");
  descriptions.en = val("desc_en");
  const examples = f.elements.examples.value.split("\n").map((s) => s.trim()).filter(Boolean);
  const section = tax.section;
  const edits = [];
  const entry = tax.editing;
  if (!entry) {
    const clean = Object.fromEntries(Object.entries(descriptions).filter(([, v]) => v));
    edits.push({ op: "add", section, entry: { id: val("id"), names, descriptions: clean, examples } });
  } else {
    edits.push({ op: "update", section, id: entry.id, patch: { names: { it: names.it || "", en: names.en || "" }, descriptions, examples } });
    if (val("id") !== entry.id) edits.push({ op: "rename", section, id: entry.id, new_id: val("id") });
  }
  try {
    await saveEdits(edits, val("message"));
  } catch (err) {
    flash(err.message, true);
  }
}

async function onMerge(e) {
  e.preventDefault();
  const into = $t("tax-merge").elements.into.value;
  if (!tax.editing || !into) return;
  if (!confirm(t("tax.confirm_merge", { id: tax.editing.id, into }))) return;
  try {
    await saveEdits([{ op: "merge", section: tax.section, id: tax.editing.id, into }]);
  } catch (err) {
    flash(err.message, true);
  }
}

async function onRetire() {
  if (!tax.editing || !confirm(t("tax.confirm_retire", { id: tax.editing.id }))) return;
  try {
    await saveEdits([{ op: "retire", section: tax.section, id: tax.editing.id }]);
  } catch (err) {
    flash(err.message, true);
  }
}

async function rollback(version) {
  if (!confirm(t("tax.confirm_rollback", { v: version }))) return;
  try {
    const v = await taxSend("POST", "/v1/taxonomy/versions/" + version + "/rollback");
    flash(t("tax.saved", { v: v.version }), false);
    await loadTaxonomyPage();
  } catch (err) {
    flash(err.message, true);
  }
}

async function onImport(e) {
  const file = e.target.files[0];
  if (!file) return;
  try {
    const text = await file.text();
    const v = await taxSend("PUT", "/v1/taxonomy", { yaml: text, message: t("tax.imported", { name: file.name }) });
    flash(t("tax.saved", { v: v.version }), false);
    await loadTaxonomyPage();
  } catch (err) {
    flash(err.message, true);
  } finally {
    e.target.value = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
    tax.section = b.dataset.section;
    show($t("tax-editor"), false);
    renderTaxonomyPage();
  }));
  $t("tax-add").addEventListener("click", () => edit(null));
  $t("tax-form").addEventListener("submit", onSave);
  $t("tax-merge").addEventListener("submit", onMerge);
  $t("tax-retire").addEventListener("click", onRetire);
  $t("tax-cancel").addEventListener("click", () => show($t("tax-editor"), false));
  $t("tax-import").addEventListener("change", onImport);
  onLangChange(renderTaxonomyPage);
  loadTaxonomyPage();
});
