// probattn web annotator: plain JavaScript, no build step. Talks to probattnd's HTTP gateway (/api/v1/...) and one
// WebSocket per image (/api/v1/images/{id}/ws) carrying protocol-1 requests, their replies, every mask update of the
// image and presence messages. docs/WEB.md describes the page and its measurements.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const API = "/api/v1";
  const NAME_KEY = "probattn.annotator";
  const TOKEN_KEY = "probattn.token";   // sessionStorage: a secured daemon's token (docs/SECURITY.md)

  // Measurements (docs/WEB.md): one entry per own click, performance.now() at the click, at its reply and at the
  // first paint of its mask; one entry per mask update received from the others.
  window.probattnTimings = [];
  window.probattnUpdates = [];

  const state = {
    me: null,
    token: null,          // set when the daemon needs a token; then `me` is the token's identity
    session: null,        // {id, name, width, height, classes, version, source}
    labels: null,         // Int16Array per pixel: class index drawn, -1 none
    maskReply: null,      // the last mask-carrying message (for downloads and redraws)
    clicks: new Map(),    // click id -> {id, x, y, cls, annotator, pending, overridden}
    pending: new Map(),   // request_id -> {kind, timing, localId}
    ws: null,
    wsRetry: 0,
    classIndex: 0,
    opacity: 0.55,
    presence: [],
    bitmap: null,
    scale: 1,
    seq: 0,
  };

  // ---------------------------------------------------------------------------------------------- helpers

  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
  }

  async function api(path, options = {}) {
    let response;
    try {
      if (state.token) options = { ...options, headers: { ...(options.headers || {}), Authorization: "Bearer " + state.token } };
      response = await fetch(API + path, options);
    } catch (e) {
      throw new ApiError("unreachable", "the daemon did not answer (" + e.message + ")", 0);
    }
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) {
      const body = await response.json();
      if (!response.ok || body.ok === false) {
        const error = body.error || {};
        throw new ApiError(error.code || "http_" + response.status, error.message || response.statusText, response.status);
      }
      return body;
    }
    if (!response.ok) {
      throw new ApiError("http_" + response.status, (await response.text()) || response.statusText, response.status);
    }
    return response;
  }

  function requestID() { state.seq += 1; return "web-" + Date.now().toString(36) + "-" + state.seq; }

  /** FNV-1a over the bytes: a short content tag so that the same file gets the same image id everywhere. */
  function contentTag(bytes) {
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 0x01000193); }
    return ((h >>> 0).toString(16).padStart(8, "0")) + (bytes.length >>> 0).toString(16);
  }

  /** A stable colour per annotator name. */
  function colourOf(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return `hsl(${h % 360}, 85%, 58%)`;
  }

  const CLASS_COLOURS = [[255, 64, 96], [64, 156, 255], [72, 214, 120], [255, 196, 40], [186, 104, 255],
    [255, 128, 40], [40, 220, 220], [255, 96, 200], [160, 200, 60]];
  function classColour(i) { return CLASS_COLOURS[Math.max(0, i) % CLASS_COLOURS.length]; }
  function rgb(c) { return `rgb(${c[0]}, ${c[1]}, ${c[2]})`; }

  function backgroundIndex(classes) {
    const named = classes.findIndex((c) => c.toLowerCase() === "background");
    return named >= 0 ? named : classes.length - 1;
  }

  function showError(code, message) {
    const box = $("error");
    box.textContent = "";
    const b = document.createElement("b");
    b.textContent = code;
    box.append(b, " " + message);
    box.dataset.code = code;
    box.hidden = false;
  }
  function clearError() { $("error").hidden = true; $("error").dataset.code = ""; }
  $("error").addEventListener("click", clearError);

  function setConnection(text, kind) { const c = $("connection"); c.textContent = text; c.dataset.state = kind; }

  // ---------------------------------------------------------------------------------------------- name

  function askName(initial) {
    return new Promise((resolve) => {
      $("name-modal").hidden = false;
      $("name-input").value = initial || "";
      $("name-input").focus();
      $("name-form").onsubmit = (e) => {
        e.preventDefault();
        const name = $("name-input").value.trim();
        if (!name) return;
        localStorage.setItem(NAME_KEY, name);
        $("name-modal").hidden = true;
        resolve(name);
      };
    });
  }

  function setMe(name) {
    state.me = name;
    const w = $("whoami");
    w.textContent = name;
    w.style.setProperty("--me", colourOf(name));
  }

  $("whoami").addEventListener("click", async () => {
    if (state.token) { sessionStorage.removeItem(TOKEN_KEY); state.token = null; await signIn(""); }
    else setMe(await askName(state.me));
    if (state.session) connect();
  });

  // ---------------------------------------------------------------------------------------------- token

  function askToken(problem) {
    return new Promise((resolve) => {
      $("token-modal").hidden = false;
      $("token-problem").hidden = !problem;
      $("token-problem").textContent = problem || "";
      $("token-input").value = "";
      $("token-input").focus();
      $("token-form").onsubmit = (e) => {
        e.preventDefault();
        const token = $("token-input").value.trim();
        if (!token) return;
        $("token-modal").hidden = true;
        resolve(token);
      };
    });
  }

  /** GET /api/v1/whoami with `token` (or none): the answer, or null when the daemon refused the token (401). */
  async function whoami(token) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(API + "/whoami", { headers });
    if (response.status === 401) return null;
    if (!response.ok) throw new ApiError("http_" + response.status, response.statusText, response.status);
    return response.json();
  }

  /** On a secured daemon: asks for a token until the daemon accepts one, then acts as its identity. Returns false
   *  on an open daemon (the page then asks for a name). */
  async function signIn(problem) {
    let token = sessionStorage.getItem(TOKEN_KEY);
    let answer = await whoami(token);
    if (answer && !answer.security) return false;
    while (!answer || !answer.identity) {
      token = await askToken(token || problem ? (problem || "The daemon did not accept that token.") : "");
      problem = "";
      answer = await whoami(token);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    setMe(answer.identity);
    return true;
  }

  // ---------------------------------------------------------------------------------------------- local copies

  // The bytes of every image opened here are kept in IndexedDB, so that a reload (or joining from the session list)
  // can reopen the image: reopening with the same bytes and classes joins the running session.
  function db() {
    return new Promise((resolve, reject) => {
      const r = indexedDB.open("probattn", 1);
      r.onupgradeneeded = () => r.result.createObjectStore("images");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  async function remember(id, record) {
    try {
      const d = await db();
      d.transaction("images", "readwrite").objectStore("images").put(record, id);
    } catch (e) { /* private mode: reload then needs the file again */ }
  }
  async function recall(id) {
    try {
      const d = await db();
      return await new Promise((resolve) => {
        const r = d.transaction("images").objectStore("images").get(id);
        r.onsuccess = () => resolve(r.result || null);
        r.onerror = () => resolve(null);
      });
    } catch (e) { return null; }
  }

  // ---------------------------------------------------------------------------------------------- opening

  function parseClasses() {
    const text = $("classes").value.trim();
    if (!text) return null;
    return text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  }

  async function openBytes(bytes, name, classes, source) {
    clearError();
    const id = name + "@" + contentTag(bytes);
    const header = { image_id: id, annotator: state.me };
    if (classes) header.classes = classes;
    const form = new FormData();
    form.append("header", new Blob([JSON.stringify(header)], { type: "application/json" }));
    form.append("image", new Blob([bytes]), name);
    setConnection("opening…", "busy");
    let reply;
    try {
      reply = await api("/images", { method: "POST", body: form });
    } catch (e) {
      setConnection(state.session ? "live" : "offline", state.session ? "live" : "idle");
      showError(e.code, e.message);
      return false;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(new Blob([bytes]));
    } catch (e) {
      showError("display", "the daemon opened the image but this browser cannot show it (" + e.message + ")");
      return false;
    }
    await remember(id, { name, bytes, classes, source });
    startSession({
      id, name, source, width: reply.width, height: reply.height, classes: reply.classes,
      version: -1, reopened: reply.reopened,
    }, bitmap);
    return true;
  }

  async function openFile(file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    return openBytes(bytes, file.name, parseClasses(), "file");
  }

  async function openFromFolder(name) {
    clearError();
    let response;
    try {
      response = await api("/folder/" + encodeURIComponent(name));
    } catch (e) { showError(e.code, e.message); return false; }
    const bytes = new Uint8Array(await response.arrayBuffer());
    return openBytes(bytes, name, parseClasses(), "folder");
  }

  /** Reopens a session by id: from this browser's copy, else from the image folder (ids are "name@tag"). */
  async function join(id) {
    const record = await recall(id);
    if (record) return openBytes(record.bytes, record.name, record.classes, record.source);
    const name = id.replace(/@[0-9a-f]+$/, "");
    if (folderNames.has(name)) {
      clearError();
      const response = await api("/folder/" + encodeURIComponent(name)).catch((e) => { showError(e.code, e.message); });
      if (!response) return false;
      const bytes = new Uint8Array(await response.arrayBuffer());
      const sessions = await api("/sessions").catch(() => ({ sessions: [] }));
      const s = (sessions.sessions || []).find((x) => x.image_id === id);
      return openBytes(bytes, name, s ? s.classes : null, "folder");
    }
    showError("need_file", `open the file of “${id}” here to join its session (the same file joins it)`);
    return false;
  }

  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) openFile(file);
    e.target.value = "";
  });

  let dragDepth = 0;
  window.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; $("dropveil").hidden = false; });
  window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("dropveil").hidden = true; } });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    $("dropveil").hidden = true;
    const file = e.dataTransfer.files[0];
    if (file) openFile(file);
  });

  // ---------------------------------------------------------------------------------------------- session

  function startSession(session, bitmap) {
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    state.session = session;
    state.bitmap = bitmap;
    state.labels = null;
    state.maskReply = null;
    state.clicks.clear();
    state.pending.clear();
    state.presence = [];
    paintWaiters.length = 0;
    state.classIndex = 0;
    state.wsRetry = 0;
    history.replaceState(null, "", "#image=" + encodeURIComponent(session.id));
    $("placeholder").hidden = true;
    $("canvas-wrap").hidden = false;
    for (const c of ["image-canvas", "mask-canvas"]) {
      $(c).width = session.width;
      $(c).height = session.height;
    }
    $("image-canvas").getContext("2d").drawImage(bitmap, 0, 0);
    $("mask-canvas").getContext("2d").clearRect(0, 0, session.width, session.height);
    drawOutline();
    $("mask-canvas").dataset.version = "";
    $("imageinfo").textContent = "";
    const name = document.createElement("b");
    name.textContent = session.name;
    $("imageinfo").append(name, ` ${session.width}×${session.height} · ${session.classes.join(", ")}` +
      (session.reopened ? " · joined" : ""));
    $("imageinfo").title = session.id;
    $("version").textContent = "v–";
    $("log").textContent = "";
    $("rt-summary").textContent = "";
    for (const b of ["undo", "download-png", "download-rle"]) $(b).disabled = false;
    buildPalette();
    layout();
    drawClicks();
    renderPresence();
    connect();
    refreshSessions();
  }

  function connect() {
    const s = state.session;
    if (!s) return;
    if (state.ws) { state.ws.onclose = null; state.ws.close(); }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}${API}/images/${encodeURIComponent(s.id)}/ws?annotator=` +
      encodeURIComponent(state.me);
    // A secured daemon takes the token as a subprotocol (browsers cannot set headers on a WebSocket).
    const ws = state.token ? new WebSocket(url, ["probattn.v1", "bearer." + state.token]) : new WebSocket(url);
    state.ws = ws;
    setConnection("connecting…", "busy");
    ws.onopen = () => {
      state.wsRetry = 0;
      setConnection("live", "live");
      send({ kind: "get_mask", image_id: s.id, format: "rle" });   // the current state; updates follow
    };
    ws.onmessage = (e) => {
      let message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      onMessage(message, performance.now());
    };
    ws.onclose = () => {
      if (state.ws !== ws || state.session !== s) return;
      setConnection("reconnecting…", "down");
      state.wsRetry = Math.min(state.wsRetry + 1, 6);
      setTimeout(() => { if (state.session === s) connect(); }, 250 * 2 ** state.wsRetry);
    };
  }

  /** Sends one protocol-1 request over the WebSocket (or, when it is not open, to the HTTP route). */
  function send(request, timing) {
    const id = requestID();
    const message = Object.assign({ protocol: 1, request_id: id }, request);
    state.pending.set(id, { kind: request.kind, timing });
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(message));
      return id;
    }
    const s = state.session;
    const route = { feedback: "/feedback", undo: "/undo" }[request.kind];
    if (!route) return id;
    api(`/images/${encodeURIComponent(s.id)}${route}`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ annotator: request.annotator, clicks: request.clicks }),
    }).then((reply) => onMessage(Object.assign({ request_id: id, kind: request.kind }, reply), performance.now()))
      .catch((e) => onMessage({ request_id: id, kind: request.kind, ok: false,
        error: { code: e.code, message: e.message } }, performance.now()));
    return id;
  }

  function onMessage(m, now) {
    if (m.kind === "presence") { state.presence = m.annotators || []; renderPresence(); return; }
    const pending = m.request_id ? state.pending.get(m.request_id) : null;
    if (pending && m.kind !== "mask_update") {
      state.pending.delete(m.request_id);
      const timing = pending.timing;
      if (timing) {
        timing.reply = now;
        timing.replyEpoch = performance.timeOrigin + now;
        timing.ok = m.ok !== false;
        timing.version = m.version;
      }
      if (m.ok === false) {
        const e = m.error || {};
        showError(e.code || "error", e.message || "request failed");
        if (timing && timing.localId) { state.clicks.delete(timing.localId); drawClicks(); }
        if (timing) finishTiming(timing);
        return;
      }
      if (m.kind === "undo" && m.undone) removeUndone(m.undone, state.me);
      applyMask(m);
      if (timing) awaitPaint(timing, m.version);
      return;
    }
    if (m.kind === "mask_update") {
      if (Array.isArray(m.clicks_added)) m.clicks_added.forEach(addClick);
      else if (m.click) addClick(m.click);
      if (m.undone) removeUndone(m.undone, m.annotator);
      if (Array.isArray(m.overridden)) {
        const over = new Set(m.overridden.map((c) => String(typeof c === "object" ? c.id : c)));
        for (const c of state.clicks.values()) c.overridden = over.has(c.id);
      }
      if (state.session && m.version > state.session.version && m.annotator !== state.me) {
        const entry = { version: m.version, annotator: m.annotator, cause: m.cause, received: now,
          receivedEpoch: performance.timeOrigin + now };
        window.probattnUpdates.push(entry);
        awaitPaint(entry, m.version);
      }
      applyMask(m);
      drawClicks();
      refreshSessionsSoon();
    }
  }

  let sessionsTimer = null;
  function refreshSessionsSoon() {
    if (sessionsTimer) return;
    sessionsTimer = setTimeout(() => { sessionsTimer = null; refreshSessions(); }, 1000);
  }

  function addClick(c) {
    const id = c.id !== undefined ? String(c.id) : `${c.annotator}:${c.x},${c.y}:${state.clicks.size}`;
    // The own pending marker at the same place is replaced by the confirmed click.
    for (const [k, p] of state.clicks) {
      if (p.pending && p.annotator === c.annotator && p.x === c.x && p.y === c.y) { state.clicks.delete(k); break; }
    }
    state.clicks.set(id, { id, x: c.x, y: c.y, cls: c.class, annotator: c.annotator || "?", pending: false });
  }

  function removeUndone(u, annotator) {
    if (u.id !== undefined) state.clicks.delete(String(u.id));
    else {
      const candidates = [...state.clicks.values()].filter((c) =>
        c.x === u.x && c.y === u.y && c.cls === u.class && (!annotator || c.annotator === annotator));
      if (candidates.length) state.clicks.delete(candidates[candidates.length - 1].id);
    }
    drawClicks();
  }

  // ---------------------------------------------------------------------------------------------- mask

  /** Shows a message's mask when it is newer than the one shown. Sessions of more than two classes need the
   *  per-class masks, which the updates and get_mask carry (a feedback reply's `mask` is the first class only). */
  function applyMask(m) {
    const s = state.session;
    if (!s || m.version === undefined || !m.mask || m.version <= s.version) return;
    if (s.classes.length > 2 && !m.class_masks) return;
    s.version = m.version;
    state.maskReply = m;
    state.labels = labelsOf(m, s);
    drawMask();
    $("version").textContent = "v" + s.version;
    schedulePaint();
  }

  // Entries waiting for the first frame that shows their mask version (or a later one).
  const paintWaiters = [];
  let paintScheduled = false;

  function awaitPaint(entry, version) {
    paintWaiters.push({ entry, version });
    if (state.session && state.session.version >= version) schedulePaint();
  }

  function schedulePaint() {
    if (paintScheduled) return;
    paintScheduled = true;
    requestAnimationFrame(() => {
      paintScheduled = false;
      const t = performance.now(), shown = state.session ? state.session.version : -1;
      for (let i = paintWaiters.length - 1; i >= 0; i--) {
        const w = paintWaiters[i];
        if (w.version > shown) continue;
        paintWaiters.splice(i, 1);
        w.entry.paint = t;
        w.entry.paintEpoch = performance.timeOrigin + t;
        w.entry.paintedVersion = shown;
        if (w.entry.click !== undefined) finishTiming(w.entry);
      }
    });
  }

  function labelsOf(m, s) {
    const labels = new Int16Array(s.width * s.height).fill(-1);
    if (m.class_masks && s.classes.length > 2) {
      const skip = s.classes.findIndex((c) => c.toLowerCase() === "background");
      s.classes.forEach((name, i) => {
        if (i !== skip && m.class_masks[name]) window.ProbattnRLE.rleFill(m.class_masks[name], labels, i);
      });
    } else {
      window.ProbattnRLE.rleFill(m.mask, labels, 0);
    }
    return labels;
  }

  /** The fill, at the image's resolution (its pixels are what the page shows as the mask). */
  let maskImage = null;
  function drawMask() {
    const s = state.session, labels = state.labels;
    const canvas = $("mask-canvas");
    const ctx = canvas.getContext("2d");
    if (!s || !labels) return;
    if (!maskImage || maskImage.width !== s.width || maskImage.height !== s.height) {
      maskImage = ctx.createImageData(s.width, s.height);
    }
    const pixels = new Uint32Array(maskImage.data.buffer);
    const alpha = Math.round(state.opacity * 255);
    // RGBA bytes as one little-endian word per class.
    const packed = s.classes.map((_, i) => {
      const c = classColour(i);
      return ((alpha << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
    });
    const w = s.width, h = s.height, n = labels.length;
    if (pixelOutline()) {
      // Shown at less than twice its size: the outline is the mask's boundary pixels, drawn in the same pass.
      const white = 0xffffffff;
      for (let p = 0; p < n; p++) {
        const l = labels[p];
        if (l < 0) { pixels[p] = 0; continue; }
        const x = p % w;
        const edge = x === 0 || x === w - 1 || p < w || p >= n - w ||
          labels[p - 1] !== l || labels[p + 1] !== l || labels[p - w] !== l || labels[p + w] !== l;
        pixels[p] = edge ? white : packed[l];
      }
    } else {
      for (let p = 0; p < n; p++) {
        const l = labels[p];
        pixels[p] = l < 0 ? 0 : packed[l];
      }
    }
    ctx.putImageData(maskImage, 0, 0);
    canvas.dataset.version = String(s.version);
    drawOutline();
  }

  /** Whether the outline is drawn as boundary pixels of the mask (fast, for images shown at less than twice their
   *  size) rather than as lines at the display's resolution (crisp, for small images shown enlarged). */
  function pixelOutline() { return $("outline").checked && state.scale < 2; }

  /** The mask's boundary as crisp lines at the display's resolution: every pixel edge between two labels. */
  function drawOutline() {
    const canvas = $("outline-canvas");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const s = state.session, labels = state.labels;
    if (!s || !labels || !$("outline").checked || pixelOutline()) return;
    const w = s.width, h = s.height, kx = canvas.width / w, ky = canvas.height / h;
    const path = new Path2D();
    for (let y = 0; y <= h; y++) {          // horizontal edges, merged into runs
      let start = -1;
      for (let x = 0; x <= w; x++) {
        const a = y > 0 && x < w ? labels[(y - 1) * w + x] : -1, b = y < h && x < w ? labels[y * w + x] : -1;
        const edge = x < w && a !== b;
        if (edge && start < 0) start = x;
        if (!edge && start >= 0) { path.moveTo(start * kx, y * ky); path.lineTo(x * kx, y * ky); start = -1; }
      }
    }
    for (let x = 0; x <= w; x++) {          // vertical edges
      let start = -1;
      for (let y = 0; y <= h; y++) {
        const a = x > 0 && y < h ? labels[y * w + x - 1] : -1, b = x < w && y < h ? labels[y * w + x] : -1;
        const edge = y < h && a !== b;
        if (edge && start < 0) start = y;
        if (!edge && start >= 0) { path.moveTo(x * kx, start * ky); path.lineTo(x * kx, y * ky); start = -1; }
      }
    }
    const dpr = window.devicePixelRatio || 1;
    ctx.lineCap = "square";
    ctx.strokeStyle = "rgba(0, 0, 0, 0.55)";
    ctx.lineWidth = 3 * dpr;
    ctx.stroke(path);
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1.25 * dpr;
    ctx.stroke(path);
  }

  function finishTiming(t) {
    if (t.logged || t.reply === undefined || (t.ok && t.paint === undefined)) return;
    t.logged = true;
    const li = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = t.kind === "undo" ? "var(--muted)"
      : rgb(classColour(state.session ? state.session.classes.indexOf(t.class) : 0));
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = t.kind === "undo" ? "undo" : `${t.x}, ${t.y}`;
    what.title = t.kind === "undo" ? "undo" : `${t.class} at (${t.x}, ${t.y})`;
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = t.ok
      ? `${Math.round(t.reply - t.click)} ms · paint +${Math.max(0, Math.round(t.paint - t.reply))}`
      : "refused";
    li.append(dot, what, num);
    $("log").prepend(li);
    while ($("log").children.length > 50) $("log").lastChild.remove();
    const rts = window.probattnTimings.filter((x) => x.ok && x.reply !== undefined).map((x) => x.reply - x.click)
      .sort((a, b) => a - b);
    if (rts.length) $("rt-summary").textContent = `median ${Math.round(rts[rts.length >> 1])} ms`;
  }

  // ---------------------------------------------------------------------------------------------- clicks

  function buildPalette() {
    const classes = state.session.classes;
    const palette = $("palette");
    palette.textContent = "";
    classes.forEach((name, i) => {
      const b = document.createElement("button");
      b.className = "swatch";
      b.dataset.index = String(i);
      b.dataset.class = name;
      b.style.setProperty("--c", rgb(classColour(i)));
      const key = document.createElement("kbd");
      key.textContent = i < 9 ? String(i + 1) : "";
      const label = document.createElement("span");
      label.textContent = name;
      b.append(key, label);
      b.addEventListener("click", () => selectClass(i));
      palette.append(b);
    });
    $("palette-section").hidden = classes.length <= 2;
    selectClass(0);
  }

  function selectClass(i) {
    if (!state.session || i >= state.session.classes.length) return;
    state.classIndex = i;
    for (const b of $("palette").children) b.classList.toggle("selected", Number(b.dataset.index) === i);
  }

  function clickAt(e, background) {
    const s = state.session;
    if (!s) return;
    const rect = $("mask-canvas").getBoundingClientRect();
    const x = Math.floor((e.clientX - rect.left) * s.width / rect.width);
    const y = Math.floor((e.clientY - rect.top) * s.height / rect.height);
    if (x < 0 || y < 0 || x >= s.width || y >= s.height) return;
    const cls = s.classes[background ? backgroundIndex(s.classes) : state.classIndex];
    const now = performance.now();
    const localId = "pending-" + now;
    state.clicks.set(localId, { id: localId, x, y, cls, annotator: state.me, pending: true });
    drawClicks();
    const timing = { kind: "feedback", x, y, class: cls, click: now, clickEpoch: performance.timeOrigin + now, localId };
    window.probattnTimings.push(timing);
    timing.request_id = send({ kind: "feedback", image_id: s.id, annotator: state.me, clicks: [{ x, y, class: cls }] },
      timing);
  }

  const stageInput = $("click-canvas");
  stageInput.addEventListener("mousedown", (e) => {
    if (e.button === 0) clickAt(e, e.shiftKey);
    else if (e.button === 2) clickAt(e, true);
  });
  stageInput.addEventListener("contextmenu", (e) => e.preventDefault());

  function undo() {
    const s = state.session;
    if (!s) return;
    const now = performance.now();
    const timing = { kind: "undo", click: now, clickEpoch: performance.timeOrigin + now };
    window.probattnTimings.push(timing);
    timing.request_id = send({ kind: "undo", image_id: s.id, annotator: state.me }, timing);
  }
  $("undo").addEventListener("click", undo);

  function drawClicks() {
    renderPresence();
    const canvas = $("click-canvas");
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const s = state.session;
    if (!s || !$("show-clicks").checked) return;
    const k = canvas.width / s.width, dpr = window.devicePixelRatio || 1;
    const r = 6 * dpr;
    for (const c of state.clicks.values()) {
      const cx = (c.x + 0.5) * k, cy = (c.y + 0.5) * k;
      const idx = s.classes.indexOf(c.cls);
      ctx.globalAlpha = c.overridden ? 0.45 : 1;
      ctx.beginPath();
      ctx.arc(cx, cy, r + 2.5 * dpr, 0, Math.PI * 2);
      ctx.fillStyle = colourOf(c.annotator);
      ctx.fill();
      ctx.beginPath();
      ctx.arc(cx, cy, r, 0, Math.PI * 2);
      ctx.fillStyle = rgb(classColour(idx < 0 ? 0 : idx));
      ctx.fill();
      ctx.lineWidth = 1.5 * dpr;
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      if (c.pending) ctx.setLineDash([3 * dpr, 2 * dpr]);
      ctx.stroke();
      ctx.setLineDash([]);
      if (idx === backgroundIndex(s.classes) && s.classes.length === 2) {   // background: a minus sign
        ctx.fillStyle = "#fff";
        ctx.fillRect(cx - r * 0.55, cy - dpr, r * 1.1, 2 * dpr);
      }
    }
    ctx.globalAlpha = 1;
  }

  // ---------------------------------------------------------------------------------------------- layout

  function layout() {
    const s = state.session;
    if (!s) return;
    const stage = $("stage").getBoundingClientRect();
    const scale = Math.max(0.05, Math.min((stage.width - 32) / s.width, (stage.height - 32) / s.height, 8));
    const wasPixel = state.scale < 2;
    state.scale = scale;
    const w = Math.round(s.width * scale), h = Math.round(s.height * scale);
    const wrap = $("canvas-wrap");
    wrap.style.width = w + "px";
    wrap.style.height = h + "px";
    for (const c of ["image-canvas", "mask-canvas"]) $(c).classList.toggle("pixelated", scale >= 2);
    const dpr = window.devicePixelRatio || 1;
    for (const c of ["click-canvas", "outline-canvas"]) {
      $(c).width = Math.round(w * dpr);
      $(c).height = Math.round(h * dpr);
    }
    if (wasPixel !== scale < 2) drawMask(); else drawOutline();
    drawClicks();
  }
  new ResizeObserver(layout).observe($("stage"));

  // ---------------------------------------------------------------------------------------------- side panels

  function renderPresence() {
    const list = $("presence");
    list.textContent = "";
    const names = state.presence.map((a) => (typeof a === "string" ? a : a.annotator || a.name || "?"));
    if (!names.length) { const li = document.createElement("li"); li.className = "empty"; li.textContent = "–"; list.append(li); }
    for (const name of names) {
      const li = document.createElement("li");
      li.className = "person";
      li.dataset.annotator = name;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = colourOf(name);
      const label = document.createElement("span");
      label.textContent = name + (name === state.me ? " (you)" : "");
      const n = [...state.clicks.values()].filter((c) => c.annotator === name && !c.pending).length;
      const count = document.createElement("span");
      count.className = "num";
      count.textContent = n ? `${n} click${n === 1 ? "" : "s"}` : "";
      li.append(dot, label, count);
      list.append(li);
    }
  }

  async function refreshSessions() {
    let reply;
    try { reply = await api("/sessions"); } catch (e) { return; }
    const list = $("sessions");
    list.textContent = "";
    const sessions = reply.sessions || [];
    if (!sessions.length) { const li = document.createElement("li"); li.className = "empty"; li.textContent = "none"; list.append(li); }
    for (const s of sessions) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.className = "item";
      b.dataset.imageId = s.image_id;
      if (state.session && state.session.id === s.image_id) b.classList.add("current");
      const name = document.createElement("span");
      name.textContent = s.image_id.replace(/@[0-9a-f]+$/, "");
      name.title = s.image_id;
      const meta = document.createElement("span");
      meta.className = "num";
      const people = Array.isArray(s.annotators) ? s.annotators.length : s.annotators;
      meta.textContent = `v${s.version} · ${s.clicks} clicks` + (people ? ` · ${people} ann.` : "");
      b.append(name, meta);
      b.addEventListener("click", () => join(s.image_id));
      li.append(b);
      list.append(li);
    }
  }
  $("refresh-sessions").addEventListener("click", refreshSessions);

  const folderNames = new Set();
  async function loadFolder() {
    let reply;
    try { reply = await api("/folder"); } catch (e) { return; }
    if (reply.configured === false) return;
    const images = reply.images || [];
    $("folder-section").hidden = false;
    const list = $("folder");
    list.textContent = "";
    if (!images.length) { const li = document.createElement("li"); li.className = "empty"; li.textContent = "no images"; list.append(li); }
    for (const image of images) {
      folderNames.add(image.name);
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.className = "item";
      b.dataset.name = image.name;
      const name = document.createElement("span");
      name.textContent = image.name;
      const meta = document.createElement("span");
      meta.className = "num";
      meta.textContent = image.bytes >= 1 << 20 ? (image.bytes / (1 << 20)).toFixed(1) + " MiB"
        : Math.max(1, Math.round(image.bytes / 1024)) + " KiB";
      b.append(name, meta);
      b.addEventListener("click", () => openFromFolder(image.name));
      li.append(b);
      list.append(li);
    }
  }

  // ---------------------------------------------------------------------------------------------- controls

  function setOpacity(v) {
    state.opacity = v;
    $("opacity").value = String(Math.round(v * 100));
    $("opacity-value").textContent = Math.round(v * 100) + "%";
    drawMask();
  }
  $("opacity").addEventListener("input", (e) => setOpacity(Number(e.target.value) / 100));
  $("outline").addEventListener("change", drawMask);
  $("show-clicks").addEventListener("change", drawClicks);

  const OPACITY_STEPS = [0, 0.3, 0.55, 0.8];
  window.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type === "text") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "z") { undo(); e.preventDefault(); }
    else if (e.key === "o") {
      const next = OPACITY_STEPS.find((v) => v > state.opacity + 0.01);
      setOpacity(next === undefined ? OPACITY_STEPS[0] : next);
    } else if (/^[1-9]$/.test(e.key)) selectClass(Number(e.key) - 1);
  });

  function download(blob, filename) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  function baseName() { return state.session.name.replace(/\.[^.]+$/, ""); }

  $("download-png").addEventListener("click", async () => {
    try {
      const r = await api(`/images/${encodeURIComponent(state.session.id)}/mask?format=png`);
      download(await r.blob(), baseName() + "-mask.png");
    } catch (e) { showError(e.code, e.message); }
  });
  $("download-rle").addEventListener("click", async () => {
    try {
      const r = await api(`/images/${encodeURIComponent(state.session.id)}/mask?format=rle`);
      const out = { image_id: state.session.id, classes: state.session.classes, version: r.version,
        width: r.width, height: r.height, mask: r.mask };
      if (r.class_masks) out.class_masks = r.class_masks;
      download(new Blob([JSON.stringify(out, null, 1)], { type: "application/json" }), baseName() + "-mask.json");
    } catch (e) { showError(e.code, e.message); }
  });

  // ---------------------------------------------------------------------------------------------- start

  async function main() {
    if (!(await signIn(""))) {
      const saved = localStorage.getItem(NAME_KEY);
      setMe(saved || await askName(""));
    }
    await loadFolder();
    refreshSessions();
    setInterval(() => { if (document.visibilityState === "visible") refreshSessions(); }, 10000);
    const m = /^#image=(.+)$/.exec(location.hash);
    if (m) await join(decodeURIComponent(m[1]));
    document.body.dataset.ready = "true";
  }
  main();
})();
