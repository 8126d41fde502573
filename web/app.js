// The browser client. It speaks the extended protocol (see README) over one
// WebSocket: rooms with unread counts, live member lists, private
// conversations, history with scroll-back, typing indicators and mentions.
// Every piece of text goes into the page through textContent, never as HTML.
// It reconnects with backoff, logging in again under the same nickname and
// rejoining the same rooms.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    loginForm: $("login"), nick: $("nick"), loginError: $("login-error"), chat: $("chat"),
    rooms: $("rooms"), dms: $("dms"), joinRoom: $("join-room"), roomName: $("room-name"), me: $("me"),
    title: $("title"), leave: $("leave"), status: $("status"), earlier: $("earlier"),
    scroll: document.querySelector(".scroll"), messages: $("messages"), members: $("members"),
    memberList: $("member-list"), memberCount: $("member-count"), typing: $("typing"),
    composer: $("composer"), text: $("text"), send: $("send"),
    sidebar: $("sidebar"), sidebarToggle: $("sidebar-toggle"), membersToggle: $("members-toggle"),
    search: $("search"), searchText: $("search-text"), results: $("results"), resultsTitle: $("results-title"),
    resultsList: $("results-list"), resultsClose: $("results-close"),
  };
  // A search result being shown in context: its room and seq, set while
  // the history page around it is on its way.
  let context = null;

  const MAX_BACKOFF_MS = 30000;
  const TYPING_EVERY_MS = 3000, TYPING_SHOWN_MS = 5000;
  const baseTitle = document.title;

  let ws = null, nickname = "", selfId = 0, loggedIn = false, attempts = 0, retryTimer = null;
  // The history's epoch from the last login: with a room's lastSeq it is
  // where a reconnect resumes from (see README, "Resume").
  let epoch = "";
  let hiddenUnread = 0, takenRetries = 0;
  // Conversations by key: "#room" for rooms, "@id" for private ones.
  const convs = new Map();
  let current = "#lobby";

  el.nick.value = localStorage.getItem("chat.nickname") || "";

  // ---- connection ----

  el.loginForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const nick = el.nick.value.trim();
    if (!nick) return;
    nickname = nick;
    el.loginError.textContent = "";
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    connect();
  });

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function connect() {
    clearTimeout(retryTimer);
    setStatus("connecting…", true);
    const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws = sock;
    sock.onopen = () => send({ type: "login", nickname, protocol: 1, ...resumeFrom("lobby") });
    sock.onmessage = (e) => {
      let obj;
      try { obj = JSON.parse(e.data); } catch { return; }
      handle(obj);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      const wasIn = loggedIn;
      loggedIn = false;
      el.send.disabled = true;
      if (!wasIn && el.chat.hidden) {
        el.loginError.textContent = e.reason || "could not reach the server";
        return;
      }
      attempts++;
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() / 2);
      setStatus(`disconnected${e.reason ? " (" + e.reason + ")" : ""}; reconnecting in ${Math.round(delay / 1000)} s`, true);
      retryTimer = setTimeout(connect, delay);
    };
  }

  // ---- protocol ----

  function handle(obj) {
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
        if (c.pendingSwitch || !convs.has(current)) switchTo(c.key);
        c.pendingSwitch = false;
        render();
        return;
      }
      case "left": {
        const c = convs.get("#" + obj.room);
        if (c) { convs.delete(c.key); saveRooms(); }
        if (current === "#" + obj.room) current = "#lobby";
        render();
        return;
      }
      case "message": return addMessage(conv("#" + obj.room, { kind: "room", name: obj.room }), obj, {});
      case "private": {
        const other = obj.sender_id === selfId ? { id: obj.to_id, nick: obj.to_nickname } : { id: obj.sender_id, nick: obj.sender_nickname };
        const c = dmConv(other.id, other.nick);
        c.name = other.nick;
        return addMessage(c, obj, {});
      }
      case "join": case "leave": case "rename": {
        const c = convs.get("#" + obj.room);
        if (!c) return;
        if (obj.type === "leave") c.members.delete(obj.member.id); else c.members.set(obj.member.id, obj.member.nickname);
        if (obj.type === "rename") renameDMs(obj.member);
        if (obj.type === "leave" && obj.room === "lobby") endDM(obj.member.id, `${obj.member.nickname} has left the chat: messages here can no longer reach them`);
        roomEvent(c, obj);
        if (c.key === current) renderMembers();
        return;
      }
      case "typing": return onTyping(obj);
      case "nick":
        nickname = obj.nickname;
        localStorage.setItem("chat.nickname", nickname);
        el.me.textContent = nickname;
        return;
      case "search": return showResults(obj);
      case "history": {
        if (context && context.room === obj.room && context.before === obj.before) return showContext(obj);
        const c = convs.get("#" + obj.room);
        if (!c) return;
        const older = obj.messages || [];
        c.more = older.length > 0;
        c.lines.unshift(...older.map((m) => messageLine(c, m, { history: true })));
        if (older.length) c.oldest = older[0].seq;
        if (c.key === current) {
          const fromBottom = el.scroll.scrollHeight - el.scroll.scrollTop;
          renderMessages();
          el.scroll.scrollTop = el.scroll.scrollHeight - fromBottom; // keep the view still
        }
        return;
      }
      case "notice": {
        for (const c of convs.values()) if (c.kind === "room") addLine(c, { time: obj.time, cls: "system", text: obj.message });
        return;
      }
      case "error": {
        const c = convs.get(current);
        if (c) addLine(c, { cls: "error", text: obj.error });
        return;
      }
    }
  }

  // roomEvent shows a join, leave or rename in room c, once.
  function roomEvent(c, obj) {
    if (obj.seq && obj.seq <= (c.lastSeq || 0)) return;
    if (obj.seq) c.lastSeq = obj.seq;
    addLine(c, { time: obj.time, cls: "system", text: obj.message });
  }

  // resumeFrom is what a login or join sends to resume room: the epoch and
  // the last seq seen there, if the page has been in it under this epoch.
  function resumeFrom(room) {
    const c = convs.get("#" + room);
    return epoch && c && c.lastSeq ? { epoch, after: c.lastSeq } : {};
  }

  function onLogin(obj) {
    if (obj.status !== "ok") {
      if (el.chat.hidden && /taken/.test(obj.error) && nickname === localStorage.getItem("chat.nickname") && takenRetries++ < 3) {
        // After a reload our previous connection may not have left yet.
        ws.onclose = null;
        ws.close();
        retryTimer = setTimeout(connect, 1000);
        return;
      }
      if (el.chat.hidden) {
        el.loginError.textContent = obj.error || "login refused";
        ws.onclose = null;
        ws.close();
      } else {
        const c = convs.get(current);
        if (c) addLine(c, { cls: "error", text: `could not log in again: ${obj.error}` });
        ws.close(); // our old connection may linger on the server: retry with backoff
      }
      return;
    }
    loggedIn = true;
    attempts = 0;
    selfId = obj.id;
    epoch = obj.epoch || "";
    nickname = obj.nickname;
    localStorage.setItem("chat.nickname", nickname);
    el.me.textContent = nickname;
    el.loginForm.hidden = true;
    el.chat.hidden = false;
    el.send.disabled = false;
    setStatus(`connected as ${nickname}`, false);
    for (const name of savedRooms()) if (name !== "lobby") send({ type: "join", room: name, ...resumeFrom(name) });
    el.text.focus();
  }

  function onTyping(obj) {
    const c = convs.get("#" + obj.room);
    if (!c) return;
    clearTimeout(c.typing.get(obj.sender_nickname));
    c.typing.set(obj.sender_nickname, setTimeout(() => { c.typing.delete(obj.sender_nickname); renderTyping(); }, TYPING_SHOWN_MS));
    renderTyping();
  }

  // endDM closes the private conversation with member id: it follows the
  // member, not the nickname, so once they are gone nothing typed there may
  // reach whoever takes the nickname next.
  let endedDMs = 0;
  function endDM(id, why) {
    const c = convs.get("@" + id);
    if (!c || c.gone) return;
    c.gone = true;
    addLine(c, { cls: "system", text: why });
    renderConvs();
  }

  // dmConv is the live private conversation with member id. An ended one
  // under that id (after a server restart ids begin again) is kept aside,
  // so a newcomer's messages never join a conversation with someone else.
  function dmConv(id, nick) {
    const key = "@" + id;
    const old = convs.get(key);
    if (old && old.gone) {
      convs.delete(key);
      old.key = `${key}~${++endedDMs}`;
      convs.set(old.key, old);
      if (current === key) current = old.key;
    }
    return conv(key, { kind: "dm", name: nick, id });
  }

  // checkDMs ends private conversations whose member is no longer who it
  // was (after a reconnect: they left meanwhile, or the server restarted
  // and ids began again).
  function checkDMs(lobbyMembers) {
    for (const c of convs.values()) {
      if (c.kind === "dm" && lobbyMembers.get(c.id) !== c.name) endDM(c.id, `${c.name} is no longer here (reconnected): messages here can no longer reach them`);
    }
  }

  function renameDMs(member) {
    const c = convs.get("@" + member.id);
    if (c) { c.name = member.nickname; renderConvs(); }
  }

  // ---- conversations ----

  function conv(key, init) {
    let c = convs.get(key);
    if (!c) {
      c = { key, lines: [], unread: 0, mentioned: false, members: new Map(), typing: new Map(), oldest: 0, more: false, ...init };
      convs.set(key, c);
      renderConvs();
    }
    return c;
  }

  function isMention(text) {
    if (!nickname) return false;
    const esc = nickname.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(^|[^\\p{L}\\p{N}_])@?${esc}($|[^\\p{L}\\p{N}_])`, "iu").test(text);
  }

  function messageLine(c, m, { history }) {
    const own = m.sender_id === selfId;
    return { time: m.time, who: m.sender_nickname, text: m.message, own, seq: m.seq,
             cls: (history ? "history " : "") + (!own && isMention(m.message) ? "mention" : "") };
  }

  function addMessage(c, m, { history, quiet }) {
    if (c.kind === "room" && m.seq) {
      if (m.seq <= (c.lastSeq || 0) && !history) return; // already shown
      c.lastSeq = Math.max(c.lastSeq || 0, m.seq);
    }
    const line = messageLine(c, m, { history });
    if (m.seq && (!c.oldest || m.seq < c.oldest)) c.oldest = m.seq;
    addLine(c, line);
    if (history || quiet || line.own) return;
    const mention = line.cls.includes("mention") || c.kind === "dm";
    if (c.key !== current || document.hidden) {
      c.unread++;
      c.mentioned ||= mention;
      renderConvs();
    }
    if (document.hidden) {
      hiddenUnread++;
      document.title = `(${hiddenUnread}) ${baseTitle}`;
      if (mention && "Notification" in window && Notification.permission === "granted") {
        new Notification(c.kind === "dm" ? `${m.sender_nickname} (private)` : `${m.sender_nickname} in #${c.name}`, { body: m.message });
      }
    }
  }

  function addLine(c, line) {
    c.lines.push(line);
    if (c.key !== current) return;
    const atBottom = el.scroll.scrollHeight - el.scroll.scrollTop - el.scroll.clientHeight < 40;
    el.messages.append(renderLine(line));
    if (atBottom || line.own) el.scroll.scrollTop = el.scroll.scrollHeight;
  }

  function switchTo(key) {
    if (!convs.has(key)) return;
    current = key;
    const c = convs.get(key);
    c.unread = 0;
    c.mentioned = false;
    el.sidebar.classList.remove("open");
    render();
    el.scroll.scrollTop = el.scroll.scrollHeight;
  }

  function savedRooms() {
    try { return JSON.parse(localStorage.getItem("chat.rooms") || "[]"); } catch { return []; }
  }
  function saveRooms() {
    localStorage.setItem("chat.rooms", JSON.stringify([...convs.values()].filter((c) => c.kind === "room").map((c) => c.name)));
  }

  // ---- rendering ----

  function render() {
    renderConvs();
    renderMessages();
    renderMembers();
    renderTyping();
  }

  function renderConvs() {
    const item = (c) => {
      const li = document.createElement("li");
      li.dataset.key = c.key;
      li.className = c.key === current ? "current" : "";
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
    const all = [...convs.values()].sort((a, b) => a.name.localeCompare(b.name));
    el.rooms.replaceChildren(...all.filter((c) => c.kind === "room").map(item));
    el.dms.replaceChildren(...all.filter((c) => c.kind === "dm").map(item));
    const c = convs.get(current);
    el.title.textContent = !c ? "" : c.kind === "room" ? "#" + c.name : `${c.name} (private)`;
    el.leave.hidden = !c || c.kind !== "room";
    el.search.hidden = !c || c.kind !== "room";
  }

  function renderMessages() {
    const c = convs.get(current);
    el.messages.replaceChildren(...(c ? c.lines.map(renderLine) : []));
    el.earlier.hidden = !c || c.kind !== "room" || !c.more || !c.oldest;
  }

  function renderLine({ time, who, text, own, cls, seq }) {
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

  function renderMembers() {
    const c = convs.get(current);
    const members = c && c.kind === "room" ? [...c.members.entries()] : [];
    members.sort((a, b) => a[1].localeCompare(b[1]));
    el.memberList.replaceChildren(...members.map(([id, nick]) => {
      const li = document.createElement("li");
      li.textContent = nick;
      li.dataset.id = id;
      if (id === selfId) {
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

  function renderTyping() {
    const c = convs.get(current);
    const names = c ? [...c.typing.keys()] : [];
    el.typing.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
  }

  function setStatus(text, down) {
    el.status.textContent = text;
    el.status.classList.toggle("down", down);
  }

  // ---- search ----

  // showResults lists a search's results (newest first); a click shows the
  // message in context: the history around it.
  function showResults(obj) {
    const hits = obj.messages || [];
    el.resultsTitle.textContent = `${hits.length} result${hits.length === 1 ? "" : "s"} for “${obj.query}” in #${obj.room}`;
    el.resultsList.replaceChildren(...hits.map((m) => {
      const li = renderLine(messageLine({}, m, {}));
      li.classList.add("hit");
      li.title = "show in context";
      li.addEventListener("click", () => {
        context = { room: obj.room, seq: m.seq, before: m.seq + 26, query: obj.query };
        send({ type: "history", room: obj.room, before: context.before, limit: 51 });
      });
      return li;
    }));
    el.results.hidden = false;
  }

  // showContext shows the history page around a search result, the result
  // marked, in place of the results.
  function showContext(obj) {
    const { seq, query, room } = context;
    context = null;
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
    const c = convs.get(current);
    const query = el.searchText.value.trim();
    if (!query || !c || c.kind !== "room") return;
    send({ type: "search", room: c.name, query, limit: 50 });
  });
  el.resultsClose.addEventListener("click", () => { el.results.hidden = true; });

  // ---- user actions ----

  el.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = el.text.value;
    if (!text.trim() || !loggedIn) return;
    el.text.value = "";
    el.text.focus();
    if (text.startsWith("/") && command(text)) return;
    const c = convs.get(current);
    if (!c) return;
    if (c.kind === "room") send({ type: "broadcast", room: c.name, message: text });
    else if (c.gone) addLine(c, { cls: "error", text: `${c.name} has left: not sent` });
    else send({ type: "private", to_id: c.id, message: text });
  });

  // command runs a slash command and reports whether it was one.
  function command(text) {
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

  function joinRoom(name) {
    name = name.trim().replace(/^#/, "").toLowerCase();
    if (!name) return;
    if (convs.has("#" + name)) { switchTo("#" + name); return; }
    conv("#" + name, { kind: "room", name, pendingSwitch: true });
    send({ type: "join", room: name });
  }

  function leaveCurrent() {
    const c = convs.get(current);
    if (c && c.kind === "room") send({ type: "leave", room: c.name });
    else if (c) { convs.delete(c.key); current = "#lobby"; render(); }
  }

  el.joinRoom.addEventListener("submit", (e) => {
    e.preventDefault();
    joinRoom(el.roomName.value);
    el.roomName.value = "";
  });
  el.leave.addEventListener("click", leaveCurrent);
  el.earlier.addEventListener("click", () => {
    const c = convs.get(current);
    if (c && c.oldest) send({ type: "history", room: c.name, before: c.oldest, limit: 50 });
  });
  el.text.addEventListener("input", () => {
    const c = convs.get(current);
    const now = Date.now();
    if (c && c.kind === "room" && el.text.value && now - (c.lastTypingSent || 0) > TYPING_EVERY_MS) {
      c.lastTypingSent = now; // per room: typing here says nothing about there
      send({ type: "typing", room: c.name });
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      hiddenUnread = 0;
      document.title = baseTitle;
      const c = convs.get(current);
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
})();
