/* "Add to taxonomy" on a discovered theme (issues 15 and 17): a form prefilled from the theme (IT/EN names and
 * descriptions from its keywords, its representative comments as examples) that writes a new version of the tenant's
 * taxonomy, as a new topic or merged into an existing one (PATCH /v1/taxonomy).  dashboard.js calls
 * VocePromote.open(card, topic) from the theme card. */
"use strict";

const VocePromote = (() => {
  const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);

  async function send(method, body) {
    const headers = Object.assign(apiHeaders(method), { "Content-Type": "application/json" });
    const response = await fetch("/v1/taxonomy", { method, headers, credentials: "same-origin", body: JSON.stringify(body) });
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

  function field(label, input) {
    return el("label", { class: "field" }, el("span", {}, label), input);
  }

  async function open(card, topic) {
    const existing = card.querySelector("form.promote-form");
    if (existing) { existing.remove(); return; }
    const bid = document.body.dataset.batchId;
    let draft;
    let taxonomy;
    try {
      [draft, taxonomy] = await Promise.all([
        api("/v1/batches/" + encodeURIComponent(bid) + "/topics/" + topic.id + "/taxonomy-entry?format=json"),
        api("/v1/taxonomy"),
      ]);
    } catch (err) {
      card.append(el("p", { class: "error-text", role: "alert" }, err.message));
      return;
    }
    const names = draft.names || {};
    const desc = draft.descriptions || {};
    const suggested = topic.taxonomy_topic || "";
    const f = el("form", { class: "promote-form card", dataset: { testid: "promote-form" } },
      el("fieldset", { class: "promote-mode" },
        el("label", {}, el("input", { type: "radio", name: "mode", value: "new", checked: true }), " " + t("promote.new")),
        el("label", {}, el("input", { type: "radio", name: "mode", value: "merge" }), " " + t("promote.merge"))),
      el("div", { class: "promote-new" },
        field("id", el("input", { name: "id", value: draft.id, required: true, pattern: "[a-z][a-z0-9_]{0,63}", dataset: { testid: "promote-id" } })),
        field(t("tax.name_it"), el("input", { name: "name_it", value: names.it || "", maxlength: "200", dataset: { testid: "promote-name-it" } })),
        field(t("tax.name_en"), el("input", { name: "name_en", value: names.en || "", maxlength: "200", dataset: { testid: "promote-name-en" } })),
        field(t("tax.desc_it"), el("textarea", { name: "desc_it", rows: "2", maxlength: "500" }, desc.it || "")),
        field(t("tax.desc_en"), el("textarea", { name: "desc_en", rows: "2", maxlength: "500" }, desc.en || ""))),
      el("div", { class: "promote-merge", hidden: true },
        field(t("tax.merge_into"), el("select", { name: "into", dataset: { testid: "promote-into" } },
          taxonomy.topics.map((e) => el("option", { value: e.id, selected: e.id === suggested }, (e.names[currentLang] || e.names.en || e.names.it || e.id) + " (" + e.id + ")"))))),
      field(t("tax.examples_one_per_line"), el("textarea", { name: "examples", rows: "6", dataset: { testid: "promote-examples" } },
        (draft.examples || []).join("\n"))),
      el("p", { class: "error-text", role: "alert", hidden: true, dataset: { testid: "promote-error" } }),
      el("div", { class: "row-actions" },
        el("button", { type: "submit", class: "button primary", dataset: { testid: "promote-save" } }, t("promote.save")),
        el("button", { type: "button", class: "button", onclick: () => f.remove() }, t("corr.cancel"))));
    f.addEventListener("change", () => {
      const merge = f.elements.mode.value === "merge";
      f.querySelector(".promote-new").hidden = merge;
      f.querySelector(".promote-merge").hidden = !merge;
      f.elements.id.required = !merge;
    });
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const fd = new FormData(f);
      const examples = lines(fd.get("examples") || "");
      let edit;
      if (fd.get("mode") === "merge") {
        const into = taxonomy.topics.find((x) => x.id === fd.get("into"));
        const merged = Array.from(new Set((into.examples || []).concat(examples)));
        edit = { op: "update", section: "topics", id: into.id, patch: { examples: merged } };
      } else {
        const entryNames = {};
        if (fd.get("name_it").trim()) entryNames.it = fd.get("name_it").trim();
        if (fd.get("name_en").trim()) entryNames.en = fd.get("name_en").trim();
        const entryDesc = {};
        if (fd.get("desc_it").trim()) entryDesc.it = fd.get("desc_it").trim();
        if (fd.get("desc_en").trim()) entryDesc.en = fd.get("desc_en").trim();
        edit = { op: "add", section: "topics", entry: { id: fd.get("id").trim(), names: entryNames, descriptions: entryDesc, examples } };
      }
      const box = f.querySelector("[data-testid=promote-error]");
      try {
        const v = await send("PATCH", { edits: [edit], expect_version: taxonomy.number || 0,
          message: t("promote.message", { theme: topic.label }) });
        f.replaceWith(el("p", { class: "banner banner-info", dataset: { testid: "promote-done" } },
          t("promote.done", { version: v.version }) + " ",
          el("a", { href: withLang("/ui/taxonomy") }, t("promote.view")), " · ", rescoreButton()));
        if (typeof loadTaxonomy === "function") loadTaxonomy();
      } catch (err) {
        box.textContent = err.message;
        box.hidden = false;
      }
    });
    card.append(f);
  }

  /** Score this batch again with the active taxonomy (zero-shot: no retraining), then reload its numbers. */
  function rescoreButton() {
    const bid = document.body.dataset.batchId;
    const status = el("span", { class: "muted", dataset: { testid: "rescore-status" } });
    const button = el("button", { type: "button", class: "link", dataset: { testid: "rescore" } }, t("tax.rescore"));
    button.addEventListener("click", async () => {
      button.disabled = true;
      const url = "/v1/batches/" + encodeURIComponent(bid) + "/rescore";
      try {
        let s = await api(url, { method: "POST" });
        while (s.state === "running") {
          status.textContent = t("tax.rescoring", { label: s.taxonomy_version, done: fmtInt(s.done), total: fmtInt(s.total) });
          await new Promise((r) => setTimeout(r, 1000));
          s = await api(url);
        }
        status.textContent = s.state === "done" ? t("tax.rescored", { label: s.taxonomy_version }) : (s.error || s.state);
        if (typeof loadKpis === "function") loadKpis();
        if (typeof loadBatch === "function") loadBatch();
      } catch (err) {
        status.textContent = err.message;
        button.disabled = false;
      }
    });
    return el("span", {}, button, " ", status);
  }

  /** A finished batch scored with another taxonomy version than the active one: say so, offer to re-score. */
  async function offerRescore() {
    const bid = document.body.dataset.batchId;
    const anchor = document.getElementById("running-banner");
    if (!bid || !anchor) return;
    try {
      const [batch, taxonomy] = await Promise.all([api("/v1/batches/" + encodeURIComponent(bid)), api("/v1/taxonomy")]);
      if (batch.status !== "done" || !taxonomy.stored || batch.taxonomy_version === taxonomy.version) return;
      anchor.after(el("div", { class: "banner banner-info", dataset: { testid: "rescore-banner" } },
        t("tax.outdated", { used: batch.taxonomy_version || "–", active: taxonomy.version }) + " ", rescoreButton()));
    } catch (_) { /* the dashboard shows its own errors */ }
  }

  document.addEventListener("DOMContentLoaded", offerRescore);

  return { open };
})();
