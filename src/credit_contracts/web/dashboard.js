"use strict";

const state = { customers: [], selectedCustomer: null, selectedContract: null, polling: false };
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
  const box = $("message");
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

function renderBatch(b) {
  const total = Math.max(b.total, 1);
  const part = (kind, n) => h("span", { class: kind, style: `width:${(100 * n) / total}%`,
                                        title: `${kind.replace("_", " ")}: ${n}` });
  const customer = state.customers.find((c) => c.id === b.customer_id);
  const who = customer ? `${customer.name}, rating change ${b.change_no}` : b.id;
  return h("div", { class: "batch", "data-testid": "batch", dataset: { id: b.id, status: b.status } },
    h("div", { class: "batch-head" },
      h("strong", { class: "who" }, who),
      h("span", { class: `badge ${b.status}`, "data-testid": "batch-status" }, b.status)),
    h("div", { class: "bar", role: "progressbar", "data-testid": "batch-progress",
               "aria-valuemin": 0, "aria-valuemax": b.total, "aria-valuenow": b.finished },
      part("done", b.done), part("failed", b.failed), part("skipped", b.skipped),
      part("cancelled", b.cancelled), part("in_flight", b.in_flight)),
    h("div", { class: "counts", "data-testid": "batch-counts" },
      `${b.finished} of ${b.total} finished · ${b.done} re-confirmed · ${b.failed} terminated · ` +
      `${b.skipped} skipped · ${b.in_flight} in flight · ${b.pending} queued · ` +
      `rate ${rate(b.rate)} · ETA ${duration(b.eta_seconds)}` +
      (b.superseded_by ? ` · superseded by ${b.superseded_by}` : "")));
}

function renderBatches(batches) {
  $("batches").replaceChildren(...(batches.length ? batches.map(renderBatch) :
    [h("div", { class: "empty" }, "No rating change yet.")]));
}

function renderContracts(customer, contracts) {
  $("contracts-panel").hidden = false;
  $("contracts-title").textContent = `Contracts of ${customer ? customer.name : state.selectedCustomer}`;
  const rows = contracts.map((k) => h("tr", {
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

// -- polling ---------------------------------------------------------------------------------

async function refresh() {
  if (state.polling) return;
  state.polling = true;
  try {
    const system = await api("GET", "/api/system");
    const needed = Object.entries(system.auth).filter(([, how]) => how === "token");
    if (needed.length && !token() && $("token-form").hidden) {
      askForToken(`This server needs its token for ${needed.map(([what]) => what).join(" and ")}: ` +
        "paste it here (ask whoever runs the server; it is kept for this tab only).");
    }
    if (system.auth.reads === "token" && !token()) return;
    const [customers, batches] = await Promise.all([
      api("GET", "/api/customers?limit=500"), api("GET", "/api/batches"),
    ]);
    $("clock").textContent = `${system.clock} clock · ${when(system.now)}`;
    $("advance").hidden = system.clock !== "virtual";
    fillSelect($("rating-value"), system.ratings);
    fillSelect($("customer-rating"), system.ratings);
    state.customers = customers.customers;
    renderCustomers();
    renderBatches(batches.batches);
    await refreshSelection();
  } catch (error) {
    say(`Cannot reach the server: ${error.message}`, "error");
  } finally {
    state.polling = false;
  }
}

async function refreshSelection() {
  if (state.selectedCustomer) {
    const id = encodeURIComponent(state.selectedCustomer);
    const page = await api("GET", `/api/customers/${id}/contracts?limit=500`);
    renderContracts(state.customers.find((c) => c.id === state.selectedCustomer), page.contracts);
  }
  if (state.selectedContract) {
    renderTimeline(await api("GET", `/api/contracts/${encodeURIComponent(state.selectedContract)}`));
  }
}

function selectCustomer(id) {
  state.selectedCustomer = id;
  state.selectedContract = null;
  $("timeline-panel").hidden = true;
  $("rating-customer").value = id;
  $("contract-customer").value = id;
  renderCustomers();
  refreshSelection().catch((error) => say(error.message, "error"));
}

function selectContract(id) {
  state.selectedContract = id;
  refreshSelection().catch((error) => say(error.message, "error"));
}

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
  const count = Math.max(1, Math.min(100, Number($("contract-count").value) || 1));
  for (let i = 0; i < count; i++) await api("POST", "/api/contracts", { customer_id, title });
  return `Opened ${count} contract${count === 1 ? "" : "s"}.`;
});

runButton($("run"), undefined, "Ran until idle");
runButton($("advance"), { advance_days: 1 }, "Advanced one day");
refresh();
setInterval(refresh, 1000);
