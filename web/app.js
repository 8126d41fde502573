// The browser client. It speaks the extended protocol (see README) over one
// WebSocket: rooms with unread counts, live member lists, private
// conversations, history with scroll-back, search, typing indicators and
// mentions. It reconnects with backoff, logging in again under the same
// nickname and resuming the same rooms where it left off.
//
// Modules: state.js (the one state object), dom.js (elements),
// protocol.js (connection and server objects), conversations.js,
// render.js, search.js, and this one (what the user does).
import { state, TYPING_EVERY_MS, baseTitle } from "./state.js";
import { el } from "./dom.js";
import { addLine, conv, switchTo } from "./conversations.js";
import { send } from "./protocol.js";
import { render, renderConvs } from "./render.js";

// ---- user actions ----

el.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = el.text.value;
  if (!text.trim() || !state.loggedIn) return;
  el.text.value = "";
  el.text.focus();
  if (text.startsWith("/") && command(text)) return;
  const c = state.convs.get(state.current);
  if (!c) return;
  if (c.kind === "room") send({ type: "broadcast", room: c.name, message: text });
  else if (c.gone) addLine(c, { cls: "error", text: `${c.name} has left: not sent` });
  else send({ type: "private", to_id: c.id, message: text });
});

// command runs a slash command and reports whether it was one.
export function command(text) {
  const [cmd, ...rest] = text.trim().split(/\s+/);
  const arg = rest.join(" ");
  switch (cmd.toLowerCase()) {
    case "/join": joinRoom(arg); return true;
    case "/leave": leaveCurrent(); return true;
    case "/nick": send({ type: "nick", nickname: arg }); return true;
    case "/msg": {
      const [to, ...words] = rest;
      if (to && words.length) send({ type: "private", to, message: text.trim().slice(cmd.length).trimStart().slice(to.length).trimStart() });
      return true;
    }
  }
  return false;
}

export function joinRoom(name) {
  name = name.trim().replace(/^#/, "").toLowerCase();
  if (!name) return;
  if (state.convs.has("#" + name)) { switchTo("#" + name); return; }
  conv("#" + name, { kind: "room", name, pendingSwitch: true });
  send({ type: "join", room: name });
}

export function leaveCurrent() {
  const c = state.convs.get(state.current);
  if (c && c.kind === "room") send({ type: "leave", room: c.name });
  else if (c) { state.convs.delete(c.key); state.current = "#lobby"; render(); }
}

el.joinRoom.addEventListener("submit", (e) => {
  e.preventDefault();
  joinRoom(el.roomName.value);
  el.roomName.value = "";
});
el.leave.addEventListener("click", leaveCurrent);
el.earlier.addEventListener("click", () => {
  const c = state.convs.get(state.current);
  if (c && c.oldest) send({ type: "history", room: c.name, before: c.oldest, limit: 50 });
});
el.text.addEventListener("input", () => {
  const c = state.convs.get(state.current);
  const now = Date.now();
  if (c && c.kind === "room" && el.text.value && now - (c.lastTypingSent || 0) > TYPING_EVERY_MS) {
    c.lastTypingSent = now; // per room: typing here says nothing about there
    send({ type: "typing", room: c.name });
  }
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    state.hiddenUnread = 0;
    document.title = baseTitle;
    const c = state.convs.get(state.current);
    if (c) { c.unread = 0; c.mentioned = false; renderConvs(); }
  }
});
for (const [button, panel] of [[el.sidebarToggle, el.sidebar], [el.membersToggle, el.members]]) {
  button.addEventListener("click", (e) => {
    e.stopPropagation();
    button.setAttribute("aria-expanded", String(panel.classList.toggle("open")));
  });
}
// At phone width the panels overlay the messages: a tap outside, or
// Escape, puts them away.
const closePanels = () => {
  for (const [button, panel] of [[el.sidebarToggle, el.sidebar], [el.membersToggle, el.members]]) {
    panel.classList.remove("open");
    button.setAttribute("aria-expanded", "false");
  }
};
document.querySelector(".main").addEventListener("click", (e) => {
  if (!el.members.contains(e.target)) closePanels();
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePanels(); });
el.nick.value = localStorage.getItem("chat.nickname") || "";
