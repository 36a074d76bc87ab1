// Batches pages: show only the launch fields of the chosen kind, and poll a batch's live report
// (GET /api/v1/batches/<id>/) to update its progress without reloading. No dependencies.
(function () {
  "use strict";

  function syncKindFields(form) {
    var kind = form.querySelector("[name=kind]");
    if (!kind) return;
    function apply() {
      form.querySelectorAll("fieldset[data-kinds]").forEach(function (fs) {
        fs.hidden = fs.dataset.kinds.split(" ").indexOf(kind.value) < 0;
      });
    }
    kind.addEventListener("change", apply);
    apply();
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  function fillTable(id, obj) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    body.textContent = "";
    Object.keys(obj).sort().forEach(function (key) {
      var tr = document.createElement("tr");
      [key, String(obj[key])].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  // One date format on every page: "YYYY-MM-DD HH:MM" in UTC, as the server renders it.
  function when(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  // A failure as the server renders it: time, what, kind and one line; the stored text on demand.
  function failureItem(f) {
    var li = document.createElement("li");
    var t = document.createElement("time");
    t.dateTime = f.at;
    t.textContent = when(f.at);
    var what = document.createElement("strong");
    what.textContent = " " + f.what;
    var kind = document.createElement("span");
    kind.className = "chip failure-kind";
    kind.textContent = f.kind || "error";
    li.append(t, what, " ", kind, document.createElement("br"));
    var line = document.createElement("span");
    line.className = "failure-line";
    line.textContent = f.line || f.reason;
    li.appendChild(line);
    if (f.details) {
      var det = document.createElement("details");
      var sum = document.createElement("summary");
      sum.textContent = "details";
      var pre = document.createElement("pre");
      pre.textContent = f.details;
      det.append(sum, pre);
      li.appendChild(det);
    }
    return li;
  }

  function render(live, r) {
    live.dataset.status = r.status;
    live.dataset.percent = r.percent;
    var status = document.getElementById("batch-status");
    if (status) { status.textContent = r.status; status.className = "status status-" + r.status; }
    setText("batch-note", r.note || "");
    document.getElementById("progress-fill").style.width = r.percent + "%";
    setText("progress-percent", r.percent + "%");
    setText("progress-count", r.done + " of " + r.total);
    setText("progress-machine", r.machine);
    setText("progress-humans", r.humans);
    setText("throughput", r.throughput_per_min);
    setText("eta", r.eta_s === null ? (r.done >= r.total ? "done" : "—") : fmtDuration(r.eta_s));
    setText("spend", "$" + r.spend_usd.toFixed(4));
    setText("budget", r.budget_usd === null ? "no budget"
      : "of $" + r.budget_usd.toFixed(2) + " (" + r.budget_percent + "%)");
    var budgetFill = document.getElementById("budget-fill");
    if (budgetFill && r.budget_percent !== null) budgetFill.style.width = Math.min(r.budget_percent, 100) + "%";
    setText("in-flight", r.in_flight_calls);
    fillTable("counts", r.counts);
    fillTable("calls", r.calls);
    var list = document.getElementById("failures");
    if (list) {
      list.textContent = "";
      if (!r.failures.length) {
        var none = document.createElement("li");
        none.className = "muted";
        none.textContent = "None.";
        list.appendChild(none);
      }
      r.failures.forEach(function (f) { list.appendChild(failureItem(f)); });
    }
    document.querySelectorAll("form[data-action]").forEach(function (form) {
      form.hidden = r.actions.indexOf(form.dataset.action) < 0;
    });
  }

  function poll(live) {
    var delay = 1500;
    function tick() {
      fetch(live.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (resp) { if (!resp.ok) throw new Error(resp.status); return resp.json(); })
        .then(function (r) {
          render(live, r);
          var settled = r.status !== "running" && r.in_flight_calls === 0;
          delay = settled ? 10000 : 1500;
        })
        .catch(function () { delay = Math.min(delay * 2, 30000); })
        .then(function () { window.setTimeout(tick, delay); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("launch-form");
    if (form) syncKindFields(form);
    var live = document.getElementById("batch-live");
    if (live) poll(live);
  });
})();
