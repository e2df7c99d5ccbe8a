// envkit view: the page's behaviour. Every value from the data is put into the page with
// textContent (never innerHTML), so model text shows as text and never runs.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("envkit-data").textContent);
  var T = DATA.trajectories;
  var G = DATA.groups;
  var ROW_H = 28;
  var OVERSCAN = 12;

  function $(id) {
    return document.getElementById(id);
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(r) {
    if (r === null || r === undefined) return "–";
    if (typeof r !== "number") return String(r);
    return String(Math.round(r * 10000) / 10000);
  }
  function shortEnv(env) {
    return String(env).replace(/^envkit\//, "");
  }
  function pretty(v) {
    try {
      return JSON.stringify(v, null, 2);
    } catch (e) {
      return String(v);
    }
  }

  // ------------------------------------------------------------ per-group statistics
  G.forEach(function (g) {
    var known = g.members
      .map(function (i) {
        return T[i].reward;
      })
      .filter(function (r) {
        return typeof r === "number";
      });
    var mean = known.length
      ? known.reduce(function (a, b) {
          return a + b;
        }, 0) / known.length
      : null;
    var v = known.length
      ? known.reduce(function (a, b) {
          return a + (b - mean) * (b - mean);
        }, 0) / known.length
      : null;
    g.mean = mean;
    g.std = v === null ? null : Math.sqrt(v);
    g.zeroVariance = known.length > 1 && g.std === 0;
  });

  // ------------------------------------------------------------ header
  (function summary() {
    var outcomes = {};
    var known = [];
    var envs = {};
    T.forEach(function (t) {
      outcomes[t.outcome] = (outcomes[t.outcome] || 0) + 1;
      envs[t.env] = 1;
      if (typeof t.reward === "number") known.push(t.reward);
    });
    var mean = known.length
      ? known.reduce(function (a, b) {
          return a + b;
        }, 0) / known.length
      : null;
    var box = $("summary");
    var items = [
      ["trajectories", T.length],
      ["groups", G.length],
      ["mean reward", fmt(mean)],
      ["reward unknown", T.length - known.length],
      ["envs", Object.keys(envs).map(shortEnv).join(", ")],
    ];
    Object.keys(outcomes)
      .sort()
      .forEach(function (o) {
        items.push(["outcome " + o, outcomes[o]]);
      });
    var info = DATA.run_info || {};
    ["model", "env", "reward", "device", "dtype"].forEach(function (k) {
      if (info[k] !== undefined && info[k] !== null)
        items.push([k, typeof info[k] === "string" ? info[k] : JSON.stringify(info[k])]);
    });
    items.forEach(function (kv) {
      var s = el("span", "stat");
      s.appendChild(el("b", null, kv[0] + ": "));
      s.appendChild(document.createTextNode(String(kv[1])));
      box.appendChild(s);
    });
    var w = $("warnings");
    (DATA.warnings || []).forEach(function (m) {
      w.appendChild(el("div", "warning", m));
    });
  })();

  // ------------------------------------------------------------ filters
  var state = {
    outcome: "",
    env: "",
    step: "",
    rmin: null,
    rmax: null,
    q: "",
    flag: "",
    sort: "order",
    selected: null,
    single: false,
  };

  function fillSelect(sel, values, counts, label) {
    sel.appendChild(new Option(label, ""));
    values.forEach(function (v) {
      var text = counts ? v + " (" + counts[v] + ")" : v;
      sel.appendChild(new Option(text, v));
    });
  }
  function countBy(key) {
    var c = {};
    T.forEach(function (t) {
      var v = t[key];
      if (v === null || v === undefined) return;
      c[String(v)] = (c[String(v)] || 0) + 1;
    });
    return c;
  }
  var outcomeCounts = countBy("outcome");
  fillSelect($("f-outcome"), Object.keys(outcomeCounts).sort(), outcomeCounts, "any outcome");
  var failed = T.filter(function (t) {
    return t.outcome !== "ok" && t.outcome !== "truncated";
  }).length;
  $("f-outcome").appendChild(new Option("failed: any error (" + failed + ")", "@failed"));
  var envCounts = countBy("env");
  fillSelect($("f-env"), Object.keys(envCounts).sort(), envCounts, "any env");
  var stepCounts = countBy("step");
  var steps = Object.keys(stepCounts).sort(function (a, b) {
    return Number(a) - Number(b);
  });
  fillSelect($("f-step"), steps, stepCounts, "any step");
  if (!steps.length) {
    $("f-step-box").hidden = true;
    document.body.classList.add("no-steps");
  }

  function isFailed(t) {
    return t.outcome !== "ok" && t.outcome !== "truncated";
  }
  var FLAGS = {
    hacking: function (t) {
      return t.judges.some(function (j) {
        return j.reward_hacking === true;
      });
    },
    reward_errors: function (t) {
      return !!t.reward_errors || t.reward === null;
    },
    zero_variance: function (t) {
      return G[t.group].zeroVariance;
    },
    cut: function (t) {
      return t.finish.indexOf("length") >= 0;
    },
    tool_calls: function (t) {
      return t.messages.some(function (m) {
        return !!m.tool_calls;
      });
    },
  };

  var hay = new Array(T.length);
  function haystack(i) {
    if (hay[i] === undefined) {
      var t = T[i];
      var parts = [t.task || "", t.error || "", String(t.seed)];
      t.messages.forEach(function (m) {
        if (m.content) parts.push(m.content);
        (m.tool_calls || []).forEach(function (c) {
          parts.push(c.name, c.arguments);
        });
      });
      t.judges.forEach(function (j) {
        parts.push(j.explanation || "");
      });
      hay[i] = parts.join("\n").toLowerCase();
    }
    return hay[i];
  }

  function keep(t) {
    if (state.outcome === "@failed") {
      if (!isFailed(t)) return false;
    } else if (state.outcome && t.outcome !== state.outcome) return false;
    if (state.env && t.env !== state.env) return false;
    if (state.step !== "" && String(t.step) !== state.step) return false;
    if (state.rmin !== null && !(typeof t.reward === "number" && t.reward >= state.rmin))
      return false;
    if (state.rmax !== null && !(typeof t.reward === "number" && t.reward <= state.rmax))
      return false;
    if (state.flag && !FLAGS[state.flag](t)) return false;
    if (state.q && haystack(t.id).indexOf(state.q) < 0) return false;
    return true;
  }

  function num(v, missing) {
    return typeof v === "number" ? v : missing;
  }
  var SORTS = {
    order: null,
    "reward-desc": function (a, b) {
      return num(b.reward, -Infinity) - num(a.reward, -Infinity) || a.id - b.id;
    },
    "reward-asc": function (a, b) {
      return num(a.reward, Infinity) - num(b.reward, Infinity) || a.id - b.id;
    },
    "step-asc": function (a, b) {
      return num(a.step, -1) - num(b.step, -1) || a.id - b.id;
    },
    "step-desc": function (a, b) {
      return num(b.step, -1) - num(a.step, -1) || a.id - b.id;
    },
    env: function (a, b) {
      return a.env < b.env ? -1 : a.env > b.env ? 1 : a.id - b.id;
    },
    outcome: function (a, b) {
      return a.outcome < b.outcome ? -1 : a.outcome > b.outcome ? 1 : a.id - b.id;
    },
    "turns-desc": function (a, b) {
      return b.turns - a.turns || a.id - b.id;
    },
    "std-desc": function (a, b) {
      return num(G[b.group].std, -1) - num(G[a.group].std, -1) || a.id - b.id;
    },
  };

  var view = [];
  function apply() {
    var kept = T.filter(keep);
    var cmp = SORTS[state.sort];
    if (cmp) kept.sort(cmp);
    view = kept.map(function (t) {
      return t.id;
    });
    $("rows-spacer").style.height = view.length * ROW_H + "px";
    $("count").textContent = view.length + " of " + T.length + " trajectories shown";
    $("empty").hidden = view.length > 0;
    $("rows").scrollTop = 0;
    renderRows();
    if (state.selected === null || view.indexOf(state.selected) < 0) {
      select(view.length ? view[0] : null);
    }
  }

  function parseNum(v) {
    if (v === "" || v === null) return null;
    var n = Number(v);
    return isFinite(n) ? n : null;
  }
  $("f-outcome").addEventListener("change", function (e) {
    state.outcome = e.target.value;
    apply();
  });
  $("f-env").addEventListener("change", function (e) {
    state.env = e.target.value;
    apply();
  });
  $("f-step").addEventListener("change", function (e) {
    state.step = e.target.value;
    apply();
  });
  $("f-flag").addEventListener("change", function (e) {
    state.flag = e.target.value;
    apply();
  });
  $("f-sort").addEventListener("change", function (e) {
    state.sort = e.target.value;
    apply();
  });
  $("f-rmin").addEventListener("input", function (e) {
    state.rmin = parseNum(e.target.value);
    apply();
  });
  $("f-rmax").addEventListener("input", function (e) {
    state.rmax = parseNum(e.target.value);
    apply();
  });
  var searchTimer = null;
  $("f-q").addEventListener("input", function (e) {
    clearTimeout(searchTimer);
    var q = e.target.value.trim().toLowerCase();
    searchTimer = setTimeout(function () {
      state.q = q;
      apply();
    }, 120);
  });
  $("f-reset").addEventListener("click", function () {
    ["f-outcome", "f-env", "f-step", "f-flag", "f-rmin", "f-rmax", "f-q"].forEach(function (id) {
      $(id).value = "";
    });
    $("f-sort").value = "order";
    state.outcome = state.env = state.step = state.flag = state.q = "";
    state.rmin = state.rmax = null;
    state.sort = "order";
    apply();
  });

  // ------------------------------------------------------------ the virtual list
  function preview(t) {
    for (var k = t.messages.length - 1; k >= 0; k--) {
      var m = t.messages[k];
      if (m.role !== "assistant") continue;
      if (m.content) return m.content.slice(0, 240).replace(/\s+/g, " ");
      if (m.tool_calls)
        return m.tool_calls
          .map(function (c) {
            return "→ " + c.name + "(" + String(c.arguments).slice(0, 120) + ")";
          })
          .join(" ");
    }
    return t.error ? "error: " + t.error.slice(0, 200) : "";
  }
  function rowEl(t, k) {
    var r = el("div", "row");
    r.dataset.id = t.id;
    r.style.top = k * ROW_H + "px";
    if (t.id === state.selected) r.classList.add("selected");
    r.appendChild(el("span", "c-step", t.step === null ? "" : t.step));
    r.appendChild(el("span", "c-env", shortEnv(t.env)));
    r.appendChild(el("span", "c-task", t.task !== null ? t.task : t.seed));
    r.appendChild(el("span", "c-member", "#" + t.member));
    var rc = el("span", "c-reward", fmt(t.reward));
    if (typeof t.reward === "number") {
      rc.classList.add(t.reward > 0 ? "pos" : t.reward < 0 ? "neg" : "zero");
    } else rc.classList.add("unknown");
    r.appendChild(rc);
    r.appendChild(el("span", "c-outcome o-" + t.outcome, t.outcome));
    r.appendChild(el("span", "c-turns", t.turns));
    r.appendChild(el("span", "c-preview", preview(t)));
    return r;
  }
  var pending = false;
  function renderRows() {
    pending = false;
    var box = $("rows");
    var spacer = $("rows-spacer");
    var first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - OVERSCAN);
    var last = Math.min(view.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW_H) + OVERSCAN);
    var frag = document.createDocumentFragment();
    for (var k = first; k < last; k++) frag.appendChild(rowEl(T[view[k]], k));
    spacer.textContent = "";
    spacer.appendChild(frag);
  }
  $("rows").addEventListener("scroll", function () {
    if (!pending) {
      pending = true;
      requestAnimationFrame(renderRows);
    }
  });
  $("rows").addEventListener("click", function (e) {
    var r = e.target.closest(".row");
    if (r) select(Number(r.dataset.id));
  });
  document.addEventListener("keydown", function (e) {
    if (e.target && /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
    var d = e.key === "j" || e.key === "ArrowDown" ? 1 : e.key === "k" || e.key === "ArrowUp" ? -1 : 0;
    if (!d || !view.length) return;
    e.preventDefault();
    var k = Math.min(view.length - 1, Math.max(0, view.indexOf(state.selected) + d));
    select(view[k]);
    var box = $("rows");
    var y = k * ROW_H;
    if (y < box.scrollTop) box.scrollTop = y;
    else if (y + ROW_H > box.scrollTop + box.clientHeight)
      box.scrollTop = y + ROW_H - box.clientHeight;
  });

  // ------------------------------------------------------------ detail: the group side by side
  function kvTable(obj, cls) {
    var table = el("table", cls || "kv");
    Object.keys(obj).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("th", null, k));
      var v = obj[k];
      tr.appendChild(el("td", null, typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v)));
      table.appendChild(tr);
    });
    return table;
  }
  function messageEl(m, i) {
    var box = el("div", "msg role-" + m.role);
    var head = el("div", "msg-head", m.role);
    if (m.role === "tool") head.textContent = "tool " + (m.name || "") + " (" + m.tool_call_id + ")";
    box.appendChild(head);
    if (m.content !== null && m.content !== undefined && m.content !== "")
      box.appendChild(el("pre", "content", m.content));
    (m.tool_calls || []).forEach(function (c) {
      var call = el("div", "toolcall");
      call.appendChild(el("div", "toolcall-head", "→ " + c.name + "  (" + c.id + ")"));
      var args = c.arguments;
      var parsed;
      try {
        parsed = JSON.stringify(JSON.parse(args), null, 2);
      } catch (e) {
        parsed = null;
      }
      if (parsed === null) call.appendChild(el("div", "bad", "arguments are not valid JSON:"));
      call.appendChild(el("pre", "args", parsed === null ? args : parsed));
      box.appendChild(call);
    });
    return box;
  }
  function card(t, isSelected) {
    var c = el("div", "card" + (isSelected ? " selected" : ""));
    c.dataset.id = t.id;
    var head = el("div", "card-head");
    head.appendChild(el("span", "member", "#" + t.member));
    head.appendChild(el("span", "reward", "reward " + fmt(t.reward)));
    head.appendChild(el("span", "badge o-" + t.outcome, t.outcome));
    head.appendChild(el("span", "turns", t.turns + " turn(s)"));
    c.appendChild(head);
    if (t.error) c.appendChild(el("pre", "error", t.error));
    if (Object.keys(t.breakdown || {}).length) {
      c.appendChild(el("div", "section", "reward breakdown"));
      c.appendChild(kvTable(t.breakdown));
    }
    if (t.reward_errors) {
      c.appendChild(el("div", "section bad", "reward errors"));
      c.appendChild(kvTable(t.reward_errors, "kv errors"));
    }
    t.judges.forEach(function (j) {
      var jb = el("div", "judge");
      var who = j.name === "judge" ? "judge" : "judge " + j.name;
      var jh = el("div", "judge-head", who + ": " + fmt(j.score));
      if (j.reward_hacking === true) jh.appendChild(el("span", "badge hack", "reward hacking?"));
      jb.appendChild(jh);
      jb.appendChild(el("div", "explanation", j.explanation));
      c.appendChild(jb);
    });
    var convo = el("div", "convo");
    t.messages.forEach(function (m, i) {
      convo.appendChild(messageEl(m, i));
    });
    c.appendChild(convo);
    var turns = t.finish
      .map(function (f, k) {
        var n = t.tokens[k];
        return "turn " + (k + 1) + ": " + (f || "?") + (n === null ? "" : ", " + n + " tokens");
      })
      .join(" · ");
    var anyFinish = t.finish.some(function (f) {
      return f !== null;
    });
    if (turns && anyFinish) c.appendChild(el("div", "finish", turns));
    var more = el("details", "more");
    more.appendChild(el("summary", null, "reference, info, metrics, timings"));
    more.appendChild(
      el(
        "pre",
        "json",
        pretty({
          reference: t.reference,
          info: t.info,
          metrics: t.metrics,
          timings: t.timings,
          usage: t.usage,
          tools: t.tools,
          seed: t.seed,
          task: t.task,
        })
      )
    );
    c.appendChild(more);
    return c;
  }
  function select(id) {
    state.selected = id;
    var rows = $("rows-spacer").children;
    for (var k = 0; k < rows.length; k++)
      rows[k].classList.toggle("selected", Number(rows[k].dataset.id) === id);
    renderDetail();
  }
  function renderDetail() {
    var d = $("detail");
    d.textContent = "";
    if (state.selected === null) {
      d.appendChild(el("div", "hint", "No trajectory matches the filters."));
      return;
    }
    var t = T[state.selected];
    var g = G[t.group];
    var head = el("div", "group-head");
    var title =
      (g.step !== null ? "step " + g.step + " · " : "") +
      shortEnv(g.env) +
      " · seed " +
      g.seed +
      (g.task !== null ? " · task " + g.task : "") +
      " · group of " +
      g.members.length;
    head.appendChild(el("span", "group-title", title));
    head.appendChild(
      el("span", "stat", "mean " + fmt(g.mean) + " · std " + fmt(g.std))
    );
    if (g.zeroVariance) head.appendChild(el("span", "badge zv", "zero variance: no GRPO signal"));
    if (g.outcome !== "ok") head.appendChild(el("span", "badge o-" + g.outcome, g.outcome));
    var toggle = el("button", "toggle", state.single ? "show the whole group" : "only this one");
    toggle.id = "toggle-group";
    toggle.addEventListener("click", function () {
      state.single = !state.single;
      renderDetail();
    });
    head.appendChild(toggle);
    d.appendChild(head);
    if (g.error) d.appendChild(el("pre", "error", g.error));
    var gm = {};
    Object.keys(g.metrics || {}).forEach(function (k) {
      if (k !== "reward_errors" || g.metrics[k]) gm[k] = g.metrics[k];
    });
    if (Object.keys(gm).length) {
      var det = el("details", "more");
      det.appendChild(el("summary", null, "group metrics"));
      det.appendChild(kvTable(gm));
      d.appendChild(det);
    }
    var members = el("div", "members");
    var ids = state.single ? [t.id] : g.members;
    ids.forEach(function (i) {
      members.appendChild(card(T[i], i === t.id));
    });
    d.appendChild(members);
    var sel = members.querySelector(".card.selected");
    if (sel && members.scrollWidth > members.clientWidth) {
      var left = sel.offsetLeft - members.offsetLeft;
      if (left + sel.offsetWidth > members.clientWidth) members.scrollLeft = Math.max(0, left - 8);
    }
  }

  // ------------------------------------------------------------ charts: click a point = its step
  Array.prototype.forEach.call(document.querySelectorAll("#curves .pt"), function (p) {
    p.addEventListener("click", function () {
      var s = p.getAttribute("data-step");
      if (stepCounts[s] === undefined) return;
      $("f-step").value = s;
      state.step = s;
      apply();
    });
  });

  apply();
  window.envkitViewer = {
    ready: true,
    readyMs: performance.now(),
    total: T.length,
    shown: function () {
      return view.length;
    },
  };
  document.body.dataset.ready = "1";
})();
