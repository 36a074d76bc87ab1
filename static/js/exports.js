// Exports page: poll each unfinished export (GET /api/v1/exports/<id>/) and update its row;
// reload once one finishes, so that its result (manifest link or error) is rendered by the server.
(function () {
  "use strict";

  var POLL_MS = 1500;
  var FINISHED = ["done", "failed"];

  function update(row, job) {
    var status = row.querySelector("[data-field=status]");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    row.querySelector("[data-field=bar]").style.width = Math.round(100 * job.progress) + "%";
    row.querySelector("[data-field=count]").textContent = job.done + "/" + job.total;
  }

  function poll(row) {
    fetch("/api/v1/exports/" + row.dataset.export + "/", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) return;
        update(row, job);
        if (FINISHED.indexOf(job.status) >= 0) { window.location.reload(); return; }
        window.setTimeout(function () { poll(row); }, POLL_MS);
      })
      .catch(function () { window.setTimeout(function () { poll(row); }, 5 * POLL_MS); });
  }

  document.querySelectorAll("tr[data-export]").forEach(function (row) {
    if (FINISHED.indexOf(row.dataset.status) < 0) poll(row);
  });
})();
