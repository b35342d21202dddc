// The guard's view: every lane's decision with its reasons, the masked
// name to compare with the card, the temperatures and what the gate did;
// the last passages; the status line; and, once signed in, the guard's
// actions.
"use strict";

const REASON_WORDS = {
  clinical_thermometer_normal: "体温计复测正常 · Clinical thermometer: normal",
  id_checked_by_hand: "已人工核验身份证 · ID card checked by hand",
  device_fault: "设备故障 · A device is faulty",
  medical_emergency: "紧急医疗 · Medical emergency",
  official_duty: "执行公务 · Official duty",
};
const GATE_WORDS = { pulse: "闸门已开 · gate opened", closed: "闸门关闭 · gate closed", held_open: "消防常开 · held open (fire alarm)" };
const ID_WORDS = {
  match: "身份证相符 · ID card matches", mismatch: "身份证不符 · ID card does not match",
  confirmed: "保安已核验 · checked by the guard", only: "凭身份证 · on ID card", invalid: "身份证号无效 · invalid ID number",
};

const lanes = new Map(); // name -> state
let overrideReasons = [];
let guard = null;

function message(text) { document.getElementById("message").textContent = text || ""; }

function drawStatus(st) {
  const box = document.getElementById("status");
  box.replaceChildren(...(st.items || []).map((it) =>
    el("span", { class: "item" + (it.bad ? " bad" : ""), "data-key": it.key, title: it.en }, `${it.zh} ${it.value}`)));
}

// laneBox builds a lane's panel once: its decision and details change
// with each update, its action forms do not (so typing is not lost).
function laneBox(name) {
  const box = el("section", { class: "lane", id: "lane-" + name, "data-lane": name },
    el("h2", {}, "通道 · Lane " + name),
    el("div", { class: "decision grey" }, el("div", { class: "icon" }), el("div", {}, el("div", { class: "zh" }), el("div", { class: "en" }))),
    el("div", { class: "details" }),
    el("ul", { class: "last" }),
    actions(name));
  document.getElementById("lanes").append(box);
  return box;
}

function actions(name) {
  const form = (kind, label, ...fields) => {
    const f = el("form", { "data-kind": kind }, ...fields, el("button", { type: "submit" }, label));
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { lane: name, kind };
      for (const i of f.querySelectorAll("input, select")) body[i.name] = i.type === "number" ? parseFloat(i.value) : i.value;
      const r = await post("/api/act", body);
      message(r.ok ? "" : (r.data.error || "refused"));
      if (r.ok) f.reset();
    });
    return f;
  };
  const outcome = el("select", { name: "outcome" },
    el("option", { value: "pass" }, "通行 · pass"), el("option", { value: "refer" }, "人工核验 · second check"),
    el("option", { value: "refuse" }, "禁止通行 · refuse"));
  const reason = el("select", { name: "reason", class: "reasons-select" });
  return el("div", { class: "actions hidden" },
    form("temperature", "录入体温 · Enter temperature",
      el("input", { name: "celsius", type: "number", step: "0.1", min: "30", max: "45", placeholder: "36.5", required: "" })),
    form("id", "凭身份证通行 · Pass on ID card",
      el("input", { name: "number", placeholder: "身份证号 · ID number", autocomplete: "off", required: "" })),
    form("confirm_id", "身份证核验无误 · ID card checked"),
    form("override", "人工决定 · Decide", outcome, reason));
}

function drawLane(l) {
  lanes.set(l.lane, l);
  const box = document.getElementById("lane-" + l.lane) || laneBox(l.lane);
  const p = shownPassage(l);
  const d = box.querySelector(".decision");
  d.className = "decision " + p.colour;
  d.querySelector(".icon").innerHTML = ICONS[p.icon] || "";
  d.querySelector(".zh").textContent = p.headline_zh;
  d.querySelector(".en").textContent = p.headline_en;
  box.dataset.passage = p.id || "";

  const det = box.querySelector(".details");
  const parts = [];
  if (p.masked_name) {
    parts.push(el("div", { class: "compare" }, `${p.masked_name}`,
      el("span", {}, p.static ? " 纸质码 · paper code" : ""), " — 请核对身份证 · compare with the ID card"));
  }
  if (p.reasons && p.reasons.length) {
    parts.push(el("ul", { class: "reasons" }, ...p.reasons.map((r) => el("li", { "data-code": r.code }, `${r.zh} · ${r.en}`))));
  }
  if (p.readings && p.readings.length) {
    parts.push(el("div", { class: "temps" }, "体温 · Temperature: ",
      ...p.readings.map((r) => el("span", { class: r.fever ? "fever" : r.error ? "error" : "" },
        `${r.celsius.toFixed(1)}°C${r.error ? " (读数错误 · misread)" : ""}`))));
  }
  const facts = [];
  if (p.id_check) facts.push(ID_WORDS[p.id_check] || p.id_check);
  if (p.gate) facts.push(GATE_WORDS[p.gate] || p.gate);
  if (p.decided && !p.recorded) facts.push("未记录：请人工放行 · NOT RECORDED: let through by hand");
  if (facts.length) parts.push(el("div", { class: "facts" }, facts.join(" · ")));
  det.replaceChildren(...parts);

  box.querySelector(".last").replaceChildren(...(l.last || []).map((q) =>
    el("li", { "data-passage": q.id }, el("span", { class: "dot " + q.colour }),
      el("span", {}, new Date(q.decided_at).toLocaleTimeString("zh-CN", { hour12: false })),
      el("span", {}, `${q.headline_zh} · ${q.masked_name || "-"} · ${(q.readings || []).map((r) => r.celsius.toFixed(1)).join(">") || "-"}`))));
  // When the newest decision was first drawn, for measuring the screen.
  const newest = l.last && l.last[0];
  if (newest && newest.id !== box.dataset.lastDecided) {
    box.dataset.lastDecided = newest.id;
    box.dataset.lastDecidedAt = String(Date.now());
  }
}

function drawGuard() {
  document.getElementById("signin").classList.toggle("hidden", !!guard);
  document.getElementById("signedin").classList.toggle("hidden", !guard);
  document.getElementById("guard").textContent = guard || "";
  for (const a of document.querySelectorAll(".actions")) a.classList.toggle("hidden", !guard);
  for (const s of document.querySelectorAll(".reasons-select")) {
    if (s.options.length === 0) s.replaceChildren(...overrideReasons.map((r) => el("option", { value: r }, REASON_WORDS[r] || r)));
  }
}

document.getElementById("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await post("/api/signin", { name: document.getElementById("guard-name").value, pin: document.getElementById("guard-pin").value });
  document.getElementById("guard-pin").value = "";
  if (r.ok) { guard = r.data.guard; message(""); } else { message(r.data.error || "refused"); }
  drawGuard();
});
document.getElementById("signout").addEventListener("click", async () => {
  await post("/api/signout");
  guard = null;
  drawGuard();
});

connect(
  (snap) => {
    document.getElementById("checkpoint").textContent = snap.checkpoint;
    overrideReasons = snap.override_reasons || [];
    drawStatus(snap.status || {});
    for (const l of snap.lanes || []) drawLane(l);
    drawGuard();
  },
  drawLane,
  drawStatus,
  (up) => {
    const c = document.getElementById("conn");
    c.className = "conn" + (up ? "" : " down");
    c.textContent = up ? "已连接 · live" : "连接中断 · reconnecting";
  },
);
fetch("/api/me", { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : null)).then((m) => { guard = m && m.guard; drawGuard(); });
setInterval(() => { for (const l of lanes.values()) drawLane(l); }, 1000);
