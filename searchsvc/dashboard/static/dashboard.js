/* The dashboard's behaviour: the API token (entered once, kept in this tab's sessionStorage),
   the budget form (POST /v1/plans with the bearer token), live job progress, and the charts. */
(function () {
  "use strict";
  var KEY = "bitbudget.token";
  var TERMINAL = { succeeded: 1, failed: 1, cancelled: 1 };
  var root = document.body.getAttribute("data-root") || "";
  var fmt = function (v) { return window.BBCharts ? window.BBCharts.fmt(v) : String(v); };

  function token() { try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; } }

  function showTokenState() {
    var state = document.getElementById("token-state");
    if (state) state.textContent = token() ? "token set for this tab" : "no token: writes will be refused";
    if (state) state.className = token() ? "ok" : "muted";
  }

  function setupToken() {
    var form = document.getElementById("token-form");
    if (!form) return;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var input = document.getElementById("token-input");
      var value = input.value.trim();
      if (value) sessionStorage.setItem(KEY, value);
      input.value = "";
      showTokenState();
    });
    document.getElementById("token-clear").addEventListener("click", function () {
      sessionStorage.removeItem(KEY);
      showTokenState();
    });
    showTokenState();
  }

  function say(el, text, cls) { el.textContent = text; el.className = "result " + (cls || ""); }

  function setupBudgetForm() {
    var form = document.getElementById("budget-form");
    if (!form) return;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var out = document.getElementById("budget-result");
      var f = form.elements, budget = {};
      ["memory_mb", "latency_ms", "bops_g", "avg_bits"].forEach(function (k) {
        if (f[k].value !== "") budget[k] = Number(f[k].value);
      });
      if (f.hardware.value) budget.hardware = f.hardware.value;
      var body = { model_id: Number(form.getAttribute("data-model-id")), budget: budget,
        method: f.method.value, solver: f.solver.value, validate: f.validate.checked };
      if (f.video && f.video.checked) body.validate = { video: true };  /* J&F implies validating */
      if (f.video_profile && f.video_profile.checked) body.video = true;  /* hierarchical profile */
      var cands = f.candidates.value.split(",").map(function (s) { return s.trim(); })
        .filter(function (s) { return s; });
      if (cands.length) body.candidates = cands;
      if (f.images.value !== "") body.images = Number(f.images.value);
      if (!token()) {
        say(out, "Enter the API token at the top first (bitbudget serve --dev prints one).", "error-text");
        document.getElementById("token-input").focus();
        return;
      }
      say(out, "sending…");
      fetch(root + "/v1/plans", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
        body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (json) { return { status: r.status, json: json }; });
      }).then(function (res) {
        var plan = res.status === 202 ? res.json.plan : res.json;
        if (res.status === 200 || res.status === 201 || res.status === 202) {
          say(out, res.status === 202 ? "profiling first — following job #" + res.json.job.id
            : "solved — plan #" + plan.id, "ok");
          window.location.href = root + "/dashboard/plans/" + plan.id;
          return;
        }
        var err = (res.json && res.json.error) || {};
        var text = (err.message || ("HTTP " + res.status));
        if (err.least) {
          text += " — least achievable: " + Object.keys(err.least).map(function (k) {
            return k + " " + fmt(err.least[k]); }).join(", ");
        }
        if (res.status === 401) text += " (enter a valid API token at the top)";
        say(out, text, "error-text");
      }).catch(function (exc) {
        say(out, "could not reach the server: " + exc, "error-text");
      });
    });
  }

  // a button that starts a job: POST with the tab's token; 200 (done before) reloads the page,
  // 202 hands the job to ``accepted`` (which shows it and follows it), anything else is said in
  // ``out`` with the server's message
  function postJob(button, out, url, body, accepted) {
    button.addEventListener("click", function () {
      if (!token()) {
        say(out, "Enter the API token at the top first (bitbudget serve --dev prints one).", "error-text");
        document.getElementById("token-input").focus();
        return;
      }
      say(out, "sending…");
      var headers = { "Authorization": "Bearer " + token() };
      if (body) headers["Content-Type"] = "application/json";
      fetch(url, { method: "POST", headers: headers, body: body || undefined }).then(function (r) {
        return r.json().then(function (json) { return { status: r.status, json: json }; });
      }).then(function (res) {
        if (res.status === 200) { window.location.reload(); return; }
        if (res.status !== 202) {
          var err = (res.json && res.json.error) || {};
          say(out, (err.message || ("HTTP " + res.status)) +
            (res.status === 401 ? " (enter a valid API token at the top)" : ""), "error-text");
          return;
        }
        accepted(res.json.job);
      }).catch(function (exc) {
        say(out, "could not reach the server: " + exc, "error-text");
      });
    });
  }

  function setupExactFront() {
    var button = document.getElementById("exact-front");
    if (!button) return;
    var out = document.getElementById("exact-result");
    var url = root + "/v1/models/" + button.getAttribute("data-model-id") + "/pareto";
    postJob(button, out, url, button.getAttribute("data-body"), function (job) {
      var el = document.createElement("span");
      el.className = "job";
      el.id = "exact-job";
      el.setAttribute("data-job-id", job.id);
      el.innerHTML = '<span class="job-state badge"></span> exact front: job #' + job.id +
        ' <span class="job-pct"></span> <span class="job-text"></span>' +
        '<span class="job-error error-text" hidden></span>';
      button.replaceWith(el);
      say(out, "");
      updateJob(el, job);
      follow(el);
    });
  }

  // the plan page's Export button: POST /v1/plans/{id}/exports, then follow the job in place;
  // the page reloads when it ends (with the download link, or the error)
  function setupExport() {
    var button = document.getElementById("export-button");
    if (!button) return;
    var out = document.getElementById("export-result");
    var url = root + "/v1/plans/" + button.getAttribute("data-plan-id") + "/exports";
    postJob(button, out, url, null, function (job) {
      var el = document.createElement("div");
      el.className = "job";
      el.id = "export-job";
      el.setAttribute("data-job-id", job.id);
      el.innerHTML = '<div class="job-head"><strong>export</strong> · job #' + job.id +
        ' <span class="job-state badge"></span></div>' +
        '<div class="bar"><div class="fill"></div></div>' +
        '<div class="job-msg"><span class="job-pct"></span> · <span class="job-text"></span></div>' +
        '<div class="job-error error-text" hidden></div>';
      button.parentNode.replaceWith(el);
      updateJob(el, job);
      follow(el);
    });
  }

  function updateJob(el, job) {
    var pct = (job.progress * 100).toFixed(1) + "%";
    var fill = el.querySelector(".fill");
    if (fill) fill.style.width = pct;
    var set = function (sel, text) { var n = el.querySelector(sel); if (n) n.textContent = text; };
    set(".job-pct", pct);
    set(".job-text", job.message);
    var st = el.querySelector(".job-state");
    if (st) { st.textContent = job.state; st.className = "badge state-" + job.state + " job-state"; }
    var err = el.querySelector(".job-error");
    if (err) { err.textContent = job.error || ""; err.hidden = !job.error; }
    var units = el.querySelector(".job-units");
    if (units) { units.textContent = unitsLine(job.units); units.hidden = !job.units; }
    el.setAttribute("data-state", job.state);
  }

  // a profile job's units: done / total, the rate, and how many each worker computed
  function unitsLine(u) {
    if (!u) return "";
    var workers = Object.keys(u.per_worker || {}).map(function (w) { return w + " " + u.per_worker[w]; });
    return "units " + u.done + "/" + u.total + " · " + Number(u.rate_per_s).toFixed(2) + "/s" +
      (workers.length ? " · " + workers.join(", ") : "");
  }

  function follow(el) {
    var id = el.getAttribute("data-job-id");
    var reload = el.getAttribute("data-reload") !== "0";
    function poll() {
      fetch(root + "/v1/jobs/" + id, { headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          if (!job || !job.state) return;
          updateJob(el, job);
          if (TERMINAL[job.state]) {
            if (reload) window.setTimeout(function () { window.location.reload(); }, 300);
          } else {
            window.setTimeout(poll, 700);
          }
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    }
    window.setTimeout(poll, 400);
  }

  function setupJobs() {
    var els = document.querySelectorAll(".job[data-job-id]");
    Array.prototype.forEach.call(els, function (el) {
      if (!TERMINAL[el.getAttribute("data-state")]) follow(el);
    });
  }

  function tipOfPlan(p, resLabel) {
    var lines = ["plan #" + p.id + (p.validated ? " (validated)" : " (predicted)"),
      resLabel + ": " + fmt(p.x), "predicted loss: " + fmt(p.loss)];
    if (p.iou !== undefined) lines.push("measured IoU: " + fmt(p.iou));
    if (p.kl !== undefined) lines.push("measured KL: " + fmt(p.kl));
    if (p.jf !== undefined) lines.push("measured J&F: " + fmt(p.jf));
    lines.push("budget: " + Object.keys(p.budget || {}).map(function (k) {
      return k + " " + p.budget[k]; }).join(", "));
    lines.push("validation: " + p.validation_status);
    return lines;
  }

  function setupFront() {
    var data = document.getElementById("front-data"), el = document.getElementById("front-chart");
    if (!data || !el || !window.BBCharts) return;
    var c = JSON.parse(data.textContent), y = c.y, res = c.x_label;
    var series = [];
    if (y === "loss") {
      series.push({ name: "Pareto front (predicted)", cls: "s-front", shape: "circle", line: true, size: 4,
        points: c.front.map(function (p) { return { x: p.x, y: p.loss, tip: ["front point",
          res + ": " + fmt(p.x), "predicted loss: " + fmt(p.loss), "status: " + p.status +
          (p.gap ? ", gap " + fmt(p.gap) : "")] }; }) });
      series.push({ name: "uniform precision", cls: "s-base", shape: "square", size: 5,
        points: c.baselines.map(function (b) { return { x: b.x, y: b.loss, tip: ["every layer at " +
          b.id, res + ": " + fmt(b.x), "predicted loss: " + fmt(b.loss)] }; }) });
    }
    var predicted = [], validated = [];
    c.plans.forEach(function (p) {
      var value = y === "loss" ? p.loss : p[y];
      if (value === undefined || value === null) return;
      var point = { x: p.x, y: value, tip: tipOfPlan(p, res), href: c.plan_url + p.id };
      (p.validated ? validated : predicted).push(point);
    });
    if (y === "loss") series.push({ name: "plans (predicted)", cls: "s-plan", shape: "circle", size: 6,
      points: predicted });
    series.push({ name: "plans (validated)", cls: "s-valid", shape: "diamond", size: 6, points: validated });
    var opts = { xLabel: c.x_label, yLabel: c.y_label, series: series,
      empty: "No validated plan of this profile has this metric yet." };
    if (c.logy) {  /* log10 of y; points at or below zero cannot be drawn and are left out */
      series.forEach(function (s) {
        s.points = s.points.filter(function (p) { return p.y > 0; })
          .map(function (p) { return Object.assign({}, p, { y: Math.log10(p.y) }); });
      });
      opts.yLabel += " (log scale)";
      opts.yTick = function (t) { return fmt(Math.pow(10, t)); };
    }
    window.BBCharts.scatter(el, opts);
  }

  function setupHeatmap() {
    var data = document.getElementById("heatmap-data"), el = document.getElementById("heatmap");
    if (!data || !el || !window.BBCharts) return;
    window.BBCharts.heatmap(el, JSON.parse(data.textContent));
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupToken();
    setupBudgetForm();
    setupExactFront();
    setupExport();
    setupJobs();
    setupFront();
    setupHeatmap();
  });
})();
