// Conversations (rooms and private ones) and their lines.
import { state, baseTitle } from "./state.js";
import { el } from "./dom.js";
import { render, renderConvs, renderLine } from "./render.js";

// ---- conversations ----

export function conv(key, init) {
  let c = state.convs.get(key);
  if (!c) {
    c = { key, lines: [], unread: 0, mentioned: false, members: new Map(), typing: new Map(), oldest: 0, more: false, ...init };
    state.convs.set(key, c);
    renderConvs();
  }
  return c;
}

export function isMention(text) {
  if (!state.nickname) return false;
  const esc = state.nickname.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\p{L}\\p{N}_])@?${esc}($|[^\\p{L}\\p{N}_])`, "iu").test(text);
}

export function messageLine(c, m, { history }) {
  const own = m.sender_id === state.selfId;
  return { time: m.time, who: m.sender_nickname, text: m.message, own, seq: m.seq,
           cls: (history ? "history " : "") + (!own && isMention(m.message) ? "mention" : "") };
}

export function addMessage(c, m, { history, quiet }) {
  if (c.kind === "room" && m.seq) {
    if (m.seq <= (c.lastSeq || 0) && !history) return; // already shown
    c.lastSeq = Math.max(c.lastSeq || 0, m.seq);
  }
  const line = messageLine(c, m, { history });
  if (m.seq && (!c.oldest || m.seq < c.oldest)) c.oldest = m.seq;
  addLine(c, line);
  if (history || quiet || line.own) return;
  const mention = line.cls.includes("mention") || c.kind === "dm";
  if (c.key !== state.current || document.hidden) {
    c.unread++;
    c.mentioned ||= mention;
    renderConvs();
  }
  if (document.hidden) {
    state.hiddenUnread++;
    document.title = `(${state.hiddenUnread}) ${baseTitle}`;
    if (mention && "Notification" in window && Notification.permission === "granted") {
      new Notification(c.kind === "dm" ? `${m.sender_nickname} (private)` : `${m.sender_nickname} in #${c.name}`, { body: m.message });
    }
  }
}

export function addLine(c, line) {
  c.lines.push(line);
  if (c.key !== state.current) return;
  const atBottom = el.scroll.scrollHeight - el.scroll.scrollTop - el.scroll.clientHeight < 40;
  el.messages.append(renderLine(line));
  if (atBottom || line.own) el.scroll.scrollTop = el.scroll.scrollHeight;
}

export function switchTo(key) {
  if (!state.convs.has(key)) return;
  state.current = key;
  const c = state.convs.get(key);
  c.unread = 0;
  c.mentioned = false;
  el.sidebar.classList.remove("open");
  render();
  el.scroll.scrollTop = el.scroll.scrollHeight;
}

export function savedRooms() {
  try { return JSON.parse(localStorage.getItem("chat.rooms") || "[]"); } catch { return []; }
}
export function saveRooms() {
  localStorage.setItem("chat.rooms", JSON.stringify([...state.convs.values()].filter((c) => c.kind === "room").map((c) => c.name)));
}
