"""The team workflow with real git and DVC: remotes (local folder and SSH), a shared cache,
branch comparisons on a fresh clone. Queued experiments: tests/pipeline/test_experiments.py.

One tiny project ("alice", a copy of the session's reproduced pipeline) is shared;
the tests clone it as teammates would.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests.helpers import REPO_ROOT, assert_pull_brings_back_the_run, copy_project, run, stages_run, update_params
from tests.sshd import LocalSSHServer


@pytest.fixture(scope="module")
def team(tiny_pipeline, tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    origin = root / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    # Alice has reproduced the pipeline (the session's run, copied) and now shares it.
    alice = copy_project(tiny_pipeline.path, root / "alice")
    shutil.copy(REPO_ROOT / ".dvc/config", alice / ".dvc/config")  # the shipped remote setup
    remote = root / "remote"
    # The shared URL lives in .dvc/config; each person points it at reality in config.local.
    run(["dvc", "remote", "modify", "--local", "team", "url", str(remote)], alice)
    run(["git", "add", "-A"], alice)
    run(["git", "commit", "-q", "-m", "team remote"], alice)
    run(["git", "remote", "add", "origin", str(origin)], alice)
    run(["dvc", "push", "--run-cache"], alice)
    run(["git", "push", "-q", "origin", "main"], alice)
    return root, origin, alice, remote


def clone(team, name: str):
    root, origin, _, remote = team
    path = root / name
    run(["git", "clone", "-q", str(origin), str(path)], root)
    run(["dvc", "remote", "modify", "--local", "team", "url", str(remote)], path)
    return path


def test_shipped_config_names_a_default_remote_without_credentials():
    config = (REPO_ROOT / ".dvc/config").read_text()
    assert "remote = team" in config and 'remote "team"' in config
    assert not any(word in config for word in ("password", "keyfile", "access_key", "secret"))


@pytest.mark.slow
def test_push_covers_everything(team):
    _, _, alice, remote = team
    status = json.loads(run(["dvc", "data", "status", "--not-in-remote", "--json"], alice).stdout)
    assert not status.get("not_in_remote")
    assert any((remote / "runs").rglob("*"))  # the run-cache went too


@pytest.mark.slow
def test_teammate_pulls_and_has_nothing_to_run(team):
    assert_pull_brings_back_the_run(clone(team, "bob"))


@pytest.mark.slow
def test_ssh_remote_round_trip(team, tmp_path):
    _, _, alice, _ = team
    with LocalSSHServer(tmp_path / "sshd") as server:
        url = f"ssh://{os.environ.get('USER', 'root')}@127.0.0.1:{server.port}{tmp_path / 'ssh-remote'}"
        for project in (alice,):
            run(["dvc", "remote", "add", "--local", "box", url], project)
            run(["dvc", "remote", "modify", "--local", "box", "keyfile", str(server.client_key)], project)
        run(["dvc", "push", "-r", "box"], alice)
        carol = clone(team, "carol")
        run(["dvc", "remote", "add", "--local", "box", url], carol)
        run(["dvc", "remote", "modify", "--local", "box", "keyfile", str(server.client_key)], carol)
        run(["dvc", "pull", "-r", "box"], carol)
    assert "up to date" in run(["dvc", "status"], carol).stdout
    assert stages_run(run(["dvc", "repro"], carol).stdout) == []
    # The key file path stays in the git-ignored config.local.
    assert "keyfile" not in (carol / ".dvc/config").read_text()


@pytest.mark.slow
def test_shared_cache_on_one_host_links_instead_of_copying(team):
    root = team[0]
    shared = root / "shared-cache"
    clones = []
    for name in ("dan", "erin"):
        path = clone(team, name)
        run(["dvc", "cache", "dir", "--local", str(shared)], path)
        run(["dvc", "config", "--local", "cache.shared", "group"], path)
        run(["dvc", "config", "--local", "cache.type", "symlink"], path)
        clones.append(path)
    run(["dvc", "pull"], clones[0])
    started = time.perf_counter()
    run(["dvc", "checkout"], clones[1])  # everything is already in the shared cache
    print(f"second clone's checkout: {time.perf_counter() - started:.1f}s")
    weights = [path / "models/finetuned/model.safetensors" for path in clones]
    assert all(w.is_symlink() for w in weights) and os.path.samefile(*weights)
    assert str(weights[1].resolve()).startswith(str(shared.resolve()))


@pytest.mark.slow
def test_branches_compare_on_a_fresh_clone_without_remote(team):
    root, origin, alice, _ = team
    run(["git", "checkout", "-q", "-b", "fusion-k20"], alice)
    before = (alice / "metrics/eval.json").read_bytes()
    # The tiny laws have no golden set, so main's hybrid is the untuned RRF (weight 1, k 60); this branch leans to BM25.
    update_params(alice, {"evaluate": {"rrf_k": 20, "fusion": "rrf", "hybrid_dense_weight": 0.3}})
    ran = stages_run(run(["dvc", "repro"], alice).stdout)
    # The card quotes the evaluation: it reruns exactly when the evaluation's metrics changed.
    assert ran == ["check_params", "evaluate"] + (["model_card"] if (alice / "metrics/eval.json").read_bytes() != before else [])
    run(["git", "commit", "-qam", "fusion k=20"], alice)
    run(["git", "push", "-q", "origin", "fusion-k20"], alice)
    run(["git", "checkout", "-q", "main"], alice)
    run(["dvc", "checkout", "-q"], alice)

    fresh = root / "fresh"
    run(["git", "clone", "-q", str(origin), str(fresh)], root)
    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json", "origin/main", "origin/fusion-k20"], fresh).stdout)
    eval_diff = diff["metrics/eval.json"]
    for retriever in ("base", "finetuned", "bm25", "hybrid"):
        for metric in ("hit@1", "hit@5", "mrr@10", "ndcg@10"):
            entry = eval_diff[f"{retriever}.{metric}"]
            assert isinstance(entry["old"], float) and isinstance(entry["new"], float) and "diff" in entry
    assert eval_diff["base.hit@5"]["diff"] == 0  # only the hybrid can change
    params = json.loads(run(["dvc", "params", "diff", "--json", "origin/main", "origin/fusion-k20"], fresh).stdout)
    rrf_k = params["params.yaml"]["evaluate.rrf_k"]
    assert (rrf_k["old"], rrf_k["new"], rrf_k["diff"]) == (60, 20, -40)
