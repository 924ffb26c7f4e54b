/* Saved views and alerts on the dashboard (service/insights): save the current selection under a name (shared with
 * the tenant or not), open or copy a view's link (/ui/views/{id}), delete one's own; list, create and delete alert
 * rules and read the latest alert events (GET /v1/alerts/events).  Reads the dashboard's state (dash, in
 * dashboard.js) and builds its own cards; server refusals are shown through their codes (i18n.js "ins.err.*"). */
"use strict";

const VoceInsights = (() => {
  const state = { views: [], rules: [], events: [], eventsAt: 0 };
  const node = (id) => document.getElementById(id);

  /** An API call whose refusal keeps the details (code + params) so the page can translate it. */
  async function call(path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign(apiHeaders(opts.method), opts.body ? { "Content-Type": "application/json" } : {});
    let r;
    try {
      r = await fetch(path, opts);
    } catch (_) {
      throw new Error(t("error.network"));
    }
    if (r.status === 401) toSignIn();
    if (r.status === 204) return null;
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const err = (body && body.error) || {};
      const detail = (err.details || []).find((d) => d && d.code && !d.loc);
      const key = detail ? "ins.err." + detail.code : "";
      const text = detail && t(key, detail) !== key ? t(key, detail) : err.message || t("error.generic", { status: r.status });
      throw new Error(text);
    }
    return body;
  }

  // ------------------------------------------------------------------------------------- saved views
  function currentQuery() {
    const q = new URLSearchParams();
    const f = (typeof dash !== "undefined" && dash.filters) || {};
    for (const [k, v] of Object.entries(f)) {
      if (k === "granularity" || v === null || v === undefined || v === "") continue;
      for (const x of Array.isArray(v) ? v : [v]) q.append(k, String(x));
    }
    return { query: q.toString(), granularity: f.granularity || null };
  }

  function absolute(link) { return location.origin + link; }

  function renderViews() {
    const list = clear(node("views-list"));
    const openId = new URLSearchParams(location.search).get("view");
    const current = state.views.find((v) => v.id === openId);
    node("views-current").textContent = current ? t("ins.view.current", { name: current.name }) : "";
    if (!state.views.length) {
      list.append(el("li", { class: "muted small" }, t("ins.views.none")));
      return;
    }
    for (const v of state.views) {
      const owner = v.mine ? "" : " · " + t("ins.views.by", { owner: v.owner });
      const item = el("li", { dataset: { testid: "view-item", view: v.id } },
        el("a", { href: withLang(v.link), dataset: { testid: "view-open" } }, v.name),
        el("span", { class: "muted small" }, " " + (v.shared ? t("ins.views.shared") : t("ins.views.private")) + owner + " "),
        el("button", {
          type: "button", class: "link small", dataset: { testid: "view-copy" },
          onclick: async (e) => {
            const btn = e.currentTarget;
            try { await navigator.clipboard.writeText(absolute(v.link)); btn.textContent = t("ins.views.copied"); }
            catch (_) { window.prompt(t("ins.views.copy"), absolute(v.link)); }
          },
        }, t("ins.views.copy")), " ",
        v.mine ? el("button", {
          type: "button", class: "link danger small", dataset: { testid: "view-delete" },
          onclick: async () => {
            if (!window.confirm(t("ins.views.confirm_delete", { name: v.name }))) return;
            await guarded(node("views-error"), () => call("/v1/views/" + encodeURIComponent(v.id), { method: "DELETE" }));
            loadViews();
          },
        }, t("ins.delete")) : null);
      list.append(item);
    }
  }

  async function loadViews() {
    await guarded(node("views-error"), async () => {
      state.views = (await call("/v1/views")).views;
      renderViews();
    });
  }

  async function saveView(e) {
    e.preventDefault();
    const name = node("view-name").value.trim();
    if (!name) { node("view-name").focus(); return; }
    const { query, granularity } = currentQuery();
    const body = { name, query, granularity, shared: node("view-shared").checked,
      batch_id: node("view-latest").checked ? null : dash.batchId };
    await guarded(node("views-error"), async () => {
      const saved = await call("/v1/views", { method: "POST", body: JSON.stringify(body) });
      node("view-name").value = "";
      node("views-saved").textContent = t("ins.views.saved", { name: saved.name });
      await loadViews();
    });
  }

  async function guarded(errorNode, fn) {
    show(errorNode, false);
    try { return await fn(); } catch (err) { showError(errorNode, err); return undefined; }
  }

  function buildViews() {
    const card = el("section", { class: "card", id: "views-card", dataset: { testid: "views-card" } },
      el("div", { class: "card-head" },
        el("h2", { "data-i18n": "ins.views.title" }, t("ins.views.title")),
        el("span", { class: "muted small", id: "views-current", dataset: { testid: "views-current" } })),
      el("form", { class: "filters", id: "view-form", dataset: { testid: "view-form" } },
        el("label", { class: "field" }, el("span", { "data-i18n": "ins.views.name" }, t("ins.views.name")),
          el("input", { id: "view-name", maxlength: "128", dataset: { testid: "view-name" } })),
        el("label", { class: "field field-actions" },
          el("input", { type: "checkbox", id: "view-shared", dataset: { testid: "view-shared" } }),
          el("span", { "data-i18n": "ins.views.share" }, t("ins.views.share"))),
        el("label", { class: "field field-actions" },
          el("input", { type: "checkbox", id: "view-latest", dataset: { testid: "view-latest" } }),
          el("span", { "data-i18n": "ins.views.latest" }, t("ins.views.latest"))),
        el("div", { class: "field field-actions" },
          el("button", { type: "submit", class: "primary", dataset: { testid: "view-save" }, "data-i18n": "ins.views.save" },
            t("ins.views.save")))),
      el("p", { class: "muted small", id: "views-saved", dataset: { testid: "views-saved" }, "aria-live": "polite" }),
      el("div", { class: "banner banner-error", id: "views-error", role: "alert", hidden: true }),
      el("ul", { class: "chips", id: "views-list", dataset: { testid: "views-list" } }));
    node("filters").after(card);
    node("view-form").addEventListener("submit", saveView);
  }

  // ------------------------------------------------------------------------------------- alerts
  const SUBJECTS = ["overall", "topic", "touchpoint", "channel", "segment"];
  const METRICS = ["negative_share", "nps", "nps_impact", "net_sentiment", "share"];
  const SHARES = new Set(["negative_share", "share"]);

  function subjectName(subject, id) {
    if (subject === "overall" || !id) return t("ins.subject.overall");
    if (subject === "topic" && typeof topicName === "function") return topicName(id);
    if (subject === "touchpoint" && typeof touchpointName === "function") return touchpointName(id);
    if (subject === "channel" && typeof channelName === "function") return channelName(id);
    return id;
  }

  function figure(metric, value) {
    if (value === null || value === undefined) return "–";
    return SHARES.has(metric) ? fmtPercent(value, 1) : fmtSigned(value, 1);
  }

  /** A rule's filters for people: "regione: nord, language: it". */
  function filtersText(query) {
    if (!query) return "";
    const parts = [];
    const names = { date_from: "filter.from", date_to: "filter.to", period: "ins.period" };
    for (const [k, v] of new URLSearchParams(query)) {
      parts.push(k === "segment" ? v.replace(":", ": ") : t(names[k] || "filter." + k) + ": " + v);
    }
    return " (" + t("ins.filters", { filters: parts.join(", ") }) + ")";
  }

  function describeRule(r) {
    const what = t("ins.metric." + r.metric) + " · " + t("ins.subject." + r.subject) +
      (r.subject_id ? " " + subjectName(r.subject, r.subject_id) : "");
    if (r.condition === "change") {
      return what + " · " + t("ins.cond.change_" + (r.direction || "any")) + " " + t("ins.compare." + r.compare_to) +
        (r.threshold !== null ? " (≥ " + figure(r.metric, r.threshold).replace("+", "") + ")" : "") + filtersText(r.query);
    }
    return what + " " + t("ins.cond." + r.condition) + " " + figure(r.metric, r.threshold) + filtersText(r.query);
  }

  function describeEvent(e) {
    const p = e.params || {};
    if (e.code === "alert.error") return t("ins.event.error", { reference: p.reference || "" });
    const subject = subjectName(p.subject, p.subject_id) + filtersText(p.query);
    const metric = t("ins.metric." + p.metric);
    if (e.code === "alert.change") {
      const against = p.compare_to === "previous_period"
        ? t("ins.event.vs_period", { previous: p.previous_period, period: p.period })
        : t("ins.event.vs_batch", { name: p.previous_batch_name || p.previous_batch_id || "" });
      return t("ins.event.change", { metric, subject, previous: figure(p.metric, p.previous), value: figure(p.metric, p.value),
        p: fmtNumber(p.p_value, 4), against });
    }
    return t("ins.event.threshold", { metric, subject, value: figure(p.metric, p.value), rows: fmtInt(p.rows),
      cond: t("ins.cond." + p.condition), threshold: figure(p.metric, p.threshold) });
  }

  function renderRules() {
    const list = clear(node("rules-list"));
    if (!state.rules.length) list.append(el("li", { class: "muted small" }, t("ins.rules.none")));
    for (const r of state.rules) {
      list.append(el("li", { dataset: { testid: "rule-item", rule: String(r.id) } },
        el("strong", {}, r.name), " ",
        el("span", { class: "small" }, describeRule(r)),
        r.enabled ? null : el("span", { class: "tag" }, t("ins.rules.disabled")),
        r.webhook_url ? el("span", { class: "tag", title: r.webhook_url }, "webhook") : null, " ",
        el("button", {
          type: "button", class: "link danger small", dataset: { testid: "rule-delete" },
          onclick: async () => {
            if (!window.confirm(t("ins.rules.confirm_delete", { name: r.name }))) return;
            await guarded(node("alerts-error"), () => call("/v1/alerts/rules/" + r.id, { method: "DELETE" }));
            loadAlerts();
          },
        }, t("ins.delete"))));
    }
  }

  function renderEvents() {
    const list = clear(node("events-list"));
    if (!state.events.length) list.append(el("li", { class: "muted small" }, t("ins.events.none")));
    for (const e of state.events) {
      const hook = e.webhook.status === "none" ? null
        : el("span", { class: "tag", title: e.webhook.error || "" }, t("ins.webhook." + e.webhook.status, { attempts: e.webhook.attempts }));
      const here = e.batch_id === dash.batchId ? el("span", { class: "tag" }, t("ins.events.this_batch")) : null;
      list.append(el("li", { class: e.status === "error" ? "muted" : "", dataset: { testid: "event-item", code: e.code } },
        el("span", { class: "muted small" }, fmtDateTime(e.created_at) + " · "),
        el("strong", {}, e.rule_name), " ", describeEvent(e), " ", here, hook));
    }
  }

  async function loadAlerts() {
    await guarded(node("alerts-error"), async () => {
      const [rules, events] = await Promise.all([call("/v1/alerts/rules"), call("/v1/alerts/events?order=desc&limit=10")]);
      state.rules = rules.rules;
      state.events = events.events;
      renderRules();
      renderEvents();
    });
  }

  function option(value, label) { return el("option", { value }, label); }

  /** The subject's choices from the batch's (unfiltered) report; a free text field for a segment or a channel
   *  the report has not seen. */
  function renderSubjectIds() {
    const subject = node("rule-subject").value;
    const kept = node("rule-subject-id").value;
    const pick = clear(node("rule-subject-id"));
    const base = (typeof dash !== "undefined" && (dash.base || dash.kpis)) || {};
    let items = [];
    if (subject === "topic") items = [...(base.topics || []), ...(base.unclassified ? [base.unclassified] : [])].map((x) => [x.id, subjectName("topic", x.id)]);
    if (subject === "touchpoint") items = (base.touchpoints || []).map((x) => [x.id, subjectName("touchpoint", x.id)]);
    if (subject === "channel") items = (base.by_channel || []).map((x) => [x.id, subjectName("channel", x.id)]);
    if (subject === "segment") {
      for (const [col, groups] of Object.entries(base.by_segment || {})) items.push(...groups.map((g) => [col + ":" + g.key, col + ": " + g.key]));
    }
    pick.append(...items.map(([v, label]) => option(v, label)));
    if (items.some(([v]) => v === kept)) pick.value = kept;
    pick.disabled = subject === "overall";
    const change = node("rule-condition").value === "change";
    node("rule-compare-field").hidden = !change;
    node("rule-direction-field").hidden = !change;
    node("rule-threshold-hint").textContent = SHARES.has(node("rule-metric").value) ? "%" : t("ins.points");
  }

  async function createRule(e) {
    e.preventDefault();
    const metric = node("rule-metric").value;
    const raw = node("rule-threshold").value.trim().replace(",", ".");
    let threshold = raw === "" ? null : Number(raw);
    if (threshold !== null && SHARES.has(metric)) threshold /= 100; // the page asks for percent, the API takes 0..1
    const subject = node("rule-subject").value;
    const body = {
      name: node("rule-name").value.trim(), subject, subject_id: subject === "overall" ? null : node("rule-subject-id").value || null,
      metric, condition: node("rule-condition").value, threshold, min_rows: Number(node("rule-min-rows").value) || 20,
      query: currentQuery().query,
    };
    if (body.condition === "change") {
      body.compare_to = node("rule-compare").value;
      body.direction = node("rule-direction").value;
    }
    const hook = node("rule-webhook").value.trim();
    if (hook) body.webhook_url = hook;
    await guarded(node("alerts-error"), async () => {
      const made = await call("/v1/alerts/rules", { method: "POST", body: JSON.stringify(body) });
      node("rule-form").reset();
      renderSubjectIds();
      node("alerts-note").textContent = made.webhook_secret
        ? t("ins.rules.secret", { secret: made.webhook_secret }) : t("ins.rules.created", { name: made.name });
      await loadAlerts();
    });
  }

  function labelled(key, control, id) {
    return el("label", { class: "field", id: id || null }, el("span", { "data-i18n": key }, t(key)), control);
  }

  function buildAlerts() {
    const select = (id, values, prefix, testid) => el("select", { id, dataset: { testid } },
      values.map((v) => el("option", { value: v, "data-i18n": prefix + v }, t(prefix + v))));
    const card = el("article", { class: "card span-2", id: "alerts-card", dataset: { testid: "alerts-card" } },
      el("div", { class: "card-head" }, el("h2", { "data-i18n": "ins.alerts.title" }, t("ins.alerts.title")),
        el("span", { class: "muted small", "data-i18n": "ins.alerts.hint" }, t("ins.alerts.hint"))),
      el("div", { class: "banner banner-error", id: "alerts-error", role: "alert", hidden: true }),
      el("h3", { "data-i18n": "ins.events.title" }, t("ins.events.title")),
      el("ol", { id: "events-list", dataset: { testid: "events-list" } }),
      el("h3", { "data-i18n": "ins.rules.title" }, t("ins.rules.title")),
      el("ul", { id: "rules-list", dataset: { testid: "rules-list" } }),
      el("form", { class: "filters", id: "rule-form", dataset: { testid: "rule-form" } },
        labelled("ins.rules.name", el("input", { id: "rule-name", maxlength: "128", required: true, dataset: { testid: "rule-name" } })),
        labelled("ins.rules.subject", select("rule-subject", SUBJECTS, "ins.subject.", "rule-subject")),
        labelled("ins.rules.which", el("select", { id: "rule-subject-id", dataset: { testid: "rule-subject-id" } })),
        labelled("ins.rules.metric", select("rule-metric", METRICS, "ins.metric.", "rule-metric")),
        labelled("ins.rules.condition", select("rule-condition", ["above", "below", "change"], "ins.cond.", "rule-condition")),
        labelled("ins.rules.compare", select("rule-compare", ["previous_batch", "previous_period"], "ins.compare.", "rule-compare"),
          "rule-compare-field"),
        labelled("ins.rules.direction", select("rule-direction", ["any", "down", "up"], "ins.dir.", "rule-direction"),
          "rule-direction-field"),
        el("label", { class: "field" }, el("span", {}, el("span", { "data-i18n": "ins.rules.threshold" }, t("ins.rules.threshold")),
          " (", el("span", { id: "rule-threshold-hint" }), ")"),
          el("input", { id: "rule-threshold", inputmode: "decimal", dataset: { testid: "rule-threshold" } })),
        labelled("ins.rules.min_rows", el("input", { id: "rule-min-rows", type: "number", min: "1", value: "20",
          dataset: { testid: "rule-min-rows" } })),
        labelled("ins.rules.webhook", el("input", { id: "rule-webhook", type: "url", maxlength: "2000",
          placeholder: "https://…", dataset: { testid: "rule-webhook" } })),
        el("div", { class: "field field-actions" },
          el("button", { type: "submit", class: "primary", dataset: { testid: "rule-save" }, "data-i18n": "ins.rules.save" },
            t("ins.rules.save")))),
      el("p", { class: "muted small", "data-i18n": "ins.rules.filters_note" }, t("ins.rules.filters_note")),
      el("p", { class: "small", id: "alerts-note", dataset: { testid: "alerts-note" }, "aria-live": "polite" }));
    document.querySelector("section.grid").append(card);
    for (const id of ["rule-subject", "rule-condition", "rule-metric"]) node(id).addEventListener("change", renderSubjectIds);
    node("rule-subject-id").addEventListener("focus", renderSubjectIds); // the report may have loaded since
    node("rule-form").addEventListener("submit", createRule);
    renderSubjectIds();
  }

  function rerender() {
    if (!node("views-card")) return;
    renderViews();
    renderRules();
    renderEvents();
    renderSubjectIds();
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page !== "dashboard" || !node("filters")) return;
    buildViews();
    buildAlerts();
    onLangChange(rerender);
    loadViews();
    loadAlerts();
  });

  return { loadViews, loadAlerts };
})();
