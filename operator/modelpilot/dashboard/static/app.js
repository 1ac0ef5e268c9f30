// modelpilot dashboard: renders what the server pushes over /events (server-sent events).
// No framework and no build step; every value from the cluster enters the page as text, never as HTML.
"use strict";

const config = JSON.parse(document.querySelector('meta[name="modelpilot-config"]').content);
const items = new Map(); // key -> {row, object, steps, history}
const ui = { ns: "", phase: "", undo: {}, result: {} };
const charts = new Map(); // key -> {el, plot}
let watchErrors = {}; // kind -> why the server's watch of it is down

// ---- small DOM helpers ----------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
const dash = "–";
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const show = (v) => (v === null || v === undefined || v === "" ? dash : v);
const badge = (text) => h("span", { class: "badge " + String(text || "").replace(/[^A-Za-z]/g, "") }, show(text));
const rev = (n) => (n ? "r" + n : dash);
const link = (key, text) => h("a", { href: "#/" + key }, text);

function fmtNumber(v, digits = 4) {
  if (v === null || v === undefined || v === "") return dash;
  if (typeof v === "string") return v; // "NaN", "+Inf"
  if (Array.isArray(v)) return "[" + v.map((x) => fmtNumber(x, digits)).join(", ") + "]";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e-3 && Math.abs(v) < 1e6 ? String(+v.toPrecision(digits)) : v.toExponential(2);
}
function fmtBytes(n) {
  if (n === null || n === undefined) return dash;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function fmtTime(ts) {
  if (!ts) return dash;
  const d = new Date(ts);
  if (isNaN(d)) return ts;
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
const speed = (r) => (r >= 1 ? `${r.toFixed(1)}× faster` : `${(1 / r).toFixed(1)}× slower`);
function weightBar(w) {
  const s = w.stable ?? 0, c = w.canary ?? 0;
  return h("div", {},
    h("div", { class: "wbar", title: `stable ${s}% · canary ${c}%` }, h("span", { class: "s" }), h("span", { class: "c" })),
    h("div", { class: "wtext" }, h("b", {}, `${s}`), "/", h("b", {}, `${c}`), w.mirror ? ` · mirror ${w.mirror}%` : ""));
}
// Widths are set through the CSSOM: the Content-Security-Policy forbids inline style attributes.
function sizeBars(root) {
  root.querySelectorAll(".wbar").forEach((bar) => {
    const [s, c] = bar.title.match(/\d+/g).map(Number);
    bar.children[0].style.width = s + "%";
    bar.children[1].style.width = c + "%";
  });
}

// ---- live updates -------------------------------------------------------------------------
function connect() {
  const live = document.getElementById("live");
  const es = new EventSource("/events");
  const showLive = () => {
    const broken = Object.values(watchErrors);
    live.dataset.state = broken.length ? "reconnecting" : "live";
    live.textContent = broken.length ? "cluster unreachable" : "live";
    live.title = broken.join("\n");
  };
  es.onopen = showLive;
  es.onerror = () => { live.dataset.state = "reconnecting"; live.textContent = "reconnecting"; live.title = "the dashboard server does not answer"; };
  es.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.watchErrors) { watchErrors = msg.watchErrors; showLive(); }
    if (msg.type === "watchErrors") return;
    if (msg.type === "snapshot") {
      items.clear();
      for (const it of msg.items) items.set(it.key, it);
    } else if (msg.type === "upsert") {
      items.set(msg.key, msg);
    } else if (msg.type === "delete") {
      items.delete(msg.key);
    }
    const r = route();
    if (msg.type === "snapshot" || r.view === "overview" || r.key === msg.key) render(); // a detail view shows one object
  };
}

// ---- routing ------------------------------------------------------------------------------
function route() {
  const parts = decodeURIComponent(location.hash.replace(/^#\/?/, "")).split("/").filter(Boolean);
  if (parts.length === 3) return { view: parts[0], key: parts.join("/") };
  return { view: "overview" };
}

function render() {
  const r = route();
  const main = document.getElementById("main");
  let view;
  if (r.view === "ModelDeployment") view = rolloutView(r.key);
  else if (r.view === "ModelExport") view = exportView(r.key);
  else view = overview();
  main.replaceChildren(view);
  sizeBars(main);
  drawCharts();
}

// ---- overview -----------------------------------------------------------------------------
function overview() {
  const all = [...items.values()].map((i) => i.row);
  const namespaces = [...new Set(all.map((r) => r.namespace))].sort();
  const phases = [...new Set(all.map((r) => r.phase))].sort();
  const pick = (r) => (!ui.ns || r.namespace === ui.ns) && (!ui.phase || r.phase === ui.phase);
  const mds = all.filter((r) => r.kind === "ModelDeployment" && pick(r));
  const mes = all.filter((r) => r.kind === "ModelExport" && pick(r));
  const select = (id, label, value, options, set) => h("label", {}, label + " ",
    h("select", { id, onchange: (e) => { set(e.target.value); render(); } },
      h("option", { value: "" }, "all"),
      options.map((o) => h("option", { value: o, selected: o === value }, o))));
  // Scoped to one namespace (the header names it): no namespace column or filter.
  const nsCol = !config.namespace;
  const nsCell = (r) => (nsCol ? h("td", {}, r.namespace) : null);
  const heads = (names) => h("thead", {}, h("tr", {}, (nsCol ? ["Namespace", ...names] : names).map((t) => h("th", {}, t))));
  return h("div", {},
    h("div", { class: "filters" },
      nsCol ? select("filter-namespace", "Namespace", ui.ns, namespaces, (v) => (ui.ns = v)) : null,
      select("filter-phase", "Phase", ui.phase, phases, (v) => (ui.phase = v)),
      h("span", { class: "muted" }, `${plural(mds.length, "deployment")} · ${plural(mes.length, "export")}`)),
    h("section", { class: "card", id: "deployments" },
      h("h2", {}, "Model deployments"),
      mds.length ? h("table", {},
        heads(["Name", "Phase", "Strategy", "Stable", "Canary", "Weights stable/canary %", "Ready", "Latest analysis", "Message"]),
        h("tbody", {}, mds.map((r) => h("tr", { "data-key": r.key },
          nsCell(r), h("td", {}, link(r.key, r.name)), h("td", {}, badge(r.phase)),
          h("td", {}, r.strategy), h("td", {}, rev(r.stable)), h("td", {}, rev(r.canary)),
          h("td", { "data-field": "weights" }, weightBar(r.weights)),
          h("td", { class: "num" }, `${r.ready}/${r.replicas}`),
          h("td", {}, show(r.verdict)), h("td", { class: "msg" }, r.message)))))
        : h("div", { class: "empty" }, "No ModelDeployments here.")),
    h("section", { class: "card", id: "exports" },
      h("h2", {}, "Model exports"),
      mes.length ? h("table", {},
        heads(["Name", "Phase", "Targets", "Artifacts", "Job", "Message"]),
        h("tbody", {}, mes.map((r) => h("tr", { "data-key": r.key },
          nsCell(r), h("td", {}, link(r.key, r.name)), h("td", {}, badge(r.phase)),
          h("td", {}, r.targets.join(", ")), h("td", { class: "num" }, r.artifacts),
          h("td", { class: "mono" }, show(r.job)), h("td", { class: "msg" }, r.message)))))
        : h("div", { class: "empty" }, "No ModelExports here.")));
}

// ---- a rollout ----------------------------------------------------------------------------
function notFound(key) {
  return h("div", { class: "card" }, h("a", { class: "back", href: "#/" }, "← Overview"),
    h("p", {}, `${key} is not here (deleted, or outside this dashboard's namespace).`));
}

function rolloutView(key) {
  const it = items.get(key);
  if (!it) return notFound(key);
  const o = it.object, st = o.status, spec = o.spec, w = st.weights || {};
  const strategy = (spec.rollout || {}).strategy || "direct";
  const router = (spec.traffic || {}).router || "replicas";
  const ro = st.rollout || {};
  const fact = (k, v, cls, field) => h("div", { class: "fact" }, h("div", { class: "k" }, k), h("div", { class: "v " + (cls || ""), "data-field": field }, v));
  return h("div", { id: "rollout", "data-key": key },
    h("div", { class: "card" },
      h("a", { class: "back", href: "#/" }, "← Overview"),
      h("div", { class: "head" }, h("h1", {}, `${o.metadata.namespace}/${o.metadata.name}`), h("span", { "data-field": "phase" }, badge(st.phase))),
      st.message ? h("div", { class: "muted", "data-field": "message" }, st.message) : null,
      ro.aborted ? h("div", { class: "banner" }, `Revision ${ro.aborted.revision} aborted: ${ro.aborted.message}`) : null,
      st.pauseReason ? h("div", { class: "banner info" }, `Paused: ${st.pauseReason}`) : null,
      h("div", { class: "facts" },
        fact("Strategy", h("span", {}, strategy, h("span", { class: "sub" }, ` via ${router} router`))),
        fact("Stable revision", rev(st.stableRevision), "stable", "stable-revision"),
        fact("Canary revision", rev(st.canaryRevision), "canary", "canary-revision"),
        fact("Stable weight", `${show(w.stable)}%`, "stable", "stable-weight"),
        fact("Canary weight", `${show(w.canary)}%`, "canary", "canary-weight"),
        w.mirror ? fact("Mirrored", `${w.mirror}%`, "", "mirror-weight") : null,
        fact("Ready replicas", `${show(st.readyReplicas)}/${show(st.replicas)}`)),
      st.endpoint ? h("div", { class: "endpoint" }, "Endpoint ", h("code", {}, st.endpoint)) : null,
      w.achieved === false ? h("div", { class: "legend-note" }, "Weights are approximate: what the replicas router can achieve.") : null),
    config.readOnly ? null : actions(key, o),
    h("div", { class: "grid2" },
      h("section", { class: "card", id: "steps" }, h("h2", {}, "Steps"), stepList(it, st)),
      h("section", { class: "card" }, h("h2", {}, "Traffic weights"), chartHolder(key, it),
        h("div", { class: "legend-note" }, "Since the canary revision was created; live from the watch while this dashboard runs."))),
    analysisSection(st),
    strategy === "shadow" ? shadowSection(st, w) : null,
    h("section", { class: "card", id: "revisions" }, h("h2", {}, "Revision history"),
      (st.revisions || []).length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Revision", "Outcome", "Created", "Model digest", "Hash"].map((t) => h("th", {}, t)))),
        h("tbody", {}, [...st.revisions].reverse().map((r) => h("tr", {},
          h("td", {}, rev(r.revision)), h("td", {}, badge(r.outcome)), h("td", {}, fmtTime(r.created)),
          h("td", { class: "mono" }, r.modelDigest ? r.modelDigest.slice(0, 19) + "…" : dash), h("td", { class: "mono" }, show(r.hash))))))
        : h("div", { class: "empty" }, "No revisions yet.")),
    conditions(st));
}

function actions(key, o) {
  const st = o.status;
  // Undo serves an earlier revision again: neither the stable nor the canary one. Newest first.
  const revisions = (st.revisions || []).map((r) => r.revision).filter((n) => n !== st.stableRevision && n !== st.canaryRevision).reverse();
  const selected = ui.undo[key] ?? (revisions.length ? String(revisions[0]) : "");
  const res = ui.result[key];
  const button = (action, label, cls) => h("button", { class: "action " + (cls || ""), "data-action": action, onclick: () => act(key, o, action) }, label);
  return h("section", { class: "card", id: "actions" }, h("h2", {}, "Actions"),
    h("div", { class: "actions" },
      button("promote", "Promote", "primary"), button("promoteFull", "Promote full"),
      button("pause", "Pause"), button("resume", "Resume"), button("abort", "Abort", "danger"),
      h("span", { class: "sep" }),
      h("select", { id: "undo-revision", onchange: (e) => { ui.undo[key] = e.target.value; } },
        revisions.length ? revisions.map((n) => h("option", { value: n, selected: String(n) === selected }, `revision ${n}`))
          : h("option", { value: "" }, "no earlier revision")),
      h("button", { class: "action", "data-action": "undo", disabled: !revisions.length, onclick: () => act(key, o, "undo") }, "Undo to revision"),
      res ? h("span", { class: "result " + (res.ok ? "" : "err"), id: "action-result" }, res.message) : null));
}

async function act(key, o, action) {
  const body = { namespace: o.metadata.namespace, name: o.metadata.name, action };
  if (action === "undo") body.toRevision = Number(document.getElementById("undo-revision").value);
  ui.result[key] = { ok: true, message: `${action}: sending…` };
  render();
  try {
    const r = await fetch("/api/control", {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrfToken }, body: JSON.stringify(body),
    });
    const j = await r.json();
    ui.result[key] = { ok: j.ok, message: j.message };
  } catch (e) {
    ui.result[key] = { ok: false, message: `${action} failed: ${e}` };
  }
  render();
}

function stepList(it, st) {
  const labels = it.steps || [];
  if (!labels.length) return h("div", { class: "empty" }, "This strategy has no steps: the new revision takes all traffic once ready.");
  const rolling = !!st.canaryRevision;
  const current = rolling ? Number(st.currentStep || 0) : -1;
  return h("ol", { class: "steps" }, labels.map((label, i) => {
    const state = !rolling ? "" : i < current ? "done" : i === current ? "current" : "";
    return h("li", { class: state, "data-step": i, "aria-current": state === "current" ? "step" : null, title: state === "current" ? "the current step" : null },
      h("span", { class: "i" }, state === "done" ? "✓" : i), label);
  }).concat(rolling ? [] : [h("li", { class: "muted" }, "No rollout under way: these run for the next revision.")]));
}

function chartHolder(key, it) {
  let c = charts.get(key);
  if (!c) {
    c = { el: h("div", { class: "chart", id: "weights-chart" }), plot: null };
    charts.set(key, c);
  }
  c.data = it.history || [];
  c.mirror = ((it.object.spec.rollout || {}).strategy === "shadow") || c.data.some((p) => p[3]);
  return c.el;
}

function chartData(points) {
  if (!points.length) return [[], [], [], []];
  const now = Date.now() / 1000;
  const pts = points.concat(now > points[points.length - 1][0] ? [[now, ...points[points.length - 1].slice(1)]] : []);
  return [0, 1, 2, 3].map((i) => pts.map((p) => p[i]));
}

const pad = (n) => String(n).padStart(2, "0");
const clock = (t) => {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}` + (d.getSeconds() ? `:${pad(d.getSeconds())}` : "");
};

function drawCharts() {
  for (const [key, c] of charts) {
    if (!c.el.isConnected) continue;
    const data = chartData(c.data);
    const width = Math.max(320, c.el.clientWidth || 600);
    if (!c.plot) {
      const stepped = uPlot.paths.stepped({ align: 1 });
      c.plot = new uPlot({
        width, height: 220, scales: { x: { time: true }, y: { range: [0, 100] } },
        legend: { live: false },
        // Whole seconds at least: a rollout of a few seconds would otherwise repeat a label.
        axes: [{ space: 70, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400], values: (u, vals) => vals.map(clock) },
          { values: (u, vals) => vals.map((v) => v + "%"), size: 50 }],
        series: [{},
          { label: "stable %", stroke: "#2f6fde", width: 2, paths: stepped, points: { show: false }, fill: "rgba(47,111,222,.08)" },
          { label: "canary %", stroke: "#e8800c", width: 2, paths: stepped, points: { show: false }, fill: "rgba(232,128,12,.12)" },
          { label: "mirror %", stroke: "#8a4fd8", width: 2, paths: stepped, points: { show: false }, dash: [6, 4], show: c.mirror }],
      }, data, c.el);
    } else {
      if (c.mirror && !c.plot.series[3].show) c.plot.setSeries(3, { show: true });
      c.plot.setData(data);
      if (Math.abs(c.plot.width - width) > 4) c.plot.setSize({ width, height: 220 });
    }
  }
}

function analysisSection(st) {
  const runs = Object.entries((st.analysis || {}).runs || {});
  return h("section", { class: "card", id: "analysis" }, h("h2", {}, "Analysis"),
    runs.length ? runs.map(([name, run]) => h("div", { class: "run", "data-run": name },
      h("div", { class: "head" }, h("b", {}, name), badge(run.phase), run.message ? h("span", { class: "muted" }, run.message) : null),
      (run.metrics || []).length ? h("div", { class: "stats" }, run.metrics.map((m) =>
        h("span", {}, h("b", {}, m.name), `: ${m.successful || 0} ok, ${m.failures || 0} failed, ${m.inconclusive || 0} inconclusive, ${m.errors || 0} errors   `))) : null,
      (run.latest || []).length ? h("table", {},
        h("thead", {}, h("tr", {}, ["At", "Metric", "Verdict", "Value", "Query", "Why"].map((t) => h("th", {}, t)))),
        h("tbody", {}, [...run.latest].reverse().map((m) => h("tr", { "data-seq": m.seq },
          h("td", {}, fmtTime(m.at)), h("td", {}, m.metric), h("td", {}, badge(m.verdict)),
          h("td", { class: "num" }, fmtNumber(m.value)),
          h("td", { class: "query" }, h("code", {}, m.query), m.baselineQuery ? h("div", {}, "baseline: ", h("code", {}, m.baselineQuery)) : null),
          h("td", {}, show(m.message), m.judge ? judgeStats(m.judge) : null)))))
        : h("div", { class: "empty" }, "No measurements yet."))) :
      h("div", { class: "empty" }, "No analysis has run for this rollout."));
}

function judgeStats(j) {
  const pair = (k, v) => h("span", {}, `${k} `, h("b", { title: String(v), "data-stat": k }, fmtNumber(v)), "  ");
  return h("div", { class: "stats judge" }, "Mann-Whitney: ",
    pair("U", j.u), pair("p", j.pValue), pair("α", j.alpha), pair("canary median", j.canaryMedian),
    pair("baseline median", j.baselineMedian), pair("ratio", j.medianRatio), pair("CLES", j.cles),
    pair("n", `${j.canarySamples}/${j.baselineSamples}`), `(${j.direction})`);
}

function shadowSection(st, w) {
  return h("section", { class: "card", id: "shadow" }, h("h2", {}, "Shadow comparison"),
    st.canaryRevision ? h("p", {}, `${show(w.mirror)}% of requests mirrored to revision ${st.canaryRevision}; its responses are discarded. `
      + "Comparisons are the analysis runs above.") : h("div", { class: "empty" }, "No shadow revision running."));
}

function conditions(st) {
  const cs = st.conditions || [];
  return h("section", { class: "card", id: "conditions" }, h("h2", {}, "Conditions"),
    cs.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Type", "Status", "Reason", "Message", "Since"].map((t) => h("th", {}, t)))),
      h("tbody", {}, cs.map((c) => h("tr", {}, h("td", {}, c.type), h("td", {}, c.status), h("td", {}, c.reason),
        h("td", { class: "msg" }, c.message), h("td", {}, fmtTime(c.lastTransitionTime))))))
      : h("div", { class: "empty" }, "No conditions yet."));
}

// ---- an export ----------------------------------------------------------------------------
function exportView(key) {
  const it = items.get(key);
  if (!it) return notFound(key);
  const o = it.object, st = o.status;
  const arts = st.artifacts || [];
  const verdict = (a) => (a.validated === undefined ? (st.phase === "Succeeded" ? badge("passed") : dash) : badge(a.validated ? "passed" : "failed"));
  return h("div", { id: "export", "data-key": key },
    h("div", { class: "card" }, h("a", { class: "back", href: "#/" }, "← Overview"),
      h("div", { class: "head" }, h("h1", {}, `${o.metadata.namespace}/${o.metadata.name}`), h("span", { "data-field": "phase" }, badge(st.phase))),
      st.message ? h("div", { class: "muted" }, st.message) : null,
      h("div", { class: "facts" },
        h("div", { class: "fact" }, h("div", { class: "k" }, "Source"), h("div", { class: "v mono" }, show((o.spec.source || {}).uri))),
        h("div", { class: "fact" }, h("div", { class: "k" }, "Job"), h("div", { class: "v mono" }, show(st.jobName))),
        h("div", { class: "fact" }, h("div", { class: "k" }, "Manifest"), h("div", { class: "v mono" }, show(st.manifestUri))))),
    h("section", { class: "card", id: "targets" }, h("h2", {}, "Targets"),
      arts.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Target", "Format", "Size", "sha256", "Max abs error", "Top-1 agreement", "Latency p50", "Source p50", "Validation"].map((t) => h("th", {}, t)))),
        // Each cell's title holds the exact value (the sha256 in full); the text is rounded.
        h("tbody", {}, arts.map((a) => h("tr", { "data-target": a.name },
          h("td", {}, a.name), h("td", { "data-col": "format" }, a.format),
          h("td", { class: "num", "data-col": "sizeBytes", title: show(a.sizeBytes) }, fmtBytes(a.sizeBytes)),
          h("td", { class: "mono", "data-col": "sha256", title: show(a.sha256) }, a.sha256 ? a.sha256.slice(0, 16) + "…" : dash),
          h("td", { class: "num", "data-col": "maxAbsError", title: show(a.maxAbsError) }, fmtNumber(a.maxAbsError, 3)),
          h("td", { class: "num", "data-col": "top1Agreement", title: show(a.top1Agreement) }, a.top1Agreement == null ? dash : (100 * a.top1Agreement).toFixed(1) + "%"),
          h("td", { class: "num", "data-col": "latencyMs", title: show(a.latencyMs) }, a.latencyMs == null ? dash : `${fmtNumber(a.latencyMs, 3)} ms`),
          h("td", { class: "num", "data-col": "sourceLatencyMs", title: show(a.sourceLatencyMs) }, a.sourceLatencyMs == null ? dash : `${fmtNumber(a.sourceLatencyMs, 3)} ms`
            + (a.latencyMs ? ` · artifact ${speed(a.sourceLatencyMs / a.latencyMs)}` : "")),
          h("td", { "data-col": "validated" }, verdict(a))))))
        : h("div", { class: "empty" }, `No artifacts yet (${(o.spec.targets || []).length} target(s) requested).`)),
    conditions(st));
}

// ---- start --------------------------------------------------------------------------------
document.getElementById("scope").textContent = (config.namespace ? `namespace ${config.namespace}` : "all namespaces") + (config.readOnly ? " · read-only" : "");
window.addEventListener("hashchange", render);
window.addEventListener("resize", () => drawCharts());
setInterval(() => drawCharts(), 5000); // extend the weight lines to now (local only: no request)
render();
connect();
