// Rollcall console and setup page: the little script the pages need (copy buttons, confirmations,
// "type the name to confirm", and the setup page's live panel). No inline script anywhere: the
// Content-Security-Policy forbids it.
(function () {
  "use strict";

  // One polite live region for announcements ("Copied").
  function announce(text) {
    var region = document.getElementById("announcer");
    if (!region) {
      region = document.createElement("div");
      region.id = "announcer";
      region.className = "sr-only";
      region.setAttribute("aria-live", "polite");
      region.setAttribute("role", "status");
      document.body.appendChild(region);
    }
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  // <button data-copy="element-id">: copies that element's text (or value).
  function setupCopy() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (!source) return;
        var text = (source.value !== undefined && source.tagName !== "OUTPUT") ? source.value : source.textContent;
        var done = function () {
          var label = button.getAttribute("data-label") || "value";
          button.setAttribute("data-copied", "true");
          var old = button.textContent;
          button.textContent = "Copied";
          announce("Copied the " + label + " to the clipboard");
          window.setTimeout(function () { button.textContent = old; }, 2000);
          document.dispatchEvent(new CustomEvent("rollcall:copied", { detail: button.getAttribute("data-copy") }));
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text.trim()).then(done, function () { selectFallback(source, done); });
        } else {
          selectFallback(source, done);
        }
      });
    });
  }

  function selectFallback(source, done) {
    var area = document.createElement("textarea");
    area.value = (source.value !== undefined && source.tagName !== "OUTPUT" ? source.value : source.textContent).trim();
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(area);
    done();
  }

  // <input type="file" data-fill="id">: the chosen file's text goes into the textarea with that id
  // (the match report's CSV upload: the form itself stays a plain form).
  function setupFileFill() {
    document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-fill"));
        var file = input.files && input.files[0];
        if (!target || !file) return;
        var reader = new FileReader();
        reader.onload = function () { target.value = String(reader.result); };
        reader.readAsText(file);
      });
    });
  }

  // <form data-confirm="question">: asks before sending.
  function setupConfirm() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // <input data-must-equal="text"> inside a form: its submit button stays disabled until the
  // input holds exactly that text (deleting an organization by typing its name).
  function setupTypeToConfirm() {
    document.querySelectorAll("input[data-must-equal]").forEach(function (input) {
      var form = input.form;
      var button = form && form.querySelector("button[type=submit]");
      if (!button) return;
      var check = function () { button.disabled = input.value !== input.getAttribute("data-must-equal"); };
      input.addEventListener("input", check);
      check();
    });
  }

  // <input type=checkbox data-enables="button-id">: that button stays disabled until it is ticked
  // (the setup page: "I have copied the token").
  function setupEnables() {
    document.querySelectorAll("input[data-enables]").forEach(function (box) {
      var target = document.getElementById(box.getAttribute("data-enables"));
      if (!target) return;
      var check = function () { target.disabled = !box.checked; };
      box.addEventListener("change", check);
      check();
    });
  }

  // <select data-switch="name">: the elements with data-case="name" show only while the select's
  // value is their data-when (a new provisioning target's authentication fields). Without the
  // script every field shows, and the server takes the ones the chosen kind needs.
  function setupSwitches() {
    document.querySelectorAll("select[data-switch]").forEach(function (select) {
      var name = select.getAttribute("data-switch");
      var cases = document.querySelectorAll("[data-case]");
      var check = function () {
        cases.forEach(function (el) {
          if (el.getAttribute("data-case") === name) el.hidden = el.getAttribute("data-when") !== select.value;
        });
      };
      select.addEventListener("change", check);
      check();
    });
  }

  // <section data-live="url">: the setup page's live panel, fed by Server-Sent Events. Each event
  // is one request the identity provider sent, already explained by the server.
  function setupLive() {
    document.querySelectorAll("[data-live]").forEach(function (panel) {
      if (!window.EventSource) return;
      var list = panel.querySelector("ul");
      var waiting = panel.querySelector("[data-waiting]");
      var source = new EventSource(panel.getAttribute("data-live"));
      source.addEventListener("request", function (message) {
        var r;
        try { r = JSON.parse(message.data); } catch (e) { return; }
        if (waiting) waiting.hidden = true;
        var item = document.createElement("li");
        var status = document.createElement("span");
        status.className = "status " + (r.ok ? "status-ok" : "status-bad");
        status.textContent = r.ok ? "Answered " + r.status : "Failed " + r.status;
        item.appendChild(status);
        item.appendChild(document.createTextNode(" " + r.summary));
        var when = document.createElement("span");
        when.className = "help";
        when.textContent = " — " + r.at;
        item.appendChild(when);
        if (r.fix) {
          var fix = document.createElement("span");
          fix.className = "explain";
          fix.textContent = "How to fix it: " + r.fix;
          item.appendChild(fix);
        }
        list.insertBefore(item, list.firstChild);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    setupConfirm();
    setupFileFill();
    setupTypeToConfirm();
    setupEnables();
    setupSwitches();
    setupLive();
  });
})();
