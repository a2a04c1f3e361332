// The lobby: list active rooms from /api/rooms; the join form works without this script.
"use strict";

(function () {
  const list = document.getElementById("rooms");
  const status = document.getElementById("rooms-status");
  const form = document.getElementById("join-form");
  const nickname = document.getElementById("nickname");
  const roomInput = document.getElementById("room");
  const REFRESH_MS = 10000;

  try {
    if (nickname && !nickname.value) nickname.value = localStorage.getItem("rooms.nickname") || "";
  } catch { /* storage unavailable */ }

  function roomUrl(name) {
    return `/chat/${encodeURIComponent(name)}/`;
  }

  function render(rooms) {
    list.replaceChildren();
    rooms.sort((a, b) => (b.members || 0) - (a.members || 0) || a.name.localeCompare(b.name));
    for (const room of rooms) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = roomUrl(room.name);
      link.className = "room-link";
      const name = document.createElement("bdi"); // a room name may be right-to-left
      name.className = "room-name";
      name.textContent = room.name;
      const count = document.createElement("span");
      count.className = "room-count";
      const n = Number(room.members) || 0;
      count.textContent = n === 1 ? "1 member" : `${n} members`;
      link.append(name, count);
      link.addEventListener("click", (event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
        event.preventDefault();
        roomInput.value = room.name;
        if (!nickname || nickname.value.trim()) form.requestSubmit(); // signed in: no nickname
        else nickname.focus();
      });
      item.appendChild(link);
      list.appendChild(item);
    }
    status.textContent = rooms.length ? "" : "No active rooms right now. Start one above.";
    status.hidden = rooms.length > 0;
  }

  async function load() {
    try {
      const response = await fetch("/api/rooms", { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(String(response.status));
      const body = await response.json();
      const rooms = Array.isArray(body) ? body : body.rooms || [];
      render(rooms.filter((room) => Number(room.members) > 0)); // active: someone is in it
    } catch {
      render([]);
    }
  }

  load();
  setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
})();
