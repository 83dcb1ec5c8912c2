/* Tekton dashboard: the few lines htmx does not do for us. No inline script anywhere; the
   Content-Security-Policy forbids it.

   1. Every (re)connection of the run page's WebSocket resumes after the last event seq the
      page has applied (#run-seq, swapped in by the server with every update), so a dropped
      connection catches up from the database instead of missing or repeating changes.
   2. When the row of the stage shown in the panel changes, the panel is fetched again.
   3. The header says whether the live connection is up.
   4. A Copy button copies the command it names (data-copy) to the clipboard.
*/
(function () {
  "use strict";
  if (typeof htmx === "undefined") {
    return;
  }

  var defaultCreate = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    var marker = document.getElementById("run-seq");
    var target = url;
    if (marker && marker.dataset.seq) {
      var parsed = new URL(url, window.location.href);
      parsed.searchParams.set("after", marker.dataset.seq);
      target = parsed.toString();
    }
    if (defaultCreate) {
      return defaultCreate(target);
    }
    var socket = new WebSocket(target, []);
    socket.binaryType = htmx.config.wsBinaryType;
    return socket;
  };

  function panel() {
    return document.getElementById("stage-panel");
  }

  function rowOf(stage) {
    return document.getElementById("stage-row-" + stage);
  }

  // The timeline row revision the open panel was rendered from.
  var shownRev = null;

  function highlightSelected() {
    var current = panel();
    if (!current) {
      return;
    }
    document.querySelectorAll(".stage-row a").forEach(function (link) {
      if (link.parentElement.dataset.stage === current.dataset.stage) {
        link.setAttribute("aria-current", "true");
      } else {
        link.removeAttribute("aria-current");
      }
    });
  }

  function rememberPanelRev() {
    var current = panel();
    var row = current ? rowOf(current.dataset.stage) : null;
    shownRev = row ? row.dataset.rev : null;
  }

  function refreshPanelIfChanged() {
    var current = panel();
    if (!current) {
      return;
    }
    var row = rowOf(current.dataset.stage);
    if (row && row.dataset.rev !== shownRev) {
      shownRev = row.dataset.rev;
      htmx.ajax("GET", current.dataset.src, { target: "#stage-panel", swap: "outerHTML" });
    }
  }

  function setConn(state) {
    var live = document.getElementById("run-live");
    if (live) {
      live.dataset.conn = state;
    }
  }

  // Deferred scripts run before DOMContentLoaded, so the page is parsed here.
  highlightSelected();
  rememberPanelRev();

  document.addEventListener("htmx:wsOpen", function () {
    setConn("live");
  });
  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail && event.detail.event ? event.detail.event.code : 0;
    // 1000: the run ended and the server said so; htmx retries 1006, 1011, 1012 and 1013.
    if (code === 1000) {
      setConn("finished");
    } else {
      setConn([1006, 1011, 1012, 1013].indexOf(code) >= 0 ? "reconnecting" : "closed");
    }
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    highlightSelected();
    refreshPanelIfChanged();
  });
  // Copy buttons beside commands: data-copy names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    var source = button ? document.getElementById(button.dataset.copy) : null;
    if (!source || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.classList.add("copied");
    });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "stage-panel") {
      highlightSelected();
      rememberPanelRev();
    }
  });
})();
