// The connection and the protocol: logging in, reconnecting with backoff,
// resuming rooms, and what each object from the server does to the page.
import { state, MAX_BACKOFF_MS, TYPING_SHOWN_MS } from "./state.js";
import { el } from "./dom.js";
import { addLine, addMessage, conv, messageLine, saveRooms, savedRooms, switchTo } from "./conversations.js";
import { render, renderConvs, renderMembers, renderMessages, renderTyping, setStatus } from "./render.js";
import { showContext, showResults } from "./search.js";

// ---- connection ----

el.loginForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const nick = el.nick.value.trim();
  if (!nick) return;
  state.nickname = nick;
  el.loginError.textContent = "";
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
  connect();
});

export function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

export function connect() {
  clearTimeout(state.retryTimer);
  setStatus("connecting…", true);
  const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  state.ws = sock;
  sock.onopen = () => send({ type: "login", nickname: state.nickname, protocol: 1, ...resumeFrom("lobby") });
  sock.onmessage = (e) => {
    let obj;
    try { obj = JSON.parse(e.data); } catch { return; }
    handle(obj);
  };
  sock.onclose = (e) => {
    if (state.ws !== sock) return;
    const wasIn = state.loggedIn;
    state.loggedIn = false;
    el.send.disabled = true;
    if (!wasIn && el.chat.hidden) {
      el.loginError.textContent = e.reason || "could not reach the server";
      return;
    }
    state.attempts++;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(state.attempts, 6)) * (0.75 + Math.random() / 2);
    setStatus(`disconnected${e.reason ? " (" + e.reason + ")" : ""}; reconnecting in ${Math.round(delay / 1000)} s`, true);
    state.retryTimer = setTimeout(connect, delay);
  };
}

// ---- protocol ----

export function handle(obj) {
  switch (obj.type) {
    case "login": return onLogin(obj);
    case "joined": {
      const c = conv("#" + obj.room, { kind: "room", name: obj.room });
      c.members = new Map((obj.members || []).map((m) => [m.id, m.nickname]));
      c.joined = true;
      if (obj.resumed) {
        // Exactly what was missed: keep what is shown, add the rest.
        let missed = 0;
        for (const h of obj.history || []) {
          if (h.type === "message") { addMessage(c, h, { quiet: true }); missed++; } else roomEvent(c, h);
        }
        addLine(c, { cls: "system reconnected", text: `reconnected; ${missed} missed message${missed === 1 ? "" : "s"} loaded` });
      } else {
        c.lines = [];
        c.oldest = 0;
        c.lastSeq = 0;
        for (const h of obj.history || []) addMessage(c, h, { history: true, quiet: true });
        if (obj.gap) addLine(c, { cls: "system reconnected", text: "reconnected; some messages were missed: load earlier messages to see them" });
      }
      c.more = !!obj.more || (obj.history || []).length > 0;
      if (obj.room === "lobby") checkDMs(c.members);
      saveRooms();
      if (c.pendingSwitch || !state.convs.has(state.current)) switchTo(c.key);
      c.pendingSwitch = false;
      render();
      return;
    }
    case "left": {
      const c = state.convs.get("#" + obj.room);
      if (c) { state.convs.delete(c.key); saveRooms(); }
      if (state.current === "#" + obj.room) state.current = "#lobby";
      render();
      return;
    }
    case "message": return addMessage(conv("#" + obj.room, { kind: "room", name: obj.room }), obj, {});
    case "private": {
      const other = obj.sender_id === state.selfId ? { id: obj.to_id, nick: obj.to_nickname } : { id: obj.sender_id, nick: obj.sender_nickname };
      const c = dmConv(other.id, other.nick);
      c.name = other.nick;
      return addMessage(c, obj, {});
    }
    case "join": case "leave": case "rename": {
      const c = state.convs.get("#" + obj.room);
      if (!c) return;
      if (obj.type === "leave") c.members.delete(obj.member.id); else c.members.set(obj.member.id, obj.member.nickname);
      if (obj.type === "rename") renameDMs(obj.member);
      if (obj.type === "leave" && obj.room === "lobby") endDM(obj.member.id, `${obj.member.nickname} has left the chat: messages here can no longer reach them`);
      roomEvent(c, obj);
      if (c.key === state.current) renderMembers();
      return;
    }
    case "typing": return onTyping(obj);
    case "nick":
      state.nickname = obj.nickname;
      localStorage.setItem("chat.nickname", state.nickname);
      el.me.textContent = state.nickname;
      return;
    case "search": return showResults(obj);
    case "history": {
      if (state.context && state.context.room === obj.room && state.context.before === obj.before) return showContext(obj);
      const c = state.convs.get("#" + obj.room);
      if (!c) return;
      const older = obj.messages || [];
      c.more = older.length > 0;
      c.lines.unshift(...older.map((m) => messageLine(c, m, { history: true })));
      if (older.length) c.oldest = older[0].seq;
      if (c.key === state.current) {
        const fromBottom = el.scroll.scrollHeight - el.scroll.scrollTop;
        renderMessages();
        el.scroll.scrollTop = el.scroll.scrollHeight - fromBottom; // keep the view still
      }
      return;
    }
    case "notice": {
      for (const c of state.convs.values()) if (c.kind === "room") addLine(c, { time: obj.time, cls: "system", text: obj.message });
      return;
    }
    case "error": {
      const c = state.convs.get(state.current);
      if (c) addLine(c, { cls: "error", text: obj.error });
      return;
    }
  }
}

// roomEvent shows a join, leave or rename in room c, once.
export function roomEvent(c, obj) {
  if (obj.seq && obj.seq <= (c.lastSeq || 0)) return;
  if (obj.seq) c.lastSeq = obj.seq;
  addLine(c, { time: obj.time, cls: "system", text: obj.message });
}

// resumeFrom is what a login or join sends to resume room: the state.epoch and
// the last seq seen there, if the page has been in it under this state.epoch.
export function resumeFrom(room) {
  const c = state.convs.get("#" + room);
  return state.epoch && c && c.lastSeq ? { epoch: state.epoch, after: c.lastSeq } : {};
}

export function onLogin(obj) {
  if (obj.status !== "ok") {
    if (el.chat.hidden && /taken/.test(obj.error) && state.nickname === localStorage.getItem("chat.nickname") && state.takenRetries++ < 3) {
      // After a reload our previous connection may not have left yet.
      state.ws.onclose = null;
      state.ws.close();
      state.retryTimer = setTimeout(connect, 1000);
      return;
    }
    if (el.chat.hidden) {
      el.loginError.textContent = obj.error || "login refused";
      state.ws.onclose = null;
      state.ws.close();
    } else {
      const c = state.convs.get(state.current);
      if (c) addLine(c, { cls: "error", text: `could not log in again: ${obj.error}` });
      state.ws.close(); // our old connection may linger on the server: retry with backoff
    }
    return;
  }
  state.loggedIn = true;
  state.attempts = 0;
  state.selfId = obj.id;
  state.epoch = obj.epoch || "";
  state.nickname = obj.nickname;
  localStorage.setItem("chat.nickname", state.nickname);
  el.me.textContent = state.nickname;
  el.loginForm.hidden = true;
  el.chat.hidden = false;
  el.send.disabled = false;
  setStatus(`connected as ${state.nickname}`, false);
  for (const name of savedRooms()) if (name !== "lobby") send({ type: "join", room: name, ...resumeFrom(name) });
  el.text.focus();
}

export function onTyping(obj) {
  const c = state.convs.get("#" + obj.room);
  if (!c) return;
  clearTimeout(c.typing.get(obj.sender_nickname));
  c.typing.set(obj.sender_nickname, setTimeout(() => { c.typing.delete(obj.sender_nickname); renderTyping(); }, TYPING_SHOWN_MS));
  renderTyping();
}

// endDM closes the private conversation with member id: it follows the
// member, not the state.nickname, so once they are gone nothing typed there may
// reach whoever takes the state.nickname next.
export function endDM(id, why) {
  const c = state.convs.get("@" + id);
  if (!c || c.gone) return;
  c.gone = true;
  addLine(c, { cls: "system", text: why });
  renderConvs();
}

// dmConv is the live private conversation with member id. An ended one
// under that id (after a server restart ids begin again) is kept aside,
// so a newcomer's messages never join a conversation with someone else.
export function dmConv(id, nick) {
  const key = "@" + id;
  const old = state.convs.get(key);
  if (old && old.gone) {
    state.convs.delete(key);
    old.key = `${key}~${++state.endedDMs}`;
    state.convs.set(old.key, old);
    if (state.current === key) state.current = old.key;
  }
  return conv(key, { kind: "dm", name: nick, id });
}

// checkDMs ends private conversations whose member is no longer who it
// was (after a reconnect: they left meanwhile, or the server restarted
// and ids began again).
export function checkDMs(lobbyMembers) {
  for (const c of state.convs.values()) {
    if (c.kind === "dm" && lobbyMembers.get(c.id) !== c.name) endDM(c.id, `${c.name} is no longer here (reconnected): messages here can no longer reach them`);
  }
}

export function renameDMs(member) {
  const c = state.convs.get("@" + member.id);
  if (c) { c.name = member.nickname; renderConvs(); }
}
