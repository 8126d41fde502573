// Drawing the state into the page. Every piece of text goes in through
// textContent, never as HTML.
import { state } from "./state.js";
import { el } from "./dom.js";
import { switchTo } from "./conversations.js";
import { dmConv } from "./protocol.js";

// ---- rendering ----

export function render() {
  renderConvs();
  renderMessages();
  renderMembers();
  renderTyping();
}

export function renderConvs() {
  const item = (c) => {
    const li = document.createElement("li");
    li.dataset.key = c.key;
    li.className = c.key === state.current ? "current" : "";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.kind === "room" ? "#" + c.name : c.name;
    li.append(name);
    if (c.unread) {
      const b = document.createElement("span");
      b.className = "badge" + (c.mentioned ? " mention" : "");
      b.textContent = String(c.unread);
      li.append(b);
    }
    li.addEventListener("click", () => switchTo(c.key));
    return li;
  };
  const all = [...state.convs.values()].sort((a, b) => a.name.localeCompare(b.name));
  el.rooms.replaceChildren(...all.filter((c) => c.kind === "room").map(item));
  el.dms.replaceChildren(...all.filter((c) => c.kind === "dm").map(item));
  const c = state.convs.get(state.current);
  el.title.textContent = !c ? "" : c.kind === "room" ? "#" + c.name : `${c.name} (private)`;
  el.leave.hidden = !c || c.kind !== "room";
  el.search.hidden = !c || c.kind !== "room";
}

export function renderMessages() {
  const c = state.convs.get(state.current);
  el.messages.replaceChildren(...(c ? c.lines.map(renderLine) : []));
  el.earlier.hidden = !c || c.kind !== "room" || !c.more || !c.oldest;
}

export function renderLine({ time, who, text, own, cls, seq }) {
  const li = document.createElement("li");
  li.className = ["msg", cls, own ? "own" : ""].filter(Boolean).join(" ");
  if (seq) li.dataset.seq = seq;
  const when = time ? new Date(time) : new Date();
  const t = document.createElement("time");
  t.dateTime = when.toISOString();
  t.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  t.title = when.toLocaleString();
  li.append(t);
  if (who !== undefined) {
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = who;
    li.append(w);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  return li;
}

export function renderMembers() {
  const c = state.convs.get(state.current);
  const members = c && c.kind === "room" ? [...c.members.entries()] : [];
  members.sort((a, b) => a[1].localeCompare(b[1]));
  el.memberList.replaceChildren(...members.map(([id, nick]) => {
    const li = document.createElement("li");
    li.textContent = nick;
    li.dataset.id = id;
    if (id === state.selfId) {
      li.className = "self";
    } else {
      li.title = `private conversation with ${nick}`;
      li.addEventListener("click", () => {
        dmConv(id, nick);
        switchTo("@" + id);
        el.members.classList.remove("open");
        el.text.focus();
      });
    }
    return li;
  }));
  el.memberCount.textContent = String(members.length);
}

export function renderTyping() {
  const c = state.convs.get(state.current);
  const names = c ? [...c.typing.keys()] : [];
  el.typing.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

export function setStatus(text, down) {
  el.status.textContent = text;
  el.status.classList.toggle("down", down);
}
