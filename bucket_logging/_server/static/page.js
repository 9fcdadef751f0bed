// The local tracking server's page: polls /_page/records for what arrived since its last
// look and shows it, newest first. Every value from the server is set as text
// (textContent, never innerHTML): what the app's users typed stays text.
"use strict";

const POLL_MS = 400; // between two polls when nothing more is waiting
const RETRY_MS = 2000; // after a failed poll
const MAX_ROWS = 300; // rows of the timeline in the page at once (the newest that match)
const MAX_REQUEST_ROWS = 100; // rows of the requests table
const MAX_VIEW_ROWS = 12; // rows of each of the users, companies and events views
const MAX_VALUE = 120; // characters of an attribute value shown in a row

const state = {
  epoch: "",
  requests: 0, // requests seen in this epoch
  calls: 0, // calls seen in this epoch
  refused: 0,
  dropped: 0, // calls the server dropped (the oldest, over its bound)
  entries: [], // {call, req} or {req} (a refused request), in arrival order
  recent: [], // the newest requests, for the table
  users: new Map(), // id -> {count, name}
  companies: new Map(),
  events: new Map(), // name -> {count}
  plan: null, // serve --plan: {source, planned, seen, never, violations}
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function clip(text, limit) {
  return text.length <= limit ? text : text.slice(0, limit - 1) + "…";
}

function shown(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function time(ms) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function bytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function idOf(value) {
  return value === undefined || value === null ? null : String(value);
}

// -- receiving ------------------------------------------------------------------------

function reset(epoch) {
  state.epoch = epoch;
  state.requests = state.calls = state.refused = state.dropped = 0;
  state.entries = [];
  state.recent = [];
  state.users.clear();
  state.companies.clear();
  state.events.clear();
}

function count(map, key, name) {
  if (key === null) return;
  const entry = map.get(key) || { count: 0, name: null };
  entry.count += 1;
  if (typeof name === "string" && name) entry.name = name;
  map.set(key, entry);
}

function receive(data) {
  if (data.epoch !== state.epoch) reset(data.epoch);
  if (data.from && data.from.requests > state.requests) {
    // the oldest were dropped by the server's bound: go on from where it begins
    state.requests = data.from.requests;
    state.calls = data.from.calls;
  }
  state.dropped = typeof data.dropped === "number" ? data.dropped : 0;
  let next = 0; // the next of data.calls: the calls of the accepted requests, in order
  if (data.plan) state.plan = data.plan;
  const violations = Array.isArray(data.violations) ? data.violations : [];
  for (const req of data.requests) {
    state.requests += 1;
    req.seq = state.requests;
    state.recent.push(req);
    if (req.status === 200) {
      for (let i = 0; i < req.items && next < data.calls.length; i += 1) {
        const found = violations[next];
        const call = data.calls[next++];
        state.calls += 1;
        state.entries.push({ call, req, violations: Array.isArray(found) ? found : [] });
        const attrs = call.attributes && typeof call.attributes === "object" ? call.attributes : {};
        count(state.users, idOf(call.userId), call.type === "user" ? attrs.name : null);
        count(state.companies, idOf(call.companyId), call.type === "company" ? attrs.name : null);
        if (call.type === "event") count(state.events, String(call.event), null);
      }
    } else {
      state.refused += 1;
      state.entries.push({ req });
    }
  }
  if (state.recent.length > 2 * MAX_REQUEST_ROWS) state.recent = state.recent.slice(-MAX_REQUEST_ROWS);
  return data.requests.length > 0;
}

function setStatus(kind, text) {
  const status = $("status");
  status.className = `conn ${kind}`;
  status.textContent = text;
}

let pollTimer = null;

async function poll() {
  pollTimer = null;
  let delay = POLL_MS;
  try {
    const query = new URLSearchParams({ epoch: state.epoch, requests: state.requests, calls: state.calls });
    const answer = await fetch(`/_page/records?${query}`, { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const data = await answer.json();
    const epochChanged = data.epoch !== state.epoch;
    if (receive(data) || epochChanged) scheduleRender();
    if (data.more) delay = 0;
    setStatus("live", "live");
  } catch (err) {
    setStatus("down", "server unreachable, retrying…");
    delay = RETRY_MS;
  }
  schedulePoll(delay);
}

function schedulePoll(delay) {
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, delay);
}

// -- filtering ------------------------------------------------------------------------

function filters() {
  return {
    kind: $("filter-kind").value,
    id: $("filter-id").value.trim(),
    event: $("filter-event").value.trim().toLowerCase(),
    text: $("filter-text").value.trim().toLowerCase(),
  };
}

function searchText(entry) {
  if (entry.text === undefined) {
    const r = entry.req;
    const source = entry.call
      ? JSON.stringify(entry.call)
      : [r.method, r.path, r.status, r.code, r.message, ...r.errors,
         ...(r.calls || []).flatMap((c) => [c.type, c.event, c.user])].join(" ");
    entry.text = source.toLowerCase();
  }
  return entry.text;
}

function matches(entry, f) {
  const call = entry.call;
  if (f.kind) {
    if (f.kind === "refused" ? call : !call || call.type !== f.kind) return false;
  }
  if (f.id && (!call || (idOf(call.userId) !== f.id && idOf(call.companyId) !== f.id))) return false;
  if (f.event && (!call || call.type !== "event" || String(call.event).toLowerCase() !== f.event)) {
    return false;
  }
  return !f.text || searchText(entry).includes(f.text);
}

// -- rendering ------------------------------------------------------------------------

let renderPending = false;

function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    render();
  });
}

function field(parent, name, value) {
  const span = el("span", "field");
  span.append(el("span", "name", `${name}=`), el("span", "value", clip(shown(value), MAX_VALUE)));
  parent.append(span);
}

const HEAD = {
  user: [["userId", "user"]],
  company: [["companyId", "company"], ["userId", "user"]],
  event: [["userId", "user"], ["companyId", "company"]],
  feedback: [["userId", "user"], ["companyId", "company"], ["featureId", "feature"], ["key", "key"], ["score", "score"]],
};
const NOT_EXTRA = new Set(["type", "timestamp", "attributes", "context", "event", "comment"]);

function callRow(entry) {
  const call = entry.call;
  const kind = typeof call.type === "string" ? call.type : "?";
  const row = el("li", `entry kind-${HEAD[kind] ? kind : "other"}`);
  row.dataset.kind = kind;
  const line = el("div", "line");
  line.append(el("span", "time", time(entry.req.at)), el("span", "badge", kind));
  const ids = el("span", "ids");
  const head = HEAD[kind] || [];
  for (const [wire, name] of head) if (wire in call) field(ids, name, call[wire]);
  line.append(ids);
  if (kind === "event") line.append(el("span", "event-name", clip(String(call.event), MAX_VALUE)));
  if (kind === "feedback" && typeof call.comment === "string") {
    line.append(el("span", "comment", `“${clip(call.comment, MAX_VALUE)}”`));
  }
  const extras = el("span", "attrs");
  const known = new Set(head.map(([wire]) => wire));
  for (const [k, v] of Object.entries(call)) if (!known.has(k) && !NOT_EXTRA.has(k)) field(extras, k, v);
  if (call.attributes && typeof call.attributes === "object") {
    for (const [k, v] of Object.entries(call.attributes)) field(extras, k, v);
  }
  if (call.context && call.context.active === false) extras.append(el("span", "inactive", "inactive"));
  line.append(extras, jsonButton(row, () => call));
  row.append(line);
  if (entry.violations && entry.violations.length) { // serve --plan: beside the call
    row.classList.add("off-plan");
    const list = el("ul", "violations");
    for (const text of entry.violations) list.append(el("li", "violation", clip(String(text), 300)));
    row.append(list);
  }
  return row;
}

function refusedRow(entry) {
  const r = entry.req;
  const row = el("li", "entry refused");
  row.dataset.kind = "refused";
  const line = el("div", "line");
  line.append(
    el("span", "time", time(r.at)),
    el("span", "badge", r.status === 0 ? "dropped" : `refused ${r.status}`),
    el("span", "path", `${r.method} ${r.path || "?"}`),
    el("span", "code", r.code || (r.status === 0 ? "connection reset, no response" : "")),
    el("span", "muted", `${r.items} item(s), ${bytes(r.bytes)}`),
    jsonButton(row, () => r),
  );
  row.append(line);
  const refused = r.calls || [];
  if (refused.length) {
    // which calls it refused, without opening the JSON: type, event, user
    const list = el("ul", "refused-calls");
    for (const c of refused) {
      const item = el("li", "refused-call");
      item.append(el("span", "badge", c.type));
      if (c.event) item.append(el("span", "event-name", c.event));
      if (c.user) field(item, "user", c.user);
      list.append(item);
    }
    if (r.items > refused.length) list.append(el("li", "muted", `… and ${r.items - refused.length} more`));
    row.append(list);
  }
  const reasons = r.errors.length ? r.errors : r.message ? [r.message] : [];
  if (reasons.length) {
    const list = el("ul", "reasons");
    for (const reason of reasons) list.append(el("li", "reason", reason));
    row.append(list);
  }
  return row;
}

function jsonButton(row, value) {
  const button = el("button", "json-toggle", "JSON");
  button.type = "button";
  button.title = "Show the whole JSON";
  button.setAttribute("aria-expanded", "false");
  button.addEventListener("click", () => {
    let pre = row.querySelector("pre");
    if (pre) {
      pre.remove();
      button.setAttribute("aria-expanded", "false");
    } else {
      pre = el("pre", "json", JSON.stringify(value(), null, 2));
      row.append(pre);
      button.setAttribute("aria-expanded", "true");
    }
  });
  return button;
}

function rowOf(entry) {
  if (!entry.row) entry.row = entry.call ? callRow(entry) : refusedRow(entry);
  return entry.row;
}

function renderTimeline() {
  const f = filters();
  const rows = [];
  let matched = 0;
  for (let i = state.entries.length - 1; i >= 0; i -= 1) {
    const entry = state.entries[i];
    if (!matches(entry, f)) continue;
    matched += 1;
    if (rows.length < MAX_ROWS) rows.push(rowOf(entry));
  }
  $("entries").replaceChildren(...rows);
  const filtered = f.kind || f.id || f.event || f.text;
  const total = state.entries.length;
  $("shown").textContent = !total
    ? ""
    : (filtered ? `· ${matched} of ${total} match` : `· ${total}`) +
      (matched > rows.length ? ` · the newest ${rows.length} shown` : "");
  const empty = $("empty");
  if (!total) {
    empty.replaceChildren(
      "Nothing yet. Point an app at this server, e.g.",
      el("code", null, `REFLAG_API_BASE_URL=${location.origin} REFLAG_SECRET_KEY=sec_dev`),
      "or",
      el("code", null, `BUCKET_TRACKING_URL=${location.origin} BUCKET_TRACKING_KEY=dev`),
    );
  } else {
    empty.textContent = matched ? "" : "Nothing matches the filters.";
  }
  empty.hidden = !empty.textContent;
}

function renderView(tableId, map, filterId, value) {
  const sorted = [...map.entries()].sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1));
  const active = $(filterId).value.trim();
  const rows = sorted.slice(0, MAX_VIEW_ROWS).map(([key, info]) => {
    const row = el("tr", "pick");
    if (value(key).toLowerCase() === active.toLowerCase() && active) row.classList.add("active");
    const name = el("td", "key");
    name.append(el("span", null, clip(key, 40)));
    if (info.name) name.append(el("span", "muted", ` ${clip(info.name, 40)}`));
    row.append(name, el("td", "num", info.count));
    row.title = `Show the calls of ${key}`;
    row.addEventListener("click", () => {
      const input = $(filterId);
      input.value = input.value.trim() === value(key) ? "" : value(key);
      scheduleRender();
    });
    return row;
  });
  if (sorted.length > MAX_VIEW_ROWS) {
    const more = el("tr", "more");
    more.append(el("td", "muted", `and ${sorted.length - MAX_VIEW_ROWS} more`), el("td"));
    rows.push(more);
  }
  if (!rows.length) {
    const none = el("tr", "more");
    none.append(el("td", "muted", "none yet"));
    rows.push(none);
  }
  $(tableId).tBodies[0].replaceChildren(...rows);
}

function requestRow(r) {
  const row = el("tr", r.status === 200 ? "ok" : "bad");
  row.append(
    el("td", "time", time(r.at)),
    el("td", "path", `${r.method} ${r.path || "?"}`),
    el("td", "num", r.items),
    el("td", "num", bytes(r.bytes)),
    el("td", "num st", r.status === 0 ? "reset" : r.status),
  );
  if (r.code) row.title = `${r.code}: ${r.message}`;
  return row;
}

function renderRequests() {
  const rows = [];
  for (let i = state.recent.length - 1; i >= 0 && rows.length < MAX_REQUEST_ROWS; i -= 1) {
    const r = state.recent[i];
    if (!r.row) r.row = requestRow(r);
    rows.push(r.row);
  }
  $("requests").tBodies[0].replaceChildren(...rows);
}

function renderEventNames() {
  const options = [...state.events.keys()].sort().slice(0, 500).map((name) => {
    const option = el("option");
    option.value = name;
    return option;
  });
  $("event-names").replaceChildren(...options);
}

let renderedEvents = -1;

function renderPlan() {
  const plan = state.plan;
  const section = $("plan");
  if (!plan || !section) return;
  section.hidden = false;
  const seen = Array.isArray(plan.seen) ? plan.seen : [];
  const never = Array.isArray(plan.never) ? plan.never : [];
  $("plan-coverage").textContent =
    `${seen.length} of ${plan.planned} planned events seen; ${plan.violations} violation(s)`;
  const list = $("plan-never");
  list.replaceChildren(...never.slice(0, 50).map((name) => el("li", "never", name)));
  $("plan-never-title").hidden = never.length === 0;
}

function render() {
  $("count-calls").textContent = state.calls.toLocaleString("en");
  $("count-requests").textContent = state.requests.toLocaleString("en");
  $("count-refused").textContent = state.refused.toLocaleString("en");
  $("count-dropped").textContent = state.dropped.toLocaleString("en");
  $("dropped-counter").hidden = state.dropped === 0;
  $("count-refused-button").classList.toggle("alert", state.refused > 0);
  renderTimeline();
  renderView("view-users", state.users, "filter-id", (key) => key);
  renderView("view-companies", state.companies, "filter-id", (key) => key);
  renderView("view-events", state.events, "filter-event", (key) => key);
  renderRequests();
  renderPlan();
  if (renderedEvents !== state.events.size) {
    renderedEvents = state.events.size;
    renderEventNames();
  }
}

// -- wiring ---------------------------------------------------------------------------

function start() {
  $("origin").textContent = location.origin;
  for (const id of ["filter-kind", "filter-id", "filter-event", "filter-text"]) {
    $(id).addEventListener("input", scheduleRender);
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("filter-reset").addEventListener("click", () => {
    for (const id of ["filter-kind", "filter-id", "filter-event", "filter-text"]) $(id).value = "";
    scheduleRender();
  });
  $("count-refused-button").addEventListener("click", () => {
    const kind = $("filter-kind");
    kind.value = kind.value === "refused" ? "" : "refused";
    scheduleRender();
  });
  $("clear").addEventListener("click", async () => {
    try {
      const answer = await fetch("/_calls", { method: "DELETE" });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    } catch (err) {
      setStatus("down", "could not clear, retrying the connection…");
    }
    schedulePoll(0);
  });
  render();
  poll();
}

start();
