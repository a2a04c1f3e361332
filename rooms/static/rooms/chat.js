// One room's chat page over the JSON WebSocket protocol (docs/protocol.md).
// Everything a user wrote is put in the page with textContent, never as HTML, and every
// name a user chose inside a <bdi>: right-to-left text in it cannot reorder what is around it.
"use strict";

(function () {
  const CLOSE_MESSAGES = {
    1000: "The connection was closed.",
    1001: "The server is going away (restarting or shutting down).",
    1006: "The connection to the server was lost.",
    1009: "A message was too large for the server.",
    1011: "The server hit an unexpected error.",
    1012: "The server is restarting.",
    1013: "The server is overloaded.",
    4400: "The server refused to join this room.",
    4401: "Sign in to join this room.",
    4403: "You may not join this room.",
    4404: "There is no chat at this address.",
    4408: "The server closed the connection after a long idle time.",
    4409: "That nickname is already taken in this room.",
    4429: "Too many messages, or too many connections from your network: the server disconnected you for now.",
    4503: "The room or the server is full or unavailable for now.",
    4509: "This page fell too far behind the conversation.",
  };
  const ERROR_TITLES = {
    NICKNAME_REQUIRED: "Please choose a nickname.",
    NICKNAME_INVALID: "That nickname can't be used.",
    NICKNAME_TAKEN: "That nickname is already taken in this room.",
    ROOM_INVALID: "That room name can't be used.",
    FORMAT_INVALID: "The page asked for an unknown format.",
    NOT_FOUND: "There is no chat at this address.",
    MESSAGE_TOO_LONG: "Your message is too long.",
    TEXT_INVALID: "Your message contains a character that can't be sent.",
    RATE_LIMITED: "You are sending messages too fast.",
    JSON_INVALID: "The server could not read a message from this page.",
    COMMAND_INVALID: "The server could not read a message from this page.",
    BINARY_UNSUPPORTED: "The server accepts text only.",
    IDLE_TIMEOUT: "You were idle for a long time.",
    ROOM_FULL: "This room is full.",
    SERVER_FULL: "The server is full.",
    SERVICE_UNAVAILABLE: "The chat service is unavailable for now.",
    SLOW_CONSUMER: "This page fell too far behind the conversation.",
    TOO_MANY_CONNECTIONS: "Too many chat connections are open from your network.",
    JOIN_RATE_LIMITED: "Your network joined rooms too often in a short time.",
    TOKEN_INVALID: "Your sign-in is no longer valid; sign in again.",
    AUTH_REQUIRED: "Sign in to chat here.",
    NICKNAME_RESERVED: "That nickname belongs to a registered user.",
    NICKNAME_NOT_YOURS: "You are signed in and chat under your account's name.",
    ROOM_FORBIDDEN: "This room is private.",
    BANNED: "You are banned from this room.",
    KICKED: "A moderator removed you from this room.",
    MUTED: "You are muted in this room.",
    FORBIDDEN: "Only moderators may do that.",
  };
  // Closes after which reconnecting cannot help: the same request would be refused again.
  const FATAL_CLOSES = new Set([4400, 4401, 4403, 4404, 4409]);
  const NICKNAME_PROBLEMS = new Set([
    "NICKNAME_REQUIRED", "NICKNAME_INVALID", "NICKNAME_TAKEN", "NICKNAME_RESERVED",
  ]);
  const MIN_DELAY_MS = 500;
  const MAX_DELAY_MS = 30000;
  const RATE_LIMITED_DELAY_MS = 5000;
  const HISTORY = 50; // messages asked for on first joining

  function describeClose(code) {
    return CLOSE_MESSAGES[code] || `The connection closed (code ${code}).`;
  }

  // Errors whose server message already says it all (who did what, until when, why).
  const SELF_EXPLAINED = new Set(["KICKED", "BANNED", "MUTED", "FORBIDDEN"]);

  function describeError(frame) {
    if (frame.message && SELF_EXPLAINED.has(frame.code)) return frame.message;
    const title = ERROR_TITLES[frame.code] || `Error ${frame.code}.`;
    return frame.message ? `${title} ${frame.message}` : title;
  }

  window.roomsChat = { describeClose, describeError };

  const $ = (id) => document.getElementById(id);
  const data = (id) => JSON.parse($(id).textContent);
  const room = data("room-data");
  const limits = data("limits-data");
  const ui = {
    status: $("status"), me: $("me"), alert: $("alert"), messages: $("messages"),
    composer: $("composer"), input: $("input"), send: $("send"), hint: $("hint"),
    nickForm: $("nick-form"), nickInput: $("nick-input"),
    membersPanel: $("members-panel"), members: $("members"), memberCount: $("member-count"),
  };

  const store = {
    get() { try { return localStorage.getItem("rooms.nickname") || ""; } catch { return ""; } },
    set(value) { try { localStorage.setItem("rooms.nickname", value); } catch { /* private mode */ } },
  };

  const signedIn = data("signed-in-data"); // an account's name, which the server imposes
  let nickname = signedIn || data("nickname-data") || store.get();
  let socket = null;
  let attempt = 0;         // reconnect attempts since the last welcome
  let welcomed = false;    // has this page ever been in the room
  let awaitingOwnJoin = false;
  let pendingError = null; // a fatal error frame, explaining the close that follows it
  let lastId = null;       // newest message id known, sent back as ?since= on reconnecting
  let dropNoticeShown = false;
  let retryTimer = null;
  let members = null;      // Map nickname -> connections, when the server lists members
  let moderator = false;   // the welcome said so: moderation controls are shown
  const seen = new Set();  // "id:ts" of every message shown: ids restart if a server loses its state

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function showAlert(text) {
    ui.alert.textContent = text;
    ui.alert.hidden = !text;
  }

  function setConnected(connected) {
    ui.input.disabled = !connected;
    ui.send.disabled = !connected;
    if (connected) ui.input.focus();
  }

  function nearBottom() {
    const list = ui.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function append(item) {
    const stick = nearBottom();
    ui.messages.appendChild(item);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function timeElement(ts) {
    const when = new Date(typeof ts === "number" ? ts : Date.now());
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return time;
  }

  function hue(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function isolated(name) {
    const element = document.createElement("bdi");
    element.textContent = name;
    return element;
  }

  // `parts`: a string, or an array of strings and elements (names, isolated).
  function notice(kind, parts, ts) {
    const item = document.createElement("li");
    item.className = "notice";
    item.dataset.kind = kind;
    const body = document.createElement("span");
    body.append(...[].concat(parts));
    item.append(body, " ", timeElement(ts));
    append(item);
  }

  function showMessage(frame) {
    const key = `${frame.id}:${frame.ts}`;
    if (seen.has(key)) return;
    seen.add(key);
    if (lastId === null || frame.id > lastId) lastId = frame.id;
    const item = document.createElement("li");
    item.className = frame.nickname === nickname ? "message mine" : "message";
    item.dataset.id = String(frame.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const nick = isolated(frame.nickname);
    nick.className = "nick";
    nick.style.setProperty("--hue", hue(frame.nickname));
    meta.append(nick, " ", timeElement(frame.ts));
    if (moderator) meta.append(" ", modButton("Delete", "Delete this message for everyone",
      { type: "delete", id: frame.id }));
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = frame.text;
    item.append(meta, text);
    append(item);
  }

  // A moderator's control: a small button sending one command (docs/protocol.md, Moderation).
  function modButton(label, title, command) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "mod";
    button.textContent = label;
    button.title = title;
    button.addEventListener("click", () => {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(command));
    });
    return button;
  }

  function removeMessage(id) {
    for (const item of ui.messages.querySelectorAll("li.message")) {
      if (item.dataset.id === String(id)) item.remove();
    }
  }

  function onModerated(frame) {
    const done = { kick: "removed from the room", ban: "banned", mute: "muted",
      unban: "no longer banned", unmute: "no longer muted" };
    if (frame.action === "delete") ui.hint.textContent = `Message ${frame.id} deleted.`;
    else {
      const until = typeof frame.until === "number"
        ? ` until ${new Date(frame.until).toLocaleString()}` : "";
      ui.hint.textContent = `${frame.nickname} ${done[frame.action] || frame.action}${until}.`;
    }
  }

  function renderMembers() {
    if (members === null) return;
    ui.membersPanel.hidden = false;
    ui.members.replaceChildren();
    const names = [...members.keys()].sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const item = document.createElement("li");
      item.append(isolated(name));
      item.style.setProperty("--hue", hue(name));
      if (name === nickname) item.className = "self";
      else if (moderator) {
        const actions = document.createElement("span");
        actions.className = "mod-actions";
        actions.append(
          modButton("Kick", "Remove from the room", { type: "kick", nickname: name }),
          modButton("Mute", "Mute for 10 minutes", { type: "mute", nickname: name }),
          modButton("Ban", "Ban for an hour", { type: "ban", nickname: name }),
        );
        item.append(" ", actions);
      }
      ui.members.appendChild(item);
    }
    ui.memberCount.textContent = `(${names.length})`;
  }

  function memberJoined(name) {
    if (members === null) return;
    members.set(name, (members.get(name) || 0) + 1);
    renderMembers();
  }

  function memberLeft(name) {
    if (members === null || !members.has(name)) return;
    const left = members.get(name) - 1;
    if (left > 0) members.set(name, left);
    else members.delete(name);
    renderMembers();
  }

  function onWelcome(frame) {
    nickname = frame.nickname;
    moderator = frame.moderator === true;
    store.set(nickname);
    ui.me.replaceChildren("as ", isolated(nickname));
    awaitingOwnJoin = true;
    if (Array.isArray(frame.members)) setMembers(frame.members);
    // A server that lost its counter (restarted without Redis) starts ids again from 0.
    if (typeof frame.last_id === "number" && (lastId === null || frame.last_id < lastId)) {
      lastId = frame.last_id;
    }
    const joinedAs = ["You joined ", isolated(frame.room), " as ", isolated(nickname), "."];
    notice("self", welcomed ? "Reconnected." : joinedAs, frame.ts);
    welcomed = true;
    attempt = 0;
    dropNoticeShown = false;
    showAlert("");
    setStatus("connected", "Connected");
    setConnected(true);
  }

  // A server may answer a handshake it cannot parse in the text format ("error CODE: why"),
  // before it knows this page asked for JSON; such an error always precedes a close.
  function decode(data) {
    try {
      return JSON.parse(data);
    } catch {
      const text = /^error ([A-Z_]+): (.*)$/s.exec(data);
      return text ? { type: "error", code: text[1], message: text[2], close: 0 } : {};
    }
  }

  function setMembers(names) {
    members = new Map();
    for (const name of names) members.set(name, (members.get(name) || 0) + 1);
    renderMembers();
  }

  function handle(frame) {
    switch (frame.type) {
      case "welcome":
        onWelcome(frame);
        break;
      case "join":
        if (awaitingOwnJoin && frame.nickname === nickname) {
          awaitingOwnJoin = false;
          if (members !== null && !members.has(nickname)) memberJoined(nickname);
          break;
        }
        notice("join", [isolated(frame.nickname), " joined"], frame.ts);
        memberJoined(frame.nickname);
        break;
      case "leave":
        notice("leave", [isolated(frame.nickname), " left the room"], frame.ts);
        memberLeft(frame.nickname);
        break;
      case "message":
        showMessage(frame);
        break;
      case "delete":
        removeMessage(frame.id);
        break;
      case "moderated":
        onModerated(frame);
        break;
      case "members":
        if (Array.isArray(frame.members)) setMembers(frame.members);
        break;
      case "gap":
        notice("gap", `Messages ${frame.from} to ${frame.to} are no longer available.`);
        break;
      case "error":
        if (frame.close !== null && frame.close !== undefined) pendingError = frame;
        else ui.hint.textContent = describeError(frame);
        break;
      default:
        break; // newer servers may send more event types: ignore what we do not know
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    pendingError = null;
    const params = new URLSearchParams({ nickname, format: "json" });
    // First join: recent history; after a drop: everything since the newest message seen.
    // Servers without history ignore both.
    if (lastId !== null) params.set("since", String(lastId));
    else if (!welcomed) params.set("history", String(HISTORY));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws/chat/${encodeURIComponent(room)}/?${params}`;
    setStatus("connecting", welcomed ? "Reconnecting…" : "Connecting…");
    socket = new WebSocket(url);
    socket.addEventListener("message", (event) => handle(decode(event.data)));
    socket.addEventListener("close", (event) => onClose(event.code));
  }

  function onClose(code) {
    socket = null;
    setConnected(false);
    members = null;
    const error = pendingError;
    pendingError = null;
    const reason = error ? describeError(error) : describeClose(code);
    // A reconnect can race the server noticing the old connection is gone: then our own
    // nickname still looks taken for a moment, so keep retrying instead of giving up.
    const fatal = FATAL_CLOSES.has(code) && !(code === 4409 && welcomed);
    if (fatal) {
      setStatus("closed", "Not connected");
      showAlert(reason);
      if (code === 4409 || (error && NICKNAME_PROBLEMS.has(error.code))) askNickname();
      return;
    }
    if (!dropNoticeShown && welcomed) {
      notice("drop", reason, Date.now());
      dropNoticeShown = true;
    }
    let delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempt);
    delay = Math.round(delay * (0.75 + Math.random() * 0.5));
    if (code === 4429) delay = Math.max(delay, RATE_LIMITED_DELAY_MS);
    attempt += 1;
    scheduleReconnect(reason, delay);
  }

  function scheduleReconnect(reason, delay) {
    const due = Date.now() + delay;
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      if (seconds === 0) {
        connect();
        return;
      }
      setStatus("reconnecting", `Reconnecting in ${seconds} s`);
      retryTimer = setTimeout(tick, Math.min(1000, due - Date.now()));
    };
    if (!welcomed) showAlert(reason);
    tick();
  }

  function askNickname() {
    if (signedIn) return; // the account's name is the only one
    ui.nickForm.hidden = false;
    ui.nickInput.value = nickname;
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  ui.nickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = ui.nickInput.value.trim();
    if (!chosen) return;
    nickname = chosen;
    ui.nickForm.hidden = true;
    showAlert("");
    const url = new URL(location.href);
    url.searchParams.set("nickname", nickname);
    history.replaceState(null, "", url);
    connect();
  });

  // The server refuses control characters other than tab and newline (TEXT_INVALID):
  // line breaks pasted as CR, CRLF or U+2028/U+2029 become newlines, the rest goes.
  function sendable(text) {
    return text
      .replace(/\r\n?|[\u2028\u2029]/g, "\n")
      .replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, "");
  }

  function sendMessage() {
    const text = sendable(ui.input.value);
    if (!text.trim()) return;
    const length = [...text].length; // the server counts characters, not UTF-16 units
    if (length > limits.maxMessageLength) {
      ui.hint.textContent =
        `Your message is too long: ${length} characters, at most ${limits.maxMessageLength}.`;
      return;
    }
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      ui.hint.textContent = "Not connected: your message is kept until you can send it.";
      return;
    }
    socket.send(JSON.stringify({ type: "message", text }));
    ui.input.value = "";
    ui.hint.textContent = "";
    autosize();
  }

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 160)}px`;
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  ui.input.addEventListener("input", autosize);

  // Back online or back to the tab: no need to wait out the backoff.
  const retryNow = () => { if (retryTimer !== null && !document.hidden) connect(); };
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", retryNow);

  if (nickname) connect();
  else {
    setStatus("closed", "Not connected");
    askNickname();
  }
})();
