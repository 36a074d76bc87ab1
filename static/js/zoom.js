// Image viewing for review, audit and provenance pages: every img.zoomable fits the viewport;
// click, Enter, Space or "z" shows it at 1:1 (real pixels) in a frame that pans by dragging,
// by the arrow keys (Shift: larger steps) or by scrolling; Escape or a second toggle fits it
// again. Cards arrive later (the review page fetches them), so new images are wired as they
// appear. The "z" key works anywhere on the page (the first image, or the focused one).
(function () {
  "use strict";
  var STEP = 60;

  function wrap(img) {
    if (img.dataset.zoomWired) return;
    img.dataset.zoomWired = "1";
    var frame = document.createElement("div");
    frame.className = "zoom-frame";
    frame.tabIndex = 0;
    frame.setAttribute("role", "button");
    frame.setAttribute("aria-pressed", "false");
    frame.setAttribute("aria-label", (img.alt || "Image") + ": press Enter or z to zoom to 1:1, arrows to pan, Escape to fit");
    img.parentNode.insertBefore(frame, img);
    frame.appendChild(img);
    img.draggable = false;
    frame.addEventListener("click", function () {
      if (frame.dataset.dragged === "1") { frame.dataset.dragged = ""; return; }
      toggle(frame);
    });
    frame.addEventListener("keydown", function (ev) { keys(frame, ev); });
    frame.addEventListener("pointerdown", function (ev) { dragStart(frame, ev); });
  }

  function zoomed(frame) { return frame.classList.contains("zoomed"); }

  function toggle(frame, on) {
    var img = frame.querySelector("img");
    var want = on === undefined ? !zoomed(frame) : on;
    if (want && zoomed(frame)) return;
    if (want) {
      // Keep the clicked area in view: remember the centre as a share of the fitted image.
      frame.classList.add("zoomed");
      img.style.width = img.naturalWidth ? img.naturalWidth + "px" : "";
      frame.scrollLeft = Math.max(0, (frame.scrollWidth - frame.clientWidth) / 2);
      frame.scrollTop = Math.max(0, (frame.scrollHeight - frame.clientHeight) / 2);
    } else {
      frame.classList.remove("zoomed");
      img.style.width = "";
    }
    frame.setAttribute("aria-pressed", want ? "true" : "false");
  }

  function keys(frame, ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var step = ev.shiftKey ? STEP * 4 : STEP;
    var moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); ev.stopPropagation(); toggle(frame); }
    else if (ev.key === "Escape" && zoomed(frame)) { ev.preventDefault(); ev.stopPropagation(); toggle(frame, false); }
    else if (moves[ev.key] && zoomed(frame)) {
      ev.preventDefault();
      ev.stopPropagation();
      frame.scrollLeft += moves[ev.key][0];
      frame.scrollTop += moves[ev.key][1];
    }
  }

  function dragStart(frame, ev) {
    if (!zoomed(frame) || ev.button !== 0) return;
    var x = ev.clientX, y = ev.clientY, left = frame.scrollLeft, top = frame.scrollTop;
    frame.setPointerCapture(ev.pointerId);
    function move(e) {
      if (Math.abs(e.clientX - x) + Math.abs(e.clientY - y) > 4) frame.dataset.dragged = "1";
      frame.scrollLeft = left - (e.clientX - x);
      frame.scrollTop = top - (e.clientY - y);
    }
    function up() {
      frame.removeEventListener("pointermove", move);
      frame.removeEventListener("pointerup", up);
    }
    frame.addEventListener("pointermove", move);
    frame.addEventListener("pointerup", up);
  }

  function wireAll(root) {
    (root || document).querySelectorAll("img.zoomable").forEach(wrap);
  }

  // "z" anywhere: the focused viewer, else the first one on the page.
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.key.toLowerCase() !== "z") return;
    if (ev.target.closest && ev.target.closest("input, textarea, select, dialog[open]")) return;
    var frame = (ev.target.closest && ev.target.closest(".zoom-frame")) || document.querySelector(".zoom-frame");
    if (!frame) return;
    ev.preventDefault();
    toggle(frame);
    frame.focus({ preventScroll: true });
  });

  wireAll(document);
  new MutationObserver(function () { wireAll(document); })
    .observe(document.body, { childList: true, subtree: true });
  window.hilappZoom = { wireAll: wireAll, toggle: toggle };
})();
