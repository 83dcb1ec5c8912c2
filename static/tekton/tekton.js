/* Tekton dashboard: the few lines htmx does not do for us. No inline script anywhere; the
   Content-Security-Policy forbids it.

   1. Every (re)connection of the run page's WebSocket resumes after the last event seq the
      page has applied (#run-seq, swapped in by the server with every update), so a dropped
      connection catches up from the database instead of missing or repeating changes.
   2. When the row of the stage shown in the panel changes, the panel is fetched again.
   3. The header says whether the live connection is up.
   4. A Copy button copies the command it names (data-copy) to the clipboard.
   5. The agents' streamed text (JSON `stage.delta` messages on the same socket, which htmx
      is told to leave alone) grows in a card per running call, with a typing indicator;
      the stored message replaces it when the panel is fetched again. The text is kept
      per call, so a panel swap mid-stream redraws it instead of losing it.
   6. The Prompts page follows a running invocation's event stream (#prompt-live, the API's
      Server-Sent Events with the session cookie): `prompt.answer` writes its text at its
      offset in the response; any other event fetches #prompt-main again, so the server
      renders the steps, attempts and fallbacks; after `prompt.finished` the stream is
      closed (a reconnect would get 204). EventSource resumes with Last-Event-ID itself.
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

  // --- 4. streaming text ------------------------------------------------------------------
  var liveCalls = {}; // call id -> {stage, role, round, attempt, model, text}

  function roundLabel(role, round) {
    if (role === "mediator") {
      return "mediator";
    }
    return round === 0 ? "opening" : "debate " + round;
  }

  function storedIn(container, call) {
    return container.querySelector(
      'article.msg[data-role="' + call.role + '"][data-round="' + call.round + '"][data-attempt="' + call.attempt + '"]'
    );
  }

  function liveCard(box, id, call) {
    var card = box.querySelector('article[data-call="' + id + '"]');
    if (card) {
      return card;
    }
    card = document.createElement("article");
    card.className = "msg msg-live role-" + call.role;
    card.dataset.call = id;
    var header = document.createElement("header");
    var role = document.createElement("strong");
    role.className = "role";
    role.textContent = call.role;
    var model = document.createElement("span");
    model.className = "model";
    model.textContent = call.model;
    var when = document.createElement("span");
    when.className = "muted";
    when.textContent = roundLabel(call.role, call.round) + " · writing";
    var typing = document.createElement("span");
    typing.className = "typing";
    typing.setAttribute("role", "img");
    typing.setAttribute("aria-label", "writing");
    typing.append(document.createElement("i"), document.createElement("i"), document.createElement("i"));
    header.append(role, model, when, typing);
    var text = document.createElement("p");
    text.className = "live-text";
    card.append(header, text);
    box.append(card);
    return card;
  }

  // Draws one call in the open panel: appends the new piece as a text node, or (after a
  // resent piece or a redraw) sets the whole text.
  function liveDraw(id, piece) {
    var call = liveCalls[id];
    var current = panel();
    var box = document.getElementById("live-messages");
    if (!call || !current || !box || current.dataset.stage !== call.stage) {
      return;
    }
    var text = liveCard(box, id, call).querySelector(".live-text");
    if (piece !== undefined && text.textContent.length + piece.length === call.text.length) {
      text.append(document.createTextNode(piece));
    } else {
      text.textContent = call.text;
    }
  }

  function liveDrop(id) {
    delete liveCalls[id];
    var card = document.querySelector('article[data-call="' + id + '"]');
    if (card) {
      card.remove();
    }
  }

  function deltaApply(delta) {
    var p = delta.payload || {};
    var id = String(p.call_id || "");
    if (!id) {
      return;
    }
    if (p.discard) {
      liveDrop(id);
      return;
    }
    var call = liveCalls[id];
    if (!call) {
      call = {
        stage: delta.stage,
        role: String(p.role || ""),
        round: Number(p.round || 0),
        attempt: Number(p.attempt || 0),
        model: String(p.model || ""),
        text: ""
      };
      var current = panel();
      if (current && current.dataset.stage === call.stage && storedIn(current, call)) {
        return; // a late piece of a call whose stored message is shown already
      }
      liveCalls[id] = call;
    }
    var piece = String(p.text || "");
    var offset = typeof p.offset === "number" ? p.offset : call.text.length;
    if (offset >= call.text.length) {
      call.text += piece;
      liveDraw(id, piece);
    } else {
      call.text = call.text.slice(0, offset) + piece; // a resent piece overwrites
      liveDraw(id);
    }
  }

  // After the panel was fetched again: calls whose stored message it shows are done;
  // the others are drawn again from what they streamed so far.
  function liveRedraw() {
    var current = panel();
    Object.keys(liveCalls).forEach(function (id) {
      var call = liveCalls[id];
      if (current && current.dataset.stage === call.stage && storedIn(current, call)) {
        delete liveCalls[id];
      } else {
        liveDraw(id);
      }
    });
  }

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var message = event.detail ? event.detail.message : "";
    if (typeof message !== "string" || message.charAt(0) !== "{") {
      return; // HTML fragments: htmx swaps them
    }
    event.preventDefault();
    try {
      var data = JSON.parse(message);
      if (data.kind === "stage.delta") {
        deltaApply(data);
      }
    } catch (err) {
      // Not ours to show: a malformed message is dropped, the stored events still come.
    }
  });

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
      liveRedraw();
    }
  });

  function promptFollow() {
    var live = document.getElementById("prompt-live");
    if (!live || !live.dataset.events || typeof EventSource === "undefined") {
      return;
    }
    var url = live.dataset.events + "?after=" + encodeURIComponent(live.dataset.after || "0");
    var source = new EventSource(url);
    var answer = null; // the answer as the stream built it; null until its first piece
    var refresh = function () {
      htmx.ajax("GET", live.dataset.page, { target: "#prompt-main", swap: "outerHTML" });
    };
    var onAnswer = function (message) {
      var data = JSON.parse(message.data);
      var p = data.payload || {};
      var shown = document.getElementById("prompt-response");
      if (!shown) {
        return;
      }
      var base = answer === null ? shown.textContent : answer;
      answer = base.slice(0, p.offset || 0) + (p.text || "");
      shown.textContent = answer;
      shown.hidden = !answer;
      var waiting = document.getElementById("prompt-waiting");
      if (waiting && answer) {
        waiting.hidden = true;
      }
    };
    source.addEventListener("prompt.answer", onAnswer);
    ["prompt.started", "prompt.step", "prompt.attempt", "prompt.fallback"].forEach(function (kind) {
      source.addEventListener(kind, refresh);
    });
    // A redraw renders the stored answer, which may lag what the stream already wrote.
    document.addEventListener("htmx:afterSwap", function () {
      var shown = document.getElementById("prompt-response");
      if (live.dataset.events && answer !== null && shown && shown.textContent.length < answer.length) {
        shown.textContent = answer;
        shown.hidden = false;
      }
    });
    source.addEventListener("prompt.finished", function () {
      source.close();
      live.removeAttribute("data-events"); // the final redraw shows the whole answer
      refresh();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", promptFollow);
  } else {
    promptFollow();
  }
})();
