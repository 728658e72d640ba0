// The few lines the pages need beyond htmx: the live worklist (server-sent events; on each
// `worklist` event the rows are fetched again) and the CSRF header on htmx requests.
document.addEventListener("DOMContentLoaded", function () {
  var token = document.querySelector('meta[name="csrf-token"]');
  document.body.addEventListener("htmx:configRequest", function (event) {
    if (token) { event.detail.headers["X-CSRF-Token"] = token.content; }
  });
  var rows = document.querySelector("[data-live]");
  var state = document.getElementById("live-state");
  if (!rows || !window.EventSource) { return; }
  var source = new EventSource(rows.dataset.live);
  source.addEventListener("hello", function () { if (state) { state.textContent = "live"; } });
  source.addEventListener("worklist", function () {
    htmx.ajax("GET", rows.dataset.rows, { target: rows, swap: "innerHTML" });
  });
  source.addEventListener("logout", function () { source.close(); window.location = "/login"; });
  source.onerror = function () { if (state) { state.textContent = "reconnecting"; } };
});
