// The review page (/review/<link>): for each image the annotators disagreed on, every answer
// overlaid (toggled per annotator), the agreement details (which objects matched, which did
// not), and the expert's decision: accept one answer, accept the consensus, or edit and
// submit their own. The decision reaches the item's workflow through POST /items/{id}/review.
//
// It reads GET /campaigns/{id}/reviews entries: item_id, ordinal, answers [{response_id,
// annotator_id, body}], majority, agreement, and when present width, height, image_url,
// consensus {objects}, agreement_details {score, pairs}. Missing keys are simply not shown.

import { Api, ApiError, newIdempotencyKey, tokenFromLocation } from "./api.js";
import { $, clear, colorFor, formatTime, h } from "./dom.js";
import { Editor } from "./editor.js";
import { describe, renderObject } from "./render.js";
import { Stage } from "./stage.js";
import { objectIndexOf, validateResponse } from "./validate.js";

const api = new Api(tokenFromLocation());
const state = {
  me: null,
  entries: [],
  current: null,
  visible: new Map(), // layer id -> shown?
  highlight: null, // [{layer, index}]
  editor: null,
  stage: null,
  busy: false,
  decidedCount: 0,
  decided: new Set(), // items decided here; listed until their workflow has finalized them
};

// ---- screens and messages (as on the annotation page) ----------------------------------

function screen(title, text, actions = []) {
  $("#screen-title").textContent = title;
  $("#screen-text").textContent = text;
  clear($("#screen-actions")).append(...actions);
  $("#screen").hidden = false;
}

function message(kind, text, items = []) {
  const box = clear($("#messages"));
  if (!text) return;
  const p = h(`div.${kind}`, {}, text);
  if (items.length) p.append(h("ul", {}, items.map(([field, msg]) => h("li", {}, h("code", {}, field), `: ${msg}`))));
  box.append(p);
}

// ---- loading ----------------------------------------------------------------------------

async function start() {
  try {
    state.me = await api.get("/links/me");
  } catch (err) {
    if (err instanceof ApiError) return screen("This link no longer works", err.message);
    throw err;
  }
  if (state.me.person.role !== "expert") {
    window.location.replace(`/work/${encodeURIComponent(api.token)}`);
    return;
  }
  $("#campaign").textContent = state.me.campaign.name;
  $("#person").textContent = state.me.person.name;
  state.stage = new Stage($("#stage"));
  state.stage.onchange = () => renderReference();
  $("#refresh").addEventListener("click", () => refresh());
  await refresh();
  setInterval(() => {
    if (!state.current && !state.busy) refresh();
  }, 15000);
}

async function refresh(keep = true) {
  let entries;
  try {
    entries = await api.get(`/campaigns/${state.me.campaign.id}/reviews`);
  } catch (err) {
    if (err instanceof ApiError && err.isLinkProblem) return screen("This link no longer works", err.message);
    message("error", err.message);
    return;
  }
  state.entries = entries.filter((e) => !state.decided.has(e.item_id));
  renderQueue();
  const still =
    keep && state.current && state.entries.find((e) => e.item_id === state.current.item_id);
  if (still) return;
  if (state.entries.length) {
    $("#screen").hidden = true;
    await open(state.entries[0]);
  } else {
    state.current = null;
    document.body.dataset.item = "";
    state.stage.clearImage();
    clear($("#answers"));
    clear($("#consensus"));
    clear($("#agreement"));
    clear($("#actions"));
    screen("Nothing awaits review", "Every image is decided for now. This page checks again on its own.", [
      h("button.primary", { onclick: () => refresh(false) }, "Check again"),
    ]);
  }
}

function renderQueue() {
  const list = clear($("#queue"));
  $("#progress").textContent = `${state.entries.length} to review · ${state.decidedCount} decided`;
  for (const entry of state.entries) {
    const score = agreementScore(entry);
    list.append(
      h(
        "li",
        {
          class: state.current?.item_id === entry.item_id ? "current" : "",
          onclick: () => open(entry),
          dataset: { item: entry.item_id },
        },
        h("span", {}, `#${entry.ordinal}`),
        h("span.score", {}, score === null ? "" : `agreement ${score.toFixed(2)}`),
      ),
    );
  }
}

function agreementScore(entry) {
  const s = entry.agreement_details?.score ?? entry.agreement;
  return typeof s === "number" ? s : null;
}

async function open(entry) {
  stopEditing();
  message();
  state.current = entry;
  state.visible = new Map(entry.answers.map((_, i) => [`answer-${i}`, true]));
  state.visible.set("consensus", false);
  state.highlight = null;
  document.body.dataset.item = entry.item_id;
  renderQueue();
  $("#stage").classList.add("loading");
  try {
    const url = entry.image_url || `/items/${encodeURIComponent(entry.item_id)}/image`;
    state.natural = await state.stage.load(api.imageUrl(url));
  } catch (err) {
    message("error", err.message);
  } finally {
    $("#stage").classList.remove("loading");
  }
  state.size = entry.width && entry.height ? [entry.width, entry.height] : null;
  renderAll();
}

// ---- the answers, the consensus, the agreement -----------------------------------------

const ontology = () => state.me.ontology;
const classOf = (label) => ontology().classes.find((c) => c.name === label);
const consensusObjects = (entry) => (Array.isArray(entry.consensus?.objects) ? entry.consensus.objects : null);

function layers(entry) {
  const out = entry.answers.map((answer, i) => ({
    id: `answer-${i}`,
    color: colorFor(i),
    objects: answer.body?.objects || [],
    dashed: false,
  }));
  const consensus = consensusObjects(entry);
  if (consensus) out.push({ id: "consensus", color: "#ffffff", objects: consensus, dashed: true });
  return out;
}

function renderAll() {
  renderReference();
  renderAnswers();
  renderConsensus();
  renderAgreement();
  renderActions();
}

function renderReference() {
  const group = clear(state.stage.reference);
  const entry = state.current;
  if (!entry || state.editor) return;
  for (const layer of layers(entry)) {
    if (!state.visible.get(layer.id)) continue;
    layer.objects.forEach((obj, index) => {
      if (obj.type === "tag") return;
      const g = renderObject(group, obj, {
        color: layer.color,
        cls: classOf(obj.label),
        stage: state.stage,
        index,
        dashed: layer.dashed,
        layer: layer.id,
      });
      if (state.highlight) {
        const lit = state.highlight.some((x) => x.layer === layer.id && x.index === index);
        g.classList.add(lit ? "highlight" : "dim");
      }
    });
  }
}

function renderAnswers() {
  const box = clear($("#answers"));
  const entry = state.current;
  box.append(h("h3", {}, `Answers (${entry.answers.length})`));
  entry.answers.forEach((answer, i) => {
    const id = `answer-${i}`;
    const objects = answer.body?.objects || [];
    const card = h(
      "div.answer",
      { dataset: { annotator: answer.annotator_id, response: answer.response_id } },
      h(
        "header",
        {},
        h(
          "label",
          {},
          h("input", {
            type: "checkbox",
            checked: state.visible.get(id),
            "aria-label": `show ${answer.annotator_id}`,
            onchange: (e) => {
              state.visible.set(id, e.target.checked);
              renderReference();
            },
          }),
          h("span.swatch", {}),
          h("span.who", {}, `Annotator ${i + 1}`),
        ),
      ),
      h("div.help", {}, answer.annotator_id),
      h(
        "ul",
        {},
        objects.length ? objects.map((o, n) => h("li", { dataset: { index: String(n) } }, `#${n} ${describe(o)}`)) : h("li", {}, "(nothing)"),
      ),
      h(
        "button.primary",
        { type: "button", onclick: () => decide({ decision: "accept_response", response_id: answer.response_id }, `accepted annotator ${i + 1}'s answer`) },
        "Accept this answer",
      ),
      h("button.secondary", { type: "button", onclick: () => startEditing(objects) }, "Edit from this"),
    );
    card.style.setProperty("--color", colorFor(i));
    box.append(card);
  });
}

function renderConsensus() {
  const box = clear($("#consensus"));
  const entry = state.current;
  const objects = consensusObjects(entry);
  const majority = entry.majority;
  box.append(h("h3", {}, "Computed consensus"));
  const card = h("div.answer", {});
  if (objects) {
    card.append(
      h(
        "header",
        {},
        h(
          "label",
          {},
          h("input", {
            type: "checkbox",
            checked: state.visible.get("consensus"),
            "aria-label": "show consensus",
            onchange: (e) => {
              state.visible.set("consensus", e.target.checked);
              renderReference();
            },
          }),
          h("span.swatch", {}),
          "Consensus",
        ),
      ),
      h(
        "ul",
        {},
        objects.length
          ? objects.map((o, n) =>
              h("li", {}, `#${n} ${describe(o)}${typeof o.confidence === "number" ? ` · confidence ${o.confidence.toFixed(2)}` : ""}${Array.isArray(o.support) ? ` · support ${o.support.length}` : ""}`),
            )
          : h("li", {}, "(nothing)"),
      ),
    );
    card.style.setProperty("--color", "#ffffff");
  }
  if (majority) {
    const labels = majority.labels?.length ? majority.labels.join(", ") : "(none)";
    card.append(
      h("div.help", {}, `Majority tags: ${labels}`, typeof majority.confidence === "number" ? ` · confidence ${majority.confidence.toFixed(2)}` : "", majority.tie ? " · a tie" : ""),
    );
  }
  card.append(
    h("button.primary", { type: "button", onclick: () => decide({ decision: "accept_consensus" }, "accepted the consensus") }, "Accept consensus"),
  );
  if (objects) card.append(h("button.secondary", { type: "button", onclick: () => startEditing(objects) }, "Edit from consensus"));
  box.append(card);
}

function renderAgreement() {
  const box = clear($("#agreement"));
  const entry = state.current;
  const details = entry.agreement_details;
  box.append(h("h3", {}, "Agreement"));
  const score = agreementScore(entry);
  box.append(h("div.score-big", {}, score === null ? "—" : score.toFixed(2)));
  if (!details?.pairs?.length) {
    if (!details) box.append(h("p.help", {}, "No per-object details for this item."));
    return;
  }
  const indexOf = new Map(entry.answers.map((a, i) => [a.annotator_id, i]));
  const name = (id) => (indexOf.has(id) ? `A${indexOf.get(id) + 1}` : id);
  for (const pair of details.pairs) {
    const ia = indexOf.get(pair.annotator_a);
    const ib = indexOf.get(pair.annotator_b);
    const table = h("table", {}, h("tr", {}, h("th", {}, `${name(pair.annotator_a)} ↔ ${name(pair.annotator_b)}`), h("th", {}, typeof pair.score === "number" ? pair.score.toFixed(2) : "")));
    for (const [a, b, similarity] of pair.matches || []) {
      const row = h("tr.match", {}, h("td", {}, `#${a} ↔ #${b}`), h("td", {}, typeof similarity === "number" ? similarity.toFixed(2) : ""));
      row.addEventListener("mouseenter", () => lightUp([{ layer: `answer-${ia}`, index: a }, { layer: `answer-${ib}`, index: b }]));
      row.addEventListener("mouseleave", () => lightUp(null));
      table.append(row);
    }
    for (const [who, layerIndex, indices] of [[pair.annotator_a, ia, pair.unmatched_a], [pair.annotator_b, ib, pair.unmatched_b]]) {
      for (const n of indices || []) {
        const row = h("tr.match.unmatched", {}, h("td", {}, `${name(who)} #${n}`), h("td", {}, "unmatched"));
        row.addEventListener("mouseenter", () => lightUp([{ layer: `answer-${layerIndex}`, index: n }]));
        row.addEventListener("mouseleave", () => lightUp(null));
        table.append(row);
      }
    }
    box.append(table);
  }
}

function lightUp(targets) {
  state.highlight = targets;
  renderReference();
}

function renderActions() {
  const box = clear($("#actions"));
  if (state.editor) {
    box.append(
      h("button.secondary", { type: "button", onclick: () => stopEditing(true) }, "Cancel edit"),
      h("button.primary", { type: "button", id: "submit-edit", onclick: () => submitEdit() }, "Submit my answer"),
    );
  } else if (state.current) {
    box.append(h("button.secondary", { type: "button", onclick: () => startEditing([]) }, "Draw my own"));
  }
}

// ---- editing ------------------------------------------------------------------------------

function startEditing(objects) {
  stopEditing();
  state.editor = new Editor(
    state.stage,
    { tools: $("#tools"), tags: $("#tags"), objects: $("#objects"), details: $("#details"), hint: $("#hint") },
    ontology(),
  );
  state.editor.mode = "select";
  state.editor.load(objects);
  clear(state.stage.reference);
  for (const id of ["answers", "consensus", "agreement"]) $(`#${id}`).hidden = true;
  $("#editing").hidden = false;
  renderActions();
}

function stopEditing(rerender = false) {
  if (!state.editor) return;
  state.editor.destroy();
  state.editor = null;
  clear(state.stage.layers);
  clear(state.stage.overlay);
  for (const id of ["tools", "tags", "objects", "details"]) clear($(`#${id}`));
  $("#hint").textContent = "";
  $("#editing").hidden = true;
  for (const id of ["answers", "consensus", "agreement"]) $(`#${id}`).hidden = false;
  state.stage.onchange = () => renderReference();
  if (rerender) {
    renderReference();
    renderActions();
  }
}

async function submitEdit() {
  const objects = state.editor.wireObjects();
  const errors = validateResponse(ontology(), objects, state.size);
  if (errors.length) {
    state.editor.showProblems(errors, objectIndexOf);
    message("error", "Fix these before submitting:", errors.map((e) => [e.field, e.message]));
    return;
  }
  await decide({ decision: "edit", objects }, "submitted an edited answer");
}

// ---- the decision -------------------------------------------------------------------------

async function decide(body, what) {
  const entry = state.current;
  if (!entry || state.busy) return;
  state.busy = true;
  entry.key = entry.key || newIdempotencyKey(); // one key per item: a retry is the same decision
  try {
    const reply = await api.post(`/items/${encodeURIComponent(entry.item_id)}/review`, { ...body, idempotency_key: entry.key });
    state.decidedCount++;
    state.decided.add(entry.item_id);
    const line = `#${entry.ordinal}: ${what}, by ${state.me.person.name} at ${formatTime(reply.decided_at)}`;
    $("#decided").prepend(h("li", { dataset: { item: entry.item_id, review: reply.review_id } }, line));
    stopEditing();
    state.current = null;
    await refresh(false);
    message("success", `Decided ${line}.`);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.status === 401) return screen("This link no longer works", err.message);
    const items = err.errors.map((e) => [e.field, e.message]);
    if (err.status === 422 && state.editor) {
      state.editor.showProblems(
        err.errors.map((e) => ({ ...e, field: e.field.replace(/^body\./, "") })),
        objectIndexOf,
      );
    }
    message("error", err.message, items);
    if (err.status === 409) await refresh(false);
  } finally {
    state.busy = false;
  }
}

start().catch((err) => {
  console.error(err);
  screen("Something went wrong", String(err.message || err), [h("button.primary", { onclick: () => window.location.reload() }, "Reload")]);
});
