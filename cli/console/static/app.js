// The Foundation console's page: hash routes over the console server's /api (the user's
// kubeconfig behind it), live by the API server's watches relayed as server-sent events.
"use strict";

const TOKEN = document.querySelector('meta[name="console-token"]').content;
const NAMESPACE = document.querySelector('meta[name="console-namespace"]').content;
const main = document.getElementById("main");
let stream = null; // the open EventSource of the current view
let view = 0; // bumped on every route: a late answer for an old view is dropped

// -- small helpers ------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const svg = (tag, attrs, ...children) => {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};
const phase = (p) => el("span", { class: `phase ${p || ""}` }, p || "—");
const json = (v) => el("pre", {}, JSON.stringify(v, null, 2));
const took = (from, to) => (from && to ? `${((Date.parse(to) - Date.parse(from)) / 1000).toFixed(1)} s` : "");
const when = (s) => (s ? String(s).replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "");

class Refused extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const answer = await fetch(`/api/${path}`, options);
  let body = {};
  try { body = await answer.json(); } catch (e) { body = { message: `HTTP ${answer.status}` }; }
  if (!answer.ok) throw new Refused(answer.status, body.message || `HTTP ${answer.status}`);
  return body;
}
const post = (path, body) => api(path, {
  method: "POST",
  headers: { "Content-Type": "application/json", "X-Console-Token": TOKEN },
  body: JSON.stringify(body),
});

// A refusal: a 403 gets a page of its own naming the missing permission, in the API
// server's words; anything else a line where it happened.
function refusal(error, where) {
  if (error instanceof Refused && error.status === 401) { signIn(error.message); return; }
  if (error instanceof Refused && error.status === 403) {
    const page = el("div", { class: "forbidden", id: "forbidden" },
      el("h1", {}, "Forbidden"),
      el("p", {}, "Your Kubernetes identity may not do this here. The API server says:"),
      el("pre", {}, error.message),
      el("p", { class: "muted" }, "Ask for the permission it names (a RoleBinding in namespace ",
        el("code", {}, NAMESPACE), "), or use a kubeconfig that has it."));
    (where || main).replaceChildren(page);
    return;
  }
  (where || main).replaceChildren(el("p", { class: "error" }, String(error.message || error)));
}

function follow(path, onChange, onReset) {
  // One watch for the view; reopened from the last resourceVersion when the server ends it.
  if (stream) stream.close();
  const live = document.getElementById("live");
  let version = "";
  const mine = view;
  const open = () => {
    if (mine !== view) return;
    const url = `/api/watch/${path}${path.includes("?") ? "&" : "?"}resourceVersion=${encodeURIComponent(version)}`;
    const source = new EventSource(url);
    stream = source;
    source.addEventListener("open", () => live.classList.add("on"));
    source.addEventListener("change", (e) => {
      const event = JSON.parse(e.data);
      const rv = event.object.resourceVersion || (event.object.metadata || {}).resourceVersion;
      if (rv) version = rv;
      onChange(event);
    });
    source.addEventListener("end", () => { source.close(); setTimeout(open, 200); });
    source.addEventListener("error", (e) => {
      source.close();
      live.classList.remove("on");
      if (e.data) {
        const problem = JSON.parse(e.data);
        if (problem.status === 410 && onReset) { onReset(); return; } // too old: list again
        if (problem.status === 403) return;
      }
      setTimeout(open, 2000);
    });
  };
  return (startAt) => { version = startAt || ""; open(); };
}

// -- lists --------------------------------------------------------------------------------
const COLUMNS = {
  agents: [["NAME", (r) => el("a", { href: `#/agents/${r.name}` }, r.name)], ["PHASE", (r) => phase(r.phase)],
    ["READY", (r) => r.ready], ["RESTARTS", (r) => r.restarts], ["AGENT", (r) => el("code", {}, r.agent)],
    ["CREATED", (r) => when(r.created)]],
  workflows: [["NAME", (r) => el("a", { href: `#/workflows/${r.name}` }, r.name)], ["PHASE", (r) => phase(r.phase)],
    ["PROGRESS", (r) => r.progress], ["STEPS", (r) => r.steps], ["STARTED", (r) => when(r.started)],
    ["FINISHED", (r) => when(r.finished)]],
};

async function list(kind, tokens) {
  const mine = view;
  const limit = 100;
  const page = tokens[tokens.length - 1] || "";
  let body;
  try {
    body = await api(`${kind}?limit=${limit}&continue=${encodeURIComponent(page)}`);
  } catch (error) { refusal(error); return; }
  if (mine !== view) return;
  const rows = new Map();
  const tbody = el("tbody", {});
  const row = (r) => el("tr", { "data-name": r.name }, COLUMNS[kind].map(([, cell]) => el("td", {}, cell(r))));
  for (const item of body.items) { const tr = row(item); rows.set(item.name, tr); tbody.append(tr); }
  const more = body.remaining ? ` (${body.remaining} more)` : "";
  main.replaceChildren(
    el("h1", {}, kind === "agents" ? "Agents" : "Workflows"),
    el("table", { id: `${kind}-table` }, el("thead", {}, el("tr", {}, COLUMNS[kind].map(([h]) => el("th", {}, h)))), tbody),
    el("div", { class: "pager" },
      el("button", { id: "previous", disabled: tokens.length <= 1, onclick: () => list(kind, tokens.slice(0, -1)) }, "Previous"),
      el("span", { class: "muted", id: "shown" }, `${body.items.length} shown${more}`),
      el("button", { id: "next", disabled: !body.continue, onclick: () => list(kind, [...tokens, body.continue]) }, "Next")),
    body.items.length ? "" : el("p", { class: "muted" }, `No ${kind} in ${NAMESPACE}.`));
  follow(kind, (event) => {
    const r = event.object;
    const known = rows.get(r.name);
    if (event.type === "DELETED") { if (known) known.remove(); rows.delete(r.name); return; }
    const fresh = row(r);
    if (known) known.replaceWith(fresh);
    else if (tokens.length <= 1) tbody.append(fresh); else return;
    rows.set(r.name, fresh);
  }, () => list(kind, tokens))(body.resourceVersion);
}

// -- an Agent -----------------------------------------------------------------------------
async function agent(name) {
  const mine = view;
  let body;
  try { body = await api(`agents/${name}`); } catch (error) { refusal(error); return; }
  if (mine !== view) return;
  const status = el("div", { id: "agent-status" });
  const tasks = el("div", { id: "tasks" });
  const form = el("div", { id: "send" });
  const chat = el("div", { id: "chat-link" });
  main.replaceChildren(el("h1", {}, "Agent ", el("code", {}, name)), status,
    el("div", { class: "cols" }, el("div", {}, el("h2", {}, "Send a task"), form, chat), el("div", {}, el("h2", {}, "Events"), el("div", { id: "events" }))),
    el("h2", {}, "Tasks"), tasks);
  const render = (a) => {
    const s = a.status || {};
    status.replaceChildren(el("div", { class: "card" },
      el("div", { class: "row" }, phase(s.phase), el("span", {}, `ready ${s.ready || "0/0"}`),
        el("span", {}, `restarts ${s.restarts || 0}`),
        el("span", {}, `state version ${(s.state || {}).version ?? "—"}`), el("code", {}, a.spec.agent)),
      el("h2", {}, "Members"),
      el("table", { id: "members" }, el("thead", {}, el("tr", {}, ["MEMBER", "READY", "RESTARTS", "LAST EXIT"].map((h) => el("th", {}, h)))),
        el("tbody", {}, (s.members || []).map((m) => el("tr", {}, el("td", {}, m.name), el("td", {}, m.ready ? "yes" : "no"),
          el("td", {}, m.restarts || 0), el("td", {}, m.lastExit ? `${m.lastExit.reason} (${m.lastExit.exitCode})` : ""))))),
      el("h2", {}, "Conditions"),
      el("table", {}, el("tbody", {}, (s.conditions || []).map((c) => el("tr", {}, el("td", {}, c.type), el("td", {}, c.status),
        el("td", {}, c.reason), el("td", {}, c.message)))))));
  };
  render(body.agent);
  document.getElementById("events").replaceChildren(body.events.length
    ? el("table", {}, el("tbody", {}, body.events.map((e) => el("tr", {}, el("td", {}, e.type), el("td", {}, e.reason), el("td", {}, e.message), el("td", { class: "muted" }, when(e.at))))))
    : el("p", { class: "muted" }, "No recent events."));
  follow(`agents?name=${encodeURIComponent(name)}`, (event) => { if (event.type !== "DELETED") render(event.object); })(body.agent.metadata.resourceVersion);
  taskTable(name, tasks, []);
  sendForm(name, form, chat, () => taskTable(name, tasks, []));
}

async function taskTable(name, where, tokens, status) {
  const page = tokens[tokens.length - 1] || "";
  const query = new URLSearchParams({ pageSize: "25" });
  if (page) query.set("pageToken", page);
  if (status) query.set("status", status);
  let body;
  try { body = await api(`agents/${name}/tasks?${query}`); } catch (error) { refusal(error, where); return; }
  const filter = el("select", { id: "task-status", onchange: (e) => taskTable(name, where, [], e.target.value) },
    ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => el("option", { value: s, selected: s === (status || "") }, s || "any status")));
  const detail = el("div", { id: "task-detail" });
  where.replaceChildren(
    el("div", { class: "row" }, filter, el("span", { class: "muted" }, `${body.totalSize} tasks`),
      body.unavailable && body.unavailable.length ? el("span", { class: "error" }, `not ready: ${body.unavailable.join(", ")}`) : ""),
    el("table", { id: "task-table" },
      el("thead", {}, el("tr", {}, ["ID", "ACTION", "STATUS", "MEMBER", "ACCEPTED", "DURATION", "SENDER", "TRACE"].map((h) => el("th", {}, h)))),
      el("tbody", {}, body.tasks.map((t) => el("tr", { "data-id": t.id, onclick: () => detail.replaceChildren(el("h2", {}, `Task ${t.id}`), json(t)) },
        el("td", { class: "mono" }, t.id), el("td", {}, t.action), el("td", {}, phase(t.status)), el("td", {}, t.member || ""),
        el("td", {}, when(t.acceptedAt)), el("td", {}, t.durationMs === undefined ? "" : `${t.durationMs < 10 ? t.durationMs.toFixed(1) : Math.round(t.durationMs)} ms`),
        el("td", {}, t.sender || ""), el("td", { class: "mono" }, (t.traceId || "").slice(0, 16)))))),
    el("div", { class: "pager" },
      el("button", { disabled: tokens.length === 0, onclick: () => taskTable(name, where, tokens.slice(0, -1), status) }, "Newer"),
      el("button", { id: "tasks-older", disabled: !body.nextPageToken, onclick: () => taskTable(name, where, [...tokens, body.nextPageToken], status) }, "Older")),
    detail);
}

// A form for an action's input, from its JSON schema: a field for each simple property, JSON
// for the rest (and for a schema without properties).
function fields(schema) {
  const props = (schema && schema.properties) || null;
  if (!props) return [{ name: "", kind: "json", schema: schema || {} }];
  const resolve = (s) => (s && s.anyOf ? s.anyOf.find((x) => x.type !== "null") || s : s || {});
  return Object.entries(props).map(([name, raw]) => {
    const s = resolve(raw);
    const kind = s.enum ? "enum" : ({ string: "string", integer: "integer", number: "number", boolean: "boolean" })[s.type] || "json";
    return { name, kind, schema: s, required: (schema.required || []).includes(name) };
  });
}

async function sendForm(name, where, chatLink, sent) {
  let actions;
  try { actions = (await api(`agents/${name}/actions`)).actions; } catch (error) { refusal(error, where); return; }
  if (actions.some((a) => a.name === "chat")) {
    chatLink.replaceChildren(el("p", {}, el("a", { href: `#/agents/${name}/chat/console`, id: "open-chat" }, "Chat with this agent →")));
  }
  const select = el("select", { id: "action" }, actions.map((a) => el("option", { value: a.name }, a.name)));
  const inputs = el("div", { id: "inputs" });
  const result = el("div", { id: "send-result" });
  let current = [];
  const draw = () => {
    const action = actions.find((a) => a.name === select.value);
    current = fields(action.inputSchema);
    inputs.replaceChildren(el("p", { class: "muted" }, action.description || ""), ...current.map((f) => {
      const id = `field-${f.name || "input"}`;
      const label = el("label", { for: id }, f.name || "input (JSON)", f.required ? " *" : "");
      if (f.kind === "boolean") return el("div", {}, label, el("input", { type: "checkbox", id }));
      if (f.kind === "enum") return el("div", {}, label, el("select", { id }, f.schema.enum.map((v) => el("option", { value: v }, v))));
      if (f.kind === "json") return el("div", {}, label, el("textarea", { id }, f.name ? "" : "{}"));
      return el("div", {}, label, el("input", { type: f.kind === "string" ? "text" : "number", id, step: f.kind === "number" ? "any" : "1" }));
    }));
  };
  select.addEventListener("change", draw);
  const submit = async (e) => {
    e.preventDefault();
    let input = {};
    try {
      for (const f of current) {
        const node = document.getElementById(`field-${f.name || "input"}`);
        let value;
        if (f.kind === "boolean") value = node.checked;
        else if (node.value === "") { if (f.required) throw new Error(`${f.name} is required`); continue; }
        else if (f.kind === "integer" || f.kind === "number") value = Number(node.value);
        else if (f.kind === "json") value = JSON.parse(node.value);
        else value = node.value;
        if (f.name) input[f.name] = value; else input = value;
      }
    } catch (error) { result.replaceChildren(el("p", { class: "error" }, `the input: ${error.message}`)); return; }
    result.replaceChildren(el("p", { class: "muted" }, "sending…"));
    try {
      const record = await post(`agents/${name}/tasks`, { action: select.value, input });
      result.replaceChildren(el("p", {}, "Task ", el("code", {}, record.id), " ", phase(record.status)), json(record.result ?? record.error ?? null));
      sent();
    } catch (error) { refusal(error, result); }
  };
  where.replaceChildren(el("form", { id: "task-form", onsubmit: submit }, el("label", { for: "action" }, "action"), select, inputs,
    el("p", {}, el("button", { class: "primary", type: "submit", id: "send-task" }, "Send"))), result);
  draw();
}

// -- a chat -------------------------------------------------------------------------------
async function chat(name, session) {
  const mine = view;
  const log = el("div", { id: "conversation" });
  const box = el("textarea", { id: "chat-message", placeholder: "Say something…" });
  const status = el("p", { class: "muted", id: "chat-status" });
  main.replaceChildren(el("h1", {}, "Chat with ", el("a", { href: `#/agents/${name}` }, name), " ", el("span", { class: "muted" }, `session ${session}`)),
    el("div", { class: "chat" }, log, el("form", { id: "chat-form", onsubmit: (e) => { e.preventDefault(); say(); } }, box,
      el("p", {}, el("button", { class: "primary", type: "submit", id: "chat-send" }, "Send"))), status));
  const draw = (messages) => log.replaceChildren(...messages.filter((m) => m.role !== "system").map((m) =>
    el("div", { class: `bubble ${m.role}` }, m.content || (m.tool_calls ? `calls ${m.tool_calls.map((c) => c.function.name).join(", ")}` : ""))));
  const load = async () => {
    const record = await post(`agents/${name}/tasks`, { action: "history", input: { session } });
    if (mine === view && record.result) draw(record.result.messages || []);
  };
  const say = async () => {
    const message = box.value.trim();
    if (!message) return;
    box.value = "";
    status.textContent = "waiting for the agent…";
    try {
      const record = await post(`agents/${name}/tasks`, { action: "chat", input: { session, message } });
      status.textContent = record.status === "succeeded"
        ? `${record.result.usage.totalTokens} tokens; task ${record.id}` : `the turn ${record.status}: ${record.error || ""}`;
      await load();
    } catch (error) { refusal(error, status); }
  };
  try { await load(); } catch (error) { refusal(error); }
}

// -- a Workflow ---------------------------------------------------------------------------
function layers(steps) {
  // Each step's column: the longest chain of dependencies before it.
  const byName = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;
    seen.add(name);
    const deps = ((byName.get(name) || {}).dependsOn || []).filter((d) => byName.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => visit(x, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  steps.forEach((s) => visit(s.name, new Set()));
  return depth;
}

function graph(workflow, selected, onSelect) {
  const spec = workflow.spec || {};
  const kept = (workflow.status || {}).template;
  const steps = (spec.steps && spec.steps.length ? spec.steps : (kept && kept.spec.steps) || []);
  const onExit = spec.onExit || (kept && kept.spec.onExit) || [];
  const status = new Map(((workflow.status || {}).steps || []).map((s) => [s.name, s]));
  const depth = layers(steps);
  const last = Math.max(0, ...depth.values());
  onExit.forEach((s, i) => depth.set(s.name, last + 1));
  const columns = new Map();
  [...steps, ...onExit].forEach((s) => { const d = depth.get(s.name); columns.set(d, [...(columns.get(d) || []), s]); });
  const W = 170, H = 46, GX = 60, GY = 16;
  const where = new Map();
  for (const [d, items] of columns) items.forEach((s, i) => where.set(s.name, { x: 10 + d * (W + GX), y: 10 + i * (H + GY) }));
  const width = 20 + (Math.max(0, ...columns.keys()) + 1) * (W + GX);
  const height = 20 + Math.max(1, ...[...columns.values()].map((c) => c.length)) * (H + GY);
  const edges = [...steps, ...onExit].flatMap((s) => (s.dependsOn || []).filter((d) => where.has(d)).map((d) => {
    const a = where.get(d), b = where.get(s.name);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    return svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` });
  }));
  const nodes = [...steps, ...onExit].map((s) => {
    const st = status.get(s.name) || { phase: "Pending" };
    const waiting = st.phase === "Running" && st.reason === "WaitingForApproval";
    const shown = waiting ? "Waiting" : st.phase;
    const sub = s.map ? `map ${st.progress || "…"}` : waiting ? "waiting for approval" : s.approval ? "approval" : `${s.agent || s.capability || ""}.${s.action || ""}`;
    const p = where.get(s.name);
    return svg("g", { class: `node ${shown}${s.name === selected ? " selected" : ""}`, "data-step": s.name, "data-phase": shown,
      transform: `translate(${p.x},${p.y})`, onclick: () => onSelect(s.name) },
      svg("rect", { width: W, height: H }),
      svg("text", { x: 8, y: 18 }, s.name.length > 22 ? `${s.name.slice(0, 21)}…` : s.name),
      svg("text", { x: 8, y: 35, class: "sub" }, `${shown}${st.attempts > 1 ? ` ×${st.attempts}` : ""} · ${sub.slice(0, 24)}`));
  });
  return svg("svg", { class: "dag", id: "dag", width, height, viewBox: `0 0 ${width} ${height}` }, ...edges, ...nodes);
}

async function workflowView(name) {
  const mine = view;
  let workflow;
  try { workflow = await api(`workflows/${name}`); } catch (error) { refusal(error); return; }
  if (mine !== view) return;
  let selected = "";
  const header = el("div", { id: "workflow-status" });
  const canvas = el("div", { id: "graph" });
  const detail = el("div", { id: "step-detail" });
  const output = el("div", { id: "output" });
  main.replaceChildren(el("h1", {}, "Workflow ", el("code", {}, name)), header, canvas, detail, output);
  const draw = () => {
    const s = workflow.status || {};
    header.replaceChildren(el("div", { class: "row" }, phase(s.phase), el("span", {}, `progress ${s.progress || "—"}`),
      s.itemProgress ? el("span", {}, `items ${s.itemProgress}`) : "", el("span", { class: "muted" }, `started ${when(s.startedAt)}`),
      s.finishedAt ? el("span", { class: "muted" }, `finished ${when(s.finishedAt)}`) : ""));
    const started = performance.now();
    canvas.replaceChildren(graph(workflow, selected, (step) => { selected = step; draw(); }));
    canvas.dataset.drawnMs = String(performance.now() - started);
    const st = (s.steps || []).find((x) => x.name === selected);
    detail.replaceChildren(selected ? stepDetail(name, selected, st, s) : el("p", { class: "muted" }, "Select a step to see its attempts, result and error."));
    output.replaceChildren(s.output !== undefined ? el("div", {}, el("h2", {}, "Output"), json(s.output)) : "");
  };
  draw();
  follow(`workflows?name=${encodeURIComponent(name)}`, (event) => {
    if (event.type === "DELETED") return;
    workflow = event.object;
    draw();
  })(workflow.metadata.resourceVersion);
}

function stepDetail(workflow, name, st, status) {
  if (!st) return el("div", { class: "card" }, el("h2", {}, name), el("p", { class: "muted" }, "Pending"));
  const decided = (status.approvals || []).find((v) => v.step === name);
  const waiting = st.phase === "Running" && st.reason === "WaitingForApproval";
  const note = el("input", { type: "text", id: "decision-message", placeholder: "a message (recorded)" });
  const said = el("div", { id: "decision-result" });
  const decide = (decision) => async () => {
    try {
      const verdict = await post(`workflows/${workflow}/approval`, { step: name, decision, message: note.value });
      said.replaceChildren(el("p", {}, `${verdict.decision} by ${verdict.by}`));
    } catch (error) { refusal(error, said); }
  };
  return el("div", { class: "card", id: `step-${name}` },
    el("h2", {}, name, " ", phase(st.phase)),
    el("table", {}, el("tbody", {},
      [["attempts", st.attempts], ["agent", st.agent], ["member", st.member], ["task", st.taskId], ["started", when(st.startedAt)],
        ["finished", when(st.finishedAt)], ["duration", took(st.startedAt, st.finishedAt)], ["progress", st.progress],
        ["reason", st.reason], ["error", st.error]]
        .filter(([, v]) => v !== undefined && v !== "" && v !== null)
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, String(v)))))),
    st.prompt ? el("p", {}, el("strong", {}, "Asks: "), st.prompt) : "",
    waiting ? el("div", { class: "row", id: "approval" }, note,
      el("button", { class: "primary", id: "approve", onclick: decide("approve") }, "Approve"),
      el("button", { class: "danger", id: "reject", onclick: decide("reject") }, "Reject")) : "",
    decided ? el("p", {}, `${decided.decision} by ${decided.by} at ${when(decided.at)}${decided.message ? `: ${decided.message}` : ""}`) : "",
    said,
    st.result !== undefined && st.result !== null ? el("div", {}, el("h2", {}, "Result"), json(st.result)) : "");
}

// -- signing in (the console in a cluster: every call goes with your own token) ------------
function signIn(why) {
  const token = el("textarea", { id: "sign-in-token", placeholder: "a bearer token" });
  const said = el("p", { class: "error", id: "sign-in-result" }, why || "");
  const submit = async (e) => {
    e.preventDefault();
    try {
      await post("session", { token: token.value.trim() });
      route();
    } catch (error) { said.textContent = error.message; }
  };
  main.replaceChildren(el("div", { class: "card", id: "sign-in" },
    el("h1", {}, "Sign in"),
    el("p", {}, "This console calls the cluster with your own identity. Paste a token the API server accepts: ",
      el("code", {}, "kubectl create token NAME"), ", or your OIDC ID token."),
    el("form", { onsubmit: submit }, token, el("p", {}, el("button", { class: "primary", type: "submit" }, "Sign in"))), said));
}

// -- routes -------------------------------------------------------------------------------
function route() {
  view += 1;
  if (stream) { stream.close(); stream = null; }
  document.getElementById("live").classList.remove("on");
  const parts = (location.hash.replace(/^#\/?/, "") || "agents").split("/").map(decodeURIComponent);
  document.getElementById("nav-agents").classList.toggle("current", parts[0] === "agents");
  document.getElementById("nav-workflows").classList.toggle("current", parts[0] === "workflows");
  main.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  if (parts[0] === "workflows" && parts[1]) return workflowView(parts[1]);
  if (parts[0] === "workflows") return list("workflows", []);
  if (parts[0] === "agents" && parts[1] && parts[2] === "chat") return chat(parts[1], parts[3] || "console");
  if (parts[0] === "agents" && parts[1]) return agent(parts[1]);
  return list("agents", []);
}

document.getElementById("namespace").textContent = NAMESPACE;
window.addEventListener("hashchange", route);
route();
