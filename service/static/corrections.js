/* Corrections in the comment drawer (issue 15): a corrected comment shows its prediction and the corrected value side
 * by side; "Correct" opens a small form (sentiment, topics to keep/add, touchpoints to keep/add, detractor, note)
 * that POSTs /v1/batches/{id}/rows/{row}/corrections; each correction can be reverted.  After a change the KPIs and
 * the comment list reload, since the dashboard counts the corrected value.
 * dashboard.js calls VoceCorrections.decorate(li, row) for every comment card and VoceCorrections.reset() when a
 * batch's comments are listed again.  Customer text never passes through here (labels only). */
"use strict";

const VoceCorrections = (() => {
  const SENTS = ["positive", "neutral", "mixed", "negative"];
  let cache = null; // {batchId, promise: Promise<Map<row, RowCorrection>>}

  const batchId = () => document.body.dataset.batchId;
  const base = () => "/v1/batches/" + encodeURIComponent(batchId());

  function byRow() {
    if (!cache || cache.batchId !== batchId()) {
      const promise = api(base() + "/corrections")
        .then((d) => new Map(d.rows.map((r) => [r.row, r])))
        .catch(() => new Map());
      cache = { batchId: batchId(), promise };
    }
    return cache.promise;
  }

  function reset() { cache = null; }

  /** A server refusal in the page's language: its detail code when we know it, else its message. */
  function errorText(err, details) {
    const code = details && details[0] && details[0].code;
    if (code) {
      const key = "corr.err." + code;
      const text = t(key, details[0]);
      if (text !== key) return text;
    }
    return err.message;
  }

  /** Like api(), but keeps the envelope's details (codes + parameters) for translation. */
  async function send(path, method, body) {
    const headers = Object.assign(apiHeaders(method), body ? { "Content-Type": "application/json" } : {});
    const response = await fetch(path, { method, headers, credentials: "same-origin", body: body ? JSON.stringify(body) : undefined });
    if (response.status === 401) toSignIn();
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const e = (data && data.error) || {};
      const err = new Error(e.message || t("error.generic", { status: response.status }));
      err.details = e.details;
      throw err;
    }
    return data;
  }

  const topicLabel = (id) => (typeof topicName === "function" ? topicName(id) : id);
  const touchpointLabel = (id) => (typeof touchpointName === "function" ? touchpointName(id) : id);
  const yesNo = (v) => (v === null || v === undefined ? "–" : v ? t("corr.yes") : t("corr.no"));

  function summary(labels) {
    return el("dl", { class: "corr-values" },
      el("dt", {}, t("corr.sentiment")), el("dd", {}, labels.sentiment ? t("sentiment." + labels.sentiment) : "–"),
      el("dt", {}, t("corr.topics")), el("dd", {}, labels.topics.map((x) => topicLabel(x.id) + " (" + t("sentiment." + x.sentiment) + ")").join(", ") || "–"),
      el("dt", {}, t("corr.touchpoints")), el("dd", {}, labels.touchpoints.map(touchpointLabel).join(", ") || "–"),
      el("dt", {}, t("corr.detractor")), el("dd", {}, yesNo(labels.detractor)));
  }

  function sideBySide(rc, li, row) {
    const history = el("ul", { class: "corr-history" }, rc.corrections.map((c) => el("li", { dataset: { testid: "correction" } },
      el("span", { class: c.active ? "" : "muted corr-reverted" },
        t("corr.by", { who: c.author, when: fmtDateTime(c.created_at) }) + (c.note ? " · " + c.note : "") +
        (c.active ? "" : " · " + t("corr.reverted"))),
      c.active ? el("button", {
        type: "button", class: "link", dataset: { testid: "correction-revert" },
        onclick: () => revert(c.id, li, row),
      }, t("corr.revert")) : null)));
    return el("div", { class: "corr-compare", dataset: { testid: "correction-compare" } },
      el("div", {}, el("h4", {}, t("corr.predicted")), summary(rc.original)),
      el("div", {}, el("h4", {}, t("corr.corrected")), summary(rc.corrected)),
      history);
  }

  function select(name, options, testid) {
    return el("select", { name, dataset: { testid } }, options.map(([v, label]) => el("option", { value: v }, label)));
  }

  function form(li, row, current) {
    const tax = (typeof dash !== "undefined" && dash.taxonomy) || { topics: {}, touchpoints: {} };
    const onTopics = current.topics.map((x) => x.id);
    const onTps = current.touchpoints;
    const keep = (ids, label, kind) => ids.map((id) => el("label", { class: "corr-check" },
      el("input", { type: "checkbox", name: kind, value: id, checked: true }), " " + label(id)));
    const sentOpts = [["", t("corr.unchanged")]].concat(SENTS.map((s) => [s, t("sentiment." + s)]));
    const f = el("form", { class: "corr-form", dataset: { testid: "correction-form" } },
      el("label", { class: "field" }, el("span", {}, t("corr.sentiment")), select("sentiment", sentOpts, "corr-sentiment")),
      el("fieldset", {}, el("legend", {}, t("corr.topics")), keep(onTopics, topicLabel, "keep_topic"),
        el("div", { class: "corr-add" },
          select("add_topic", [["", t("corr.add_topic")]].concat(Object.keys(tax.topics).filter((id) => !onTopics.includes(id))
            .map((id) => [id, topicLabel(id)])), "corr-add-topic"),
          select("add_topic_sentiment", [["", t("corr.topic_tone")]].concat(SENTS.map((s) => [s, t("sentiment." + s)])), "corr-add-topic-sentiment"))),
      el("fieldset", {}, el("legend", {}, t("corr.touchpoints")), keep(onTps, touchpointLabel, "keep_tp"),
        select("add_tp", [["", t("corr.add_touchpoint")]].concat(Object.keys(tax.touchpoints).filter((id) => !onTps.includes(id))
          .map((id) => [id, touchpointLabel(id)])), "corr-add-touchpoint")),
      el("label", { class: "field" }, el("span", {}, t("corr.detractor")),
        select("detractor", [["", t("corr.unchanged")], ["true", t("corr.yes")], ["false", t("corr.no")]], "corr-detractor")),
      el("label", { class: "field" }, el("span", {}, t("corr.note")), el("input", { name: "note", maxlength: "500" })),
      el("p", { class: "error-text", hidden: true, role: "alert", dataset: { testid: "correction-error" } }),
      el("div", { class: "row-actions" },
        el("button", { type: "submit", class: "button primary", dataset: { testid: "correction-save" } }, t("corr.save")),
        el("button", { type: "button", class: "button", onclick: () => f.remove() }, t("corr.cancel"))));
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const fd = new FormData(f);
      const body = {};
      if (fd.get("sentiment")) body.sentiment = fd.get("sentiment");
      const kept = new Set(fd.getAll("keep_topic"));
      const removeTopics = onTopics.filter((id) => !kept.has(id));
      if (removeTopics.length) body.topics_remove = removeTopics;
      if (fd.get("add_topic")) {
        body.topics_add = [{ id: fd.get("add_topic") }];
        if (fd.get("add_topic_sentiment")) body.topics_add[0].sentiment = fd.get("add_topic_sentiment");
      }
      const keptTps = new Set(fd.getAll("keep_tp"));
      const removeTps = onTps.filter((id) => !keptTps.has(id));
      if (removeTps.length) body.touchpoints_remove = removeTps;
      if (fd.get("add_tp")) body.touchpoints_add = [fd.get("add_tp")];
      if (fd.get("detractor")) body.detractor = fd.get("detractor") === "true";
      if (fd.get("note")) body.note = fd.get("note");
      const errBox = f.querySelector("[data-testid=correction-error]");
      if (Object.keys(body).filter((k) => k !== "note").length === 0) {
        errBox.textContent = t("corr.nothing");
        errBox.hidden = false;
        return;
      }
      try {
        await send(base() + "/rows/" + row.row + "/corrections", "POST", body);
        changed();
      } catch (err) {
        errBox.textContent = errorText(err, err.details);
        errBox.hidden = false;
      }
    });
    return f;
  }

  async function revert(id, li, row) {
    try {
      await send(base() + "/rows/" + row.row + "/corrections/" + id, "DELETE");
      changed();
    } catch (err) {
      li.append(el("p", { class: "error-text", role: "alert" }, errorText(err, err.details)));
    }
  }

  /** A correction changed what the dashboard counts: numbers and the open list reload. */
  function changed() {
    reset();
    if (typeof loadKpis === "function") loadKpis();
    if (typeof loadComments === "function") loadComments();
  }

  /** Add the correction controls (and, for a corrected row, prediction vs correction) to one comment card. */
  async function decorate(li, row) {
    if (!row.ok) return;
    const corrections = await byRow();
    const rc = corrections.get(row.row);
    const current = rc ? rc.corrected : {
      sentiment: row.sentiment, topics: row.topics.map((x) => ({ id: x.id, sentiment: x.sentiment })),
      touchpoints: row.touchpoints.map((x) => x.id), detractor: row.detractor === null ? null : row.detractor >= 0.5,
    };
    const active = rc && rc.corrections.some((c) => c.active);
    if (active) {
      li.classList.add("comment-corrected");
      const meta = li.querySelector(".comment-meta");
      if (meta) meta.append(el("span", { class: "badge badge-corrected", dataset: { testid: "corrected-badge" } }, t("corr.badge")));
    }
    const box = el("div", { class: "corr" });
    if (rc) box.append(sideBySide(rc, li, row));
    box.append(el("button", {
      type: "button", class: "link", dataset: { testid: "correction-open" },
      onclick: (e) => {
        const open = box.querySelector("form.corr-form");
        if (open) { open.remove(); return; }
        e.currentTarget.after(form(li, row, current));
      },
    }, t("corr.open")));
    li.append(box);
  }

  return { decorate, reset };
})();
