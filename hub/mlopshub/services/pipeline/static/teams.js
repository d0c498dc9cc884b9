/*
 * The Teams page for platform admins (issue 14): every team with its members, profiles, quotas and current use;
 * a form that creates a team; inline edit, archive and member changes; usage over a period as a table, a plot of
 * CPU-hours per team and day, and a CSV export.
 *
 * No framework and no build step: the hub serves this file as it is. Team and user names come from users, so
 * every text from the server reaches the page through textContent or setAttribute, never innerHTML.
 *
 * The page's root is <div id="mlopshub-teams" data-api="..." data-user="...">; data-api is the page's API
 * (catalog, teams, usage, usage/series), authenticated by the hub's OAuth cookie; every change sends the
 * _xsrf cookie back as X-XSRFToken.
 */
"use strict";

function mlopshubTeamsPage() {
  const root = document.getElementById("mlopshub-teams");
  if (!root) {
    return;
  }
  const API = (root.dataset.api || "api/").replace(/\/?$/, "/");
  const METRICS = ["accuracy", "auc", "log_loss", "rmse"];
  const QUOTA_LABELS = {
    max_servers: "Servers (team)",
    servers_per_user: "Servers per user",
    cpu: "CPUs",
    memory: "Memory",
    gpus: "GPUs",
  };
  // Whole numbers; cpu takes fractions; memory is a size such as 64G; other quotas are sent as typed.
  const WHOLE_QUOTAS = new Set(["max_servers", "servers_per_user", "gpus"]);
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const GIB = 1024 ** 3;
  const DAY_MS = 24 * 3600 * 1000;

  const state = {
    catalog: { profiles: [], quotas: Object.keys(QUOTA_LABELS) },
    teams: [],
    // runningKey(user, server) -> ISO time the server started, from the last usage answer (the teams list has no times).
    since: new Map(),
    confirming: null, // the team whose Archive waits for a confirmation
    edit: null, // {name, form}: the open edit form, kept across re-renders so that nothing typed is lost
    usageRun: 0, // answers of an older usage request than the newest are dropped
  };

  // --- DOM -----------------------------------------------------------------------------------------------------

  let lastId = 0;
  function uid(prefix) {
    lastId += 1;
    return `mlopshub-teams-${prefix}-${lastId}`;
  }

  function append(node, children) {
    for (const child of [children].flat(Infinity)) {
      if (child === null || child === undefined || child === false) {
        continue;
      }
      node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  /** An element: props are attributes, except text, className, testid, on<event>, and the DOM properties below. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) {
        continue;
      }
      if (key === "text") {
        node.textContent = String(value);
      } else if (key === "className") {
        node.className = value;
      } else if (key === "testid") {
        node.setAttribute("data-testid", value);
      } else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else if (key === "checked" || key === "disabled" || key === "value" || key === "hidden") {
        node[key] = value;
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    return append(node, children);
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") {
        node.textContent = String(value);
      } else {
        node.setAttribute(key, String(value));
      }
    }
    return append(node, children);
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  function button(text, testid, onclick, className = "btn btn-sm btn-outline-secondary", extra = {}) {
    return el("button", { type: "button", className, testid, onclick, ...extra }, text);
  }

  /** An alert box's content: a message, and a list when there are items. */
  function showAlert(box, kind, message, items = []) {
    clear(box);
    box.className = `alert alert-${kind}`;
    box.hidden = !message && !items.length;
    append(box, message ? el("div", { text: message }) : null);
    if (items.length) {
      box.append(el("ul", { className: "mb-0" }, items.map((item) => el("li", { text: item }))));
    }
  }

  function hideAlert(box) {
    clear(box);
    box.hidden = true;
  }

  // --- API -----------------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, errors = {}) {
      super(message);
      this.status = status;
      this.errors = errors;
    }
  }

  function xsrfToken() {
    for (const part of document.cookie.split(";")) {
      const [name, ...value] = part.trim().split("=");
      if (name === "_xsrf") {
        return value.join("=").replace(/^"(.*)"$/, "$1");
      }
    }
    return "";
  }

  /** The JSON answer of the page's API; an ApiError with the server's message (and field errors) otherwise. */
  async function call(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      init.headers["X-XSRFToken"] = xsrfToken();
      init.headers["Content-Type"] = "application/json";
      if (body !== undefined || method !== "DELETE") {
        init.body = JSON.stringify(body === undefined ? {} : body);
      }
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (error) {
      throw new ApiError(0, `${method} ${path}: the Teams API did not answer (${error.message}); check the connection and try again`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      let message = data && typeof data.message === "string" ? data.message : `${method} ${path}: HTTP ${response.status} ${response.statusText}`;
      if (response.status === 403 && method !== "GET" && !xsrfToken()) {
        message += " (the page has no _xsrf cookie: reload it)";
      }
      const errors = data && data.errors && typeof data.errors === "object" ? data.errors : {};
      throw new ApiError(response.status, message, errors);
    }
    if (data === null || typeof data !== "object") {
      throw new ApiError(response.status, `${method} ${path}: the answer is not JSON; your hub sign-in may have ended: reload the page`);
    }
    return data;
  }

  const teamPath = (name) => `teams/${encodeURIComponent(name)}`;

  // --- formatting ----------------------------------------------------------------------------------------------

  function when(iso) {
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
  }

  function hours(value) {
    return Number(value || 0).toFixed(2);
  }

  function quotaText(key, value) {
    return `${QUOTA_LABELS[key] || key}: ${value}`;
  }

  function thresholdText(metric, bounds) {
    const parts = [];
    if (bounds && bounds.min !== undefined && bounds.min !== null) {
      parts.push(`\u2265 ${bounds.min}`);
    }
    if (bounds && bounds.max !== undefined && bounds.max !== null) {
      parts.push(`\u2264 ${bounds.max}`);
    }
    return `${metric} ${parts.join(" and ")}`;
  }

  const runningKey = (user, server) => JSON.stringify([user, server || ""]);

  // --- the page's frame ----------------------------------------------------------------------------------------

  const status = el("div", { testid: "page-status", role: "status", "aria-live": "polite", hidden: true });
  const warnings = el("div", { testid: "warnings", role: "alert", hidden: true });
  const teamsBody = el("tbody");
  const teamsTable = el(
    "table",
    { className: "table table-sm align-middle mlopshub-teams-table", testid: "teams-table" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["Name", "Display name", "Members", "Profiles", "Quotas", "Current use", "Release gate", "Actions"].map((title) =>
          el("th", { scope: "col", text: title }),
        ),
      ),
    ),
    teamsBody,
  );
  const createCard = el("div", { className: "card-body" }, el("p", {
    className: "text-body-secondary",
    text: "Loading the catalog\u2026",
  }));
  const usageCard = el("div", { className: "card-body" });

  root.classList.add("container-fluid", "py-3", "mlopshub-teams");
  append(root, [
    el("h1", { className: "h3 mb-3", text: "Teams" }),
    status,
    warnings,
    el(
      "section",
      { className: "mb-4", "aria-labelledby": "mlopshub-teams-list-title" },
      el(
        "div",
        { className: "d-flex align-items-center gap-2 mb-2" },
        el("h2", { className: "h5 mb-0", id: "mlopshub-teams-list-title", text: "All teams" }),
        button("Refresh", "teams-refresh", () => refreshTeams()),
      ),
      el("div", { className: "table-responsive" }, teamsTable),
    ),
    el(
      "section",
      { className: "card mb-4", "aria-labelledby": "mlopshub-teams-create-title" },
      el("h2", { className: "card-header h5", id: "mlopshub-teams-create-title", text: "Create team" }),
      createCard,
    ),
    el(
      "section",
      { className: "card mb-4", "aria-labelledby": "mlopshub-teams-usage-title" },
      el("h2", { className: "card-header h5", id: "mlopshub-teams-usage-title", text: "Usage" }),
      usageCard,
    ),
  ]);

  // --- the team form (create and edit) -------------------------------------------------------------------------

  /**
   * A form for a team's fields. Field errors of a 422 ({"quotas.cpu": "..."}) appear next to the field of that
   * name, or of its nearest parent (release.thresholds.auc.min next to the auc row); the rest in the form's
   * general box. Nothing typed is cleared by an error.
   */
  function teamForm({ mode, team, onSubmit, onCancel }) {
    const creating = mode === "create";
    const fields = new Map(); // error key -> {slot, inputs}
    const thresholdRows = [];
    const general = el("div", { testid: "form-error", role: "alert", hidden: true });
    const node = el("form", {
      className: "mlopshub-team-form",
      testid: creating ? "create-form" : "edit-form",
      novalidate: true,
    });

    function register(key, slot, inputs) {
      fields.set(key, { slot, inputs });
    }

    function slotFor(key) {
      return el("div", { className: "mlopshub-error-slot", "data-error-slot": key });
    }

    function textField(key, label, {
      testid,
      value = "",
      help,
      type = "text",
      placeholder,
      className = "col-md-4",
      attrs = {},
    }) {
      const id = uid("field");
      const input = el("input", {
        id,
        type,
        className: "form-control form-control-sm",
        testid,
        value: value === null || value === undefined ? "" : String(value),
        placeholder,
        ...attrs,
      });
      const slot = slotFor(key);
      register(key, slot, [input]);
      const helpNode = help ? el("div", { className: "form-text", id: `${id}-help`, text: help }) : null;
      if (helpNode) {
        input.setAttribute("aria-describedby", helpNode.id);
      }
      return {
        input,
        node: el("div", { className }, el("label", { className: "form-label", for: id, text: label }), input, helpNode, slot),
      };
    }

    // name, display name, members
    const basics = el("div", { className: "row g-3 mb-3" });
    let name = null;
    let members = null;
    if (creating) {
      name = textField("name", "Name", {
        testid: "field-name",
        help: "2 to 30 characters: lower-case letters, digits and '-'; it names the hub group and MLflow workspace.",
        attrs: { autocomplete: "off", spellcheck: "false", required: true },
      });
      basics.append(name.node);
    }
    const displayName = textField("display_name", "Display name", {
      testid: "field-display_name",
      value: team ? team.display_name : "",
    });
    basics.append(displayName.node);
    if (creating) {
      members = textField("members", "Members", {
        testid: "field-members",
        help: "User names separated by commas; each must already be a hub user.",
        attrs: { autocomplete: "off", spellcheck: "false" },
      });
      basics.append(members.node);
    }

    // profiles
    const chosen = new Set(team ? team.profiles : []);
    const offered = [...state.catalog.profiles];
    for (const slug of chosen) {
      if (!offered.some((profile) => profile.slug === slug)) {
        offered.push({
          slug,
          display_name: slug,
          description: "not in the catalog",
          gpu: (team.gpu_profiles || []).includes(slug),
        });
      }
    }
    const profileBoxes = offered.map((profile) => {
      const id = uid("profile");
      const box = el("input", {
        id,
        type: "checkbox",
        className: "form-check-input",
        value: profile.slug,
        checked: chosen.has(profile.slug),
        testid: `field-profile-${profile.slug}`,
      });
      return {
        box,
        node: el(
          "div",
          { className: "form-check" },
          box,
          el(
            "label",
            { className: "form-check-label", for: id },
            el("span", { text: profile.display_name || profile.slug }),
            " ",
            el("code", { className: "small", text: profile.slug }),
            profile.gpu ? [" ", el("span", {
              className: "badge text-bg-info",
              testid: "gpu-badge",
              text: "GPU",
            })] : null,
            profile.description ? el("div", { className: "form-text mt-0", text: profile.description }) : null,
          ),
        ),
      };
    });
    const profilesSlot = slotFor("profiles");
    register("profiles", profilesSlot, profileBoxes.map((p) => p.box));
    const profilesSet = el(
      "fieldset",
      { className: "mb-3" },
      el("legend", { className: "form-label fs-6", text: "Profiles" }),
      profileBoxes.length
        ? el("div", { className: "mlopshub-profile-grid" }, profileBoxes.map((p) => p.node))
        : el("p", { className: "text-body-secondary", text: "The catalog offers no profiles." }),
      profilesSlot,
    );

    // quotas
    const quotaInputs = new Map();
    const quotaRow = el("div", { className: "row g-3" });
    for (const key of state.catalog.quotas) {
      const current = team && team.quotas ? team.quotas[key] : undefined;
      const isMemory = key === "memory";
      const field = textField(`quotas.${key}`, QUOTA_LABELS[key] || key, {
        testid: `field-quotas.${key}`,
        type: isMemory ? "text" : "number",
        value: current,
        placeholder: isMemory ? "e.g. 64G" : "no limit",
        className: "col-6 col-md-2",
        attrs: isMemory ? { autocomplete: "off", spellcheck: "false" } : {
          step: WHOLE_QUOTAS.has(key) ? "1" : "any",
          inputmode: WHOLE_QUOTAS.has(key) ? "numeric" : "decimal",
        },
      });
      quotaInputs.set(key, field.input);
      quotaRow.append(field.node);
    }
    const quotasSlot = slotFor("quotas");
    register("quotas", quotasSlot, []);
    const quotasSet = el(
      "fieldset",
      { className: "mb-3" },
      el("legend", { className: "form-label fs-6", text: "Quotas (empty: no limit)" }),
      quotaRow,
      quotasSlot,
    );

    // release: thresholds and hold-out set
    const thresholdList = el("div", { className: "mlopshub-thresholds" });
    function addThreshold(metric = "", bounds = {}) {
      const selectId = uid("metric");
      const select = el(
        "select",
        { id: selectId, className: "form-select form-select-sm", testid: "field-threshold-metric" },
        el("option", { value: "", text: "(no metric)" }),
        METRICS.map((m) => el("option", { value: m, text: m })),
      );
      select.value = metric;
      const minId = uid("min");
      const maxId = uid("max");
      const min = el("input", {
        id: minId,
        type: "number",
        step: "any",
        className: "form-control form-control-sm",
        testid: "field-threshold-min",
        value: bounds.min ?? "",
      });
      const max = el("input", {
        id: maxId,
        type: "number",
        step: "any",
        className: "form-control form-control-sm",
        testid: "field-threshold-max",
        value: bounds.max ?? "",
      });
      const slot = el("div", { className: "col-12 mlopshub-error-slot" });
      const row = { select, min, max, slot, node: null };
      row.node = el(
        "div",
        { className: "row g-2 align-items-end mb-2", testid: "threshold-row" },
        el("div", { className: "col-md-3" }, el("label", {
          className: "form-label small",
          for: selectId,
          text: "Metric",
        }), select),
        el("div", { className: "col-md-2" }, el("label", {
          className: "form-label small",
          for: minId,
          text: "Min",
        }), min),
        el("div", { className: "col-md-2" }, el("label", {
          className: "form-label small",
          for: maxId,
          text: "Max",
        }), max),
        el(
          "div",
          { className: "col-md-2" },
          button("Remove", "threshold-remove", () => {
            thresholdRows.splice(thresholdRows.indexOf(row), 1);
            row.node.remove();
          }, "btn btn-sm btn-outline-secondary", { "aria-label": "Remove this threshold" }),
        ),
        slot,
      );
      thresholdRows.push(row);
      thresholdList.append(row.node);
    }
    const thresholds = (team && team.release && team.release.thresholds) || {};
    for (const [metric, bounds] of Object.entries(thresholds)) {
      addThreshold(metric, bounds || {});
    }
    if (!thresholdRows.length) {
      addThreshold();
    }
    const thresholdsSlot = slotFor("release.thresholds");
    register("release.thresholds", thresholdsSlot, []);
    const holdout = (team && team.release && team.release.holdout) || {};
    const holdoutPath = textField("release.holdout.path", "Hold-out file", {
      testid: "field-holdout-path",
      value: holdout.path,
      placeholder: "data/holdout.csv",
      className: "col-md-4",
    });
    const holdoutTarget = textField("release.holdout.target", "Target column", {
      testid: "field-holdout-target",
      value: holdout.target,
      placeholder: "default",
      className: "col-md-3",
    });
    const holdoutRev = textField("release.holdout.rev", "Revision", {
      testid: "field-holdout-rev",
      value: holdout.rev,
      placeholder: "main",
      className: "col-md-3",
    });
    const holdoutSlot = slotFor("release.holdout");
    register("release.holdout", holdoutSlot, []);
    // monitoring: when a production model counts as drifted (release.drift)
    const drift = (team && team.release && team.release.drift) || {};
    const driftPsi = textField("release.drift.psi", "Drift: PSI threshold", {
      testid: "field-drift-psi",
      type: "number",
      value: drift.psi,
      placeholder: "0.2",
      className: "col-6 col-md-3",
      attrs: { step: "any", min: "0", inputmode: "decimal" },
    });
    const driftP = textField("release.drift.p_value", "Drift: test level", {
      testid: "field-drift-p-value",
      type: "number",
      value: drift.p_value,
      placeholder: "0.01",
      className: "col-6 col-md-3",
      attrs: { step: "any", min: "0", max: "1", inputmode: "decimal" },
    });
    const driftSlot = slotFor("release.drift");
    register("release.drift", driftSlot, []);
    const releaseSlot = slotFor("release");
    register("release", releaseSlot, []);
    const releaseSet = el(
      "fieldset",
      { className: "mb-3" },
      el("legend", { className: "form-label fs-6", text: "Release gate: thresholds on the hold-out set" }),
      thresholdList,
      button("Add threshold", "threshold-add", () => addThreshold(), "btn btn-sm btn-outline-secondary mb-2"),
      thresholdsSlot,
      el("div", { className: "row g-3" }, holdoutPath.node, holdoutTarget.node, holdoutRev.node),
      holdoutSlot,
      el("div", { className: "row g-3 mt-1" }, driftPsi.node, driftP.node),
      driftSlot,
      releaseSlot,
    );

    const submit = el("button", {
      type: "submit",
      className: "btn btn-sm btn-primary",
      testid: creating ? "create-submit" : "edit-save",
    }, creating ? "Create team" : "Save");
    const cancel = creating ? null : button("Cancel", "edit-cancel", () => onCancel());
    const actions = el("div", { className: "d-flex gap-2" }, submit, cancel);
    append(node, [general, basics, profilesSet, quotasSet, releaseSet, actions]);

    // --- errors

    function clearErrors() {
      hideAlert(general);
      for (const error of node.querySelectorAll("[data-testid='field-error']")) {
        error.remove();
      }
      for (const input of node.querySelectorAll(".is-invalid")) {
        input.classList.remove("is-invalid");
        input.removeAttribute("aria-invalid");
        const described = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-error"));
        if (described.length) {
          input.setAttribute("aria-describedby", described.join(" "));
        } else {
          input.removeAttribute("aria-describedby");
        }
      }
    }

    /** The field an error key belongs to: itself, a threshold row by metric, or its nearest registered parent. */
    function place(key) {
      for (let candidate = key; candidate; candidate = candidate.includes(".") ? candidate.slice(0, candidate.lastIndexOf(".")) : "") {
        if (fields.has(candidate)) {
          return fields.get(candidate);
        }
        const row = thresholdRows.find((r) => r.select.value && `release.thresholds.${r.select.value}` === candidate);
        if (row) {
          return { slot: row.slot, inputs: [row.select, row.min, row.max] };
        }
      }
      return null;
    }

    function showErrors(message, errors) {
      clearErrors();
      const unplaced = [];
      for (const [key, text] of Object.entries(errors || {})) {
        const target = place(key);
        if (!target) {
          unplaced.push([key, String(text)]);
          continue;
        }
        const id = uid("error") + "-error";
        target.slot.append(el("div", {
          id,
          className: "invalid-feedback d-block",
          testid: "field-error",
          "data-field": key,
          text: target.slot.dataset.errorSlot === key ? String(text) : `${key}: ${text}`,
        }));
        for (const input of target.inputs) {
          input.classList.add("is-invalid");
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${id}`.trim());
        }
      }
      if (!Object.keys(errors || {}).length) {
        showAlert(general, "danger", message || "The team was not saved.");
      } else if (unplaced.length) {
        showAlert(general, "danger", "The team was not saved:");
        {
          general.append(
            el(
              "ul",
              { className: "mb-0" },
              unplaced.map(([key, text]) =>
                el("li", { testid: "field-error", "data-field": key }, el("code", { text: key }), `: ${text}`),
              ),
            ),
          );
        }
      }
      const first = node.querySelector(".is-invalid");
      if (first) {
        first.focus();
      }
    }

    // --- reading the form

    /** The request body; local errors (a number input the browser could not read) instead when there are any. */
    function read() {
      const local = {};
      const body = {};
      if (creating) {
        body.name = name.input.value.trim();
      }
      const display = displayName.input.value.trim();
      if (display || !creating) {
        body.display_name = display;
      }
      if (creating) {
        body.members = members.input.value.split(",").map((m) => m.trim()).filter(Boolean);
      }
      body.profiles = profileBoxes.filter((p) => p.box.checked).map((p) => p.box.value);
      body.quotas = {};
      for (const [key, input] of quotaInputs) {
        const raw = input.value.trim();
        if (input.validity && input.validity.badInput) {
          local[`quotas.${key}`] = "expected a number (or leave it empty for no limit)";
        } else if (raw === "") {
          if (!creating) {
            body.quotas[key] = null; // an edit lifts the quota
          }
        } else if (key === "memory" || Number.isNaN(Number(raw))) {
          body.quotas[key] = raw;
        } else {
          body.quotas[key] = Number(raw);
        }
      }
      const release = { thresholds: {} };
      for (const row of thresholdRows) {
        const metric = row.select.value;
        const bounds = {};
        for (const [bound, input] of [["min", row.min], ["max", row.max]]) {
          if (input.validity && input.validity.badInput) {
            local[`release.thresholds.${metric || "(metric)"}.${bound}`] = "expected a number";
          } else if (input.value.trim() !== "") {
            bounds[bound] = Number(input.value);
          }
        }
        if (!metric) {
          if (Object.keys(bounds).length) {
            local["release.thresholds"] = "choose the metric of each threshold, or remove it";
          }
          continue;
        }
        if (metric in release.thresholds) {
          local[`release.thresholds.${metric}`] = `${metric} has two thresholds: keep one row per metric`;
        }
        release.thresholds[metric] = bounds;
      }
      const hold = {};
      for (const [key, field] of [["path", holdoutPath], ["target", holdoutTarget], ["rev", holdoutRev]]) {
        const value = field.input.value.trim();
        if (value) {
          hold[key] = value;
        }
      }
      if (Object.keys(hold).length) {
        release.holdout = hold;
      }
      const driftLimits = {};
      for (const [key, field] of [["psi", driftPsi], ["p_value", driftP]]) {
        if (field.input.validity && field.input.validity.badInput) {
          local[`release.drift.${key}`] = "expected a number (or leave it empty for the default)";
        } else if (field.input.value.trim() !== "") {
          driftLimits[key] = Number(field.input.value);
        }
      }
      if (Object.keys(driftLimits).length) {
        release.drift = driftLimits;
      }
      body.release = release;
      return { body, local };
    }

    function reset() {
      clearErrors();
      node.reset();
      for (const row of thresholdRows.splice(0)) {
        row.node.remove();
      }
      addThreshold();
    }

    node.addEventListener("submit", async (event) => {
      event.preventDefault();
      const { body, local } = read();
      if (Object.keys(local).length) {
        showErrors("Some fields cannot be read; see the messages next to them.", local);
        return;
      }
      clearErrors();
      submit.disabled = true;
      node.setAttribute("aria-busy", "true");
      try {
        await onSubmit(body);
      } catch (error) {
        if (!(error instanceof ApiError)) {
          throw error;
        }
        showErrors(error.message, error.errors);
      } finally {
        submit.disabled = false;
        node.removeAttribute("aria-busy");
      }
    });

    return { node, reset, showErrors, clearErrors };
  }

  // --- the teams table -----------------------------------------------------------------------------------------

  async function refreshTeams() {
    try {
      const answer = await call("GET", "teams");
      state.teams = Array.isArray(answer.teams) ? answer.teams : [];
      renderTeams();
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      showAlert(status, "danger", `The teams could not be read: ${error.message}`);
    }
  }

  function renderTeams() {
    clear(teamsBody);
    if (!state.teams.length) {
      teamsBody.append(el("tr", {}, el("td", {
        colspan: 8,
        className: "text-body-secondary",
        text: "No teams yet: create one below.",
      })));
    }
    const names = new Set(state.teams.map((t) => t.name));
    if (state.edit && !names.has(state.edit.name)) {
      state.edit = null;
    }
    for (const team of state.teams) {
      teamsBody.append(teamRow(team));
      if (state.edit && state.edit.name === team.name) {
        teamsBody.append(el("tr", {
          className: "mlopshub-edit-row",
          testid: "edit-row",
          "data-team": team.name,
        }, el("td", { colspan: 8 }, el("h3", {
          className: "h6",
          text: `Edit team ${team.name}`,
        }), state.edit.form.node)));
      }
    }
  }

  function teamRow(team) {
    const archived = Boolean(team.archived);
    const rowError = el("div", {
      testid: "row-error",
      role: "alert",
      className: "small text-danger mt-1",
      hidden: true,
    });
    const row = el("tr", { testid: "team-row", "data-team": team.name, className: archived ? "table-secondary" : "" });

    const nameCell = el(
      "td",
      {},
      el("code", { className: "mlopshub-name", text: team.name }),
      archived ? [" ", el("span", {
        className: "badge text-bg-secondary",
        testid: "archived-badge",
        title: `archived ${when(team.archived)}`,
        text: "archived",
      })] : null,
    );

    const memberInputId = uid("member");
    const memberInput = el("input", {
      id: memberInputId,
      className: "form-control form-control-sm",
      testid: "member-input",
      placeholder: "user name",
      autocomplete: "off",
      spellcheck: "false",
    });
    const addMember = button(
      "Add",
      "member-add",
      () => changeMember(team.name, memberInput.value.trim(), true, rowError, addMember),
      "btn btn-sm btn-outline-primary",
    );
    memberInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        addMember.click();
      }
    });
    const membersCell = el(
      "td",
      {},
      el(
        "ul",
        { className: "list-unstyled mb-1", testid: "team-members" },
        (team.members || []).map((user) => {
          const remove = button("\u00d7", "member-remove", null, "btn btn-sm btn-link text-danger p-0 ms-1 mlopshub-remove", {
            "aria-label": `Remove ${user} from ${team.name}`,
            title: `Remove ${user} from ${team.name}`,
            "data-member": user,
          });
          remove.addEventListener("click", () => changeMember(team.name, user, false, rowError, remove));
          return el("li", { testid: "team-member", "data-member": user }, el("span", { text: user }), remove);
        }),
      ),
      el("label", { className: "visually-hidden", for: memberInputId, text: `Add a member to ${team.name}` }),
      el("div", { className: "input-group input-group-sm mlopshub-member-add" }, memberInput, addMember),
      rowError,
    );

    const gpu = new Set(team.gpu_profiles || []);
    const profilesCell = el(
      "td",
      {},
      el(
        "ul",
        { className: "list-unstyled mb-0" },
        (team.profiles || []).map((slug) => el("li", {}, el("code", { text: slug }), gpu.has(slug) ? [" ", el("span", {
          className: "badge text-bg-info",
          testid: "gpu-badge",
          text: "GPU",
        })] : null)),
      ),
    );

    const quotas = Object.entries(team.quotas || {}).filter(([, value]) => value !== null && value !== undefined);
    const quotasCell = el(
      "td",
      { testid: "team-quotas" },
      quotas.length
        ? el(
            "ul",
            { className: "list-unstyled mb-0 small" },
            quotas.map(([key, value]) => el("li", { "data-quota": key, text: quotaText(key, value) })),
          )
        : el("span", { className: "text-body-secondary small", text: "no limits" }),
    );

    const use = team.use || {};
    const running = Array.isArray(use.running) ? use.running : [];
    const useCell = el(
      "td",
      { testid: "team-use", className: "small" },
      el("div", {
        text: `${use.servers || 0} server(s)\u00a0\u00b7 ${Number(use.cpu || 0)} CPU\u00a0\u00b7 ${(Number(use.memory_bytes || 0) / GIB).toFixed(1)} GiB\u00a0\u00b7 ${use.gpus || 0} GPU(s)`,
      }),
      running.length
        ? el(
            "ul",
            { className: "list-unstyled mb-0 mlopshub-running" },
            running.map((r) =>
              el(
                "li",
                { testid: "running-server", "data-user": r.user, "data-server": r.server || "" },
                el("span", { text: r.server ? `${r.user} (${r.server})` : r.user }),
                " ",
                el("code", { text: r.profile || "" }),
                " ",
                el("span", {
                  className: "text-body-secondary",
                  "data-running-key": runningKey(r.user, r.server),
                  text: sinceText(r.user, r.server),
                }),
              ),
            ),
          )
        : null,
    );

    const release = team.release || {};
    const gates = Object.entries(release.thresholds || {}).map(([metric, bounds]) => thresholdText(metric, bounds));
    if (release.holdout && release.holdout.path) {
      const h = release.holdout;
      gates.push(`hold-out ${h.path} \u2192 ${h.target || "?"}${h.rev ? ` @ ${h.rev}` : ""}`);
    }
    const releaseCell = el(
      "td",
      { className: "small" },
      gates.length
        ? el("ul", { className: "list-unstyled mb-0" }, gates.map((g) => el("li", { text: g })))
        : el("span", { className: "text-body-secondary", text: "none" }),
    );

    const displayCell = el("td", { text: team.display_name || "" });
    const actionsCell = el("td", {}, rowActions(team, rowError));
    append(row, [nameCell, displayCell, membersCell, profilesCell, quotasCell, useCell, releaseCell, actionsCell]);
    return row;
  }

  function sinceText(user, server) {
    const since = state.since.get(runningKey(user, server));
    return since ? `since ${when(since)}` : "";
  }

  /** After a usage answer: the since-when of each running server in the teams table. */
  function updateSince() {
    for (const node of teamsBody.querySelectorAll("[data-running-key]")) {
      const [user, server] = JSON.parse(node.dataset.runningKey);
      node.textContent = sinceText(user, server);
    }
  }

  function rowActions(team, rowError) {
    const box = el("div", { className: "d-flex flex-wrap gap-1" });
    if (state.confirming === team.name) {
      const confirm = button("Archive", "team-archive-confirm", null, "btn btn-sm btn-danger");
      confirm.addEventListener("click", () => archive(team.name, rowError, confirm));
      append(box, [
        el("div", {
          className: "small w-100",
          testid: "archive-question",
          text: `Archive ${team.name}? No new workspaces or releases; data, runs and models are kept, nothing running is stopped.`,
        }),
        confirm,
        button("Cancel", "team-archive-cancel", () => {
          state.confirming = null;
          renderTeams();
        }),
      ]);
      return box;
    }
    box.append(button("Edit", "team-edit", () => openEdit(team), "btn btn-sm btn-outline-primary", { "aria-label": `Edit ${team.name}` }));
    if (team.archived) {
      const restore = button("Unarchive", "team-unarchive", null, "btn btn-sm btn-outline-secondary", { "aria-label": `Unarchive ${team.name}` });
      const again = `Team ${team.name} is active again.`;
      restore.addEventListener("click", () =>
        change(team.name, "PATCH", teamPath(team.name), { archived: false }, rowError, restore, again),
      );
      box.append(restore);
    } else {
      box.append(
        button("Archive", "team-archive", () => {
          state.confirming = team.name;
          renderTeams();
        }, "btn btn-sm btn-outline-danger", { "aria-label": `Archive ${team.name}` }),
      );
    }
    return box;
  }

  /** One change to a team from its row; its warnings (a quota below use) in the yellow box. */
  async function change(name, method, path, body, rowError, control, done) {
    hideAlert(warnings);
    hideAlert(rowError);
    control.disabled = true;
    try {
      const answer = await call(method, path, body);
      showResult(answer, done);
      await refreshTeams();
      return answer;
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      showRowError(rowError, error.message);
      return null;
    } finally {
      control.disabled = false;
    }
  }

  /** A refused row change (the server's message names the field: "members: no such user: ..."). */
  function showRowError(box, message) {
    box.textContent = message;
    box.hidden = false;
  }

  function showResult(answer, done) {
    const said = Array.isArray(answer.warnings) ? answer.warnings.map(String) : [];
    if (said.length) {
      showAlert(warnings, "warning", "Saved, with warnings:", said);
    }
    showAlert(status, "success", done);
  }

  function changeMember(name, user, add, rowError, control) {
    if (!user) {
      showRowError(rowError, "Type the user name of the member to add.");
      return;
    }
    const path = `${teamPath(name)}/members/${encodeURIComponent(user)}`;
    const done = add ? `${user} is now a member of ${name}.` : `${user} is no longer a member of ${name}.`;
    change(name, add ? "PUT" : "DELETE", path, undefined, rowError, control, done);
  }

  async function archive(name, rowError, control) {
    state.confirming = null; // the next render shows the row's buttons again; a refusal stays in the row until then
    const answer = await change(name, "POST", `${teamPath(name)}/archive`, undefined, rowError, control, `Team ${name} is archived.`);
    if (!answer) {
      return;
    }
    const running = Array.isArray(answer.running_servers) ? answer.running_servers : [];
    showAlert(
      status,
      "success",
      running.length
        ? `Team ${name} is archived. These servers still run; stop them in the hub's admin page if they must end now:`
        : `Team ${name} is archived; none of its servers runs.`,
      running.map((r) => `${r.user}${r.server ? ` (${r.server})` : ""}: ${r.profile || "?"}`),
    );
  }

  function openEdit(team) {
    state.confirming = null;
    const form = teamForm({
      mode: "edit",
      team,
      onSubmit: async (body) => {
        hideAlert(warnings);
        const answer = await call("PATCH", teamPath(team.name), body);
        state.edit = null;
        showResult(answer, `Team ${team.name} is saved; the change applies at the next spawn or release.`);
        await refreshTeams();
      },
      onCancel: () => {
        state.edit = null;
        renderTeams();
      },
    });
    state.edit = { name: team.name, form };
    renderTeams();
    const first = form.node.querySelector("input");
    if (first) {
      first.focus();
    }
  }

  // --- the create form -----------------------------------------------------------------------------------------

  function renderCreate() {
    const form = teamForm({
      mode: "create",
      onSubmit: async (body) => {
        hideAlert(warnings);
        const team = await call("POST", "teams", body);
        form.reset();
        showAlert(status, "success", `Team ${team.name} is created.`);
        await refreshTeams();
      },
    });
    clear(createCard).append(form.node);
  }

  // --- usage ---------------------------------------------------------------------------------------------------

  const isoDay = (moment) => moment.toISOString().slice(0, 10);
  const today = new Date();
  const usageSince = el("input", {
    type: "date",
    id: uid("since"),
    className: "form-control form-control-sm",
    testid: "usage-since",
    value: isoDay(new Date(today.getTime() - 30 * DAY_MS)),
  });
  const usageUntil = el("input", {
    type: "date",
    id: uid("until"),
    className: "form-control form-control-sm",
    testid: "usage-until",
    value: isoDay(today),
  });
  let usageBy = "team";
  const byTeam = button("By team", "usage-by-team", () => setBy("team"), "btn btn-sm btn-outline-secondary active", { "aria-pressed": "true" });
  const byUser = button("By user", "usage-by-user", () => setBy("user"), "btn btn-sm btn-outline-secondary", { "aria-pressed": "false" });
  const csvLink = el("a", {
    className: "btn btn-sm btn-outline-primary",
    testid: "usage-csv",
    download: "",
    href: "#",
  }, "Download CSV");
  const usageError = el("div", { testid: "usage-error", role: "alert", hidden: true });
  const usageTable = el("table", { className: "table table-sm table-striped mb-0", testid: "usage-table" });
  const plot = el("figure", { className: "mlopshub-plot mb-0", testid: "usage-plot" });
  const runningList = el("ul", { className: "list-unstyled mb-0", testid: "usage-running" });

  function setBy(by) {
    usageBy = by;
    for (const [control, value] of [[byTeam, "team"], [byUser, "user"]]) {
      control.classList.toggle("active", value === by);
      control.setAttribute("aria-pressed", String(value === by));
    }
    loadUsage();
  }

  /** since..until of the date inputs as UTC times: from the start of the first day to the end of the last. */
  function period() {
    const since = usageSince.value;
    const until = usageUntil.value;
    if (!since || !until) {
      return { error: "Choose both days of the period." };
    }
    const end = new Date(Date.parse(`${until}T00:00:00Z`) + DAY_MS);
    if (Number.isNaN(end.getTime()) || Number.isNaN(Date.parse(`${since}T00:00:00Z`))) {
      return { error: "The period's days cannot be read; use the date pickers." };
    }
    if (since > until) {
      return { error: `The period starts (${since}) after it ends (${until}); swap the days.` };
    }
    return { since: `${since}T00:00:00Z`, until: end.toISOString().replace(".000Z", "Z") };
  }

  function usageQuery(extra) {
    const { since, until } = period();
    return new URLSearchParams({ since, until, ...extra }).toString();
  }

  async function loadUsage() {
    const run = ++state.usageRun;
    const chosen = period();
    if (chosen.error) {
      showAlert(usageError, "danger", chosen.error);
      csvLink.classList.add("disabled");
      csvLink.setAttribute("aria-disabled", "true");
      csvLink.removeAttribute("href");
      return;
    }
    csvLink.classList.remove("disabled");
    csvLink.removeAttribute("aria-disabled");
    csvLink.href = `${API}usage?${usageQuery({ by: usageBy, format: "csv" })}`;
    try {
      const [report, series] = await Promise.all([
        call("GET", `usage?${usageQuery({ by: usageBy })}`),
        call("GET", `usage/series?${usageQuery({ step: "day" })}`),
      ]);
      if (run !== state.usageRun) {
        return;
      }
      hideAlert(usageError);
      renderUsageTable(report);
      renderRunning(report.running || []);
      renderPlot(Array.isArray(series.points) ? series.points : []);
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      if (run === state.usageRun) {
        showAlert(usageError, "danger", `Usage could not be read: ${error.message}`);
      }
    }
  }

  function renderUsageTable(report) {
    const byUserRows = report.by === "user";
    const columns = [
      ["team", "Team"],
      ...(byUserRows ? [["user", "User"]] : []),
      ["sessions", "Sessions"],
      ["server_hours", "Server-hours"],
      ["cpu_hours", "CPU-hours"],
      ["memory_gib_hours", "Memory GiB-hours"],
      ["gpu_hours", "GPU-hours"],
    ];
    const rows = Array.isArray(report.rows) ? report.rows : [];
    clear(usageTable).append(
      el("thead", {}, el("tr", {}, columns.map(([, title]) => el("th", {
        scope: "col",
        className: title === "Team" || title === "User" ? "" : "text-end",
        text: title,
      })))),
      el(
        "tbody",
        {},
        rows.length
          ? rows.map((row) =>
              el(
                "tr",
                { testid: "usage-row", "data-team": row.team || "", "data-user": row.user || "" },
                columns.map(([key]) => {
                  if (key === "team" || key === "user") {
                    return el("td", { text: row[key] || (key === "team" ? "(no team)" : "") });
                  }
                  return el("td", {
                    className: "text-end",
                    text: key === "sessions" ? String(row[key] || 0) : hours(row[key]),
                  });
                }),
              ),
            )
          : el("tr", {}, el("td", {
            colspan: columns.length,
            className: "text-body-secondary",
            text: "No usage recorded in this period.",
          })),
      ),
    );
  }

  function renderRunning(running) {
    state.since = new Map(running.map((r) => [runningKey(r.user, r.server), r.since]));
    updateSince();
    clear(runningList);
    if (!running.length) {
      runningList.append(el("li", { className: "text-body-secondary", text: "No server runs now." }));
      return;
    }
    for (const r of running) {
      runningList.append(
        el(
          "li",
          { testid: "running-now", "data-user": r.user, "data-team": r.team || "" },
          el("strong", { text: r.server ? `${r.user} (${r.server})` : r.user }),
          ` in ${r.team || "(no team)"}, `,
          el("code", { text: r.profile || "?" }),
          `, since ${when(r.since)}`,
        ),
      );
    }
  }

  /** A stacked bar per day of CPU-hours, one colour per team, with axes and a legend. */
  function renderPlot(points) {
    clear(plot);
    const days = [...new Set(points.map((p) => p.start))].sort();
    const teams = [...new Set(points.map((p) => p.team || ""))].sort();
    const value = new Map(points.map((p) => [`${p.start}\u0000${p.team || ""}`, Number(p.cpu_hours) || 0]));
    const totals = days.map((day) => teams.reduce((sum, team) => sum + (value.get(`${day}\u0000${team}`) || 0), 0));
    const top = niceCeiling(Math.max(0, ...totals));
    plot.append(el("figcaption", { className: "small text-body-secondary", text: "CPU-hours per team and day (UTC)" }));
    if (!days.length || !totals.some((t) => t > 0)) {
      plot.append(el("p", {
        className: "text-body-secondary",
        testid: "usage-plot-empty",
        text: "No CPU-hours in this period.",
      }));
      return;
    }
    const width = 860;
    const height = 300;
    const margin = { left: 60, right: 12, top: 12, bottom: 52 };
    const innerW = width - margin.left - margin.right;
    const innerH = height - margin.top - margin.bottom;
    const slot = innerW / days.length;
    const barW = Math.max(1, slot * 0.8);
    const y = (v) => margin.top + innerH - (v / top) * innerH;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": "CPU-hours per team and day",
      class: "mlopshub-plot-svg",
    });

    const ticks = 5;
    for (let i = 0; i <= ticks; i += 1) {
      const v = (top * i) / ticks;
      chart.append(
        svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v), class: "mlopshub-grid" }),
        svg("text", {
          x: margin.left - 6,
          y: y(v) + 4,
          "text-anchor": "end",
          class: "mlopshub-tick",
          text: formatTick(v),
        }),
      );
    }
    const labelEvery = Math.ceil(days.length / 10);
    days.forEach((day, index) => {
      const x = margin.left + index * slot + (slot - barW) / 2;
      let base = 0;
      teams.forEach((team, t) => {
        const v = value.get(`${day}\u0000${team}`) || 0;
        if (v <= 0) {
          return;
        }
        const bar = svg("rect", {
          x,
          y: y(base + v),
          width: barW,
          height: Math.max(0.5, y(base) - y(base + v)),
          fill: PALETTE[t % PALETTE.length],
          "data-team": team,
        });
        bar.append(svg("title", { text: `${team || "(no team)"}, ${day.slice(0, 10)}: ${hours(v)} CPU-hours` }));
        chart.append(bar);
        base += v;
      });
      if (index % labelEvery === 0) {
        chart.append(svg("text", {
          x: x + barW / 2,
          y: margin.top + innerH + 16,
          "text-anchor": "middle",
          class: "mlopshub-tick",
          text: String(day).slice(5, 10),
        }));
      }
    });
    chart.append(
      svg("line", {
        x1: margin.left,
        x2: margin.left,
        y1: margin.top,
        y2: margin.top + innerH,
        class: "mlopshub-axis",
      }),
      svg("line", {
        x1: margin.left,
        x2: width - margin.right,
        y1: margin.top + innerH,
        y2: margin.top + innerH,
        class: "mlopshub-axis",
      }),
      svg("text", {
        x: margin.left + innerW / 2,
        y: height - 8,
        "text-anchor": "middle",
        class: "mlopshub-axis-label",
        text: "Day (UTC, month-day)",
      }),
      svg("text", {
        x: 14,
        y: margin.top + innerH / 2,
        "text-anchor": "middle",
        transform: `rotate(-90 14 ${margin.top + innerH / 2})`,
        class: "mlopshub-axis-label",
        text: "CPU-hours",
      }),
    );
    plot.append(chart);
    plot.append(
      el(
        "ul",
        { className: "list-inline small mb-0", testid: "usage-legend" },
        teams.map((team, t) => {
          const swatch = el("span", { className: "mlopshub-swatch", "aria-hidden": "true" });
          swatch.style.backgroundColor = PALETTE[t % PALETTE.length];
          return el("li", { className: "list-inline-item", "data-team": team }, swatch, " ", team || "(no team)");
        }),
      ),
    );
  }

  function niceCeiling(v) {
    if (!(v > 0)) {
      return 1;
    }
    const power = 10 ** Math.floor(Math.log10(v));
    const step = [1, 2, 2.5, 5, 10].find((f) => f * power >= v);
    return step * power;
  }

  function formatTick(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(v < 1 ? 2 : 1);
  }

  function renderUsage() {
    for (const input of [usageSince, usageUntil]) {
      input.addEventListener("change", () => loadUsage());
    }
    append(usageCard, [
      el(
        "div",
        { className: "row g-2 align-items-end mb-3" },
        el("div", { className: "col-auto" }, el("label", {
          className: "form-label small",
          for: usageSince.id,
          text: "From (UTC day)",
        }), usageSince),
        el("div", { className: "col-auto" }, el("label", {
          className: "form-label small",
          for: usageUntil.id,
          text: "To (UTC day, included)",
        }), usageUntil),
        el("div", { className: "col-auto" }, el("div", {
          className: "btn-group",
          role: "group",
          "aria-label": "Group usage",
        }, byTeam, byUser)),
        el("div", { className: "col-auto" }, button("Refresh", "usage-refresh", () => loadUsage())),
        el("div", { className: "col-auto" }, csvLink),
      ),
      usageError,
      el("div", { className: "table-responsive mb-3" }, usageTable),
      plot,
      el("h3", { className: "h6 mt-3", text: "Running now" }),
      runningList,
    ]);
  }

  // --- start ---------------------------------------------------------------------------------------------------

  async function start() {
    renderUsage();
    const usage = loadUsage();
    try {
      const catalog = await call("GET", "catalog");
      state.catalog = {
        profiles: Array.isArray(catalog.profiles) ? catalog.profiles : [],
        quotas: Array.isArray(catalog.quotas) && catalog.quotas.length ? catalog.quotas : state.catalog.quotas,
      };
      renderCreate();
    } catch (error) {
      if (!(error instanceof ApiError)) {
        throw error;
      }
      clear(createCard).append(el("div", {
        className: "alert alert-danger",
        testid: "form-error",
        text: `The catalog could not be read, so no team can be made now: ${error.message}`,
      }));
    }
    await Promise.all([refreshTeams(), usage]);
  }

  start();
}

// The page may load this file in its <head>: wait for the root element.
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", mlopshubTeamsPage);
} else {
  mlopshubTeamsPage();
}
