"""`dvc plots show` / `dvc plots diff` pages must render with no network (no CDN scripts).

The repo's .dvc/config sets plots.html_template to plots/offline_template.html,
which inlines vega, vega-lite and vega-embed. These tests run plain DVC commands
on a copy of the project with its committed metrics, then open the page in
headless Chromium with every host name made unresolvable, and check that each
chart was really drawn: one vega canvas per plot, with coloured (data) pixels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, make_project, run

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CDN_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", re.IGNORECASE)
PROBE_ID = "plots-offline-probe"
# Runs after vega has drawn: for every vega canvas, count the pixels that are
# clearly coloured (the data lines); axes, grid lines and text are grey.
PROBE = f"""<script>
setTimeout(function () {{
  var counts = [];
  document.querySelectorAll("canvas.marks").forEach(function (canvas) {{
    var px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
    for (var i = 0; i < px.length; i += 4) {{
      var hi = Math.max(px[i], px[i + 1], px[i + 2]), lo = Math.min(px[i], px[i + 1], px[i + 2]);
      if (px[i + 3] > 128 && hi - lo > 60) n++;
    }}
    counts.push(n);
  }});
  var out = document.createElement("pre");
  out.id = "{PROBE_ID}";
  out.textContent = JSON.stringify(counts);
  document.body.appendChild(out);
}}, 3000);
</script>
"""
MIN_DATA_PIXELS = 300  # a drawn line is hundreds of pixels; a legend dot alone is ~80


def chromium() -> str:
    explicit = os.environ.get("CHROMIUM")
    for name in ((explicit,) if explicit else CHROMIUM_NAMES):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed to check that the plots render offline: "
                "install the Debian package 'chromium' (apt-get install -y chromium) or set CHROMIUM=/path/to/chrome")


def render(page: Path, tmp_path: Path) -> str:
    """The DOM of `page` after Chromium ran its scripts, with all network access failing."""
    profile = tmp_path / f"chromium-profile-{page.parent.name}"
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # a CDN script could not load even on a machine with internet
        "--window-size=1200,1800", "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result.stdout


def assert_offline_page_renders(index: Path, tmp_path: Path) -> None:
    html = index.read_text(encoding="utf-8")
    assert not CDN_SCRIPT.search(html), "the plots page loads scripts from the network"
    assert "cdn.jsdelivr" not in html
    assert "vega-embed 6." in html, "the page was not built from plots/offline_template.html"
    n_plots = html.count("vegaEmbed('#")
    assert n_plots >= 3, html[-2000:]

    head, body_end, tail = html.rpartition("</body>")  # the last one: vega-embed's code has "</body>" in a string
    assert body_end, "no </body> in the plots page"
    probed = index.with_name("probed.html")
    probed.write_text(head + PROBE + body_end + tail, encoding="utf-8")
    dom = render(probed, tmp_path)

    drawn = re.findall(r"<canvas\b[^>]*\bclass=\"marks\"", dom) + re.findall(r"<svg\b[^>]*\bclass=\"marks\"", dom)
    assert len(drawn) == n_plots, f"{n_plots} plots on the page, {len(drawn)} drawn by vega"
    probe = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', dom, re.DOTALL)
    assert probe, "the pixel probe did not run: scripts failed on the page"
    counts = json.loads(probe.group(1))
    assert len(counts) == n_plots and all(n >= MIN_DATA_PIXELS for n in counts), f"coloured pixels per chart: {counts}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The pipeline definition, DVC config, offline template and committed metrics in a fresh git + DVC repo."""
    path = make_project(tmp_path_factory.mktemp("plots") / "project")
    shutil.copy2(REPO_ROOT / ".dvc" / "config", path / ".dvc" / "config")
    shutil.copytree(REPO_ROOT / "plots", path / "plots", dirs_exist_ok=True)
    shutil.copytree(REPO_ROOT / "metrics", path / "metrics", dirs_exist_ok=True)
    # The committed learning curve (a benchmark's result, drawn by the pipeline's plots too).
    curve = Path("benchmarks/results/learning_curve.csv")
    (path / curve.parent).mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / curve, path / curve)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "metrics"], path)
    return path


@pytest.mark.slow
def test_plots_show_renders_offline(project, tmp_path):
    out = tmp_path / "show"
    run(["dvc", "plots", "show", "-o", str(out)], project)
    assert_offline_page_renders(out / "index.html", tmp_path)


@pytest.mark.slow
def test_plots_diff_renders_offline(project, tmp_path):
    loss = project / "metrics" / "train_live" / "plots" / "metrics" / "train" / "loss.tsv"  # DVCLive's series
    committed = loss.read_text(encoding="utf-8")
    header, *rows = committed.strip().splitlines()
    columns = header.split("\t")
    try:  # a changed workspace curve, so the diff page has two revisions to draw
        changed = ["\t".join(v if c == "step" else str(float(v) * 0.5) for c, v in zip(columns, row.split("\t"), strict=True))
                   for row in rows]
        loss.write_text("\n".join([header, *changed]) + "\n", encoding="utf-8")
        out = tmp_path / "diff"
        run(["dvc", "plots", "diff", "HEAD", "-o", str(out)], project)
    finally:
        loss.write_text(committed, encoding="utf-8")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert '"rev": "HEAD"' in html and '"rev": "workspace"' in html
    assert_offline_page_renders(out / "index.html", tmp_path)


def test_every_retriever_has_its_own_colour_and_every_axis_a_name(project):
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    specs = {title: entries[0]["content"] for title, entries in shown.items()}
    hit_rate = next(spec for title, spec in specs.items() if title.startswith("Hit rate"))
    encoding = hit_rate["spec"]["encoding"]
    assert encoding["color"]["field"] == "retriever"
    assert encoding["color"]["scale"]["domain"] == ["base", "seed_recipe", "finetuned", "bm25", "hybrid"]
    assert len(set(encoding["color"]["scale"]["range"])) == 5
    assert encoding["strokeDash"]["field"] == "rev"  # revisions by dash pattern in `dvc plots diff`
    assert hit_rate["facet"]["column"]["field"] == "question_set"
    assert encoding["y"]["scale"]["domain"][0] == 0
    sets = {row["question_set"] for row in hit_rate["data"]["values"]}
    assert "test" in sets and any(name.startswith("golden_test_zh") for name in sets)
    for title, spec in specs.items():
        axes = spec.get("spec", spec)["encoding"]
        assert axes["x"]["title"] not in ("x", "k", "step", "") and axes["y"]["title"] not in ("y", ""), title
        scale = axes["y"].get("scale", {})
        assert scale.get("zero") is True or scale.get("domain", [None])[0] == 0, title
