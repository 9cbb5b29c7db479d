"""The team workflow on S3-compatible object storage: a real S3 server (moto) on localhost,
real git and DVC.

Alice shares a reproduced project through a bucket (URL and endpoint in the committed
.dvc/config, the access key only in her git-ignored .dvc/config.local); Bob clones it, pulls,
and trades a queued experiment with her through `dvc exp push/pull`; `dvc install` makes
`git push` push the DVC data too; failed transfers leave workspace and cache as they were.
Every command's output is kept, and the last test checks that the key appears in none of it
and in no file of any workspace.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, assert_pull_brings_back_the_run, copy_project, run, run_queue
from tests.s3_server import LocalS3Server

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

BUCKET = "embedding-ft-team"
PREFIX = "dvc"
# Keep boto away from the machine's own AWS setup: no profile, no instance metadata.
HERMETIC_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true"}
TRANSCRIPT: list[str] = []


def sh(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None):
    """`run`, with the command's output kept for the leak check."""
    result = run(args, cwd, check=check, extra_env={**HERMETIC_AWS, **(env or {})})
    TRANSCRIPT.append(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}")
    return result


def set_credentials(project: Path, remote: str, key_id: str, secret: str) -> None:
    # Not through `sh`: these command lines carry the key (their output does not).
    for option, value in (("access_key_id", key_id), ("secret_access_key", secret)):
        run(["dvc", "remote", "modify", "--local", remote, option, value], project, extra_env=HERMETIC_AWS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with LocalS3Server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        server.create_user_with_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def team(tiny_pipeline, s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3team")
    origin = root / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    alice = copy_project(tiny_pipeline.path, root / "alice")
    shutil.copy(REPO_ROOT / ".dvc/config", alice / ".dvc/config")  # the shipped remote setup
    # What the README tells a team to commit: the bucket and the endpoint, no credentials.
    sh(["dvc", "remote", "add", "--default", "--force", "team", f"s3://{BUCKET}/{PREFIX}"], alice)
    sh(["dvc", "remote", "modify", "team", "endpointurl", s3.endpoint], alice)
    set_credentials(alice, "team", s3.key_id, s3.secret)
    sh(["git", "add", "-A"], alice)
    sh(["git", "commit", "-q", "-m", "team remote on S3"], alice)
    sh(["git", "remote", "add", "origin", str(origin)], alice)
    sh(["dvc", "push", "--run-cache"], alice)
    sh(["git", "push", "-q", "origin", "main"], alice)
    return root, origin, alice


def clone(team, s3, name: str) -> Path:
    root, origin, _ = team
    path = root / name
    sh(["git", "clone", "-q", str(origin), str(path)], root)
    set_credentials(path, "team", s3.key_id, s3.secret)
    return path


def remote_keys(s3, prefix: str) -> list[str]:
    return s3.object_keys(BUCKET, f"{PREFIX}/{prefix}", s3.key_id, s3.secret)


def not_in_remote(project: Path) -> list[str]:
    status = json.loads(sh(["dvc", "data", "status", "--not-in-remote", "--json"], project).stdout)
    return status.get("not_in_remote", [])


def test_committed_config_names_the_bucket_and_endpoint_but_no_credentials(team, s3):
    _, _, alice = team
    committed = (alice / ".dvc/config").read_text()
    assert f"s3://{BUCKET}/{PREFIX}" in committed and s3.endpoint in committed
    assert "access_key" not in committed and "secret" not in committed
    assert s3.key_id in (alice / ".dvc/config.local").read_text()
    assert ".dvc/config.local" not in sh(["git", "ls-files", ".dvc"], alice).stdout


def test_push_with_run_cache_stores_every_output_in_the_bucket(team, s3):
    _, _, alice = team
    assert not_in_remote(alice) == []
    assert remote_keys(s3, "files/md5/")
    assert remote_keys(s3, "runs/")  # the run-cache: a teammate's identical run is restored, not recomputed


def test_teammate_pulls_from_the_bucket_and_has_nothing_to_run(team, s3):
    assert_pull_brings_back_the_run(clone(team, s3, "bob"), runner=sh)


def test_queued_experiment_travels_through_the_bucket(team, s3):
    root, _, alice = team
    # An evaluate-only experiment: quick, and it makes new DVC-cached outputs (data/eval).
    sh(["dvc", "exp", "run", "--queue", "-n", "s3-rrf", "-S", "evaluate.fusion=rrf",
        "-S", "evaluate.hybrid_dense_weight=0.5"], alice)
    status = run_queue(alice, runner=sh, extra_env=HERMETIC_AWS)
    assert "Success" in status, status + sh(["dvc", "queue", "logs", "s3-rrf"], alice, check=False).stdout
    before_push = set(remote_keys(s3, "files/md5/"))
    sh(["dvc", "exp", "push", "origin", "s3-rrf"], alice)
    assert set(remote_keys(s3, "files/md5/")) > before_push  # the experiment's outputs went to the bucket

    dave = clone(team, s3, "dave")
    sh(["dvc", "exp", "pull", "origin", "s3-rrf"], dave)
    shown = sh(["dvc", "exp", "show", "--csv", "--keep", "Experiment|hybrid_dense_weight|fusion", "--drop", ".*"], dave).stdout
    assert any(line.startswith("s3-rrf,") for line in shown.splitlines()), shown
    sh(["dvc", "exp", "apply", "s3-rrf"], dave)
    # Applied from what `exp pull` fetched: every output is in the workspace, nothing is stale.
    assert "up to date" in sh(["dvc", "status"], dave).stdout
    assert "fusion: rrf" in (dave / "params.yaml").read_text()
    eval_json = json.loads((dave / "metrics/eval.json").read_text())
    assert (eval_json["hybrid_fusion"], eval_json["hybrid_dense_weight"]) == ("rrf", 0.5)
    assert any((dave / "data/eval").iterdir())


def test_after_dvc_install_git_push_also_pushes_the_data(team, s3):
    bob = team[0] / "bob"  # cloned and pulled above
    sh(["dvc", "install"], bob)
    sh(["git", "checkout", "-q", "-b", "rrf-k20"], bob)
    sh(["dvc", "exp", "run", "-S", "evaluate.fusion=rrf", "-S", "evaluate.rrf_k=20",
        "-S", "evaluate.hybrid_dense_weight=1.0"], bob)
    sh(["git", "add", "-A"], bob)
    sh(["git", "commit", "-q", "-m", "rrf k=20"], bob)
    waiting = not_in_remote(bob)
    assert waiting, "the new evaluation outputs should not be in the bucket before the push"
    pushed = sh(["git", "push", "-q", "origin", "rrf-k20"], bob)
    assert not_in_remote(bob) == [], pushed.stdout + pushed.stderr


def file_fingerprints(project: Path) -> dict[str, str]:
    """Every file of the workspace and the DVC cache with its content hash; .dvc/tmp (locks,
    indexes) and git's own folder are DVC's and git's bookkeeping, not the user's data."""
    fingerprints = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if relative.startswith((".dvc/tmp/", ".git/")) or not path.is_file():
            continue
        fingerprints[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return fingerprints




# (remote name, what breaks it, a phrase of the error DVC prints); the README's
# "When a run fails" quotes these messages.
BROKEN_REMOTES = [
    ("unknown-bucket", "bucket", "The specified bucket does not exist"),
    ("wrong-key", "key", "Forbidden"),
    ("no-credentials", "credentials", "Unable to locate credentials"),
    ("unreachable", "endpoint", "Could not connect to the endpoint URL"),
]


def add_broken_remote(project: Path, s3, name: str, broken: str) -> None:
    """The remote written into .dvc/config.local as `dvc remote add --local` and `dvc remote modify --local` write
    it (the team fixture's good remote goes through those commands; here they would be eight more DVC processes
    per case, about 4 s)."""
    options = {"url": f"s3://no-such-bucket/{PREFIX}" if broken == "bucket" else f"s3://{BUCKET}/{PREFIX}",
               "endpointurl": "http://127.0.0.1:9" if broken == "endpoint" else s3.endpoint}  # port 9: nobody listens
    if broken == "key":
        options |= {"access_key_id": "AKIAWRONGWRONGWRONG0", "secret_access_key": "not-the-secret"}
    elif broken != "credentials":
        options |= {"access_key_id": s3.key_id, "secret_access_key": s3.secret}
    with (project / ".dvc/config.local").open("a", encoding="utf-8") as config:
        config.write(f"['remote \"{name}\"']\n" + "".join(f"    {key} = {value}\n" for key, value in options.items()))


@pytest.mark.parametrize("name, broken, message", BROKEN_REMOTES, ids=[r[0] for r in BROKEN_REMOTES])
def test_failed_push_and_pull_leave_workspace_and_cache_intact(team, s3, name, broken, message):
    root, _, alice = team
    # botocore retries every object with back-off: against a dead endpoint a pull of this tiny
    # project takes minutes to fail. One attempt gives the same error at once (the README says so).
    env = {"AWS_MAX_ATTEMPTS": "1"} if broken == "endpoint" else {}
    add_broken_remote(alice, s3, name, broken)
    before = file_fingerprints(alice)
    push = sh(["dvc", "push", "-r", name], alice, check=False, env=env)
    assert push.returncode != 0 and message in push.stderr + push.stdout, push.stderr
    assert file_fingerprints(alice) == before
    assert "up to date" in sh(["dvc", "status"], alice).stdout

    # A clone with nothing pulled yet: a failed pull writes nothing.
    erin = root / f"erin-{name}"
    sh(["git", "clone", "-q", str(team[1]), str(erin)], root)
    add_broken_remote(erin, s3, name, broken)
    before = file_fingerprints(erin)
    pull = sh(["dvc", "pull", "-r", name], erin, check=False, env=env)
    assert pull.returncode != 0 and message in pull.stderr + pull.stdout, pull.stderr
    assert file_fingerprints(erin) == before


def test_zz_the_access_key_is_in_no_file_and_no_output(team, s3):
    """Runs last (file order): every workspace this module made, after all of its commands."""
    root = team[0]
    secrets = [s3.key_id.encode(), s3.secret.encode()]
    where_users_put_it = {workspace / ".dvc/config.local" for workspace in root.iterdir()}
    leaks = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or path in where_users_put_it:
            continue
        content = path.read_bytes()
        leaks.extend(str(path) for secret in secrets if secret in content)
    assert leaks == []
    assert len(TRANSCRIPT) > 20
    assert not any(s3.key_id in text or s3.secret in text for text in TRANSCRIPT)
