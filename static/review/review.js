// Review page: keyboard voting with a pre-fetched next item and an undo window.
// Cards are server-rendered fragments (GET next-card); votes go to the REST API.
// Every card shown or pre-fetched in this session is excluded from the next fetch, so a card
// whose vote is still in its undo window or on its way never comes back, whatever the pace.
(function () {
  "use strict";
  const app = document.getElementById("review-app");
  if (!app) return;
  const stageEl = document.getElementById("review-stage");
  const toastEl = document.getElementById("review-toast");
  const commentEl = document.getElementById("review-comment");
  const commentBox = commentEl.closest(".comment-box");
  const helpEl = document.getElementById("review-help");
  const guideEl = document.getElementById("review-guidelines");
  const remainingEl = document.getElementById("review-remaining");
  const guidelineVersion = app.dataset.guidelineVersion || "";
  const SEEN_MAX = 500; // the server's EXCLUDE_MAX
  const csrf = app.querySelector("input[name=csrfmiddlewaretoken]").value;
  const undoMs = parseInt(app.dataset.undoMs || "4000", 10);
  const choices = Array.from(app.querySelectorAll("button[data-choice]")).map((b) => b.dataset.choice);
  const keyToChoice = { a: "approve", r: "reject", 1: "correct", 2: "regenerate", 3: "discard" };

  let current = null;     // {id, html}
  let prefetched = null;  // {id, html} or null
  let prefetching = null; // Promise while a prefetch runs
  let pending = null;     // the vote in its undo window
  let toastTimer = null;
  let recheckTimer = null;
  const seen = [];        // ids of every card shown or pre-fetched, oldest first

  const urlFor = (tpl, id) => tpl.replace(/\/0\//, "/" + id + "/");
  const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());

  function toast(html, kind, ms) {
    toastEl.innerHTML = html;
    toastEl.className = "toast" + (kind ? " " + kind : "");
    toastEl.hidden = false;
    clearTimeout(toastTimer);
    if (ms) toastTimer = setTimeout(() => { toastEl.hidden = true; }, ms);
  }

  let lastEmpty = null;    // {held, retry} from the last 204

  function remember(id) {
    if (!id || seen.includes(id)) return;
    seen.push(id);
    if (seen.length > SEEN_MAX) seen.shift();
  }

  async function fetchCard() {
    const ids = busyIds().join(",");
    const resp = await fetch(app.dataset.nextUrl + (ids ? "?exclude=" + ids : ""), {
      credentials: "same-origin", headers: { "X-Requested-With": "fetch" },
    });
    if (resp.status === 204) {
      lastEmpty = {
        held: parseInt(resp.headers.get("X-Review-Held") || "0", 10),
        retry: parseInt(resp.headers.get("X-Review-Retry-After") || "0", 10),
      };
      return null;
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const card = {
      id: resp.headers.get("X-Review-Item"),
      remaining: resp.headers.get("X-Review-Remaining"),
      html: await resp.text(),
      dwell: 0, since: null,
    };
    remember(card.id);
    return card;
  }

  function busyIds() {
    const ids = seen.slice();
    for (const id of [current && current.id, prefetched && prefetched.id, pending && pending.item.id]) {
      if (id && !ids.includes(id)) ids.push(id);
    }
    return ids;
  }

  // Dwell: the time the card is on screen while the tab is visible.
  function startClock(card) {
    if (card && card.since === null && !document.hidden) card.since = performance.now();
  }
  function stopClock(card) {
    if (card && card.since !== null) {
      card.dwell += performance.now() - card.since;
      card.since = null;
    }
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopClock(current); else startClock(current);
  });

  function prefetch() {
    if (prefetched || prefetching) return prefetching;
    prefetching = fetchCard()
      .then((card) => { prefetched = card; })
      .catch(() => { prefetched = null; })
      .finally(() => { prefetching = null; });
    return prefetching;
  }

  function show(card) {
    stopClock(current);
    current = card;
    commentEl.value = "";
    commentBox.hidden = true;
    clearTimeout(recheckTimer);
    if (card) {
      stageEl.innerHTML = card.html;
      wireCard();
      startClock(card);
      const left = parseInt(card.remaining || "0", 10);
      remainingEl.textContent = card.remaining ? (left > 1000 ? "1000+" : left) + " left for you" : "";
      remainingEl.hidden = !card.remaining;
    } else {
      stageEl.innerHTML = document.getElementById("review-empty").innerHTML;
      remainingEl.textContent = "0 left for you";
      remainingEl.hidden = false;
      explainEmpty();
    }
  }

  // The tail of a queue: items whose seats other experts hold come back when a lease runs out,
  // so the page says so and checks again then, instead of leaving the expert at a dead end.
  function explainEmpty() {
    const why = stageEl.querySelector(".empty-why");
    if (!lastEmpty || !lastEmpty.held || !why) return;
    const wait = Math.max(1, Math.min(lastEmpty.retry || 30, 600));
    why.textContent = lastEmpty.held + " open item" + (lastEmpty.held > 1 ? "s are" : " is") +
      " being reviewed by other experts. If a seat frees (a lease runs out), this page takes it: checking again in " +
      wait + " s.";
    recheckTimer = setTimeout(() => { if (!current) advance(); }, wait * 1000);
  }

  // Zoom and pan: static/js/zoom.js wires every img.zoomable as the card arrives.
  function wireCard() {}

  // The next card: the pre-fetched one at once; otherwise no card is on screen (so a fast key
  // press cannot vote twice on the card just voted on) until one arrives.
  async function advance() {
    if (!prefetched) {
      stopClock(current);
      current = null;
      stageEl.innerHTML = '<p class="muted">Loading…</p>';
      if (prefetching) await prefetching;
      let card = prefetched;
      prefetched = null;
      if (!card) card = await fetchCard().catch(() => null);
      if (current) { prefetched = card; return; } // an undo brought a card back meanwhile
      show(card);
    } else {
      const card = prefetched;
      prefetched = null;
      show(card);
    }
    if (current) prefetch();
  }

  function correctionData() {
    const card = stageEl.querySelector(".review-card");
    const file = card && card.querySelector("input[type=file]");
    const text = card && card.querySelector("textarea[name=instruction]");
    return {
      image: file && file.files.length ? file.files[0] : null,
      instruction: text ? text.value.trim() : "",
    };
  }

  function vote(choice) {
    if (!current || !choices.includes(choice)) return;
    let extra = { image: null, instruction: "" };
    if (choice === "correct") {
      extra = correctionData();
      if (!extra.image && !extra.instruction) {
        toast("A manual correction needs a corrected image or an edit instruction.", "error", 5000);
        const text = stageEl.querySelector("textarea[name=instruction]");
        if (text) text.focus();
        return;
      }
    }
    if (pending) send(pending); // a second vote inside the window: the first one is final
    const item = current;
    stopClock(item);
    pending = {
      item, choice, comment: commentEl.value.trim(), key: newKey(),
      dwell: Math.round(item.dwell), ...extra,
    };
    const mine = pending;
    mine.timer = setTimeout(() => send(mine), undoMs);
    toast(
      "Voted <strong>" + choice + "</strong> on item #" + item.id +
        ' <button type="button" data-action="undo">Undo (u)</button>',
      "", undoMs + 200
    );
    advance();
  }

  function undo() {
    if (!pending) return;
    clearTimeout(pending.timer);
    const back = pending;
    pending = null;
    if (current) prefetched = current; // the item shown meanwhile waits as the next one
    show(back.item); // its clock goes on from where the vote stopped it
    commentEl.value = back.comment;
    toast("Vote undone: item #" + back.item.id + " is back.", "", 2500);
  }

  async function send(p, keepalive) {
    clearTimeout(p.timer);
    if (pending === p) pending = null;
    if (p.sent) return;
    p.sent = true;
    const body = new FormData();
    body.append("choice", p.choice);
    body.append("comment", p.comment);
    body.append("idempotency_key", p.key);
    body.append("dwell_ms", String(Math.min(p.dwell, 3600000)));
    if (guidelineVersion) body.append("guideline_version", guidelineVersion);
    if (p.instruction) body.append("instruction", p.instruction);
    if (p.image) body.append("image", p.image);
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const resp = await fetch(urlFor(app.dataset.voteUrl, p.item.id), {
          method: "POST", body, credentials: "same-origin", keepalive: !!keepalive,
          headers: { "X-CSRFToken": csrf },
        });
        const data = await resp.json().catch(() => ({}));
        if (resp.ok) {
          const msg = data.decided
            ? "Vote recorded — item #" + p.item.id + " decided: " + data.decision_choice + "."
            : "Vote recorded on item #" + p.item.id + '. <a href="' + urlFor(app.dataset.itemUrl, p.item.id) +
              '">Change</a> (until it is decided)';
          toast(msg, "", 4000);
        } else {
          toast("Item #" + p.item.id + ": " + (data.detail || "vote refused (HTTP " + resp.status + ")"), "error", 6000);
        }
        return;
      } catch (err) {
        // Network trouble: retry with the same idempotency key, so it never counts twice.
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
    toast("Item #" + p.item.id + ": the vote could not be sent; reload the page.", "error", 0);
  }

  async function skip() {
    if (!current) return;
    const item = current;
    const next = advance(); // at once: the skipped card must take no vote
    await fetch(urlFor(app.dataset.releaseUrl, item.id), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf },
    }).catch(() => null);
    toast("Skipped item #" + item.id + ".", "", 2000);
    await next;
  }

  function toggleGuidelines(open) {
    guideEl.hidden = open === undefined ? !guideEl.hidden : !open;
  }

  function openComment() {
    commentBox.hidden = false;
    commentEl.focus();
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ev.target.closest && ev.target.closest("input, textarea, select");
    if (typing) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if (helpEl.open && ev.key !== "?") return;
    const key = ev.key.toLowerCase();
    if (keyToChoice[key] && choices.includes(keyToChoice[key])) { ev.preventDefault(); vote(keyToChoice[key]); }
    else if (key === "s") { ev.preventDefault(); skip(); }
    else if (key === "c") { ev.preventDefault(); openComment(); }
    else if (key === "u") { ev.preventDefault(); undo(); }
    else if (key === "g") { ev.preventDefault(); toggleGuidelines(); }
    else if (ev.key === "?") { ev.preventDefault(); helpEl.open ? helpEl.close() : helpEl.showModal(); }
  });

  app.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button");
    if (!btn) return;
    if (btn.dataset.choice) vote(btn.dataset.choice);
    else if (btn.dataset.action === "skip") skip();
    else if (btn.dataset.action === "comment") openComment();
    else if (btn.dataset.action === "help") helpEl.showModal();
    else if (btn.dataset.action === "undo") undo();
    else if (btn.dataset.action === "reload") advance();
    else if (btn.dataset.action === "guidelines") toggleGuidelines();
  });

  // Leaving the page ends the undo window: send the vote rather than lose it.
  window.addEventListener("pagehide", () => { if (pending) send(pending, true); });

  // The guidelines open by themselves on the first visit, and again when they change.
  const seenKey = "hilapp.guidelines." + app.dataset.stage;
  try {
    if (guidelineVersion && localStorage.getItem(seenKey) !== guidelineVersion) {
      toggleGuidelines(true);
      localStorage.setItem(seenKey, guidelineVersion);
    }
  } catch (err) { toggleGuidelines(true); } // storage blocked: show them every time

  (async function start() {
    show(await fetchCard().catch(() => null));
    if (current) prefetch();
  })();
})();
