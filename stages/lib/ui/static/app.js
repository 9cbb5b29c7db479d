// The page of `python -m stages.ui`: every view is drawn from its URL, so every view can be shared as a link.
//   /?q=<question>&k=5        a question, the four retrievers side by side
//   /?set=<set id>&qid=<id>   a known question, its labelled chunks marked
//   /report                   the evaluation report and its error analysis
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
    const view = document.getElementById("view");
    if (path === "/") renderSearch(view, new URLSearchParams(location.search));
    else if (path === "/report") renderReport(view);
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
      el("p", { class: "muted" }, "Read from metrics/eval.json, metrics/hit_rate.csv, metrics/eval_by_style.json, metrics/train.json " +
        `and data/eval/per_query.jsonl${status ? " in " + status.project : ""}. Intervals: 95% paired bootstrap.`));
    for (const problem of [...report.stopped_by, ...report.problems]) body.append(notice("error", problem.message, problem.stage));
    body.append(el("nav", { class: "toc" }, ...[["training", "Training"], ["sets", "Retrievers per question set"],
      ["curves", "Hit rate at k"], ["styles", "By query style"], ["errors", "Error analysis"]].map(([id, title]) =>
      el("a", { href: `#${id}` }, title))));
    body.append(trainingSection(report.training), setsSection(report), curvesSection(report.curves),
      stylesSection(report.by_style), errorsSection(report.errors));
    view.replaceChildren(body);
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
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
        el("p", { class: "muted small" }, el("code", { text: set.name }), set.queries ? ` · ${set.queries} questions` : ""),
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

  function renderNotFound(view, path) {
    view.replaceChildren(notice("error", `There is no page ${path} here: the UI has the search (/) and the report (/report).`));
  }

  // -- start --------------------------------------------------------------------------------------------------

  loadStatus().then(route);
})();
