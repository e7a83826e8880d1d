// The playground's behaviour: the markup (bots/playground/page.py) works with labels and
// focus as it is; this adds the live count, the sliders' values, recording, and the calls
// to /play/… . Nothing is loaded from elsewhere; audio plays from blob: URLs made here.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("say");
  const text = $("text");
  const count = $("count");
  const limit = Number(count.dataset.limit);
  const status = $("status");
  const generate = $("generate");
  const player = $("player");
  const takes = [];
  let recorded = null; // the microphone's last recording, a File
  let recorder = null;
  let recordTimer = null;
  const MAX_RECORD_MS = 60000;

  function say(message, kind) {
    status.textContent = message;
    status.className = kind || "";
  }

  function updateCount() {
    const used = text.value.length;
    count.textContent = `${used} / ${limit} characters`;
    count.classList.toggle("over", used > limit);
  }

  function voice() {
    return form.querySelector('input[name="voice"]:checked').value;
  }

  function clip() {
    if (voice() === "upload") return $("clip").files[0] || null;
    if (voice() === "record") return recorded;
    return null;
  }

  function showVoiceRows() {
    const chosen = voice();
    $("upload-row").hidden = chosen !== "upload";
    $("record-row").hidden = chosen !== "record";
    $("clip-actions").hidden = !(chosen === "upload" || chosen === "record");
  }

  function randomSeed() {
    const value = new Uint32Array(1);
    crypto.getRandomValues(value);
    return 1 + (value[0] % 2147483646);
  }

  function fields(withClip) {
    const data = new FormData();
    for (const name of ["text", "exaggeration", "temperature", "cfg_weight", "seed", "format"]) {
      data.append(name, $(name).value);
    }
    data.append("voice", voice());
    const chosen = withClip ? clip() : null;
    if (chosen) data.append("clip", chosen, chosen.name || "clip");
    return data;
  }

  async function post(path, body, headers) {
    try {
      return await fetch(path, { method: "POST", body, headers, credentials: "same-origin" });
    } catch (error) {
      return null;
    }
  }

  function busy(on) {
    generate.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  // Every answer of /play/say, /play/consent and /play/voice: audio, a question, or a sentence.
  async function handle(response, seed) {
    if (response === null) {
      say("I can't reach saybot — is it still running?", "error");
      return;
    }
    const type = response.headers.get("content-type") || "";
    if (response.ok && type.startsWith("audio/")) {
      await showTake(response, seed);
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (response.status === 202 && body && body.consent) {
      askConsent(body.consent, seed);
      return;
    }
    if (body && body.message) {
      say(body.message, "ok");
      loadInfo();
      return;
    }
    if (response.status === 401) {
      say("Your login has ended — reload the page and log in again.", "error");
      return;
    }
    const message = body && body.error ? body.error.message : `Something went wrong (${response.status}).`;
    say(message, "error");
  }

  async function showTake(response, seed) {
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const cached = response.headers.get("x-saybot-cached") === "1";
    const seconds = Number(response.headers.get("x-audio-duration") || "0");
    const voiceName = response.headers.get("x-saybot-voice") || "";
    const note = decodeURIComponent(response.headers.get("x-saybot-note") || "");
    const extension = { "audio/ogg": "ogg", "audio/mpeg": "mp3", "audio/wav": "wav" }[blob.type] || "audio";
    const take = {
      url,
      name: `saybot-take-${takes.length + 1}.${extension}`,
      text: text.value,
      seed,
      seconds,
      cached,
      voice: voiceName,
    };
    takes.push(take);
    player.src = url;
    player.load();
    $("download").href = url;
    $("download").download = take.name;
    const facts = [`AI voice · ${voiceName} · ${seconds.toFixed(1)} s`, `seed ${seed}`];
    facts.push(cached ? "from the cache" : "freshly made");
    $("take-facts").textContent = facts.join(" · ") + (note ? ` (${note})` : "");
    $("result").hidden = false;
    listTake(take);
    say(`Take ${takes.length} is ready: ${seconds.toFixed(1)} s${cached ? ", from the cache" : ""}.`, "ok");
  }

  function listTake(take) {
    const item = document.createElement("li");
    const play = document.createElement("button");
    play.type = "button";
    play.className = "link";
    play.textContent = "Play";
    play.addEventListener("click", () => {
      player.src = take.url;
      player.play();
    });
    const words = take.text.length > 60 ? `${take.text.slice(0, 60)}…` : take.text;
    const about = document.createElement("span");
    about.textContent = ` “${words}” · ${take.voice} · seed ${take.seed} · ${take.seconds.toFixed(1)} s${take.cached ? " · cached" : ""} · `;
    const download = document.createElement("a");
    download.href = take.url;
    download.download = take.name;
    download.textContent = "Download";
    item.append(play, about, download);
    $("takes").prepend(item);
    $("no-takes").hidden = true;
  }

  function askConsent(question, seed) {
    const box = $("consent");
    $("consent-text").textContent = question.prompt;
    const yes = $("consent-yes");
    const no = $("consent-no");
    yes.textContent = question.yes;
    no.textContent = question.no;
    box.hidden = false;
    say("Please confirm the recording first.", "");
    const answer = async (accepted) => {
      yes.onclick = no.onclick = null;
      box.hidden = true;
      busy(true);
      const response = await post(
        "/play/consent",
        JSON.stringify({ id: question.id, accepted }),
        { "Content-Type": "application/json" },
      );
      busy(false);
      if (accepted && response && response.ok) say(question.recorded, "ok");
      await handle(response, seed);
      generate.focus();
    };
    yes.onclick = () => answer(true);
    no.onclick = () => answer(false);
    yes.focus();
  }

  async function submit(event) {
    if (event) event.preventDefault();
    const seed = $("seed").value;
    busy(true);
    say("Generating…", "");
    const response = await post("/play/say", fields(true));
    await handle(response, seed);
    busy(false);
  }

  async function toggleRecording() {
    const button = $("record");
    if (recorder && recorder.state === "recording") {
      recorder.stop();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      say("I can't use the microphone: the browser did not allow it.", "error");
      return;
    }
    const kinds = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"];
    const mimeType = kinds.find((kind) => MediaRecorder.isTypeSupported(kind)) || "";
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
    recorder.addEventListener("stop", () => {
      clearTimeout(recordTimer);
      stream.getTracks().forEach((track) => track.stop());
      const type = (recorder.mimeType || "audio/webm").split(";")[0];
      const blob = new Blob(chunks, { type });
      recorded = new File([blob], `recording.${type.endsWith("ogg") ? "ogg" : "webm"}`, { type });
      button.textContent = "Record again";
      button.setAttribute("aria-pressed", "false");
      $("record-state").textContent = `Recorded ${Math.round(blob.size / 1024)} KB.`;
      say("Recording ready: Generate speaks in it.", "ok");
    });
    recorder.start();
    recordTimer = setTimeout(() => recorder.stop(), MAX_RECORD_MS);
    button.textContent = "Stop recording";
    button.setAttribute("aria-pressed", "true");
    $("record-state").textContent = "Recording… (60 s at most)";
    say("Recording.", "");
  }

  async function loadInfo() {
    let info = null;
    try {
      const response = await fetch("/play/info", { credentials: "same-origin" });
      info = response.ok ? await response.json() : null;
    } catch (error) {
      info = null;
    }
    const state = $("engine-state");
    if (info === null || info.engine === null) {
      $("engine-name").textContent = "unknown";
      state.textContent = info && info.reason ? info.reason : "not reachable";
      state.className = "down";
      return;
    }
    const engine = info.engine;
    $("engine-name").textContent = `${engine.name} (${engine.can_clone_voice ? "clones voices" : "built-in voice only"})`;
    state.textContent = info.ready ? "ready" : info.reason || "not ready";
    state.className = info.ready ? "ok" : "down";
    const saved = form.querySelector('input[name="voice"][value="saved"]');
    saved.disabled = info.saved_voice === false;
    saved.parentElement.classList.toggle("disabled", saved.disabled);
  }

  text.addEventListener("input", updateCount);
  for (const slider of form.querySelectorAll('input[type="range"]')) {
    const output = $(`${slider.id}-value`);
    slider.addEventListener("input", () => {
      output.textContent = slider.value;
    });
  }
  for (const radio of form.querySelectorAll('input[name="voice"]')) {
    radio.addEventListener("change", showVoiceRows);
  }
  $("dice").addEventListener("click", () => {
    $("seed").value = randomSeed();
  });
  $("record").addEventListener("click", toggleRecording);
  $("again").addEventListener("click", () => {
    $("seed").value = randomSeed();
    submit(null);
  });
  $("save-voice").addEventListener("click", async () => {
    busy(true);
    say("Saving…", "");
    await handle(await post("/play/voice", fields(true)), $("seed").value);
    busy(false);
  });
  $("forget").addEventListener("click", async () => {
    await handle(await post("/play/forget", new FormData()), $("seed").value);
  });
  form.addEventListener("submit", submit);
  updateCount();
  showVoiceRows();
  loadInfo();
})();
