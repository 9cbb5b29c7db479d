// The page of `python -m stages.ui`: every view is drawn from its URL, so every view can be shared as a link.
//   /?q=<question>&k=5        a question, the four retrievers side by side
//   /?set=<set id>&qid=<id>   a known question, its labelled chunks marked
//   /report                   the evaluation report and its error analysis
//   /label?set=<name>&id=<id> the labelling view: mark the relevant chunks of each question's pool, saved to data/golden/
// Plain JavaScript, no library; text from the server is put in the page as text (textContent), never as markup.
"use strict";

(function () {
  const COLUMNS = ["base", "finetuned", "bm25", "hybrid"];
  const COLOURS = { base: "#7f7f7f", seed_recipe: "#9467bd", finetuned: "#1f77b4", bm25: "#ff7f0e", hybrid: "#2ca02c" };
  const MAX_LINK_CHARS = 1800; // a longer question is searched, but not put in the address (servers cut long URLs)
  const ROWS_SHOWN = 25;
  let status = null;
  let statusTimer = null;

  // -- small helpers ------------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) if (child) node.append(child);
    return node;
  }

  function num(value, digits = 3) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
  }

  function signed(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(3);
  }

  function rankText(rank) {
    return typeof rank === "number" ? String(rank) : "—";
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      const failure = new Error("The UI server does not answer: is `python -m stages.ui` still running?");
      failure.status = 0;
      throw failure;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `The server answered ${response.status}.`;
      const failure = new Error(message);
      failure.status = response.status;
      failure.stage = body && body.error ? body.error.stage : null;
      failure.kind = body && body.error ? body.error.kind : null;
      failure.theirs = body && body.error ? body.error.theirs : null;
      throw failure;
    }
    return body;
  }

  function notice(kind, message, stage) {
    return el("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null },
      message, stage ? el("code", { class: "fix", text: `dvc repro ${stage}` }) : null);
  }

  // -- navigation ---------------------------------------------------------------------------------------------

  function navigate(url) {
    history.pushState(null, "", url);
    route();
    window.scrollTo(0, 0);
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin) return;
    event.preventDefault();
    const k = document.getElementById("k");
    if (link.closest("#known-list") && k && k.value && k.value !== "5") url.searchParams.set("k", k.value);  // keep the top k
    navigate(url.pathname + url.search + url.hash);
  });
  window.addEventListener("popstate", route);

  function route() {
    const path = location.pathname;
    document.getElementById("nav-search").classList.toggle("active", path === "/");
    document.getElementById("nav-report").classList.toggle("active", path === "/report");
    document.getElementById("nav-label").classList.toggle("active", path === "/label");
    const view = document.getElementById("view");
    if (path !== "/label") leaveLabelling();
    if (path === "/") renderSearch(view, new URLSearchParams(location.search));
    else if (path === "/report") renderReport(view);
    else if (path === "/label") renderLabel(view, new URLSearchParams(location.search));
    else renderNotFound(view, path);
  }

  // -- status and problems ------------------------------------------------------------------------------------

  async function loadStatus() {
    try {
      status = await api("/api/status");
    } catch (error) {
      status = null;
      showProblems([{ kind: "invalid", message: error.message }], false);
      return;
    }
    const line = document.getElementById("run-line");
    line.textContent = status.search_ready
      ? `${status.corpus_size} chunks · ${status.hardware} · started in ${status.startup_s}s`
      : `started in ${status.startup_s}s · search unavailable`;
    showProblems(status.problems, status.checking);
    clearTimeout(statusTimer);
    if (status.checking) statusTimer = setTimeout(loadStatus, 1500);
  }

  function showProblems(problems, checking) {
    const box = document.getElementById("problems");
    box.replaceChildren();
    const labels = { missing: "missing", invalid: "cannot use", stale: "out of date", note: "note" };
    for (const problem of problems) {
      const kind = problem.kind === "note" ? "note" : problem.kind === "stale" ? "warning" : "error";
      box.append(el("div", { class: `notice ${kind}`, "data-kind": problem.kind },
        el("strong", { text: `${labels[problem.kind] || problem.kind}: ` }), problem.message));
    }
    if (checking) box.append(el("div", { class: "notice note checking" }, "Checking the outputs against dvc.lock…"));
  }

  // -- search -------------------------------------------------------------------------------------------------

  function renderSearch(view, params) {
    const q = params.get("q") || "";
    const setId = params.get("set") || "";
    const qid = params.get("qid") || "";
    const k = params.get("k") || "5";
    if (document.getElementById("search-form")) {
      // Already on the search view (a known question picked, back or forward): keep the picker and its filter.
      document.getElementById("q").value = q;
      document.getElementById("k").value = k;
      const select = document.getElementById("set");
      if (setId && select.value !== setId && [...select.options].some((o) => o.value === setId)) {
        select.value = setId;
        select.dispatchEvent(new Event("change"));
      }
      startSearch(q, setId, qid, k);
      return;
    }

    const textarea = el("textarea", { id: "q", name: "q", rows: "2", placeholder: "Ask the corpus a question, in any language…",
      "aria-label": "question" });
    textarea.value = q;
    const kInput = el("input", { id: "k", name: "k", type: "number", min: "1", max: "50", value: k, "aria-label": "results per retriever" });
    const form = el("form", { id: "search-form", class: "search-form" },
      textarea,
      el("div", { class: "form-row" },
        el("label", { for: "k" }, "top ", kInput),
        el("button", { type: "submit", id: "search-button" }, "Search")));
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const question = textarea.value;
      const url = `/?${new URLSearchParams({ q: question, k: kInput.value })}`;
      if (question.trim() && url.length <= MAX_LINK_CHARS) {
        history.pushState(null, "", url);
        runSearch({ q: question, k: kInput.value });
      } else {
        history.pushState(null, "", "/");
        runSearch({ q: question, k: kInput.value }, question.trim() ? "This question is too long to keep in the address: the link above does not repeat it." : null);
      }
    });

    const known = knownPicker(setId);
    const help = el("p", { class: "muted small help" },
      "The top results of the base model, the fine-tuned model, BM25 and their hybrid, side by side, as the evaluation " +
      "ranked them (same prompts, same fusion). Highlighted: the words a chunk shares with the question. A known " +
      "question's labelled chunks are marked ✓. Every view is a link: copy the address to share it.");
    view.replaceChildren(
      el("section", { class: "search" },
        el("div", { class: "search-top" }, el("div", {}, form, help), known),
        el("div", { id: "notices" }),
        el("div", { id: "labelled" }),
        el("div", { id: "columns", class: "columns" }),
        el("p", { id: "search-footer", class: "muted small" })));
    startSearch(q, setId, qid, k);
  }

  function startSearch(q, setId, qid, k) {
    if (setId || qid) runSearch({ set: setId, qid: qid, k: k });
    else if (q) runSearch({ q: q, k: k });
    else {
      document.getElementById("notices").replaceChildren(
        el("p", { class: "muted" }, "Type a question, or pick a known one: its labelled chunks are then marked in every column."));
      for (const id of ["labelled", "columns"]) document.getElementById(id).replaceChildren();
      document.getElementById("search-footer").textContent = "";
    }
  }

  function knownPicker(selectedSet) {
    const select = el("select", { id: "set", "aria-label": "question set" });
    const filter = el("input", { id: "filter", type: "search", placeholder: "filter by text or id", "aria-label": "filter questions" });
    const count = el("p", { id: "known-count", class: "muted small" });
    const list = el("ol", { id: "known-list", class: "known-list" });
    const box = el("details", { class: "known", open: window.innerWidth >= 700 },
      el("summary", { text: "Known questions" }),
      el("div", { class: "form-row" }, select, filter), count, list);
    let timer = null;
    async function fill() {
      if (!select.value) return;
      try {
        const found = await api(`/api/questions?${new URLSearchParams({ set: select.value, filter: filter.value, limit: "100" })}`);
        count.textContent = `${found.total} question${found.total === 1 ? "" : "s"}` + (found.total > found.questions.length ? `, first ${found.questions.length} shown` : "");
        list.replaceChildren(...found.questions.map((question) =>
          el("li", {},
            el("a", { href: `/?${new URLSearchParams({ set: select.value, qid: question.id })}`, "data-nav": true, "data-qid": question.id },
              question.text),
            el("span", { class: "muted small" }, ` ${question.split}${question.style ? " · " + question.style : ""}`))));
      } catch (error) {
        count.textContent = error.message;
        list.replaceChildren();
      }
    }
    select.addEventListener("change", fill);
    filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(fill, 150); });
    const sets = status ? status.sets : [];
    if (!sets.length) {
      count.textContent = "No question sets here: run `dvc repro questions`.";
    }
    for (const set of sets) {
      select.append(el("option", { value: set.id, selected: set.id === selectedSet }, `${set.title} (${set.count})`));
    }
    if (!selectedSet && sets.length) {
      const golden = sets.find((set) => set.id.startsWith("golden/"));
      select.value = (golden || sets.find((set) => set.id === "synthetic/test") || sets[0]).id;
    }
    fill();
    return box;
  }

  async function runSearch(request, extraNote) {
    const notices = document.getElementById("notices");
    const columns = document.getElementById("columns");
    const labelled = document.getElementById("labelled");
    const footer = document.getElementById("search-footer");
    if (!notices) return;
    notices.replaceChildren(el("p", { class: "muted" }, "Searching…"));
    columns.setAttribute("aria-busy", "true");
    let view;
    try {
      view = await api("/api/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    } catch (error) {
      notices.replaceChildren(notice("error", error.message, error.stage));
      columns.replaceChildren();
      labelled.replaceChildren();
      footer.textContent = "";
      columns.removeAttribute("aria-busy");
      return;
    }
    const textarea = document.getElementById("q");
    if (textarea && request.qid) textarea.value = view.question;
    notices.replaceChildren();
    if (extraNote) notices.append(notice("note", extraNote));
    if (view.cut) notices.append(notice("warning", view.cut.message));
    labelled.replaceChildren(...(view.known ? [knownBox(view.known)] : []));
    columns.replaceChildren(...view.columns.map((column) => columnBox(column, Boolean(view.known))));
    columns.removeAttribute("aria-busy");
    footer.textContent = `hybrid: ${view.fusion}. Query prompt ${JSON.stringify(view.prompts.query)}, document prompt ` +
      `${JSON.stringify(view.prompts.document)}. Highlighted: the words a chunk shares with the question, as BM25 reads words. ` +
      `Answered in ${view.server_ms} ms.`;
    document.title = `${view.question.slice(0, 60)} · embedding-ft`;
  }

  function knownBox(known) {
    return el("section", { class: "known-info", "data-set": known.set, "data-qid": known.id },
      el("p", {}, el("strong", { text: "Known question " }), el("code", { text: known.id }),
        ` from the ${known.set_title} (${known.file}), ${known.split} split${known.style ? ", style " + known.style : ""}. ` +
        `Its labelled chunk${known.relevant.length === 1 ? " is" : "s are"} marked ✓ in every column.`),
      el("details", { class: "labelled-chunks" },
        el("summary", { text: `The labelled chunk${known.labelled.length === 1 ? "" : "s"} (${known.labelled.length})` }),
        ...known.labelled.map((chunk) => el("div", { class: "result labelled" }, sectionLine(chunk), textLine(chunk)))));
  }

  function sectionLine(chunk) {
    return el("div", { class: "section", title: chunk.source }, chunk.section || chunk.source);
  }

  function textLine(chunk) {
    return el("p", { class: "text" }, ...chunk.segments.map(([piece, shared]) => shared ? el("mark", { text: piece }) : piece));
  }

  function columnBox(column, known) {
    let first = null;
    if (known) {
      first = el("p", { class: "first-rank", "data-rank": column.first_labelled_rank === null ? "" : column.first_labelled_rank },
        column.first_labelled_rank === null
          ? `no labelled chunk in its top ${column.depth}`
          : `first labelled chunk at rank ${column.first_labelled_rank}`);
    }
    const results = el("ol", { class: "results" }, ...column.results.map((result) =>
      el("li", { class: `result${result.labelled ? " labelled" : ""}`, "data-chunk": result.id },
        el("div", { class: "meta" },
          el("span", { class: "rank", text: `#${result.rank}` }),
          el("span", { class: "score", title: "score", text: num(result.score) }),
          result.labelled ? el("span", { class: "badge", text: "✓ labelled" }) : null),
        sectionLine(result), textLine(result))));
    return el("section", { class: "column", "data-retriever": column.retriever },
      el("h2", {}, el("span", { class: "swatch", "data-retriever": column.retriever }), column.title),
      first, results, column.note ? el("p", { class: "muted" }, column.note) : null);
  }

  // -- report -------------------------------------------------------------------------------------------------

  async function renderReport(view) {
    view.replaceChildren(el("p", { class: "muted" }, "Loading the report…"));
    let report;
    try {
      report = await api("/api/report");
    } catch (error) {
      view.replaceChildren(notice("error", error.message, error.stage));
      return;
    }
    const body = el("section", { class: "report" },
      el("h1", { text: "Evaluation report" }),
      el("p", { class: "muted" }, "Read from metrics/eval.json, metrics/hit_rate.csv, metrics/eval_by_style.json, metrics/eval_by_overlap.json, metrics/train.json " +
        `and data/eval/per_query.jsonl${status ? " in " + status.project : ""}. Intervals: 95% paired bootstrap.`));
    for (const problem of [...report.stopped_by, ...report.problems]) body.append(notice("error", problem.message, problem.stage));
    const verdict = verdictBlock(report.verdict);
    if (verdict) body.append(verdict);
    body.append(el("nav", { class: "toc" }, ...[["training", "Training"], ["sets", "Retrievers per question set"],
      ["curves", "Hit rate at k"], ["overlap", "By word overlap"], ["styles", "By query style"], ["errors", "Error analysis"]].map(([id, title]) =>
      el("a", { href: `#${id}` }, title))));
    body.append(trainingSection(report.training), setsSection(report), curvesSection(report.curves),
      overlapSection(report.by_overlap || []), stylesSection(report.by_style), errorsSection(report.errors));
    view.replaceChildren(body);
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  // The run's verdict in plain sentences, and how far its judge can be trusted (report.verdict; absent: nothing shown).
  function verdictBlock(verdict) {
    if (!verdict || typeof verdict !== "object") return null;
    const lines = Array.isArray(verdict.lines) ? verdict.lines : [];
    const judged = verdict.judge
      ? el("p", { class: "judge" }, el("strong", { text: "Judged on: " }), String(verdict.judge),
        typeof verdict.judge_questions === "number" ? ` (${verdict.judge_questions} questions)` : "")
      : null;
    const warning = verdict.notice
      ? el("div", { class: "notice warning verdict-notice", role: "note" }, String(verdict.notice), " ",
        el("a", { href: verdict.label_url || "/label", "data-nav": true }, "Label questions of your own"),
        " for a judge written by a person.")
      : null;
    return el("section", { id: "verdict", class: "verdict" }, el("h2", { text: "Verdict" }),
      lines.length ? el("ul", { class: "verdict-lines" }, ...lines.map((line) => el("li", { text: String(line) }))) : null,
      judged, warning);
  }

  function withNote(section, text) {
    section.append(el("p", { class: "muted", text: text }));
    return section;
  }

  function trainingSection(training) {
    const section = el("section", { id: "training" }, el("h2", { text: "What training selected" }));
    if (!training) return withNote(section, "No metrics/train.json: run `dvc repro train`.");
    const facts = [
      ["selected on", training.selected_on], ["step kept", training.base_model_selected ? "0 (the base model)" : `${training.best_step} of ${training.steps}`],
      ["val NDCG@10 of the kept model", num(training["best_val_ndcg@10"])], ["val NDCG@10 of the base model", num(training["val_ndcg@10_base"])],
      ["WiSE-FT α", training.wise_ft_alpha === undefined ? "–" : String(training.wise_ft_alpha)],
      ["training pairs", training.train_pairs_available ? `${training.train_pairs} of ${training.train_pairs_available}` : training.train_pairs],
      ["learning rate", typeof training.learning_rate === "number" ? training.learning_rate.toExponential() : training.learning_rate], ["device, precision", `${training.device || "?"}, ${training.precision || "?"}`],
      ["train time", training.train_seconds === undefined ? "–" : `${training.train_seconds} s`]];
    section.append(el("p", { class: "why", text: training.why }),
      el("dl", { class: "facts" }, ...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value === undefined ? "–" : String(value) })])));
    return section;
  }

  const METRICS = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10"];
  const LABELS = { "hit@1": "hit@1", "hit@3": "hit@3", "hit@5": "hit@5", "hit@10": "hit@10", "mrr@10": "MRR@10", "ndcg@10": "NDCG@10" };

  function interval(row, key) {
    if (row[`${key}_ci_low`] === undefined) return "";
    return `[${num(row[`${key}_ci_low`])}, ${num(row[`${key}_ci_high`])}]`;
  }

  function difference(row, metric, other) {
    const key = `${metric}_diff_vs_${other}`;
    if (row[key] === undefined) return el("td", { class: "num empty", "data-key": key }, "");
    const low = row[`${key}_ci_low`], high = row[`${key}_ci_high`];
    const shown = low > 0 ? "better" : high < 0 ? "worse" : "none";
    return el("td", { class: `num diff ${shown}`, "data-key": key, title: shown === "none" ? "no difference shown (the interval holds 0)" : shown },
      el("span", { class: "value", text: signed(row[key]) }), el("span", { class: "ci", text: `[${signed(low)}, ${signed(high)}]` }));
  }

  function setsSection(report) {
    const section = el("section", { id: "sets" }, el("h2", { text: "Retrievers per question set" }));
    if (report.run && report.run.fusion) {
      section.append(el("p", {}, `hybrid = ${report.run.fusion}, ${report.run.fusion_chosen_on}.`));
    }
    if (!report.sets.length) section.append(el("p", { class: "muted", text: "No metrics/eval.json: run `dvc repro evaluate`." }));
    for (const set of report.sets) {
      const head = el("tr", {}, el("th", { text: "retriever" }), ...METRICS.map((m) => el("th", { class: "num", text: LABELS[m] })),
        el("th", { class: "num", text: "hit@5 − BM25" }), el("th", { class: "num", text: "MRR@10 − BM25" }),
        el("th", { class: "num", text: "hit@5 − base" }), el("th", { class: "num", text: "MRR@10 − base" }));
      const rows = set.order.map((name) => {
        const row = set.rows[name];
        return el("tr", { "data-retriever": name },
          el("th", { scope: "row" }, el("span", { class: "swatch", "data-retriever": name }), name),
          ...METRICS.map((m) => el("td", { class: "num", "data-key": m }, el("span", { class: "value", text: num(row[m]) }),
            interval(row, m) ? el("span", { class: "ci", title: "95% interval", text: interval(row, m) }) : null)),
          difference(row, "hit@5", "bm25"), difference(row, "mrr@10", "bm25"),
          difference(row, "hit@5", "base"), difference(row, "mrr@10", "base"));
      });
      section.append(el("article", { class: "set", id: `set-${set.name}`, "data-set": set.name },
        el("h3", { text: set.title }),
        el("p", { class: "muted small" }, el("code", { text: set.name }), set.queries ? ` · ${set.queries} questions` : "",
          typeof set.word_overlap === "number" ? ` · word overlap with their passages ${set.word_overlap.toFixed(2)}` : ""),
        el("div", { class: "table-wrap" }, el("table", { class: "metrics", "data-set": set.name }, el("thead", {}, head), el("tbody", {}, ...rows))),
        set.verdicts.length ? el("ul", { class: "verdicts" }, ...set.verdicts.map((line) => el("li", { text: line }))) : null));
    }
    return section;
  }

  function curvesSection(curves) {
    const section = el("section", { id: "curves" }, el("h2", { text: "Hit rate at k" }));
    const names = Object.keys(curves || {});
    if (!names.length) return withNote(section, "No metrics/hit_rate.csv: run `dvc repro evaluate`.");
    const retrievers = new Set();
    const grid = el("div", { class: "charts" });
    for (const name of names) {
      Object.keys(curves[name]).forEach((r) => retrievers.add(r));
      grid.append(chart(name, curves[name]));
    }
    section.append(el("p", { class: "legend" }, ...[...retrievers].map((r) => el("span", {}, el("span", { class: "swatch", "data-retriever": r }), r))), grid);
    return section;
  }

  function chart(name, lines) {
    const width = 320, height = 210, left = 36, right = 10, top = 10, bottom = 30;
    const ks = Object.values(lines).flat().map(([k]) => k);
    const kMax = Math.max(...ks, 2), kMin = Math.min(...ks, 1);
    const x = (k) => left + (k - kMin) / (kMax - kMin) * (width - left - right);
    const y = (v) => top + (1 - v) * (height - top - bottom);
    const parts = [svg("title", { text: `hit rate at k, ${name}` })];
    for (let v = 0; v <= 1.0001; v += 0.2) {
      parts.push(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
      parts.push(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick", text: v.toFixed(1) }));
    }
    for (let k = kMin; k <= kMax; k++) parts.push(svg("text", { x: x(k), y: height - bottom + 14, "text-anchor": "middle", class: "tick", text: String(k) }));
    parts.push(svg("text", { x: (left + width - right) / 2, y: height - 2, "text-anchor": "middle", class: "axis", text: "k" }));
    for (const [retriever, points] of Object.entries(lines)) {
      const colour = COLOURS[retriever] || "#444";
      parts.push(svg("polyline", { points: points.map(([k, v]) => `${x(k)},${y(v)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2, "data-retriever": retriever }));
      for (const [k, v] of points) {
        parts.push(svg("circle", { cx: x(k), cy: y(v), r: 2.5, fill: colour }, svg("title", { text: `${retriever} hit@${k} ${v.toFixed(3)}` })));
      }
    }
    return el("figure", { class: "chart", "data-set": name },
      svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `hit rate at k for ${name}` }, ...parts),
      el("figcaption", { text: name }));
  }

  // Every set's hit@5 by how many of its questions' words their passages hold: synthetic questions sit mostly in the
  // high band, where BM25 is at home; questions people write mostly in the low one (metrics/eval_by_overlap.json).
  function overlapSection(byOverlap) {
    const section = el("section", { id: "overlap" }, el("h2", { text: "By word overlap (hit@5)" }),
      el("p", { class: "muted" }, "Word overlap: the share of a question's words (as BM25 cuts them) found in its labelled " +
        "passages. Questions that reuse their passage's words favour BM25; people's questions reuse fewer."));
    if (!byOverlap.length) return withNote(section, "No metrics/eval_by_overlap.json: run `dvc repro evaluate`.");
    const bands = byOverlap[0].bands.map((band) => band.band);
    const head = el("tr", {}, el("th", { text: "question set" }), el("th", { text: "retriever" }), ...byOverlap[0].bands.map((band) =>
      el("th", { class: "num", text: `${band.band} (${band.to === null ? "≥ " + band.from : band.from + "–" + band.to})` })));
    const rows = byOverlap.flatMap((block) => {
      const names = Object.keys(block.bands[0].rows);
      return names.map((name, i) => el("tr", { "data-set": block.name, "data-retriever": name },
        i === 0 ? el("th", { rowspan: names.length, scope: "rowgroup" }, block.title, el("br"),
          el("span", { class: "muted small", text: `overlap ${num(block.word_overlap, 2)}; questions per band: ` +
            block.bands.map((band) => band.queries).join(" / ") })) : null,
        el("th", { scope: "row" }, el("span", { class: "swatch", "data-retriever": name }), name),
        ...bands.map((band, j) => {
          const cell = block.bands[j].rows[name] || {};
          return el("td", { class: "num", "data-band": band }, block.bands[j].queries ? num(cell["hit@5"]) : "–");
        })));
    });
    section.append(el("div", { class: "table-wrap" }, el("table", { class: "by-overlap" }, el("thead", {}, head), el("tbody", {}, ...rows))));
    return section;
  }

  function stylesSection(byStyle) {
    const section = el("section", { id: "styles" }, el("h2", { text: "By query style (synthetic test split)" }));
    if (!byStyle.length) return withNote(section, "No metrics/eval_by_style.json: run `dvc repro evaluate`.");
    const head = el("tr", {}, el("th", { text: "style" }), el("th", { text: "retriever" }), ...METRICS.map((m) => el("th", { class: "num", text: LABELS[m] })));
    const rows = byStyle.flatMap((block) => block.order.map((name, i) =>
      el("tr", { "data-style": block.style, "data-retriever": name },
        i === 0 ? el("th", { rowspan: block.order.length, scope: "rowgroup" }, block.style, el("br"), el("span", { class: "muted small", text: `${block.queries} questions` })) : null,
        el("th", { scope: "row" }, el("span", { class: "swatch", "data-retriever": name }), name),
        ...METRICS.map((m) => el("td", { class: "num", "data-key": m }, el("span", { class: "value", text: num(block.rows[name][m]) }))))));
    section.append(el("div", { class: "table-wrap" }, el("table", { class: "by-style" }, el("thead", {}, head), el("tbody", {}, ...rows))));
    return section;
  }

  function errorsSection(errors) {
    const section = el("section", { id: "errors" }, el("h2", { text: "Error analysis: where the fine-tuned model lost, and won" }),
      el("p", { class: "muted" }, "Per question: the rank of the first labelled chunk in each retriever's ranking (— : not in its top 100). " +
        "Lost: the fine-tuned model found it later than the other retriever; won: earlier. Sorted by how much the question's " +
        "reciprocal rank (its share of MRR) changed. Each question opens its search view."));
    const names = Object.keys(errors || {});
    if (!names.length) return withNote(section, "No data/eval/per_query.jsonl: run `dvc repro evaluate`.");
    const select = el("select", { id: "error-set", "aria-label": "question set" },
      ...names.map((name) => el("option", { value: name }, `${errors[name].title} (${errors[name].total})`)));
    select.value = names.find((n) => n.startsWith("golden_test_zh_incl")) || names.find((n) => n.startsWith("golden_test_") && n.endsWith("incl_trained_passages")) || names[0];
    const holder = el("div", { id: "error-tables" });
    function draw() {
      const block = errors[select.value];
      const groups = [["vs_base", "lost", "Fine-tuned lost to the base model"], ["vs_bm25", "lost", "Fine-tuned lost to BM25"],
        ["vs_base", "won", "Fine-tuned won over the base model"], ["vs_bm25", "won", "Fine-tuned won over BM25"]];
      holder.replaceChildren(...groups.map(([versus, side, title]) => errorTable(block[versus][side], `${title}: ${block[versus][side].length} of ${block.total}`, `${side}-${versus}`)));
    }
    select.addEventListener("change", draw);
    draw();
    section.append(el("div", { class: "form-row" }, el("label", { for: "error-set" }, "question set "), select), holder);
    return section;
  }

  function errorTable(rows, title, id) {
    const table = el("table", { class: "errors", "data-group": id },
      el("thead", {}, el("tr", {}, el("th", { text: "question" }), el("th", { text: "style" }),
        ...COLUMNS.map((c) => el("th", { class: "num" }, el("span", { class: "swatch", "data-retriever": c }), c)))));
    const body = el("tbody");
    function fill(limit) {
      body.replaceChildren(...rows.slice(0, limit).map((row) => el("tr", { "data-qid": row.id },
        el("td", {}, el("a", { href: row.link, "data-nav": true }, row.query)),
        el("td", { class: "small", text: row.style }),
        ...COLUMNS.map((c) => el("td", { class: "num", "data-key": c, text: rankText(row.ranks[c]) })))));
    }
    fill(ROWS_SHOWN);
    table.append(body);
    const more = rows.length > ROWS_SHOWN ? el("button", { type: "button", class: "more", onclick: (event) => { fill(rows.length); event.target.remove(); } },
      `show all ${rows.length}`) : null;
    return el("details", { class: "error-group", open: true, id: `errors-${id}` }, el("summary", { text: title }),
      rows.length ? el("div", { class: "table-wrap" }, table) : el("p", { class: "muted", text: "none" }), more);
  }

  // -- labelling ----------------------------------------------------------------------------------------------
  // One question at a time: its pool of chunks (every retriever's top k, shuffled, the retriever not shown), marked
  // by mouse or keyboard, saved as one row of data/golden/<set>.jsonl. The page measures the time the tab was visible
  // from showing the question to saving it, and which chunks were looked at: at least half in view for half a
  // second, or focused. A failed save keeps everything on screen.

  const LABEL_KEYS = [["j", "↓", "next chunk"], ["k", "↑", "previous chunk"], ["x", "space", "mark or unmark the chunk"],
    ["n", "", "write a note (Esc leaves it)"], ["Enter", "", "save and go to the next question (Ctrl+Enter in the note)"],
    ["0", "", "none of these chunks is relevant: save that"], ["s", "", "skip this question for now"]];
  const SEEN_MS = 500;
  const tabId = (() => {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  })();
  let labelSet = null; // the set the view shows
  let asked = 0; // the latest request for a question: an answer to an older one is dropped, never drawn over a newer
  let maxFileBytes = null; // the largest question list the server takes (from /api/label/sets)
  let current = null; // the question on screen: its data, marks, what was seen, the clock

  function postJson(path, body) {
    return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  function leaveLabelling() {
    stopQuestion();
    if (labelSet !== null) {
      labelSet = null;
      fetch("/api/label/leave", { method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ tab: tabId }) }).catch(() => {});
    }
  }
  window.addEventListener("pagehide", leaveLabelling);
  window.addEventListener("pageshow", (event) => { if (event.persisted) route(); }); // back from the browser's page cache
  window.addEventListener("beforeunload", (event) => {
    if (current && current.dirty) event.preventDefault(); // marks not saved yet: let the browser ask
  });

  function renderLabel(view, params) {
    const setName = (params.get("set") || "").trim() || "labelled";
    const wanted = params.get("id");
    if (document.getElementById("label-root") && labelSet === setName) {
      // Same set (a question picked from the list, back or forward): keep the page, open the question.
      if (wanted && (!current || current.data.question.id !== wanted)) openQuestion({ id: wanted });
      return;
    }
    leaveLabelling(); // another set: the questions this tab held in the last one are free for other tabs at once
    labelSet = setName;
    const setInput = el("input", { id: "label-set", name: "set", list: "label-sets", value: setName, autocomplete: "off",
      "aria-describedby": "label-set-help" });
    const setForm = el("form", { id: "label-set-form", class: "form-row" },
      el("label", { for: "label-set" }, "Golden set "), setInput, el("datalist", { id: "label-sets" }),
      el("button", { type: "submit", id: "label-open-set" }, "Open"),
      el("span", { id: "label-set-help", class: "muted small" }, "letters, digits, _ or -; a new name starts a new set"));
    setForm.addEventListener("submit", (event) => {
      event.preventDefault();
      navigate(`/label?${new URLSearchParams({ set: setInput.value.trim() })}`);
    });
    const fileInput = el("input", { id: "label-file", type: "file", accept: ".txt,.csv,.tsv,.jsonl,text/plain,text/csv" });
    const importForm = el("form", { id: "label-import-form", class: "form-row" },
      el("label", { for: "label-file" }, "Import questions (.txt one per line, .csv/.tsv with a question column, .jsonl) "),
      fileInput, el("button", { type: "submit", id: "label-import" }, "Import"));
    importForm.addEventListener("submit", (event) => {
      event.preventDefault();
      importQuestions(fileInput);
    });
    const typed = el("input", { id: "label-typed", type: "text", placeholder: "a question to label now" });
    const typeForm = el("form", { id: "label-type-form", class: "form-row" },
      el("label", { for: "label-typed" }, "Or type a question "), typed, el("button", { type: "submit", id: "label-type" }, "Label it"));
    typeForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!typed.value.trim()) {
        showLabelNotice("error", "The question is empty: type a question to label.");
        return;
      }
      openQuestion({ query: typed.value }).then((ok) => { if (ok) typed.value = ""; });
    });
    const keys = el("aside", { class: "keys", "aria-labelledby": "keys-title" }, el("h2", { id: "keys-title", text: "Keys" }),
      el("dl", {}, ...LABEL_KEYS.flatMap(([key, other, what]) => [
        el("dt", {}, el("kbd", { text: key }), other ? " or " : "", other ? el("kbd", { text: other }) : ""),
        el("dd", { text: what })])),
      el("p", { class: "muted small" }, "Or click a chunk (or its box) to mark it. A chunk counts as looked at when at least half " +
        "of it was on screen for half a second, or it had the keyboard focus."));
    view.replaceChildren(el("section", { id: "label-root", class: "label" },
      el("h1", { text: "Label a golden set" }),
      el("p", { class: "muted" }, "Mark, for each question, every chunk that answers it. Each save writes one row of the set's " +
        "file under data/golden/, which the next `dvc repro` uses: its val questions choose the checkpoint and the fusion, its " +
        "test questions are reported. The chunks shown are the top results of every retriever, mixed, without saying which " +
        "found them."),
      el("div", { class: "label-setup" }, setForm, el("p", { id: "label-progress", class: "progress", "aria-live": "polite" }),
        importForm, typeForm, el("div", { id: "label-import-report", "aria-live": "polite" })),
      el("div", { id: "label-notices", "aria-live": "assertive" }),
      el("div", { class: "label-main" }, el("section", { id: "label-question", "aria-label": "question to label" }), keys),
      el("details", { id: "label-queue", class: "label-queue" }, el("summary", { text: "Questions in this set" }),
        el("ol", { id: "label-queue-list" }))));
    startLabelling(setName, wanted);
  }

  async function startLabelling(setName, wanted) {
    let sets;
    try {
      sets = await api("/api/label/sets");
    } catch (error) {
      showLabelNotice("error", error.message, error.stage);
      return;
    }
    maxFileBytes = sets.max_file_bytes;
    const list = document.getElementById("label-sets");
    if (list) list.replaceChildren(...sets.sets.map((set) => el("option", { value: set.set })));
    if (!sets.search_ready) {
      showLabelNotice("error", `The labelling view needs the search (both models and the corpus) to show each question's ` +
        `chunks, and it is not available: ${sets.unavailable}`);
      for (const id of ["label-import", "label-type", "label-file", "label-typed"]) document.getElementById(id).disabled = true;
      return;
    }
    const ready = await refreshQueue();
    if (!ready) return;
    if (wanted) openQuestion({ id: wanted });
    else nextQuestion();
  }

  function showLabelNotice(kind, message, stage, ...extra) {
    const box = document.getElementById("label-notices");
    if (box) box.replaceChildren(notice(kind, message, stage), ...extra);
  }

  function clearLabelNotice() {
    const box = document.getElementById("label-notices");
    if (box) box.replaceChildren();
  }

  function progressText(progress) {
    const parts = [`${progress.done} of ${progress.imported} imported question${progress.imported === 1 ? "" : "s"} labelled`,
      `val ${progress.val} · test ${progress.test}`];
    if (progress.no_relevant_chunk) parts.push(`${progress.no_relevant_chunk} with no relevant chunk`);
    if (progress.median_seconds !== null) parts.push(`median ${progress.median_seconds} s per question`);
    if (progress.median_seen_share !== null) parts.push(`median ${Math.round(progress.median_seen_share * 100)}% of the pool looked at`);
    return parts.join(" · ");
  }

  function showProgress(progress) {
    const line = document.getElementById("label-progress");
    if (!line || !progress) return;
    line.dataset.done = progress.done;
    line.dataset.imported = progress.imported;
    line.replaceChildren(el("span", { class: "progress-counts", text: progressText(progress) }), " — written to ",
      el("code", { id: "label-file-path", text: progress.file }));
    if (progress.problem) showLabelNotice("error", progress.problem);
  }

  async function refreshQueue() {
    let queue;
    try {
      queue = await api(`/api/label/queue?${new URLSearchParams({ set: labelSet })}`);
    } catch (error) {
      showLabelNotice("error", error.message, error.stage);
      return false;
    }
    showProgress(queue);
    const list = document.getElementById("label-queue-list");
    if (!list) return true;
    list.replaceChildren(...queue.questions.map((question) => {
      const state = question.done ? (question.no_relevant_chunk ? "no relevant chunk" : `✓ ${question.split}`)
        : question.held ? "open in a tab" : "to do";
      return el("li", { "data-id": question.id, "data-done": question.done ? "true" : "false" },
        el("a", { href: `/label?${new URLSearchParams({ set: labelSet, id: question.id })}`, "data-nav": true }, question.query),
        el("span", { class: "muted small" }, ` ${state}`));
    }));
    if (queue.listed < queue.imported) list.append(el("li", { class: "muted" }, `… and ${queue.imported - queue.listed} more`));
    return true;
  }

  async function importQuestions(fileInput) {
    const report = document.getElementById("label-import-report");
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      report.replaceChildren(notice("error", "Pick a file first (.txt, .csv, .tsv or .jsonl)."));
      return;
    }
    if (maxFileBytes !== null && file.size > maxFileBytes) {
      // Said before sending it: the server refuses it too, but a browser may report a cut upload as a network error.
      report.replaceChildren(notice("error", `${file.name} is ${file.size.toLocaleString("en")} bytes; a question list may be ` +
        `at most ${maxFileBytes.toLocaleString("en")} bytes. Split it, or import only the questions to label.`));
      return;
    }
    report.replaceChildren(el("p", { class: "muted" }, `Importing ${file.name}…`));
    let result;
    try {
      result = await api(`/api/label/import?${new URLSearchParams({ set: labelSet, name: file.name })}`,
        { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file });
    } catch (error) {
      report.replaceChildren(notice("error", error.message, error.stage));
      return;
    }
    const summary = `${result.file} (${result.encoding}${result.column ? `, column “${result.column}”` : ""}): ` +
      `${result.found} question${result.found === 1 ? "" : "s"}; ${result.added} queued` +
      (result.already_queued ? `, ${result.already_queued} were queued already` : "") +
      (result.already_labelled ? `, ${result.already_labelled} are labelled already` : "") + ".";
    report.replaceChildren(notice("note", summary), ...result.warnings.map((warning) => notice("warning", warning)));
    report.firstChild.classList.add("import-summary");
    fileInput.value = "";
    showProgress(result.progress);
    await refreshQueue();
    if (!current) nextQuestion();
  }

  // The next open question no other tab holds (``saved``: the confirmation of the save before, shown above it).
  async function nextQuestion(skip, saved) {
    const body = { set: labelSet, tab: tabId };
    if (skip) body.skip = skip;
    const ticket = ++asked;
    let answer;
    try {
      answer = await postJson("/api/label/next", body);
    } catch (error) {
      if (ticket === asked) showLabelNotice("error", error.message, error.stage);
      return;
    }
    if (ticket !== asked) return;
    if (answer.done) {
      stopQuestion();
      document.getElementById("label-question").replaceChildren(
        el("p", { class: "done", id: "label-done" }, answer.message));
      history.replaceState(null, "", `/label?${new URLSearchParams({ set: labelSet })}`);
      showProgress(answer.progress);
      refreshQueue();
    } else {
      showQuestion(answer, answer.again ? "You skipped this question before; nothing else is left to label." : null);
    }
    if (saved) {
      document.getElementById("label-notices").replaceChildren(
        el("div", { class: "notice saved", id: "label-saved", role: "status" }, saved));
    }
  }

  async function openQuestion(which) {
    const ticket = ++asked;
    let answer;
    try {
      answer = await postJson("/api/label/pool", { set: labelSet, tab: tabId, ...which });
    } catch (error) {
      if (ticket === asked) showLabelNotice("error", error.message, error.stage);
      return false;
    }
    if (ticket !== asked) return false;
    showQuestion(answer);
    if (which.query) refreshQueue();
    return true;
  }

  function stopQuestion() {
    if (!current) return;
    current.observer.disconnect();
    for (const timer of current.timers.values()) clearTimeout(timer);
    current = null;
  }

  function elapsedSeconds() {
    const running = current.since === null ? 0 : performance.now() - current.since;
    return (current.visibleMs + running) / 1000;
  }

  document.addEventListener("visibilitychange", () => {
    if (!current) return;
    if (document.visibilityState === "hidden") {
      if (current.since !== null) current.visibleMs += performance.now() - current.since;
      current.since = null;
      for (const timer of current.timers.values()) clearTimeout(timer);
      current.timers.clear();
    } else {
      if (current.since === null) current.since = performance.now();
      for (const id of current.halfInView) armSeen(id);
    }
  });

  function markSeen(id) {
    if (!current || current.seen.has(id)) return;
    current.seen.add(id);
    const card = document.querySelector(`#label-pool li[data-chunk="${id}"]`);
    if (card) card.dataset.seen = "true";
  }

  function armSeen(id) {
    if (!current || current.seen.has(id) || current.timers.has(id) || document.visibilityState !== "visible") return;
    const question = current;
    current.timers.set(id, setTimeout(() => {
      if (current !== question) return;
      current.timers.delete(id);
      if (current.halfInView.has(id) && document.visibilityState === "visible") markSeen(id);
    }, SEEN_MS));
  }

  function watchCard(entries) {
    if (!current) return;
    for (const entry of entries) {
      const id = entry.target.dataset.chunk;
      const screen = entry.rootBounds ? entry.rootBounds.height : window.innerHeight;
      // Half of the chunk in view, or, for a chunk taller than two screens, half a screen of it.
      const half = entry.isIntersecting && (entry.intersectionRatio >= 0.5 || entry.intersectionRect.height >= screen / 2);
      if (half) {
        current.halfInView.add(id);
        armSeen(id);
      } else {
        current.halfInView.delete(id);
        clearTimeout(current.timers.get(id));
        current.timers.delete(id);
      }
    }
  }

  function showQuestion(data, extraNote) {
    stopQuestion();
    clearLabelNotice();
    const question = data.question;
    current = { data, seen: new Set(), halfInView: new Set(), timers: new Map(), visibleMs: 0, dirty: false, saving: false,
      since: document.visibilityState === "visible" ? performance.now() : null,
      observer: new IntersectionObserver(watchCard, { threshold: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1] }) };
    history.replaceState(null, "", `/label?${new URLSearchParams({ set: labelSet, id: question.id })}`);
    const marked = new Set(data.marked);
    const total = data.pool.length;
    const cards = data.pool.map((chunk, i) => {
      const box = el("input", { type: "checkbox", class: "pool-check", id: `pool-check-${i}`, "data-chunk": chunk.id,
        "aria-label": `chunk ${i + 1} of ${total}${chunk.section ? ", " + chunk.section : ""}: relevant`,
        "aria-describedby": `pool-text-${i}` });
      box.checked = marked.has(chunk.id);
      box.addEventListener("change", () => {
        current.dirty = true;
        markSeen(chunk.id);
        box.closest("li").classList.toggle("marked", box.checked);
      });
      box.addEventListener("focus", () => {
        current.focusIndex = i;
        markSeen(chunk.id);
      });
      const item = el("li", { class: `pool-card${box.checked ? " marked" : ""}`, "data-chunk": chunk.id },
        el("label", { class: "pool-label", for: `pool-check-${i}` },
          el("span", { class: "pool-head" }, box, el("span", { class: "pool-index", text: `${i + 1}/${total}` }),
            el("span", { class: "section", title: chunk.source }, chunk.section || chunk.source)),
          el("span", { class: "text", id: `pool-text-${i}` },
            ...chunk.segments.map(([piece, shared]) => shared ? el("mark", { text: piece }) : piece))));
      return item;
    });
    const note = el("textarea", { id: "label-note", rows: "2", maxlength: "2000", placeholder: "optional: why, or what is missing" });
    note.value = data.note || "";
    note.addEventListener("input", () => { current.dirty = true; });
    const notes = [];
    if (extraNote) notes.push(notice("note", extraNote));
    if (data.held_elsewhere) notes.push(notice("note", "Another tab is labelling this question too. Whoever saves second is " +
      "told so, and loses nothing."));
    if (data.cut) notes.push(notice("warning", data.cut));
    if (data.moved) notes.push(notice("note", `${data.moved} earlier label${data.moved === 1 ? " was" : "s were"} found again by ` +
      "their text (the documents were chunked again): check the marks."));
    if (data.unplaced.length) {
      notes.push(el("div", { class: "notice warning needs-relabelling" },
        el("strong", { text: `Needs relabelling: ` }), `${data.unplaced.length} chunk${data.unplaced.length === 1 ? "" : "s"} ` +
        "marked earlier no longer exist in the corpus (its document changed). Mark what answers the question now; the old " +
        "text is kept in the file (unplaced_passages).",
        el("ul", {}, ...data.unplaced.map((p) => el("li", { class: "small" }, `${p.source || ""}: ${p.text.slice(0, 160)}` +
          (p.text.length > 160 ? "…" : ""))))));
    }
    const status = data.revision
      ? `Labelled before (${data.no_relevant_chunk ? "no relevant chunk" : `${data.marked.length} marked`}, ${data.labelled_at}); saving replaces it.`
      : "Not labelled yet.";
    const panel = document.getElementById("label-question");
    panel.replaceChildren(
      el("div", { class: "question-head" },
        el("p", { class: "label-question-text", id: "label-question-text", lang: question.language === "zh" ? "zh" : "en" }, question.query),
        el("p", { class: "muted small" },
          el("span", { class: `split-badge split-${question.split}`, id: "label-split", text: `${question.split} split` }),
          ` · ${question.origin || ""} · ${status} · ${total} chunk${total === 1 ? "" : "s"}: the top ${data.pool_depth} of each retriever`)),
      ...notes,
      el("ol", { id: "label-pool", class: "pool", "aria-label": `chunks to judge for this question, ${total}` }, ...cards),
      el("div", { class: "label-actions" },
        el("label", { for: "label-note" }, "Note (n)"), note,
        el("div", { class: "form-row" },
          el("button", { type: "button", id: "label-save", onclick: () => saveQuestion(false) }, "Save and next (Enter)"),
          el("button", { type: "button", id: "label-none", class: "secondary", onclick: () => saveQuestion(true) }, "None relevant (0)"),
          el("button", { type: "button", id: "label-skip", class: "secondary", onclick: () => skipQuestion() }, "Skip (s)"))),
      el("div", { id: "label-status", "aria-live": "polite" }));
    for (const card of cards) current.observer.observe(card);
    showProgress(data.progress);
    if (!total) panel.querySelector("#label-pool").replaceWith(el("p", { class: "muted", id: "label-pool" }, "No retriever found a chunk for this question."));
  }

  function checks() {
    return [...document.querySelectorAll("#label-pool .pool-check")];
  }

  function moveFocus(step) {
    const boxes = checks();
    if (!boxes.length) return;
    let at = boxes.indexOf(document.activeElement);
    if (at < 0 && typeof current.focusIndex === "number") at = current.focusIndex;
    const to = at < 0 ? (step >= 0 ? 0 : boxes.length - 1) : Math.min(boxes.length - 1, Math.max(0, at + step));
    boxes[to].focus({ preventScroll: true });
    boxes[to].closest("li").scrollIntoView({ block: "nearest" });
  }

  function toggleFocused() {
    const boxes = checks();
    const box = boxes.includes(document.activeElement) ? document.activeElement : null;
    if (box) box.click();
    else if (boxes.length) moveFocus(1);
  }

  async function saveQuestion(noneRelevant) {
    if (!current || current.saving) return;
    const status = document.getElementById("label-status");
    const relevant = checks().filter((box) => box.checked).map((box) => box.dataset.chunk);
    if (!noneRelevant && !relevant.length) {
      status.replaceChildren(notice("error", "Mark at least one chunk (x or a click), or press 0 if none of them answers the question."));
      return;
    }
    if (noneRelevant && relevant.length) {
      status.replaceChildren(notice("error", `${relevant.length} chunk${relevant.length === 1 ? " is" : "s are"} marked: unmark ` +
        "them to save “none relevant”, or press Enter to save the marks."));
      return;
    }
    const question = current.data.question;
    const body = { set: labelSet, tab: tabId, id: question.id, query: question.query, relevant, no_relevant_chunk: noneRelevant,
      note: document.getElementById("label-note").value, revision: current.data.revision,
      seconds: Math.round(elapsedSeconds() * 10) / 10, pool: current.data.pool.map((chunk) => chunk.id), seen: [...current.seen] };
    current.saving = true;
    status.replaceChildren(el("p", { class: "muted" }, "Saving…"));
    let answer;
    try {
      answer = await postJson("/api/label/save", body);
    } catch (error) {
      if (current) current.saving = false;
      saveFailed(error, status);
      return;
    }
    current.dirty = false;
    showProgress(answer.progress);
    refreshQueue();
    await nextQuestion(null, answer.message);
  }

  function saveFailed(error, status) {
    // Nothing on screen is touched: the marks and the note stay, to save again or compare.
    if (error.kind === "conflict") {
      for (const card of document.querySelectorAll("#label-pool li.theirs")) card.classList.remove("theirs");
      const theirs = error.theirs;
      let summary = "";
      if (theirs) {
        for (const id of theirs.marked) {
          const card = document.querySelector(`#label-pool li[data-chunk="${id}"]`);
          if (card) card.classList.add("theirs");
        }
        summary = theirs.no_relevant_chunk ? " They saved it as having no relevant chunk." :
          ` They marked ${theirs.marked.length} chunk${theirs.marked.length === 1 ? "" : "s"} (outlined in blue).`;
      }
      status.replaceChildren(el("div", { class: "notice error conflict", role: "alert" }, error.message + summary, " ",
        el("button", { type: "button", id: "label-load-theirs", class: "secondary",
          onclick: () => openQuestion({ id: current.data.question.id }) }, "Load their labels (replaces yours on screen)")));
    } else if (error.kind === "invalid_file") {
      status.replaceChildren(el("div", { class: "notice error invalid-file", role: "alert" }, error.message));
    } else {
      status.replaceChildren(el("div", { class: "notice error", role: "alert" }, error.message +
        (error.status === 0 ? " Your marks and note are still here: save again once it answers." : "")));
    }
    status.scrollIntoView({ block: "nearest" });
  }

  function skipQuestion() {
    if (!current) return;
    nextQuestion(current.data.question.id);
  }

  document.addEventListener("keydown", (event) => {
    if (!current || !document.getElementById("label-pool") || event.isComposing || event.altKey) return;
    const target = event.target;
    if (target.id === "label-note") {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        saveQuestion(false);
      } else if (event.key === "Escape") {
        event.preventDefault();
        moveFocus(0);
      }
      return;
    }
    const typing = target.closest && target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]");
    if (typing || event.ctrlKey || event.metaKey) return;
    const onCheckbox = target.classList && target.classList.contains("pool-check");
    switch (event.key) {
      case "j": case "ArrowDown": moveFocus(1); break;
      case "k": case "ArrowUp": moveFocus(-1); break;
      case "x": toggleFocused(); break;
      case " ":
        if (onCheckbox) return; // the checkbox toggles itself
        toggleFocused();
        break;
      case "n": document.getElementById("label-note").focus(); break;
      case "Enter":
        if (target.closest && target.closest("button, a, summary")) return; // they act on Enter themselves
        saveQuestion(false);
        break;
      case "0": saveQuestion(true); break;
      case "s": skipQuestion(); break;
      default: return;
    }
    event.preventDefault();
  });

  function renderNotFound(view, path) {
    view.replaceChildren(notice("error", `There is no page ${path} here: the UI has the search (/), the report (/report) and ` +
      "the labelling view (/label)."));
  }

  // -- start --------------------------------------------------------------------------------------------------

  loadStatus().then(route);
})();
