// Vigil event review: vanilla JS, no build step, no library. The filters live in the URL
// query (a view can be bookmarked; Back returns to the previous page or filter), the list is
// paged by a keyset cursor (`before` = the id of the last event shown), the chart is SVG
// drawn here from /api/events/counts.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const FILTERS = ["camera", "kind", "class", "zone", "line", "verdict", "since", "until"];
  const SVGNS = "http://www.w3.org/2000/svg";
  // series colours on the dark card (lines, not text); the defect rate is dashed red
  const PALETTE = ["#6ea8fe", "#ffa94d", "#51cf66", "#f783ac", "#ffd43b", "#66d9e8", "#b197fc", "#ced4da", "#ff8787", "#8ce99a"];
  const DEFAULT_SERIES = /^(line_crossed|zone_enter|part_passed|defect_found|part_unknown)\b/;
  let state = {};
  let nextBefore = null;
  let hidden = null;  // series keys the user switched off (null: defaults)

  function signedOut() { window.location.assign("/login"); }
  async function getJson(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (r.status === 401) { signedOut(); throw new Error("signed out"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
    return body;
  }

  // ------------------------------------------------------------ URL <-> state <-> form
  function fromUrl() {
    const q = new URLSearchParams(window.location.search);
    const s = {};
    for (const k of [...FILTERS, "before", "bucket", "by"]) if (q.get(k)) s[k] = q.get(k);
    if (q.get("tracks") === "1") s.tracks = "1";  // track start/end are left out unless asked for
    return s;
  }
  function query(s, keys) {  // for the API: tracks=0 unless the box is ticked
    const q = new URLSearchParams();
    for (const k of keys) if (s[k] !== undefined && s[k] !== "") q.set(k, s[k]);
    q.set("tracks", s.tracks === "1" ? "1" : "0");
    return q;
  }
  function toUrl(s, push) {
    const q = query(s, [...FILTERS, "bucket", "by", "before"]);
    if (q.get("tracks") === "0") q.delete("tracks");  // the page's default stays out of the URL
    const url = "/review" + (q.toString() ? "?" + q : "");
    if (push) window.history.pushState(null, "", url); else window.history.replaceState(null, "", url);
  }
  const pad = (n) => String(n).padStart(2, "0");
  function parseTime(v) {  // epoch seconds or ISO 8601 -> Date
    if (!v) return null;
    const d = /^\d+(\.\d+)?$/.test(v) ? new Date(parseFloat(v) * 1000) : new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  function localInput(d) {
    return d ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` : "";
  }
  function ensureOption(sel, value, parent) {
    if (!value || Array.from(sel.options).some((o) => o.value === value)) return;
    const o = document.createElement("option");
    o.value = value; o.textContent = value.replace(/^(zone|line):/, "");
    (parent || sel).appendChild(o);
  }
  function fillForm(s) {
    for (const k of ["camera", "kind", "class", "verdict"]) {
      const sel = $("f-" + k);
      ensureOption(sel, s[k]);
      sel.value = s[k] || "";
    }
    const place = s.zone ? "zone:" + s.zone : s.line ? "line:" + s.line : "";
    ensureOption($("f-place"), place, place.startsWith("zone:") ? $("f-zones") : $("f-lines"));
    $("f-place").value = place;
    $("f-since").value = localInput(parseTime(s.since));
    $("f-until").value = localInput(parseTime(s.until));
    $("f-tracks").checked = s.tracks === "1";
    $("c-bucket").value = s.bucket || "auto";
    $("c-by").value = s.by || "kind";
  }
  function readForm() {
    const s = {};
    for (const k of ["camera", "kind", "class", "verdict"]) if ($("f-" + k).value) s[k] = $("f-" + k).value;
    const place = $("f-place").value;
    if (place.startsWith("zone:")) s.zone = place.slice(5);
    if (place.startsWith("line:")) s.line = place.slice(5);
    for (const k of ["since", "until"]) {
      const v = $("f-" + k).value;
      if (v) s[k] = new Date(v).toISOString().replace(".000Z", "Z");
    }
    if ($("f-tracks").checked) s.tracks = "1";
    if ($("c-bucket").value !== "auto") s.bucket = $("c-bucket").value;
    if ($("c-by").value !== "kind") s.by = $("c-by").value;
    return s;
  }

  async function loadFacets() {
    try {
      const f = await getJson("/api/review/facets");
      const add = (sel, values, prefix, parent) => values.forEach((v) => ensureOption(sel, prefix + v, parent));
      add($("f-camera"), f.cameras || [], "");
      add($("f-class"), f.classes || [], "");
      add($("f-place"), f.zones || [], "zone:", $("f-zones"));
      add($("f-place"), f.lines || [], "line:", $("f-lines"));
      fillForm(state);
    } catch (e) { /* the filters still work with typed URLs */ }
  }

  // ------------------------------------------------------------ list
  function describe(ev) {
    const d = ev.data || {};
    const parts = [];
    if (d.line) parts.push(`line ${d.line}${d.direction ? " " + d.direction : ""}`);
    if (d.zone) parts.push(`zone ${d.zone}${ev.kind === "zone_leave" && d.dwell_s !== undefined ? ` (${d.dwell_s} s)` : ""}`);
    if (d.verdict) parts.push(d.verdict + (d.serial ? " " + d.serial : ""));
    if (d.text && !d.verdict) parts.push(`“${d.text}”`);
    if (ev.kind === "camera_state") parts.push(`${d.from || "?"} → ${d.to || "?"} ${d.message || ""}`);
    if (ev.track_id !== null && ev.track_id !== undefined) parts.push(`track #${ev.track_id}`);
    return parts.join(" · ");
  }
  function fmtTime(ts) { return new Date(ts * 1000).toLocaleString(); }

  let listSeq = 0, chartSeq = 0;  // a late answer to an older request is dropped
  async function loadList() {
    const q = query(state, [...FILTERS, "before"]);
    q.set("limit", "50");
    $("list-status").textContent = "loading…";
    const seq = ++listSeq;
    let d;
    try { d = await getJson("/api/review/events?" + q); } catch (e) {
      if (seq !== listSeq) return;
      $("list-status").textContent = "error: " + e.message;
      $("rows").innerHTML = "";
      return;
    }
    if (seq !== listSeq) return;
    nextBefore = d.next_before;
    $("older").disabled = !nextBefore;
    const rows = d.events.map((ev) => {
      const thumb = ev.snapshot_url
        ? `<img class="thumb" loading="lazy" width="96" height="60" src="${esc(ev.snapshot_url)}" alt="snapshot of event ${ev.id}">`
        : `<span class="mute">none</span>`;
      const clip = ev.clip_url ? ` <span class="tag">clip</span>` : "";
      return `<tr data-id="${ev.id}" class="k-${esc(ev.kind)}"><td>${thumb}</td><td class="t">${esc(fmtTime(ev.ts))}</td>` +
        `<td>${esc(ev.camera)}</td><td class="k">${esc(ev.kind)}</td><td>${esc(ev.label ?? "")}</td>` +
        `<td>${esc(describe(ev))}${clip}</td>` +
        `<td><button class="btn open" type="button" data-id="${ev.id}" aria-label="open event ${ev.id}">Open</button></td></tr>`;
    });
    $("rows").innerHTML = rows.join("");
    $("list-status").textContent = d.events.length
      ? `${d.events.length} event${d.events.length === 1 ? "" : "s"}${state.before ? " (older page)" : ""}${nextBefore ? ", more below" : ""}`
      : "no events match these filters";
    $("rows").dataset.loaded = String(Date.now());
  }

  // ------------------------------------------------------------ detail
  async function openDetail(id) {
    let ev;
    try { ev = (await getJson("/api/review/events/" + encodeURIComponent(id))).event; } catch (e) {
      $("list-status").textContent = "error: " + e.message;
      return;
    }
    $("detail-title").textContent = `Event ${ev.id}: ${ev.kind}`;
    const img = $("detail-snapshot");
    img.hidden = !ev.snapshot_url;
    $("detail-nosnap").hidden = !!ev.snapshot_url;
    if (ev.snapshot_url) img.src = ev.snapshot_url; else img.removeAttribute("src");
    const d = ev.data || {};
    const fields = [["time", fmtTime(ev.ts)], ["camera", ev.camera], ["kind", ev.kind], ["class", ev.label],
      ["track", ev.track_id], ["details", describe(ev)], ["box", ev.box ? ev.box.map((v) => Math.round(v)).join(", ") : null],
      ["frame", ev.frame_seq]];
    $("detail-fields").innerHTML = fields.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
    $("detail-json").textContent = JSON.stringify(d, null, 2);
    const video = $("detail-video");
    video.pause();
    video.removeAttribute("src");
    video.load();
    $("detail-clip").hidden = !ev.clip_url;
    $("detail-clip-msg").textContent = "";
    if (ev.clip_url) loadClip(ev.clip_url, 0);
    const dlg = $("detail");
    if (!dlg.open) dlg.showModal();
  }
  async function loadClip(url, tries) {
    const msg = $("detail-clip-msg");
    let r;
    try { r = await fetch(url, { method: "HEAD" }); } catch (e) { msg.textContent = "clip unreachable"; return; }
    if (r.status === 202 && tries < 30) {  // post-roll still being recorded
      const wait = Math.max(1, parseFloat(r.headers.get("Retry-After") || "1"));
      msg.textContent = `the clip is still being recorded: trying again in ${wait} s`;
      setTimeout(() => { if ($("detail").open) loadClip(url, tries + 1); }, wait * 1000);
      return;
    }
    if (!r.ok) { msg.textContent = `no clip (HTTP ${r.status}: it may have been removed to keep the disk bounded)`; return; }
    msg.textContent = "";
    const video = $("detail-video");
    video.src = url;
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  }
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", () => { const v = $("detail-video"); v.pause(); });
  $("rows").addEventListener("click", (e) => {
    const b = e.target.closest("button.open");
    if (b) openDetail(b.dataset.id);
  });

  // ------------------------------------------------------------ chart
  function svg(tag, attrs, parent, text) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }
  function niceMax(v) {
    if (v <= 5) return Math.max(1, Math.ceil(v));
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function tickLabel(t, bucketS, spanS) {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return spanS > 86400 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}` : hm;
  }
  let chartData = null;
  function drawChart() {
    const el = $("chart");
    while (el.firstChild) el.firstChild.remove();
    const c = chartData;
    if (!c) return;
    const W = 900, H = 240, L = 48, R = 52, T = 12, B = 30;
    const n = c.t.length;
    const shown = c.series.filter((s) => !hidden.has(s.key));
    const vmax = niceMax(Math.max(1, ...shown.flatMap((s) => s.values)));
    const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - v / vmax);
    const axes = svg("g", { class: "axes" }, el);
    for (const f of [0, 0.5, 1]) {
      const v = vmax * f;
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, axes);
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, axes, String(Math.round(v * 10) / 10));
    }
    const ticks = Math.min(n, 6);
    for (let k = 0; k < ticks; k++) {
      const i = ticks === 1 ? 0 : Math.round((k * (n - 1)) / (ticks - 1));
      svg("text", { x: x(i), y: H - 10, "text-anchor": "middle" }, axes, tickLabel(c.t[i], c.bucket_s, c.until - c.since));
    }
    let points = 0;
    c.series.forEach((s, idx) => {
      if (hidden.has(s.key)) return;
      const color = PALETTE[idx % PALETTE.length];
      const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      const g = svg("g", { class: "series", "data-key": s.key }, el);
      svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 }, g);
      if (n <= 60) s.values.forEach((v, i) => svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color }, g));
      svg("title", {}, g, `${s.key}: ${s.total}`);
      points += s.values.length;
    });
    if (c.defect_rate && !hidden.has("defect rate")) {
      const yr = (r) => T + (H - T - B) * (1 - r);
      svg("text", { x: W - R + 6, y: yr(1) + 4 }, axes, "100%");
      svg("text", { x: W - R + 6, y: yr(0) + 4 }, axes, "0%");
      const g = svg("g", { class: "series rate", "data-key": "defect rate" }, el);
      let seg = [];
      const flush = () => {
        if (seg.length) svg("polyline", { points: seg.join(" "), fill: "none", stroke: "#ff6b6b", "stroke-width": 2, "stroke-dasharray": "6 4" }, g);
        seg = [];
      };
      c.defect_rate.forEach((r, i) => { if (r === null) flush(); else seg.push(`${x(i).toFixed(1)},${yr(r).toFixed(1)}`); });
      flush();
      svg("title", {}, g, "defect rate (right axis)");
    }
    el.dataset.points = String(points);
    el.dataset.series = String(shown.length);
  }
  function drawLegend() {
    const c = chartData;
    const lg = $("legend");
    lg.innerHTML = "";
    if (!c) return;
    const entries = c.series.map((s, idx) => [s.key, `${s.key} (${s.total})`, PALETTE[idx % PALETTE.length]]);
    if (c.defect_rate) {
      const p = c.parts;
      const rate = p.passed + p.defective ? ` ${(100 * p.defective / (p.passed + p.defective)).toFixed(1)} %` : "";
      entries.push(["defect rate", `defect rate${rate}`, "#ff6b6b"]);
    }
    for (const [key, text, color] of entries) {
      const lab = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !hidden.has(key);
      box.addEventListener("change", () => { if (box.checked) hidden.delete(key); else hidden.add(key); drawChart(); });
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = color;
      lab.append(box, sw, document.createTextNode(text));
      lg.appendChild(lab);
    }
  }
  async function loadChart() {
    const q = query(state, [...FILTERS, "bucket", "by"]);
    const seq = ++chartSeq;
    let data;
    try {
      data = await getJson("/api/events/counts?" + q);
    } catch (e) {
      if (seq !== chartSeq) return;
      chartData = null;
      $("chart-summary").textContent = "chart: " + e.message;
      drawChart();
      drawLegend();
      return;
    }
    if (seq !== chartSeq) return;
    chartData = data;
    const c = chartData;
    if (hidden === null || hidden.by !== c.by) {  // defaults: what a person counts
      const anyDefault = c.series.some((s) => DEFAULT_SERIES.test(s.key));
      hidden = new Set(c.by === "kind" && anyDefault ? c.series.filter((s) => !DEFAULT_SERIES.test(s.key)).map((s) => s.key) : []);
      hidden.by = c.by;
    }
    const total = c.series.reduce((a, s) => a + s.total, 0);
    $("chart-summary").textContent = `${total} event${total === 1 ? "" : "s"} in ${c.t.length} ${c.bucket} bucket${c.t.length === 1 ? "" : "s"}` +
      ` from ${new Date(c.since * 1000).toLocaleString()}` + (c.clamped ? " (the newest shown)" : "");
    drawLegend();
    drawChart();
  }

  // ------------------------------------------------------------ wiring
  function exportLinks() {
    const q = query(state, FILTERS).toString();
    $("export-csv").href = "/api/review/export.csv" + (q ? "?" + q : "");
    $("export-json").href = "/api/review/export.json" + (q ? "?" + q : "");
  }
  function refresh(withChart) {
    fillForm(state);
    exportLinks();
    loadList();
    if (withChart) loadChart();
  }
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    state = readForm();
    toUrl(state, true);
    refresh(true);
  });
  $("clear").addEventListener("click", () => {
    state = {};
    toUrl(state, true);
    refresh(true);
  });
  for (const id of ["c-bucket", "c-by"]) {
    $(id).addEventListener("change", () => {
      const s = { ...state };
      delete s.bucket; delete s.by;
      if ($("c-bucket").value !== "auto") s.bucket = $("c-bucket").value;
      if ($("c-by").value !== "kind") s.by = $("c-by").value;
      state = s;
      toUrl(state, false);
      loadChart();
    });
  }
  $("older").addEventListener("click", () => {
    if (!nextBefore) return;
    state = { ...state, before: String(nextBefore) };
    toUrl(state, true);
    loadList();
    window.scrollTo(0, $("rows").offsetTop - 80);
  });
  $("newest").addEventListener("click", (e) => {
    e.preventDefault();
    const s = { ...state };
    delete s.before;
    state = s;
    toUrl(state, true);
    loadList();
  });
  window.addEventListener("popstate", () => { state = fromUrl(); refresh(true); });

  state = fromUrl();
  refresh(true);
  loadFacets();
})();
