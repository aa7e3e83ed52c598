// The annotation page (/work/<link>): lease the next image, label it, check it with the
// server's own rules, submit, and go on to the next.

import { Api, ApiError, newIdempotencyKey, tokenFromLocation } from "./api.js";
import { $, clear, h } from "./dom.js";
import { Editor } from "./editor.js";
import { Stage, isTyping } from "./stage.js";
import { objectIndexOf, validateResponse } from "./validate.js";

const api = new Api(tokenFromLocation());
const state = { me: null, task: null, answered: 0, editor: null, stage: null, busy: false, leaseTimer: null };

// ---- screens and messages -------------------------------------------------------------

function screen(title, text, actions = []) {
  $("#screen-title").textContent = title;
  $("#screen-text").textContent = text;
  clear($("#screen-actions")).append(...actions);
  $("#screen").hidden = false;
}

function hideScreen() {
  $("#screen").hidden = true;
}

function message(kind, text, items = []) {
  const box = clear($("#messages"));
  if (!text) return;
  const p = h(`div.${kind}`, {}, text);
  if (items.length) p.append(h("ul", {}, items.map(([field, msg]) => h("li", {}, h("code", {}, field), `: ${msg}`))));
  box.append(p);
}

function linkProblem(err) {
  screen(
    err.status === 401 ? "This link no longer works" : "This link cannot open this page",
    err.message,
    [],
  );
}

// ---- progress and lease -----------------------------------------------------------------

function showProgress() {
  const single = state.me?.kind === "task";
  $("#progress").textContent = single
    ? `${Math.min(state.answered, 1)} of 1 labeled`
    : `${state.answered} labeled`;
}

function startLeaseTimer(expiresAt) {
  clearInterval(state.leaseTimer);
  const el = $("#lease");
  const tick = () => {
    const left = Math.round((new Date(expiresAt).getTime() - Date.now()) / 1000);
    if (left > 0) {
      el.classList.remove("late");
      el.textContent = `lease ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    } else {
      el.classList.add("late");
      el.textContent = "lease expired: submit anyway (it counts if nobody took the image)";
    }
  };
  tick();
  state.leaseTimer = setInterval(tick, 1000);
}

// ---- drafts: a reload of the page keeps the work on the open task ----------------------

const draftKey = (assignment) => `quorum:draft:${assignment}`;
const idempotencyKey = (assignment) => {
  const key = `quorum:key:${assignment}`;
  let value = sessionStorage.getItem(key);
  if (!value) {
    value = newIdempotencyKey();
    sessionStorage.setItem(key, value);
  }
  return value;
};

function saveDraft() {
  if (!state.task) return;
  try {
    sessionStorage.setItem(draftKey(state.task.assignment_id), JSON.stringify(state.editor.wireObjects()));
  } catch {
    // A draft too large for session storage is simply not kept.
  }
}

function loadDraft(assignment) {
  try {
    return JSON.parse(sessionStorage.getItem(draftKey(assignment)) || "null");
  } catch {
    return null;
  }
}

// ---- the flow ---------------------------------------------------------------------------

async function start() {
  try {
    state.me = await api.get("/links/me");
  } catch (err) {
    if (err instanceof ApiError) return linkProblem(err);
    throw err;
  }
  const me = state.me;
  if (me.person.role === "expert") {
    window.location.replace(`/review/${encodeURIComponent(api.token)}`);
    return;
  }
  $("#campaign").textContent = me.campaign.name;
  $("#person").textContent = me.person.name;
  state.answered = me.answered;
  showProgress();
  state.stage = new Stage($("#stage"));
  state.editor = new Editor(
    state.stage,
    { tools: $("#tools"), tags: $("#tags"), objects: $("#objects"), details: $("#details"), hint: $("#hint") },
    me.ontology,
    { onchange: saveDraft },
  );
  wireControls();
  await next();
}

async function next() {
  message();
  state.task = null;
  state.editor.enabled = false;
  setBusy(true);
  let reply;
  try {
    reply = await api.post(`/campaigns/${state.me.campaign.id}/tasks/next`);
  } catch (err) {
    setBusy(false);
    if (err instanceof ApiError && err.isLinkProblem) return linkProblem(err);
    if (err instanceof ApiError && err.status === 409) {
      return screen("Nothing to label", err.message, [h("button.primary", { onclick: () => next() }, "Check again")]);
    }
    message("error", err.message);
    return;
  }
  state.answered = reply.answered;
  showProgress();
  if (!reply.task) {
    setBusy(false);
    clearInterval(state.leaseTimer);
    $("#lease").textContent = "";
    state.stage.clearImage();
    const single = state.me.kind === "task";
    screen(
      single ? "Done" : "The queue is empty",
      reply.message,
      single ? [] : [h("button.primary", { onclick: () => { hideScreen(); next(); } }, "Check again")],
    );
    return;
  }
  hideScreen();
  state.task = reply.task;
  $("#stage").classList.add("loading");
  try {
    const natural = await state.stage.load(api.imageUrl(reply.task.image_url));
    state.size = reply.task.width && reply.task.height ? [reply.task.width, reply.task.height] : null;
    state.natural = natural;
  } catch (err) {
    message("error", `${err.message}. Skip it, or try again.`);
  } finally {
    $("#stage").classList.remove("loading");
  }
  // A draft kept from before a reload wins; else a model's prediction, if the campaign
  // shows one, is the first draft: every object of it can be moved, relabeled or deleted.
  const draft = loadDraft(reply.task.assignment_id);
  const prefill = draft ? [] : reply.task.prelabel?.objects || [];
  state.editor.load(draft || prefill);
  if (prefill.length) {
    message(
      "notice",
      `Pre-filled with ${prefill.length} object${prefill.length === 1 ? "" : "s"} from a model: ` +
        "check each one, and fix, relabel or delete what is wrong.",
    );
  }
  state.editor.enabled = true;
  document.body.dataset.assignment = reply.task.assignment_id;
  startLeaseTimer(reply.task.lease_expires_at);
  setBusy(false);
}

function setBusy(busy) {
  state.busy = busy;
  $("#submit").disabled = busy;
  $("#skip").disabled = busy;
}

/** The page's own check, with the server's rules; returns true when it may be sent. */
function check(objects) {
  const errors = validateResponse(state.me.ontology, objects, state.size);
  if (!errors.length) return true;
  state.editor.showProblems(errors, objectIndexOf);
  message(
    "error",
    `Fix ${errors.length === 1 ? "this" : `these ${errors.length}`} before submitting:`,
    errors.map((e) => [e.field, e.message]),
  );
  return false;
}

async function submit() {
  if (state.busy || !state.task) return;
  state.editor.cancelDrawing();
  const objects = state.editor.wireObjects();
  if (!check(objects)) return;
  const task = state.task;
  setBusy(true);
  try {
    const reply = await api.post(`/campaigns/${state.me.campaign.id}/tasks/${task.assignment_id}/response`, {
      idempotency_key: idempotencyKey(task.assignment_id),
      objects,
    });
    sessionStorage.removeItem(draftKey(task.assignment_id));
    await next();
    message("success", reply.late ? "Saved (after your lease ran out; it still counts)." : "Saved. Next image.");
  } catch (err) {
    setBusy(false);
    if (!(err instanceof ApiError)) throw err;
    if (err.isLinkProblem) return linkProblem(err);
    if (err.status === 422 && err.errors.length) {
      state.editor.showProblems(err.errors, objectIndexOf);
      message("error", "The server refused this answer:", err.errors.map((e) => [e.field, e.message]));
    } else if (err.status === 409) {
      // The lease ran out and the image went to someone else, or it was already answered.
      sessionStorage.removeItem(draftKey(task.assignment_id));
      screen("Not counted", err.message, [h("button.primary", { onclick: () => next() }, "Next image")]);
    } else {
      message("error", err.message);
    }
  }
}

async function skip() {
  if (state.busy || !state.task) return;
  setBusy(true);
  try {
    await api.post(`/campaigns/${state.me.campaign.id}/tasks/${state.task.assignment_id}/skip`);
    sessionStorage.removeItem(draftKey(state.task.assignment_id));
    await next();
  } catch (err) {
    setBusy(false);
    if (err instanceof ApiError && err.isLinkProblem) return linkProblem(err);
    message("error", err.message);
  }
}

function wireControls() {
  $("#submit").addEventListener("click", submit);
  $("#skip").addEventListener("click", skip);
  $("#undo").addEventListener("click", () => state.editor.undo());
  $("#redo").addEventListener("click", () => state.editor.redo());
  $("#zoom-in").addEventListener("click", () => state.stage.zoom(1.25));
  $("#zoom-out").addEventListener("click", () => state.stage.zoom(0.8));
  $("#zoom-fit").addEventListener("click", () => state.stage.fit());
  $("#help-button").addEventListener("click", () => $("#help").showModal());
  window.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      submit();
    } else if (e.key === "?" && !isTyping(e)) {
      $("#help").showModal();
    }
  });
}

start().catch((err) => {
  console.error(err);
  screen("Something went wrong", String(err.message || err), [h("button.primary", { onclick: () => window.location.reload() }, "Reload")]);
});
