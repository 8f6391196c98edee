// The journey page: start a run, follow its live feed (/api/runs/<id>/events), show each step.
// Every text from the server (prompts, model output, config descriptions) is inserted with
// textContent or as an attribute value, never as HTML. Media URLs must be this run's own.
"use strict";

(function () {
  const TEXTS = window.JOURNEY_TEXTS;
  const RUN_ID = /^[0-9a-f]{32}$/;
  const ITEM_TYPES = [
    "pipeline_start", "stage_transition", "pipeline_complete", "pipeline_error",
    "user_input_text", "user_input_image", "translation_result", "stage1_safety_check",
    "stage1_blocked", "interception_iteration", "interception_final", "stage3_safety_check",
    "stage3_blocked", "output_image", "output_audio", "output_music", "output_video",
    "output_3d", "output_failed", "item",
  ];
  const MAX_MANUAL_RETRIES = 20;

  const $ = (id) => document.getElementById(id);
  let lang = "de";
  let run = null; // the run being shown: {id, source, lastSeq, ended, level, retries, timer}
  let formats = null;

  // ------------------------------------------------------------------ texts

  function t(key, args) {
    const table = TEXTS[lang] || TEXTS.en;
    const template = table[key] !== undefined ? table[key] : (TEXTS.en[key] || key);
    return template.replace(/\{(\w+)\}/g, (whole, name) => {
      if (!args || !(name in args)) return whole;
      const value = args[name];
      if (value && typeof value === "object" && typeof value.key === "string") {
        return t(value.key, value.args);
      }
      if (value && typeof value === "object" && typeof value.text === "string") {
        return localized(value.texts, value.text); // a text the server gave in several languages
      }
      if (value && typeof value === "object" && typeof value.lang === "string") {
        return languageName(value.lang);
      }
      return String(value);
    });
  }

  // A text from the server in the UI's language when it has one, else its default text.
  function localized(texts, fallback) {
    const own = texts && typeof texts === "object" ? texts[lang] : undefined;
    return typeof own === "string" && own ? own : String(fallback || "");
  }

  // Sets an element's text (or one attribute) from a text key, and remembers key and
  // arguments so that switching the language re-renders it.
  function label(el, key, args, attr) {
    const name = attr ? "i18nAttr" + attr : "i18n";
    el.dataset[name] = key;
    if (args) el.dataset[name + "Args"] = JSON.stringify(args);
    else delete el.dataset[name + "Args"];
    const text = t(key, args);
    if (attr) el.setAttribute(attr, text);
    else el.textContent = text;
    return el;
  }

  function relabel() {
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined;
      el.textContent = t(el.dataset.i18n, args);
    }
    for (const el of document.querySelectorAll("[data-i18n-attralt]")) {
      const args = el.dataset.i18nAttraltArgs ? JSON.parse(el.dataset.i18nAttraltArgs) : undefined;
      el.setAttribute("alt", t(el.dataset.i18nAttralt, args));
    }
    document.title = t("title");
  }

  function setLanguage(next) {
    lang = window.PageLanguage.apply(next, TEXTS, "journey-lang");
    relabel();
    showConfigDescription();
  }

  function initialLanguage() {
    return window.PageLanguage.initial(TEXTS, "journey-lang");
  }

  // A language code (ISO 639, as the server's detector names it) for a step title; the
  // name is looked up when the title is drawn, so it follows the page's language.
  function langName(code) {
    if (typeof code !== "string" || !/^[a-z]{2,3}$/.test(code)) return { key: "lang_unknown" };
    return { lang: code };
  }

  // Our own name first, else the browser's (Intl.DisplayNames knows every ISO 639 code,
  // so an Arabic or a Chinese prompt is named too), else the code itself.
  function languageName(code) {
    if (TEXTS.en["lang_" + code]) return t("lang_" + code);
    try {
      const name = new Intl.DisplayNames([lang], { type: "language" }).of(code);
      if (name && name !== code) return name;
    } catch (e) { /* a browser without Intl.DisplayNames */ }
    return code.toUpperCase();
  }

  // Once per journey, where the first step that could not translate is shown: why the
  // idea stays as it is (the server marks such steps with unsupported_language).
  function explainUnsupported(stage, m) {
    if (!m.unsupported_language || run.unsupportedShown) return;
    run.unsupportedShown = true;
    note(stage, "kind-message unsupported-language", "unsupportedLanguage",
      { language: langName(m.unsupported_language) }).setAttribute("role", "status");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function announce(key, args) {
    const live = $("announcer");
    label(live, key, args);
  }

  // ------------------------------------------------------------------ device and workshop

  const DEVICE_KEY = "journey-device";
  const MAX_ID_CHARS = 128; // the API's limit on an id

  // This device's random id: made once, kept in the browser, sent with every run so a
  // researcher can tell runs of one device apart without knowing who used it. None when
  // the browser keeps nothing (private mode): a new id per page would pretend a new device.
  function deviceId() {
    try {
      const saved = localStorage.getItem(DEVICE_KEY);
      if (saved && /^[0-9a-f]{32}$/.test(saved)) return saved;
      const bytes = new Uint8Array(16);
      crypto.getRandomValues(bytes); // works without HTTPS, unlike crypto.randomUUID
      const made = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(DEVICE_KEY, made);
      return localStorage.getItem(DEVICE_KEY) === made ? made : null;
    } catch (e) {
      return null;
    }
  }

  // The workshop a teacher named: the link's (?workshop=4b) wins over the server's setting.
  function workshop() {
    const fromLink = new URL(window.location.href).searchParams.get("workshop");
    const fromServer = $("recording-notice").dataset.workshop;
    for (const name of [fromLink, fromServer]) {
      const text = typeof name === "string" ? name.trim() : "";
      if (text && text.length <= MAX_ID_CHARS) return text;
    }
    return null;
  }

  // The server's notice as the teacher wrote it, else the page's own in its language.
  function showRecordingNotice() {
    const notice = $("recording-notice");
    const own = notice.dataset.notice;
    if (own) notice.textContent = own;
    else label(notice, "recordingNotice");
  }

  // ------------------------------------------------------------------ configs and form

  let configs = [];

  async function loadConfigs() {
    const select = $("config");
    try {
      const answer = await fetch("/api/configs", { headers: { Accept: "application/json" } });
      const body = await answer.json();
      configs = Array.isArray(body.configs) ? body.configs : [];
    } catch (e) {
      configs = [];
    }
    select.replaceChildren();
    for (const config of configs) {
      const option = el("option");
      option.value = String(config.name);
      if (TEXTS.en["config_" + config.name]) label(option, "config_" + config.name);
      else option.textContent = String(config.name);
      select.append(option);
    }
    const preferred = configs.find((c) => c.name === "stillepost");
    if (preferred) select.value = preferred.name;
    showConfigDescription();
  }

  function showConfigDescription() {
    const config = configs.find((c) => c.name === $("config").value);
    $("config-description").textContent = config ? localized(config.descriptions, config.description) : "";
  }

  function formError(key, args) {
    const box = $("form-error");
    if (!key) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    label(box, key, args);
    box.hidden = false;
  }

  // The ids sent with a run: only those known (an unknown one is left out, never made up).
  function runIds() {
    const ids = {};
    const device = deviceId();
    const session = workshop();
    if (device) ids.device_id = device;
    if (session) ids.session_id = session;
    return ids;
  }

  async function startRun(event) {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text) {
      formError("emptyPrompt");
      $("prompt").focus();
      return;
    }
    formError(null);
    const button = $("start");
    button.disabled = true;
    try {
      const answer = await fetch("/api/runs", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(Object.assign({
          config: $("config").value,
          input: text,
          safety_level: $("level").value,
        }, runIds())),
      });
      const body = await answer.json().catch(() => ({}));
      if (answer.status === 503) {
        formError("busy");
      } else if (!answer.ok || !RUN_ID.test(String(body.run_id))) {
        const message = body && body.error && body.error.message ? body.error.message : answer.status;
        formError("startFailed", { message: String(message) });
      } else {
        const url = new URL(window.location.href);
        url.searchParams.set("run", body.run_id);
        window.history.pushState({ run: body.run_id }, "", url);
        follow(body.run_id, $("level").value);
      }
    } catch (e) {
      formError("offline");
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ the journey

  function stageBox(n) {
    return $("stage-" + n);
  }

  // Stage 4's title names what the run's config makes: one picture, pictures, a sound,
  // or pictures and sounds (the general title when the config is unknown).
  let stage4Key = "stage4";

  function titleStage4(configName) {
    const config = configs.find((c) => c.name === configName);
    const kinds = ((config && config.outputs) || []).map((o) => o.kind);
    const images = kinds.filter((k) => k === "image").length;
    const sounds = kinds.filter((k) => k === "audio").length;
    let key = "stage4";
    if (images === 1 && sounds === 0) key = "stage4_image";
    else if (images > 1 && sounds === 0) key = "stage4_images";
    else if (sounds > 0 && images === 0) key = "stage4_sound";
    stage4Key = key;
    label(stageBox(4).querySelector("h3 span[data-i18n^='stage4']"), key);
  }

  // The name of a stage wherever it is said (its card, the step line, the announcement):
  // stage 4 by what this run's config makes.
  function stageName(stage) {
    return { key: stage === 4 ? stage4Key : "stage" + stage };
  }

  function setStage(n, status) {
    const box = stageBox(n);
    if (!box) return;
    box.dataset.status = status;
    label(box.querySelector(".stage-status"), "status_" + status);
  }

  function resetJourney() {
    clearStepProgress();
    if (run) {
      run.stageNow = 0;
      run.iterationsShown = 0;
      run.endShown = false;
    }
    label($("run-step"), "stepStarting");
    $("run-now").hidden = true;
    for (let n = 1; n <= 4; n += 1) {
      setStage(n, "pending");
      const body = stageBox(n).querySelector(".stage-body");
      const keep = body.querySelector(".iterations, .cards");
      body.replaceChildren();
      if (keep) {
        keep.replaceChildren();
        body.append(keep);
      }
    }
    for (const old of document.querySelectorAll(".run-error")) old.remove();
    titleStage4(null);
    $("downloads").hidden = true;
    $("download-list").replaceChildren();
    label($("run-status"), run && run.ended ? "run_replay" : "run_running");
    $("journey").hidden = false;
  }

  function follow(runId, level) {
    stopFollowing();
    run = { id: runId, source: null, lastSeq: 0, ended: false, level: level || null,
      retries: 0, timer: null, planned: null, endData: null, endShown: false,
      stageNow: 0, iterationsShown: 0 };
    const current = run;
    run.player = window.JourneyPlayer({
      stepMs: stepMs(),
      isStep: (entry) => STEPS.has(entry.type),
      apply: (entry) => { if (run === current) show(entry); },
      reset: () => { if (run === current) resetJourney(); },
      changed: (state) => { if (run === current) playerChanged(state); },
    });
    resetJourney();
    $("journey").focus({ preventScroll: false });
    connect();
  }

  function stopFollowing() {
    if (!run) return;
    run.player.stop();
    if (run.source) run.source.close();
    if (run.timer) clearTimeout(run.timer);
    run = null;
  }

  function connect() {
    const current = run;
    // The browser resends Last-Event-ID on its own reconnections; a new EventSource
    // (after the browser gave up) resumes with ?since= instead.
    const url = "/api/runs/" + current.id + "/events?since=" + current.lastSeq;
    const source = new EventSource(url);
    current.source = source;
    const onItem = (event) => { if (run === current) receive(event); };
    for (const type of ITEM_TYPES) source.addEventListener(type, onItem);
    source.addEventListener("end", (event) => {
      if (run !== current) return;
      clearStepProgress();
      finish(event);
    });
    // Progress inside the running step (not an item: no id, never replayed, latest only).
    source.addEventListener("progress", (event) => { if (run === current) showStepProgress(event); });
    source.addEventListener("open", () => {
      if (run !== current) return;
      current.retries = 0;
      if (!current.ended) label($("run-status"), "run_running");
    });
    source.addEventListener("error", () => {
      if (run !== current || current.ended) return;
      label($("run-status"), "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the server answered 404 or 503): decide ourselves.
        source.close();
        retryOrGiveUp(current);
      }
    });
  }

  async function retryOrGiveUp(current) {
    let status = 0;
    try {
      status = (await fetch("/api/runs/" + current.id + "/progress")).status;
    } catch (e) { status = 0; }
    if (run !== current) return;
    if (status === 404) {
      label($("run-status"), "notFound");
      current.ended = true;
      return;
    }
    if (current.retries >= MAX_MANUAL_RETRIES) {
      label($("run-status"), "offline");
      return;
    }
    current.retries += 1;
    current.timer = setTimeout(() => { if (run === current) connect(); }, 1000 * Math.min(current.retries, 5));
  }

  // ------------------------------------------------------------------ progress inside a step

  // The running step's progress, shown in its stage's box until the step's item arrives:
  // a place in the generator's queue, sampler step k of n, or the text written so far.
  function showStepProgress(event) {
    let state;
    try { state = JSON.parse(event.data); } catch (e) { return; }
    const box = stageBox(Number(state.stage));
    if (!box) return;
    let el = box.querySelector(".step-progress");
    if (!el) {
      el = document.createElement("div");
      el.className = "step-progress";
      el.setAttribute("role", "status");
      box.append(el);
    }
    el.hidden = false;
    el.dataset.kind = String(state.kind || "");
    const line = document.createElement("p");
    const children = [line];
    if (state.kind === "queue") {
      label(line, "progress_queue", { n: String(state.queue_remaining) });
    } else if (state.kind === "steps") {
      label(line, "progress_steps", { value: String(state.value), max: String(state.max) });
      const bar = document.createElement("progress");
      bar.max = Number(state.max) || 1;
      bar.value = Number(state.value) || 0;
      children.push(bar);
    } else if (state.kind === "text") {
      label(line, "progress_text");
      const text = document.createElement("q");
      text.className = "step-progress-text";
      text.textContent = String(state.text || "");  // untrusted model output: text only
      children.push(text);
    } else {
      label(line, "progress_started");
    }
    el.replaceChildren(...children);
  }

  function clearStepProgress(stage) {
    for (const el of document.querySelectorAll(".step-progress")) {
      if (stage === undefined || el.closest("#stage-" + stage)) el.remove();
    }
  }

  function receive(event) {
    const seq = Number(event.lastEventId);
    // Never show a step twice, whatever the connection did.
    if (!Number.isInteger(seq) || seq <= run.lastSeq) return;
    let item;
    try { item = JSON.parse(event.data); } catch (e) { return; }
    run.lastSeq = seq;
    if (item && Number.isInteger(item.stage)) clearStepProgress(item.stage);
    // Shown by the player, one step at a time, not as fast as the feed delivers.
    run.player.push({ type: event.type, item });
  }

  // ------------------------------------------------------------------ the pace of the journey

  // Items a child sees as a step of its own; the others (a stage's start, the run's end)
  // are shown together with the step that follows them.
  const STEPS = new Set([
    "user_input_text", "user_input_image", "translation_result", "stage1_safety_check",
    "stage1_blocked", "interception_iteration", "interception_final", "stage3_safety_check",
    "stage3_blocked", "output_image", "output_audio", "output_music", "output_video",
    "output_3d", "output_failed", "pipeline_error", "item",
  ]);

  // The pace the server sets (DEVSERVER_JOURNEY_STEP_MS); 0 shows every step at once.
  function stepMs() {
    const value = Number($("journey").dataset.stepMs);
    return Number.isFinite(value) && value >= 0 ? value : 900;
  }

  function show(entry) {
    const handler = HANDLERS[entry.type];
    if (handler) handler(entry.item);
    if (entry.type === "stage_transition") {
      const to = Number(meta(entry.item).to_stage);
      if (to >= 1 && to <= 4) run.stageNow = to;
    }
    if (entry.type === "interception_iteration") run.iterationsShown += 1;
    if (STEPS.has(entry.type)) caption(entry);
  }

  function plannedIterations() {
    const config = configs.find((c) => c.name === run.config);
    return config && Number.isInteger(config.iterations) ? config.iterations : null;
  }

  // What the step just shown is, in words: "Übersetzung 3 von 8", "Schritt 3: …".
  function caption(entry) {
    const item = entry.item;
    if (entry.type === "interception_iteration") {
      const m = meta(item);
      const n = item.stage_iteration === null ? run.iterationsShown : item.stage_iteration;
      const planned = plannedIterations();
      const kind = m.to_lang !== undefined ? "Translation" : "Transformation";
      label($("run-step"), planned ? "step" + kind + "Of" : "step" + kind, { n, planned });
      return;
    }
    const stage = Number(item.stage);
    if (stage >= 1 && stage <= 4) label($("run-step"), "stepStage", { stage, name: stageName(stage) });
  }

  // With a slow backend the page has shown all it has: it says which step runs now.
  function captionNow() {
    const planned = plannedIterations();
    const stage = run.stageNow;
    if (stage === 2 && planned && run.iterationsShown < planned) {
      const config = configs.find((c) => c.name === run.config);
      const kind = config && config.interception && config.interception.kind === "stille_post"
        ? "nowTranslation" : "nowTransformation";
      label($("run-now"), kind, { n: run.iterationsShown + 1, planned });
    } else if (stage >= 1 && stage <= 4) {
      label($("run-now"), "nowStage", { stage, name: stageName(stage) });
    } else {
      label($("run-now"), "nowStarting");
    }
  }

  function playerChanged(state) {
    const finished = state.caughtUp && state.closed;
    $("run-now").hidden = !(state.caughtUp && !state.closed && !run.ended);
    if (!$("run-now").hidden) captionNow();
    label($("player-position"), "playerPosition", { n: state.shown, total: state.total });
    $("player-replay").disabled = !finished || state.total === 0;
    $("player-back").disabled = state.shown <= 1;
    $("player-forward").disabled = state.caughtUp;
    $("player-all").disabled = state.caughtUp;
    const pause = $("player-pause");
    pause.disabled = finished;
    label(pause, state.playing && !finished ? "playerPause" : "playerPlay");
    pause.setAttribute("aria-pressed", String(!state.playing && !finished));
    if (finished && run.endData && !run.endShown) {
      run.endShown = true;
      showEnd(run.endData);
    }
  }

  function meta(item) {
    return item && item.metadata && typeof item.metadata === "object" ? item.metadata : {};
  }

  function entry(stage, className, titleKey, titleArgs, text) {
    const box = el("div", "entry " + (className || ""));
    if (titleKey) box.append(label(el("p", "entry-title"), titleKey, titleArgs));
    if (text !== undefined && text !== null) box.append(el("p", "entry-text", text));
    stageBox(stage).querySelector(".stage-body").append(box);
    return box;
  }

  function note(stage, className, key, args) {
    const node = label(el("p", className), key, args);
    stageBox(stage).querySelector(".stage-body").append(node);
    return node;
  }

  function card(stage, loop) {
    const list = stageBox(stage).querySelector(".cards");
    const id = "card-" + stage + "-" + loop;
    let node = document.getElementById(id);
    if (!node) {
      node = el("li", "card");
      node.id = id;
      node.append(el("p", "card-title"));
      list.append(node);
    }
    return node;
  }

  function titleCard(node, item) {
    const loop = item.loop_iteration === null ? "?" : item.loop_iteration;
    const name = meta(item).output;
    const shown = name ? { text: String(name), texts: outputLabels(String(name)) } : "";
    label(node.querySelector(".card-title"), "output", { n: loop, name: shown });
  }

  // The labels of an output named ``name`` (the config of the run shown first, since
  // names are unique only within a config).
  function outputLabels(name) {
    const own = run && run.config ? configs.filter((c) => c.name === run.config) : [];
    for (const config of own.concat(configs)) {
      const output = (config.outputs || []).find((o) => o.name === name);
      if (output && output.labels) return output.labels;
    }
    return {};
  }

  function levelName(level) {
    return typeof level === "string" && TEXTS.en["level_" + level] ? { key: "level_" + level } : String(level || "?");
  }

  function ownMediaUrl(item) {
    const url = item.media_url;
    const prefix = "/api/runs/" + run.id + "/media/";
    if (typeof url !== "string" || !url.startsWith(prefix)) return null;
    if (!/^[A-Za-z0-9%._-]+$/.test(url.slice(prefix.length))) return null;
    return url;
  }

  function showMedia(item, kind) {
    const loop = item.loop_iteration === null ? "x" + item.sequence : item.loop_iteration;
    const node = card(4, loop);
    titleCard(node, item);
    node.dataset.status = "done";
    const url = ownMediaUrl(item);
    if (!url) return;
    let media;
    if (kind === "image") {
      media = el("img", "output-image");
      media.src = url;
      media.loading = "lazy";
      label(media, "imageAlt", { text: item.content || "" }, "alt");
      if (item.media && item.media.width && item.media.height) {
        media.width = item.media.width;
        media.height = item.media.height;
      }
    } else if (kind === "audio" || kind === "video") {
      media = el(kind, "output-" + kind);
      media.controls = true;
      media.preload = "metadata";
      media.src = url;
      if (item.content) media.setAttribute("aria-label", String(item.content));
    } else {
      media = label(el("a", "output-link"), "mediaLink");
      media.href = url;
    }
    node.append(media);
    if (item.content) node.append(el("p", "card-text", item.content));
    announce("announceOutput", { n: loop });
  }

  const HANDLERS = {
    pipeline_start(item) {
      if (run && typeof item.config === "string") {
        run.config = item.config; // for output labels
        titleStage4(item.config);
      }
    },
    stage_transition(item) {
      const from = Number(meta(item).from_stage);
      const to = Number(meta(item).to_stage);
      if (from >= 1 && from <= 4 && stageBox(from).dataset.status === "running") setStage(from, "done");
      if (to >= 1 && to <= 4) {
        setStage(to, "running");
        announce("announceStage", { stage: to, name: stageName(to) });
      }
    },
    user_input_text(item) {
      const language = meta(item).language;
      if (language) entry(1, "input", "yourIdeaIn", { language: langName(language) }, item.content);
      else entry(1, "input", "yourIdea", null, item.content);
    },
    translation_result(item) {
      const m = meta(item);
      entry(1, "translation", m.translated === false ? "notTranslated" : "translated",
        { from: langName(m.from_lang), to: langName(m.to_lang) }, item.content);
      explainUnsupported(1, m);
    },
    stage1_safety_check(item) {
      if (meta(item).passed) note(1, "verdict passed", "safetyPassed");
    },
    stage1_blocked() {
      setStage(1, "blocked");
      note(1, "kind-message", "blocked1").setAttribute("role", "alert");
      for (const n of [2, 3, 4]) setStage(n, "skipped");
    },
    interception_iteration(item) {
      const list = stageBox(2).querySelector(".iterations");
      const node = el("li", "iteration");
      const n = item.stage_iteration === null ? list.children.length + 1 : item.stage_iteration;
      node.dataset.iteration = String(n);
      const m = meta(item);
      if (m.from_lang !== undefined || m.to_lang !== undefined) {
        node.append(label(el("p", "iteration-title"),
          m.translated === false ? "iterationNotTranslated" : "iteration",
          { n, from: langName(m.from_lang), to: langName(m.to_lang) }));
      } else {
        node.append(label(el("p", "iteration-title"), "iterationDada", { n }));
      }
      node.append(el("p", "iteration-text", item.content));
      list.append(node);
      explainUnsupported(2, m);
      announce("announceIteration", { n, text: item.content || "" });
    },
    interception_final(item) {
      entry(2, "final", "finalText", null, item.content);
    },
    stage3_safety_check(item) {
      const m = meta(item);
      if (m.safety_level && !run.level) run.level = m.safety_level;
      const node = card(3, item.loop_iteration);
      titleCard(node, item);
      node.dataset.level = String(m.safety_level || run.level || "");
      if (m.passed) {
        node.dataset.status = "done";
        node.append(label(el("p", "verdict passed"), "checkPassed",
          { level: levelName(m.safety_level || run.level) }));
      }
    },
    stage3_blocked(item) {
      const node = card(3, item.loop_iteration);
      titleCard(node, item);
      node.dataset.status = "blocked";
      const level = node.dataset.level || run.level;
      const message = label(el("p", "kind-message"), "blocked3", { level: levelName(level) });
      message.setAttribute("role", "alert");
      node.append(message);
      const later = card(4, item.loop_iteration);
      titleCard(later, item);
      later.dataset.status = "skipped";
      later.append(label(el("p", "verdict skipped"), "notMade"));
    },
    output_image(item) { showMedia(item, "image"); },
    output_audio(item) { showMedia(item, "audio"); },
    output_music(item) { showMedia(item, "audio"); },
    output_video(item) { showMedia(item, "video"); },
    output_3d(item) { showMedia(item, "file"); },
    output_failed(item) {
      const node = card(4, item.loop_iteration);
      titleCard(node, item);
      node.dataset.status = "failed";
      node.append(label(el("p", "kind-message failed"), "failed4"));
    },
    pipeline_error(item) {
      const stage = item.stage >= 1 && item.stage <= 4 ? item.stage : null;
      if (stage) setStage(stage, "failed");
      const box = el("p", "kind-message failed run-error");
      label(box, "error");
      box.setAttribute("role", "alert");
      $("run-status").after(box);
    },
    pipeline_complete() {},
    user_input_image() {},
    item() {},
  };

  // The feed's end: kept until the player has shown every step, then shown.
  function finish(event) {
    const current = run;
    let body = {};
    try { body = JSON.parse(event.data); } catch (e) { body = {}; }
    current.ended = true;
    current.source.close();
    current.endData = body;
    current.player.close();
  }

  function showEnd(body) {
    const current = run;
    const status = typeof body.status === "string" ? body.status : "error";
    const progress = body.progress || {};
    for (const stage of Array.isArray(progress.stages) ? progress.stages : []) {
      if (stage.stage >= 1 && stage.stage <= 4 && typeof stage.status === "string") {
        setStage(stage.stage, stage.status);
      }
    }
    const iterations = progress.iterations;
    // "1 of 1 transformations" says nothing: the note is for journeys of several steps.
    if (iterations && iterations.planned > 1 && iterations.done > 0) {
      const list = stageBox(2).querySelector(".stage-body");
      const note = label(el("p", "iterations-done"), "iterationsDone",
        { done: iterations.done, planned: iterations.planned });
      list.append(note);
    }
    const outcome = outcomeParts(status, progress.outputs);
    if (outcome) {
      // Each part is its own element, so switching the language re-renders all of them.
      const box = $("run-status");
      delete box.dataset.i18n; // the parts carry the texts now
      delete box.dataset.i18nArgs;
      box.replaceChildren();
      for (const [key, args] of outcome) box.append(label(el("span", "outcome-part"), key, args), " ");
      $("announcer").textContent = box.textContent;
    } else {
      label($("run-status"), "run_" + (TEXTS.en["run_" + status] ? status : "error"));
      announce("run_" + (TEXTS.en["run_" + status] ? status : "error"));
    }
    showDownloads(current);
  }

  // What became of the outputs, in words that match what happened: how many are here,
  // how many the age check held back, how many could not be made, and what to try next.
  // Null for runs where every output was made (or none was planned): the status says it.
  function outcomeParts(status, outputs) {
    if (status !== "partial" && status !== "no_output") return null;
    const count = (name) => (outputs && Number.isInteger(outputs[name]) ? outputs[name] : 0);
    const done = count("done");
    const blocked = count("blocked");
    const failed = count("failed");
    const planned = outputs && Number.isInteger(outputs.planned) ? outputs.planned : done + blocked + failed;
    const parts = [];
    if (done > 0) parts.push([done === 1 ? "outcomeSomeOne" : "outcomeSome", { done, planned }]);
    else parts.push(["outcomeNone", null]);
    const level = levelName(run && run.level);
    if (blocked === 1) parts.push(["outcomeBlockedOne", { level }]);
    else if (blocked > 1) parts.push(["outcomeBlockedMany", { n: blocked, level }]);
    if (failed === 1) parts.push(["outcomeFailedOne", null]);
    else if (failed > 1) parts.push(["outcomeFailedMany", { n: failed }]);
    // Nothing made: a blocked idea needs another idea; a failure may pass on a new try.
    if (done === 0) parts.push([failed > 0 && blocked === 0 ? "outcomeTryAgain" : "outcomeTryIdea", null]);
    return parts;
  }

  // A child gets the journey as a picture book and the pictures, nothing else: the
  // research formats (QDPX, RO-Crate …) are on the researchers' page (/research).
  async function showDownloads(current) {
    const list = $("download-list");
    list.replaceChildren();
    const base = "/api/runs/" + current.id;
    const links = [];
    if (formats === null) {
      try {
        const answer = await fetch("/api/formats", { headers: { Accept: "application/json" } });
        const body = answer.ok ? await answer.json() : {};
        formats = Array.isArray(body.formats) ? body.formats : [];
      } catch (e) {
        formats = [];
      }
    }
    if (run !== current) return;
    const book = formats.find((f) => f && f.name === "picturebook" && f.available !== false);
    if (book) {
      const link = label(el("a", "download download-book"), "downloadBook");
      link.href = base + "/export/picturebook";
      link.setAttribute("download", "");
      links.push(link);
    }
    const images = document.querySelectorAll("#stage-4 img.output-image");
    images.forEach((image, index) => {
      const url = image.getAttribute("src") || "";
      const file = url.slice(url.lastIndexOf("/") + 1);
      const link = label(el("a", "download download-image"), "downloadImage", { n: index + 1 });
      link.href = url; // already checked to be this run's own media URL (ownMediaUrl)
      link.setAttribute("download", file);
      links.push(link);
    });
    for (const link of links) {
      const li = el("li");
      li.append(link);
      list.append(li);
    }
    $("downloads").hidden = links.length === 0;
  }

  // ------------------------------------------------------------------ start

  function runFromUrl() {
    const id = new URL(window.location.href).searchParams.get("run");
    return id && RUN_ID.test(id) ? id : null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    setLanguage(initialLanguage());
    for (const button of document.querySelectorAll("button.lang")) {
      button.addEventListener("click", () => setLanguage(button.dataset.lang));
    }
    $("config").addEventListener("change", showConfigDescription);
    $("start-form").addEventListener("submit", startRun);
    showRecordingNotice();
    deviceId(); // made on the first visit, not only on the first run
    const controls = { replay: "replay", back: "back", pause: null, forward: "forward", all: "all" };
    for (const [name, action] of Object.entries(controls)) {
      $("player-" + name).addEventListener("click", () => {
        if (!run) return;
        if (action) run.player[action]();
        else if (run.player.state().playing) run.player.pause();
        else run.player.play();
      });
    }
    loadConfigs();
    const id = runFromUrl();
    if (id) follow(id, null);
    window.addEventListener("popstate", () => {
      const next = runFromUrl();
      if (next && (!run || run.id !== next)) follow(next, null);
      else if (!next) { stopFollowing(); $("journey").hidden = true; }
    });
  });
})();
