// Search results, and a result shown in context.
import { state } from "./state.js";
import { el } from "./dom.js";
import { messageLine } from "./conversations.js";
import { send } from "./protocol.js";
import { renderLine } from "./render.js";

// ---- search ----

// showResults lists a search's results (newest first); a click shows the
// message in context: the history around it.
export function showResults(obj) {
  const hits = obj.messages || [];
  el.resultsTitle.textContent = `${hits.length} result${hits.length === 1 ? "" : "s"} for “${obj.query}” in #${obj.room}`;
  el.resultsList.replaceChildren(...hits.map((m) => {
    const li = renderLine(messageLine({}, m, {}));
    li.classList.add("hit");
    li.title = "show in context";
    li.addEventListener("click", () => {
      state.context = { room: obj.room, seq: m.seq, before: m.seq + 26, query: obj.query };
      send({ type: "history", room: obj.room, before: state.context.before, limit: 51 });
    });
    return li;
  }));
  el.results.hidden = false;
}

// showContext shows the history page around a search result, the result
// marked, in place of the results.
export function showContext(obj) {
  const { seq, query, room } = state.context;
  state.context = null;
  el.resultsTitle.textContent = `#${room} around the result for “${query}”`;
  el.resultsList.replaceChildren(...(obj.messages || []).map((m) => {
    const li = renderLine(messageLine({}, m, {}));
    if (m.seq === seq) li.classList.add("target");
    return li;
  }));
  el.results.hidden = false;
  const target = el.resultsList.querySelector(".target");
  if (target) target.scrollIntoView({ block: "center" });
}

el.search.addEventListener("submit", (e) => {
  e.preventDefault();
  const c = state.convs.get(state.current);
  const query = el.searchText.value.trim();
  if (!query || !c || c.kind !== "room") return;
  send({ type: "search", room: c.name, query, limit: 50 });
});
el.resultsClose.addEventListener("click", () => { el.results.hidden = true; });
