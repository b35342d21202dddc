// The checkpoint's screens: the state streams in from /events (a snapshot,
// then each change); the pages draw it. No framework, nothing fetched
// from outside the box.
"use strict";

const ICONS = {
  pass: '<svg viewBox="0 0 100 100" aria-label="pass"><circle cx="50" cy="50" r="46" fill="none" stroke="currentColor" stroke-width="8"/><path d="M27 52 l15 15 l32 -34" fill="none" stroke="currentColor" stroke-width="10" stroke-linecap="round" stroke-linejoin="round"/></svg>',
  refuse: '<svg viewBox="0 0 100 100" aria-label="refuse"><circle cx="50" cy="50" r="46" fill="none" stroke="currentColor" stroke-width="8"/><path d="M32 32 L68 68 M68 32 L32 68" stroke="currentColor" stroke-width="10" stroke-linecap="round"/></svg>',
  refer: '<svg viewBox="0 0 100 100" aria-label="second check"><path d="M50 6 L96 90 L4 90 Z" fill="none" stroke="currentColor" stroke-width="8" stroke-linejoin="round"/><path d="M50 36 L50 62" stroke="currentColor" stroke-width="10" stroke-linecap="round"/><circle cx="50" cy="76" r="6" fill="currentColor"/></svg>',
  measure: '<svg viewBox="0 0 100 100" aria-label="temperature"><path d="M42 14 a8 8 0 0 1 16 0 v46 a18 18 0 1 1 -16 0 z" fill="none" stroke="currentColor" stroke-width="7"/><circle cx="50" cy="74" r="10" fill="currentColor"/><path d="M50 40 v30" stroke="currentColor" stroke-width="7"/></svg>',
  wait: '<svg viewBox="0 0 100 100" aria-label="show your code"><rect x="14" y="14" width="72" height="72" rx="6" fill="none" stroke="currentColor" stroke-width="7"/><rect x="26" y="26" width="16" height="16" fill="currentColor"/><rect x="58" y="26" width="16" height="16" fill="currentColor"/><rect x="26" y="58" width="16" height="16" fill="currentColor"/><rect x="56" y="56" width="8" height="8" fill="currentColor"/><rect x="68" y="68" width="8" height="8" fill="currentColor"/></svg>',
};

// How long a decision stays on the passenger's screen before it asks for
// the next code.
const SHOW_MS = 6000;

const IDLE = { colour: "grey", icon: "wait", headline_zh: "请出示健康码", headline_en: "Your health code, please",
  reasons: [], readings: [] };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// When this page first saw each decided passage (by the page's clock: the
// box's may be another).
const firstSeen = new Map();

// What a lane shows now: the passage gathering, else the last decided
// one for a few seconds, else a request for the next code.
function shownPassage(lane) {
  if (lane.current) return lane.current;
  const last = lane.last && lane.last[0];
  if (!last) return IDLE;
  if (!firstSeen.has(last.id)) {
    firstSeen.set(last.id, Date.now());
    if (firstSeen.size > 100) firstSeen.delete(firstSeen.keys().next().value);
  }
  return Date.now() - firstSeen.get(last.id) < SHOW_MS ? last : IDLE;
}

// connect streams the state into onState (whole snapshots and lane
// changes), and says when the stream is down; EventSource reconnects.
function connect(onSnapshot, onLane, onStatus, onConn) {
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (e) => {
    onConn(true);
    const snap = JSON.parse(e.data);
    // Decisions made before this page connected are history, not news:
    // a passenger must not take an earlier person's "pass" for theirs.
    for (const l of snap.lanes || []) for (const p of l.last || []) if (!firstSeen.has(p.id)) firstSeen.set(p.id, 0);
    onSnapshot(snap);
  });
  es.addEventListener("lane", (e) => onLane(JSON.parse(e.data)));
  es.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  es.onerror = () => onConn(false);
  return es;
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Checkpoint-Screen": "1" }, body: JSON.stringify(body || {}) });
  let data = {};
  try { data = await r.json(); } catch (e) { /* no body */ }
  return { ok: r.ok, status: r.status, data };
}
