// The browser client. It speaks the extended protocol (see README) over one
// WebSocket, renders every message as text (never as HTML), and reconnects
// with backoff, logging in again under the same nickname.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const loginForm = $("login"), nickInput = $("nick"), loginError = $("login-error");
  const chat = $("chat"), statusEl = $("status"), list = $("messages");
  const composer = $("composer"), textInput = $("text"), sendButton = $("send");
  const memberList = $("member-list"), memberCount = $("member-count");
  const membersPanel = $("members"), membersToggle = $("members-toggle");

  const MAX_BACKOFF_MS = 30000;
  let ws = null;
  let nickname = "";
  let selfId = 0;
  let loggedIn = false;
  let attempts = 0;          // consecutive failed connections, for backoff
  let retryTimer = null;
  const members = new Map(); // id -> nickname

  nickInput.value = localStorage.getItem("chat.nickname") || "";

  loginForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const nick = nickInput.value.trim();
    if (!nick) return;
    nickname = nick;
    loginError.textContent = "";
    connect();
  });

  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = textInput.value;
    if (!text.trim() || !loggedIn) return;
    ws.send(JSON.stringify({ type: "broadcast", message: text }));
    textInput.value = "";
    textInput.focus();
  });

  membersToggle.addEventListener("click", () => {
    const open = membersPanel.classList.toggle("open");
    membersToggle.setAttribute("aria-expanded", String(open));
  });

  function connect() {
    clearTimeout(retryTimer);
    setStatus("connecting…", true);
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => sock.send(JSON.stringify({ type: "login", nickname, protocol: 1 }));
    sock.onmessage = (e) => {
      let obj;
      try { obj = JSON.parse(e.data); } catch { return; }
      handle(obj);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      const wasIn = loggedIn;
      loggedIn = false;
      sendButton.disabled = true;
      if (!wasIn && chat.hidden) {
        // Never got in: show why on the login form and let the user retry.
        loginError.textContent = e.reason || "could not reach the server";
        return;
      }
      attempts++;
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() / 2);
      setStatus(`disconnected${e.reason ? " (" + e.reason + ")" : ""}; reconnecting in ${Math.round(delay / 1000)} s`, true);
      retryTimer = setTimeout(connect, delay);
    };
  }

  function handle(obj) {
    switch (obj.type) {
      case "login":
        if (obj.status === "ok") {
          loggedIn = true;
          attempts = 0;
          selfId = obj.id;
          localStorage.setItem("chat.nickname", nickname);
          loginForm.hidden = true;
          chat.hidden = false;
          sendButton.disabled = false;
          setStatus(`connected as ${obj.nickname}`, false);
          members.clear();
          for (const m of obj.members || []) members.set(m.id, m.nickname);
          renderMembers();
          textInput.focus();
        } else if (chat.hidden) {
          loginError.textContent = obj.error || "login refused";
          ws.onclose = null;
          ws.close();
        } else {
          // Reconnected but refused (our old connection may linger): retry.
          addLine({ cls: "error", text: `could not log in again: ${obj.error}` });
          ws.close();
        }
        return;
      case "message":
        addLine({ time: obj.time, who: obj.sender_nickname, text: obj.message, own: obj.sender_id === selfId, seq: obj.seq });
        return;
      case "join":
        members.set(obj.member.id, obj.member.nickname);
        renderMembers();
        addLine({ time: obj.time, cls: "system", text: obj.message });
        return;
      case "leave":
        members.delete(obj.member.id);
        renderMembers();
        addLine({ time: obj.time, cls: "system", text: obj.message });
        return;
      case "notice":
        addLine({ time: obj.time, cls: "system", text: obj.message });
        return;
      case "members":
        members.clear();
        for (const m of obj.members || []) members.set(m.id, m.nickname);
        renderMembers();
        return;
      case "error":
        addLine({ cls: "error", text: obj.error });
        return;
    }
  }

  // addLine appends one message. Every piece goes in through textContent, so
  // a message such as <img src=x onerror=alert(1)> shows as those characters.
  function addLine({ time, who, text, own, cls, seq }) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const li = document.createElement("li");
    li.className = "msg" + (cls ? " " + cls : "") + (own ? " own" : "");
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
    list.append(li);
    if (atBottom || own) list.scrollTop = list.scrollHeight;
  }

  function renderMembers() {
    const names = [...members.values()].sort((a, b) => a.localeCompare(b));
    memberList.replaceChildren(...names.map((n) => {
      const li = document.createElement("li");
      li.textContent = n;
      return li;
    }));
    memberCount.textContent = String(names.length);
  }

  function setStatus(text, down) {
    statusEl.textContent = text;
    statusEl.classList.toggle("down", down);
  }
})();
