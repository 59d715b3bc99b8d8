// Vigil dashboard: vanilla JS, no build step. Streams are <img> MJPEG; stats and tracks
// are polled from the JSON API; events arrive by Server-Sent Events.
"use strict";
(function () {
  const cams = Array.from(document.querySelectorAll(".cam"));
  const eventsEl = document.getElementById("events");
  const connEl = document.getElementById("conn");
  const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  function streamUrl(name, view) {
    return (view === "exposure" ? "/exposure/" : "/stream/") + encodeURIComponent(name) + ".mjpg";
  }

  cams.forEach((el) => {
    const name = el.dataset.camera;
    const img = el.querySelector("[data-role=img]");
    el.querySelectorAll(".view").forEach((btn) => {
      btn.addEventListener("click", () => {
        el.querySelectorAll(".view").forEach((b) => { b.classList.remove("active"); b.setAttribute("aria-selected", "false"); });
        btn.classList.add("active");
        btn.setAttribute("aria-selected", "true");
        const view = btn.dataset.view;
        img.src = streamUrl(name, view);
        el.querySelector("[data-role=snapshot]").href =
          (view === "exposure" ? "/exposure/" : "/snapshot/") + encodeURIComponent(name) + ".jpg";
      });
    });
    // controls are rendered for admins only (the server refuses them to viewers anyway)
    const reset = el.querySelector("[data-role=reset]");
    if (reset) reset.addEventListener("click", async () => {
      const r = await fetch("/api/cameras/" + encodeURIComponent(name) + "/exposure/reset", { method: "POST" });
      if (r.status === 401) signedOut();
      else if (!r.ok) showError(el, await r.json().then((d) => d.error).catch(() => "HTTP " + r.status));
    });
    // until a frame decodes the camera's state stands in for the image (never a broken icon)
    img.addEventListener("load", () => showFrame(el, true));
    // a stream that ended (server restart, camera back) is re-opened
    img.addEventListener("error", () => setTimeout(() => {
      const active = el.querySelector(".view.active").dataset.view;
      img.src = streamUrl(name, active) + "?r=" + Date.now();
    }, 2000));
  });

  // a session that ended (expired, signed out, secret rotated): back to the sign-in page
  function signedOut() { window.location.assign("/login"); }
  const fetchJson = (url) => fetch(url).then((r) => {
    if (r.status === 401) { signedOut(); throw new Error("signed out"); }
    return r.json();
  });
  function showError(el, msg) {
    const err = el.querySelector("[data-role=error]");
    err.hidden = false;
    err.textContent = msg;
  }

  function showFrame(el, has) {
    el.querySelector("[data-role=img]").classList.toggle("noframe", !has);
    el.querySelector("[data-role=placeholder]").hidden = has;
  }

  async function pollCamera(el) {
    const name = el.dataset.camera;
    try {
      const [info, tr] = await Promise.all([
        fetchJson("/api/cameras/" + encodeURIComponent(name)),
        fetchJson("/api/cameras/" + encodeURIComponent(name) + "/tracks"),
      ]);
      const st = el.querySelector("[data-role=state]");
      const nodeEl = el.querySelector("[data-role=node]");  // cluster mode: where it runs
      if (nodeEl) { nodeEl.hidden = !info.node; nodeEl.textContent = info.node || ""; }
      st.textContent = info.state;
      st.className = "badge state-" + info.state;
      const s = info.stages || {};
      const cap = info.capture || {};
      el.querySelector("[data-role=stats]").textContent =
        `src ${fmt(cap.fps)} fps · det ${fmt(s.detect && s.detect.fps)} fps (${fmt(s.detect && s.detect.ms_p50)} ms) · ` +
        `pub ${fmt(s.publish && s.publish.fps)} fps · lat p50 ${fmt(info.latency_ms && info.latency_ms.p50, 0)} ms · ` +
        `drops ${cap.dropped ?? 0} · err ${(cap.errors ?? 0)}`;
      // the node's detector pool serving this camera (issue 13): one small line under the stats
      let pl = el.querySelector("[data-role=pool]");
      if (info.pool && !pl) {
        pl = document.createElement("span");
        pl.className = "stats pool";
        pl.dataset.role = "pool";
        el.querySelector("[data-role=stats]").after(pl);
      }
      if (pl) {
        const p = info.pool, me = (p && p.camera) || {};
        pl.hidden = !p;
        pl.textContent = p ? `pool ${p.name} (${p.kind}) ${p.busy}/${p.workers} busy · queue ${p.queue} · ` +
          `inf ${fmt(p.inference_ms_p50, 0)}/${fmt(p.inference_ms_p95, 0)} ms` +
          (p.batch_mean !== null && p.kind === "batch" ? ` · batch ${fmt(p.batch_mean)}` : "") +
          ` · share ${fmt(100 * (me.share ?? 0), 0)}% · drops ${me.dropped ?? 0}` +
          (p.restarts ? ` · restarts ${p.restarts}` : "") + (me.timeouts ? ` · timeouts ${me.timeouts}` : "") : "";
      }
      const img = el.querySelector("[data-role=img]");
      showFrame(el, img.naturalWidth > 0);
      const phs = el.querySelector("[data-role=ph-state]");
      phs.textContent = info.state;
      phs.className = "badge state-" + info.state;
      el.querySelector("[data-role=ph-msg]").textContent = cap.last_error || "";
      const err = el.querySelector("[data-role=error]");
      if (cap.last_error && info.state !== "LIVE") { err.hidden = false; err.textContent = cap.last_error; }
      else { err.hidden = true; }
      const counters = info.counters || {};
      el.querySelector("[data-role=counters]").innerHTML = Object.entries(counters)
        .filter(([, v]) => typeof v !== "object")
        .map(([k, v]) => `<span>${esc(k)}: <b>${esc(typeof v === "number" ? +v.toFixed(3) : v)}</b></span>`).join("");
      const rows = (tr.tracks || []).map((t) =>
        `<tr class="${t.coasting ? "coast" : ""}"><td>${t.track_id}</td><td>${esc(t.label ?? t.class_id)}</td>` +
        `<td>${fmt(t.score, 2)}</td><td>${t.age}</td><td>${t.coasting ? "predicted" : "seen"}</td>` +
        `<td>${t.xyxy.map((v) => Math.round(v)).join(",")}</td><td>${esc(t.text ?? "")}</td></tr>`);
      el.querySelector("[data-role=tracks]").innerHTML = rows.join("");
      el.querySelector("[data-role=ntracks]").textContent = rows.length;
    } catch (e) { /* server restarting: next poll retries */ }
  }
  // event sinks (webhooks, MQTT) that are failing: a red pill naming them and their last error
  const sinksEl = document.getElementById("sinks");
  async function pollSinks() {
    try {
      const d = await fetchJson("/api/sinks");
      const bad = (d.sinks || []).filter((s) => !s.healthy);
      sinksEl.hidden = bad.length === 0;
      sinksEl.textContent = bad.map((s) => `${s.kind} ${s.name}: ${s.failed} failed, ${s.dropped} dropped`).join(" · ");
      sinksEl.title = bad.map((s) => s.last_error || "").join("\n");
    } catch (e) { /* next poll */ }
  }
  function pollAll() { cams.forEach(pollCamera); }
  pollAll();
  pollSinks();
  setInterval(pollAll, 1000);
  setInterval(pollSinks, 5000);

  // cluster mode: the nodes (alive, slots used / capacity, cameras) and the pending cameras
  const clusterEl = document.getElementById("cluster");
  let clusterTimer = null;
  async function pollCluster() {
    try {
      const d = await fetchJson("/api/cluster");
      if (!clusterEl || !d.enabled) { clearInterval(clusterTimer); return; }  // no cluster: stop asking
      clusterEl.hidden = false;
      document.getElementById("cluster-nodes").innerHTML = (d.nodes || []).map((n) =>
        `<li class="${n.alive ? "" : "dead"}"><b>${esc(n.name)}</b> ${esc(n.address || "")} · ` +
        `${n.alive ? "alive" : "dead"} · ${(n.cameras || []).length}/${n.capacity} · ` +
        `${esc((n.cameras || []).join(", "))}</li>`).join("");
      const pend = document.getElementById("cluster-pending");
      pend.hidden = !(d.pending || []).length;
      pend.textContent = "pending (no free camera slot): " + (d.pending || []).join(", ");
    } catch (e) { /* next poll */ }
  }
  clusterTimer = setInterval(pollCluster, 3000);
  pollCluster();

  // the feed shows what a person cares about (lines, zones, parts, text, camera states);
  // track start/end are kept too, hidden unless the toggle (remembered per browser) is on
  const TRACK_KINDS = new Set(["track_started", "track_ended"]);
  const FEED_MAX = 200;  // of each sort
  const showTracks = document.getElementById("show-tracks");
  showTracks.checked = window.localStorage.getItem("vigil.showTracks") === "1";
  showTracks.addEventListener("change", () => {
    window.localStorage.setItem("vigil.showTracks", showTracks.checked ? "1" : "0");
    eventsEl.querySelectorAll("li.trk").forEach((li) => { li.hidden = !showTracks.checked; });
  });
  const SNAPSHOT_KINDS = new Set(["line_crossed", "zone_enter", "defect_found", "part_passed", "part_unknown", "text_read", "track_started"]);
  function addEvent(ev) {
    const li = document.createElement("li");
    li.className = ev.kind;
    const isTrack = TRACK_KINDS.has(ev.kind);
    if (isTrack) { li.classList.add("trk"); li.hidden = !showTracks.checked; }
    const t = new Date(ev.ts * 1000).toLocaleTimeString();
    let what = "";
    if (ev.kind === "camera_state") what = `${ev.data.from} → ${ev.data.to} ${ev.data.message || ""}`;
    else if (ev.kind === "camera_moved") what = `node ${ev.data.from} → ${ev.data.to} (epoch ${ev.data.epoch})`;
    else if (ev.track_id !== null && ev.track_id !== undefined) what = `#${ev.track_id} ${ev.label || ""}`;
    const d = ev.data || {};
    if (d.text) what += ` “${d.text}”`;
    if (d.line) what += ` ${d.line} ${d.direction || ""}`;
    if (d.zone) what += ` ${d.zone}`;
    if (d.verdict) what += ` ${d.verdict}${d.serial ? " " + d.serial : ""}`;
    const snapUrl = ev.snapshot_url || (SNAPSHOT_KINDS.has(ev.kind) && ev.box && ev.id
      ? `/api/events/${ev.id}/snapshot.jpg` : null);
    const snap = snapUrl ? ` <a href="${esc(snapUrl)}" target="_blank" rel="noopener">snapshot</a>` : "";
    const clip = typeof d.clip === "string" && /^(https?:\/\/[^/]+)?\/api\/clips\//.test(d.clip)
      ? ` <a href="${esc(d.clip)}" target="_blank" rel="noopener">clip</a>` : "";
    li.innerHTML = `<span class="t">${esc(t)}</span><span class="k">${esc(ev.kind)}</span>` +
      `<span class="c">${esc(ev.camera)}</span> ${esc(what)}${snap}${clip}`;
    eventsEl.prepend(li);
    const same = eventsEl.querySelectorAll(isTrack ? "li.trk" : "li:not(.trk)");
    for (let i = FEED_MAX; i < same.length; i++) same[i].remove();
  }
  fetch("/api/events?limit=200").then((r) => r.json()).then((d) => (d.events || []).reverse().forEach(addEvent)).catch(() => {});
  const es = new EventSource("/api/events/stream");
  es.onopen = () => { connEl.textContent = "live"; connEl.className = "pill ok"; };
  es.onerror = () => { connEl.textContent = "reconnecting…"; connEl.className = "pill bad"; };
  es.onmessage = (m) => addEvent(JSON.parse(m.data));
  ["track_started", "track_ended", "zone_enter", "zone_leave", "line_crossed", "text_read", "defect_found", "part_passed", "part_unknown", "camera_state", "camera_moved"]
    .forEach((k) => es.addEventListener(k, (m) => addEvent(JSON.parse(m.data))));
})();
