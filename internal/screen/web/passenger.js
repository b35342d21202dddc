// The passenger's view of one lane (/lane/NAME): the whole screen is the
// answer, in colour, icon and words.
"use strict";

const laneName = decodeURIComponent(location.pathname.split("/").pop());
let lane = { lane: laneName, current: null, last: [] };

function draw() {
  const p = shownPassage(lane);
  const s = document.getElementById("screen");
  s.className = "passenger " + p.colour;
  s.dataset.passage = p.id || "";
  document.getElementById("icon").innerHTML = ICONS[p.icon] || "";
  document.getElementById("zh").textContent = p.headline_zh;
  document.getElementById("en").textContent = p.headline_en;
  document.getElementById("who").textContent = p.decided && p.masked_name ? p.masked_name : "";
}

connect(
  (snap) => { lane = (snap.lanes || []).find((l) => l.lane === laneName) || lane; draw(); },
  (l) => { if (l.lane === laneName) { lane = l; draw(); } },
  () => {},
  (up) => document.getElementById("offline").classList.toggle("hidden", up),
);
// Back to "your code, please" once a decision has been shown long enough.
setInterval(draw, 1000);
