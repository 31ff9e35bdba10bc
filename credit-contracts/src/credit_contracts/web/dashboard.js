"use strict";

const state = {
  customers: [], selectedCustomer: null, selectedContract: null, polling: false, again: false,
  view: "overview", batchId: null, stuck: { days: 14, minutes: 60 },
};
const $ = (id) => document.getElementById(id);

// -- small helpers: DOM built with textContent only, never from HTML strings -------------------

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;  // CSSOM: allowed by the CSP
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// -- the token: asked for once, kept for this tab only (sessionStorage), sent as a bearer ------

const TOKEN_KEY = "credit-contracts-token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function askForToken(why) {
  $("token-why").textContent = why;
  $("token-form").hidden = false;
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  $("token-form").hidden = true;
  say("Token kept for this tab.");
  refresh();
});

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  if (token()) options.headers["Authorization"] = `Bearer ${token()}`;
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    const had = token() !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken(had ? "The server refused this token: paste the right one." :
      "This server needs its token to change anything: paste it here.");
  }
  if (!response.ok) throw new Error(data.error || `${method} ${path}: HTTP ${response.status}`);
  return data;
}

function say(text, kind = "ok") {
  const box = state.view === "overview" ? $("message") : $("notice");
  box.textContent = text;
  box.className = kind;
}

function when(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : "";
}

function duration(seconds) {
  if (seconds == null) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

function rate(perSecond) {
  if (!perSecond) return "–";
  if (perSecond >= 1) return `${perSecond.toFixed(1)} / s`;
  if (perSecond * 3600 >= 1) return `${(perSecond * 3600).toFixed(1)} / h`;
  return `${(perSecond * 86400).toFixed(2)} / day`;
}

function count(n) {
  return Number(n).toLocaleString("en-US");
}

function moment(value) {
  // a store timestamp: ISO text, or seconds since the epoch
  if (value == null || value === "") return "–";
  return when(typeof value === "number" ? new Date(value * 1000).toISOString() : value);
}

function link(href, text, props = {}) {
  return h("a", { href, ...props }, text);
}

const batchHref = (id) => `#batch/${encodeURIComponent(id)}`;
const contractHref = (id) => `#contract/${encodeURIComponent(id)}`;

// -- paging: every list shows where it is in its total and pages on the API's cursor -------

class Pager {
  constructor(name, load, cursor = "after") {
    this.box = $(`${name}-pager`);
    this.cursor = cursor;
    this.stack = [];
    this.after = null;
    this.next = null;
    this.version = 0;
    this.load = load;
    this.prevButton = this.box.querySelector("[data-role=prev]");
    this.nextButton = this.box.querySelector("[data-role=next]");
    this.size = this.box.querySelector("[data-role=size]");
    this.limit = Number(this.size.value);
    this.prevButton.addEventListener("click", () => this.move(this.stack.pop() ?? null));
    this.nextButton.addEventListener("click", () => {
      if (this.next == null) return;
      this.stack.push(this.after);
      this.move(this.next);
    });
    this.size.addEventListener("change", () => {
      this.limit = Number(this.size.value);
      this.reset();
      this.load();
    });
  }

  reset() {
    this.stack = [];
    this.after = null;
    this.next = null;
    this.version += 1;
  }

  move(after) {
    this.after = after;
    this.next = null;
    this.version += 1;
    this.prevButton.disabled = this.nextButton.disabled = true;
    this.load();
  }

  query(params = {}) {
    const q = new URLSearchParams({ ...params, limit: this.limit });
    if (this.after != null) q.set(this.cursor, this.after);
    return q.toString();
  }

  async page(path, params = {}) {
    // null when the pager moved while the page was on its way: a later refresh shows it
    const version = this.version;
    const data = await api("GET", `${path}?${this.query(params)}`);
    return version === this.version ? data : null;
  }

  show(shown, total, next) {
    const first = this.stack.length * this.limit;
    const last = first + shown;
    this.next = last < total ? next : null;
    this.box.querySelector(".showing").textContent = total === 0 ? "none" :
      shown === 0 ? `nothing past ${count(first)} of ${count(total)}` :
      `showing ${count(first + 1)}–${count(last)} of ${count(total)}`;
    this.prevButton.disabled = this.stack.length === 0;
    this.nextButton.disabled = this.next == null;
  }
}

function fillSelect(select, values, labels = values) {
  const keep = select.value;
  const same = select.options.length === values.length &&
    values.every((v, i) => select.options[i].value === v && select.options[i].text === labels[i]);
  if (same) return;
  select.replaceChildren(...values.map((v, i) => h("option", { value: v }, labels[i])));
  if (values.includes(keep)) select.value = keep;
}

// -- rendering -------------------------------------------------------------------------------

function renderCustomers() {
  const rows = state.customers.map((c) => h("tr", {
      "data-testid": "customer-row", dataset: { id: c.id },
      class: c.id === state.selectedCustomer ? "selected" : "",
      onclick: () => selectCustomer(c.id),
    },
    h("td", {}, h("strong", {}, c.name), " ", h("span", { class: "clock" }, c.id)),
    h("td", { class: "rating", "data-field": "rating" }, c.rating),
    ...["active", "pending", "resigned", "terminated"].map((s) =>
      h("td", { class: "n", "data-field": s }, c.contracts[s])),
    h("td", { class: "n", "data-field": "changes",
              title: "rating changes whose batch has finished / all rating changes" },
      `${c.completed_changes} / ${c.rating_changes}`),
  ));
  $("customers").replaceChildren(...(rows.length ? rows :
    [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No customers yet: register one below."))]));
  const ids = state.customers.map((c) => c.id);
  const labels = state.customers.map((c) => `${c.name} (${c.rating})`);
  fillSelect($("rating-customer"), ids, labels);
  fillSelect($("contract-customer"), ids, labels);
}

function progressParts(b) {
  const total = Math.max(b.total, 1);
  const part = (kind, n) => h("span", { class: kind, style: `width:${(100 * n) / total}%`,
                                        title: `${kind.replace("_", " ")}: ${n}` });
  return [part("done", b.done), part("failed", b.failed), part("skipped", b.skipped),
          part("cancelled", b.cancelled), part("in_flight", b.in_flight)];
}

function batchCounts(b) {
  return `${count(b.finished)} of ${count(b.total)} finished · ${count(b.done)} re-confirmed · ` +
    `${count(b.failed)} terminated · ${count(b.skipped)} skipped · ${count(b.cancelled)} cancelled · ` +
    `${count(b.in_flight)} in flight · ${count(b.pending)} queued · ` +
    `rate ${rate(b.rate)} · ETA ${duration(b.eta_seconds)}`;
}

function renderBatch(b) {
  const customer = state.customers.find((c) => c.id === b.customer_id);
  const who = customer ? `${customer.name}, rating change ${b.change_no}` : b.id;
  return h("div", { class: "batch", "data-testid": "batch", dataset: { id: b.id, status: b.status } },
    h("div", { class: "batch-head" },
      h("strong", { class: "who" }, who),
      b.paused ? h("span", { class: "badge paused" }, "paused") : "",
      h("span", { class: `badge ${b.status}`, "data-testid": "batch-status" }, b.status),
      link(batchHref(b.id), "Details", { class: "small-link", "data-testid": "batch-link",
                                          "aria-label": `details of batch ${b.id}` })),
    h("div", { class: "bar", role: "progressbar", "data-testid": "batch-progress",
               "aria-valuemin": 0, "aria-valuemax": b.total, "aria-valuenow": b.finished },
      ...progressParts(b)),
    h("div", { class: "counts", "data-testid": "batch-counts" },
      batchCounts(b),
      b.superseded_by ? [" · superseded by ", link(batchHref(b.superseded_by), b.superseded_by)] : ""));
}

function renderBatches(page) {
  const batches = page.batches;
  $("batches").replaceChildren(...(batches.length ? batches.map(renderBatch) :
    [h("div", { class: "empty" }, "No rating change yet.")]));
  pagers.batches.show(batches.length, page.total, page.next);
}

function renderContracts(customer, page) {
  $("contracts-panel").hidden = false;
  $("contracts-title").textContent = `Contracts of ${customer ? customer.name : state.selectedCustomer}`;
  const rows = page.contracts.map((k) => h("tr", {
      "data-testid": "contract-row", dataset: { id: k.id, status: k.status },
      class: k.id === state.selectedContract ? "selected" : "",
      onclick: () => selectContract(k.id),
    },
    h("td", {}, k.id),
    h("td", {}, k.title || "–"),
    h("td", {}, h("span", { class: `badge ${k.status}`, "data-field": "status" }, k.status)),
    h("td", { class: "clock" }, when(k.updated_at)),
    h("td", {}, k.status === "pending" ? h("button", {
        class: "small", "data-testid": "sign",
        onclick: (event) => { event.stopPropagation(); sign(k.id); } }, "Sign") : ""),
  ));
  $("contracts").replaceChildren(...(rows.length ? rows :
    [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No contracts: open some above."))]));
  pagers.contracts.show(page.contracts.length, page.total, page.next);
}

function renderTimeline(contract) {
  $("timeline-panel").hidden = false;
  $("timeline-title").textContent = `Timeline of ${contract.id} (${contract.status})`;
  $("timeline").replaceChildren(...contract.timeline.map((e) => h("li", {
      "data-testid": "timeline-entry", dataset: { event: e.event } },
    h("div", { class: "when" }, `#${e.position} · ${when(e.occurred_at)}`),
    h("div", { class: "what" }, e.summary),
    h("div", { class: "cmd" }, `${e.event} ← ${e.command}`))));
}

// -- parked work -----------------------------------------------------------------------------

function parkedWhere(item) {
  if (item.kind === "delivery") return `${item.process} ${item.instance_id} · ${item.type}`;
  if (item.kind === "command") return item.type;
  return `event at position ${item.position}`;
}

function renderParked(data) {
  const rows = data.parked.map((item) => h("tr", {
      "data-testid": "parked-row", dataset: { id: item.id, kind: item.kind } },
    h("td", {}, h("span", { class: "badge parked" }, item.kind)),
    h("td", { class: "id", "data-field": "id" }, item.id),
    h("td", { "data-field": "where" }, parkedWhere(item)),
    h("td", { class: "n", "data-field": "attempts" }, count(item.attempts)),
    h("td", {}, h("div", { class: "error-text", "data-field": "error" }, item.error || "–")),
    h("td", { class: "actions" },
      h("button", { class: "small primary", "data-testid": "parked-retry",
                    onclick: (event) => parkedAction(event.target, item, "retry") }, "Retry"),
      h("button", { class: "small", "data-testid": "parked-skip",
                    onclick: (event) => parkedAction(event.target, item, "skip") }, "Skip")),
  ));
  $("parked").replaceChildren(...(rows.length ? rows : [h("tr", {},
    h("td", { colspan: 6, class: "empty", "data-testid": "parked-empty" }, "Nothing parked."))]));
  $("parked-summary").textContent = data.total === 0 ? "Nothing parked: all work is flowing." :
    `${count(data.total)} parked item${data.total === 1 ? "" : "s"}: fix the cause, then retry ` +
    "(or skip for good).";
}

async function parkedAction(button, item, action) {
  if (action === "skip" && !window.confirm(`Skip ${item.id} for good? Its work is dropped.`)) return;
  await act(button, async () => {
    await api("POST", `/api/parked/${encodeURIComponent(item.id)}/${action}`);
    // name what it is, not only its id: a delivery's id is a row number of the inbox
    const what = item.kind === "delivery" ? `${item.id} (${parkedWhere(item)})` : item.id;
    return action === "retry" ?
      `${what} is back to work; it parks again if its cause is still there.` :
      `${what} skipped.`;
  });
}

// -- stuck work ------------------------------------------------------------------------------

function renderStuckContracts(page) {
  const rows = page.items.map((k) => h("tr", {
      "data-testid": "stuck-contract-row", dataset: { id: k.id, customer: k.customer_id } },
    h("td", {}, link(contractHref(k.id), k.id, { "data-testid": "stuck-contract-link" })),
    h("td", {}, k.customer_id),
    h("td", {}, k.title || "–"),
    h("td", {}, h("span", { class: `badge ${k.status}` }, k.status)),
    h("td", { class: "clock" }, when(k.updated_at)),
  ));
  $("stuck-contracts").replaceChildren(...(rows.length ? rows : [h("tr", {},
    h("td", { colspan: 5, class: "empty" }, "No contract has been pending that long."))]));
  $("stuck-contracts-title").textContent =
    `Contracts pending longer than ${state.stuck.days} days: ${count(page.total)}`;
  pagers.stuckContracts.show(page.items.length, page.total, page.next);
}

function renderStuckBatches(page) {
  const rows = page.items.map((b) => h("tr", {
      "data-testid": "stuck-batch-row", dataset: { id: b.id } },
    h("td", {}, link(batchHref(b.id), b.id, { "data-testid": "stuck-batch-link" })),
    h("td", {}, h("span", { class: `badge ${b.status}` }, b.status),
      b.paused ? [" ", h("span", { class: "badge paused" }, "paused")] : ""),
    h("td", { class: "n" }, `${count(b.finished)} / ${count(b.total)}`),
    h("td", { class: "n" }, count(b.in_flight)),
    h("td", { class: "n" }, count(b.pending)),
    h("td", { class: "clock" }, b.last_finished_at ? when(b.last_finished_at) : "none yet"),
  ));
  $("stuck-batches").replaceChildren(...(rows.length ? rows : [h("tr", {},
    h("td", { colspan: 6, class: "empty" }, "Every live batch has made progress lately."))]));
  $("stuck-batches-title").textContent =
    `Batches with no progress for ${state.stuck.minutes} minutes: ${count(page.total)}`;
  pagers.stuckBatches.show(page.items.length, page.total, page.next);
}

$("stuck-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.stuck = { days: Number($("stuck-days").value), minutes: Number($("stuck-minutes").value) };
  pagers.stuckContracts.reset();
  pagers.stuckBatches.reset();
  refresh();
});

// -- health ----------------------------------------------------------------------------------

function parkedTotal(parked) {
  if (typeof parked === "number") return parked;
  return Object.values(parked || {}).reduce((sum, n) => sum + Number(n || 0), 0);
}

function renderNav(health) {
  const parked = parkedTotal(health.parked);
  $("nav-parked-count").textContent = parked ? String(parked) : "";
  $("nav-parked").classList.toggle("alert", parked > 0);
}

function renderHealth(health) {
  const queues = health.queues;
  $("health-head").textContent = count(health.head);
  $("health-lag").textContent = count(health.lag);
  $("health-inbox").textContent = count(queues.inbox);
  $("health-commands").textContent = count(queues.commands_pending);
  $("health-timers-due").textContent = count(queues.timers_due);
  $("health-timers").textContent = count(queues.timers);
  $("health-parked").textContent = typeof health.parked === "number" ? count(health.parked) :
    Object.entries(health.parked).map(([kind, n]) => `${kind} ${count(n)}`).join(" · ");
  $("health-backend").textContent = health.backend;
  $("health-consumers").replaceChildren(...health.consumers.map((c) => h("tr", {
      "data-testid": "consumer-row", dataset: { name: c.name } },
    h("td", { class: "id" }, c.name),
    h("td", { class: "n", "data-field": "checkpoint" }, count(c.checkpoint)),
    h("td", { class: `n${c.lag ? " lagging" : ""}`, "data-field": "lag" }, count(c.lag)))));
  renderWorkers(health.workers);
}

function renderWorkers(workers) {
  const none = (text) => [h("tr", {}, h("td", { colspan: 6, class: "empty" }, text))];
  if (workers === undefined) {
    $("health-workers").replaceChildren(...none("This server does not report its workers."));
    return;
  }
  const now = Date.now() / 1000;
  const seen = (w) => typeof w.seen_at === "number" ? `${duration(now - w.seen_at)} ago` :
    moment(w.seen_at);
  $("health-workers").replaceChildren(...(workers.length ? workers.map((w) => h("tr", {
      "data-testid": "worker-row", dataset: { id: w.worker_id, alive: String(w.alive) } },
    h("td", { class: "id" }, w.worker_id),
    h("td", {}, w.host ?? "–"),
    h("td", { class: "n" }, w.pid ?? "–"),
    h("td", { class: "clock" }, moment(w.started_at)),
    h("td", { class: "clock" }, seen(w)),
    h("td", {}, h("span", { class: `badge ${w.alive ? "alive" : "gone"}` },
                  w.alive ? "alive" : "not seen lately")))) :
    none("No worker has reported to the store.")));
}

// -- one batch -------------------------------------------------------------------------------

const FINAL_BATCH = ["completed", "cancelled"];

function renderBatchView(b) {
  const customer = state.customers.find((c) => c.id === b.customer_id);
  $("batch-title").textContent = customer ? `Batch ${b.id} · ${customer.name}, rating change ` +
    `${b.change_no}` : `Batch ${b.id}`;
  $("nav-batch").textContent = `Batch ${b.id}`;
  $("batch-status").textContent = b.status;
  $("batch-status").className = `badge ${b.status}`;
  $("batch-view").dataset.status = b.status;
  $("batch-view").dataset.paused = String(b.paused);
  $("batch-paused").hidden = !b.paused;
  const bar = $("batch-bar");
  bar.replaceChildren(...progressParts(b));
  bar.setAttribute("aria-valuemin", 0);
  bar.setAttribute("aria-valuemax", b.total);
  bar.setAttribute("aria-valuenow", b.finished);
  $("batch-counts").textContent = batchCounts(b);
  $("batch-settings").textContent = `max in flight ${b.max_in_flight ?? "no limit"} · ` +
    `rate limit ${b.rate_limit ? b.rate_limit.text : "none"}`;
  const links = [];
  if (b.superseded_by) links.push("superseded by ", link(batchHref(b.superseded_by),
    b.superseded_by, { "data-testid": "superseded-by" }));
  for (const earlier of b.supersedes || []) {
    links.push(links.length ? " · supersedes " : "supersedes ",
      link(batchHref(earlier), earlier, { "data-testid": "supersedes" }));
  }
  $("batch-links").replaceChildren(...(links.length ? links :
    ["supersedes no batch; not superseded"]));
  const final = FINAL_BATCH.includes(b.status) || b.status === "cancelling";
  $("batch-pause").disabled = final || b.paused;
  $("batch-resume").disabled = final || !b.paused;
  $("batch-cancel").disabled = final;
  $("throttle-form").querySelector("button").disabled = final;
}

function renderItems(page) {
  const rows = page.items.map((item) => h("tr", {
      "data-testid": "item-row", dataset: { id: item.target_id, status: item.status } },
    h("td", {}, link(contractHref(item.target_id), item.target_id)),
    h("td", {}, h("span", { class: `badge ${item.status}` }, item.status)),
    h("td", {}, item.detail || "–"),
    h("td", { class: "clock" }, moment(item.dispatched_at)),
    h("td", { class: "clock" }, moment(item.updated_at)),
  ));
  $("batch-items").replaceChildren(...(rows.length ? rows : [h("tr", {},
    h("td", { colspan: 5, class: "empty" }, "No items of this status."))]));
  pagers.items.show(page.items.length, page.total, page.next);
}

function batchControl(button, action) {
  button.addEventListener("click", () => {
    if (action === "cancel" && !window.confirm(`Cancel batch ${state.batchId}? Its items not ` +
        "dispatched yet are cancelled.")) return;
    act(button, async () => {
      const b = await api("POST", `/api/batches/${encodeURIComponent(state.batchId)}/${action}`,
                          { reason: $("batch-reason").value });
      return `Batch ${b.id}: ${action === "pause" ? "paused" : action === "resume" ?
        "resumed" : "cancelling"} (${b.status}).`;
    });
  });
}

batchControl($("batch-pause"), "pause");
batchControl($("batch-resume"), "resume");
batchControl($("batch-cancel"), "cancel");

function throttleBody() {
  const body = {};
  const max = $("throttle-max").value.trim(), rateText = $("throttle-rate").value.trim();
  if (max) body.max_in_flight = Number(max);
  if ($("throttle-unlimited").checked) body.rate = null;
  else if (rateText) body.rate = rateText;
  if (!Object.keys(body).length) throw new Error("Give a max in flight, a rate, or lift the rate.");
  const reason = $("batch-reason").value;
  return reason ? { ...body, reason } : body;
}

$("throttle-form").addEventListener("submit", (event) => {
  event.preventDefault();
  act(event.submitter || $("throttle-form").querySelector("button"), async () => {
    const b = await api("POST", `/api/batches/${encodeURIComponent(state.batchId)}/throttle`,
                        throttleBody());
    $("throttle-max").value = "";
    $("throttle-rate").value = "";
    $("throttle-unlimited").checked = false;
    return `Batch ${b.id}: max in flight ${b.max_in_flight ?? "no limit"}, rate limit ` +
           `${b.rate_limit ? b.rate_limit.text : "none"}.`;
  });
});

$("items-status").addEventListener("change", () => {
  pagers.items.reset();
  refresh();
});

// -- views and polling -----------------------------------------------------------------------

const pagers = {
  customers: new Pager("customers", refresh),
  contracts: new Pager("contracts", refresh),
  stuckContracts: new Pager("stuck-contracts", refresh, "contracts_after"),
  stuckBatches: new Pager("stuck-batches", refresh, "batches_after"),
  items: new Pager("items", refresh),
  batches: new Pager("batches", refresh),
};


async function refreshOverview() {
  const [customers, batches] = await Promise.all([
    pagers.customers.page("/api/customers"),
    pagers.batches.page("/api/batches"),
  ]);
  if (customers) {
    state.customers = customers.customers;
    renderCustomers();
    pagers.customers.show(customers.customers.length, customers.total, customers.next);
  }
  if (batches) renderBatches(batches);
  await refreshSelection();
}

async function refreshStuck() {
  const params = { pending_days: state.stuck.days, stalled_minutes: state.stuck.minutes };
  const [contracts, batches] = await Promise.all([
    pagers.stuckContracts.page("/api/stuck", params),
    pagers.stuckBatches.page("/api/stuck", params),
  ]);
  if (contracts) renderStuckContracts(contracts.contracts);
  if (batches) renderStuckBatches(batches.batches);
}

async function refreshBatchView() {
  if (!state.batchId) return;
  const path = `/api/batches/${encodeURIComponent(state.batchId)}`;
  const status = $("items-status").value;
  const [batch, items] = await Promise.all([
    api("GET", path), pagers.items.page(`${path}/items`, status ? { status } : {}),
  ]);
  renderBatchView(batch);
  if (items) renderItems(items);
}

const VIEWS = {
  overview: refreshOverview,
  parked: async () => renderParked(await api("GET", "/api/parked")),
  stuck: refreshStuck,
  health: async () => renderHealth(await api("GET", "/api/health")),
  batch: refreshBatchView,
};

async function refresh() {
  if (state.polling) {
    state.again = true;  // a page moved or a view changed while a refresh was on its way
    return;
  }
  state.polling = true;
  try {
    do {
      state.again = false;
      await refreshOnce();
    } while (state.again);
  } catch (error) {
    say(`Cannot reach the server: ${error.message}`, "error");
  } finally {
    state.polling = false;
  }
}

async function refreshOnce() {
  const system = await api("GET", "/api/system");
  const needed = Object.entries(system.auth).filter(([, how]) => how === "token");
  if (needed.length && !token() && $("token-form").hidden) {
    askForToken(`This server needs its token for ${needed.map(([what]) => what).join(" and ")}: ` +
      "paste it here (ask whoever runs the server; it is kept for this tab only).");
  }
  if (system.auth.reads === "token" && !token()) return;
  $("clock").textContent = `${system.clock} clock · ${when(system.now)}`;
  $("advance").hidden = system.clock !== "virtual";
  fillSelect($("rating-value"), system.ratings);
  fillSelect($("customer-rating"), system.ratings);
  const [health] = await Promise.all([api("GET", "/api/health"), VIEWS[state.view]()]);
  renderNav(health);
  if (state.view === "health") renderHealth(health);
}

async function refreshSelection() {
  if (state.selectedCustomer) {
    const id = encodeURIComponent(state.selectedCustomer);
    const page = await pagers.contracts.page(`/api/customers/${id}/contracts`);
    if (page) renderContracts(state.customers.find((c) => c.id === state.selectedCustomer), page);
  }
  if (state.selectedContract) {
    renderTimeline(await api("GET", `/api/contracts/${encodeURIComponent(state.selectedContract)}`));
  }
}

function selectCustomer(id) {
  if (state.selectedCustomer !== id) pagers.contracts.reset();
  state.selectedCustomer = id;
  state.selectedContract = null;
  $("timeline-panel").hidden = true;
  $("rating-customer").value = id;
  $("contract-customer").value = id;
  renderCustomers();
  refresh();
}

function selectContract(id) {
  state.selectedContract = id;
  refresh();
}

async function openContract(id) {
  // a link from another view: the contract's customer and its timeline, on the overview
  try {
    const contract = await api("GET", `/api/contracts/${encodeURIComponent(id)}`);
    if (state.selectedCustomer !== contract.customer_id) pagers.contracts.reset();
    state.selectedCustomer = contract.customer_id;
    state.selectedContract = id;
    renderTimeline(contract);
  } catch (error) {
    say(error.message, "error");
  }
  refresh();
}

function show(view) {
  state.view = view;
  for (const main of document.querySelectorAll("main[data-view]")) {
    main.hidden = main.dataset.view !== view;
  }
  for (const name of Object.keys(VIEWS)) {
    const nav = $(`nav-${name}`);
    if (name === view) nav.setAttribute("aria-current", "page");
    else nav.removeAttribute("aria-current");
  }
  $("notice").textContent = "";
}

function route() {
  const [name, ...rest] = location.hash.slice(1).split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (name === "batch" && arg) {
    if (state.batchId !== arg) pagers.items.reset();
    state.batchId = arg;
    $("nav-batch").hidden = false;
    $("nav-batch").href = batchHref(arg);
    $("nav-batch").textContent = `Batch ${arg}`;
    show("batch");
  } else if (name === "contract" && arg) {
    show("overview");
    history.replaceState(null, "", "#overview");
    openContract(arg);
    return;
  } else {
    show(Object.hasOwn(VIEWS, name) && name !== "batch" ? name : "overview");
  }
  refresh();
}

window.addEventListener("hashchange", route);

// -- actions ---------------------------------------------------------------------------------

async function act(button, work) {
  button.disabled = true;
  try {
    say(await work());
  } catch (error) {
    say(error.message, "error");
  } finally {
    button.disabled = false;
    await refresh();
  }
}

function runButton(button, body, label) {
  button.addEventListener("click", () => act(button, async () => {
    const done = await api("POST", "/api/run", body);
    return `${label}: ${done.work} steps, the clock moved ${done.clock_advances} times, ` +
           `now ${when(done.now)}.`;
  }));
}

async function sign(contractId) {
  try {
    const k = await api("POST", `/api/contracts/${encodeURIComponent(contractId)}/sign`);
    say(`Contract ${k.id} re-signed; it is re-confirmed on the next run.`);
  } catch (error) {
    say(error.message, "error");
  }
  await refresh();
}

function onSubmit(form, work) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(form.querySelector("button[type=submit]"), work);
  });
}

onSubmit($("rating-form"), async () => {
  const id = $("rating-customer").value, rating = $("rating-value").value;
  const done = await api("POST", `/api/customers/${encodeURIComponent(id)}/rating`, { rating });
  return `${done.name} is now rated ${done.rating}: batch ${done.batch_id} revokes ` +
         `${done.contracts.total} contracts when the processes run.`;
});

onSubmit($("customer-form"), async () => {
  const done = await api("POST", "/api/customers",
                         { name: $("customer-name").value, rating: $("customer-rating").value });
  $("customer-name").value = "";
  return `Registered ${done.name} (${done.id}).`;
});

onSubmit($("contract-form"), async () => {
  const customer_id = $("contract-customer").value, title = $("contract-title").value;
  const n = Math.max(1, Math.min(100, Number($("contract-count").value) || 1));
  for (let i = 0; i < n; i++) await api("POST", "/api/contracts", { customer_id, title });
  return `Opened ${n} contract${n === 1 ? "" : "s"}.`;
});

runButton($("run"), undefined, "Ran until idle");
runButton($("advance"), { advance_days: 1 }, "Advanced one day");
route();
setInterval(refresh, 1000);
