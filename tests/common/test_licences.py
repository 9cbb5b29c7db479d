"""The licence record stays true: pyproject.toml's ``license`` is the licence LICENSE holds, and THIRD_PARTY_NOTICES.md
has a row for every runtime dependency (and none for a package that is no longer one).

Static checks of the repository's files; nothing is imported or installed.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.helpers import REPO_ROOT

NOTICES = REPO_ROOT / "THIRD_PARTY_NOTICES.md"
DEPENDENCY_SECTION = "## Runtime dependencies"

# The opening lines that identify each licence's standard text, by SPDX id. A licence not listed here needs its
# lines added before pyproject.toml may name it.
LICENCE_TEXT_OPENINGS = {
    "Apache-2.0": ("Apache License", "Version 2.0, January 2004"),
    "MIT": ("MIT License",),
    "BSD-3-Clause": ("BSD 3-Clause License",),
}


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _normalised(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalised(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def dependency_rows(notices: str) -> list[str]:
    """The package names in the first column of the runtime-dependencies table (written `name`)."""
    if DEPENDENCY_SECTION not in notices:
        raise AssertionError(f"THIRD_PARTY_NOTICES.md has no {DEPENDENCY_SECTION!r} section")
    section = notices.split(DEPENDENCY_SECTION, 1)[1].split("\n## ", 1)[0]
    return [_normalised(m.group(1)) for m in re.finditer(r"^\|\s*`([^`]+)`\s*\|", section, flags=re.MULTILINE)]


def licence_problems(spdx: str, licence_text: str) -> list[str]:
    """Why LICENSE does not hold the licence pyproject.toml names (empty when it does)."""
    if spdx not in LICENCE_TEXT_OPENINGS:
        return [f"pyproject.toml names licence {spdx!r}; add its opening lines to LICENCE_TEXT_OPENINGS"]
    opening = " ".join(licence_text.split()[:40])
    return [f"LICENSE does not start like the {spdx} text: {line!r} not in its opening"
            for line in LICENCE_TEXT_OPENINGS[spdx] if line not in opening]


def test_pyproject_licence_is_the_text_in_LICENSE():
    project = _pyproject()["project"]
    spdx = project.get("license")
    assert isinstance(spdx, str), "pyproject.toml [project] needs license = \"<SPDX id>\" (PEP 639)"
    assert "LICENSE" in project.get("license-files", []), "pyproject.toml license-files should name LICENSE"
    assert licence_problems(spdx, (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")) == []


def test_the_notice_names_the_project_licence():
    spdx = _pyproject()["project"]["license"]
    intro = NOTICES.read_text(encoding="utf-8").split("## This project", 1)[1].split("\n## ", 1)[0]
    assert f"`{spdx}`" in intro, f"THIRD_PARTY_NOTICES.md's 'This project' section should say the code is under `{spdx}`"


def test_every_runtime_dependency_has_a_row_in_the_notice():
    dependencies = {_requirement_name(r) for r in _pyproject()["project"]["dependencies"]}
    rows = dependency_rows(NOTICES.read_text(encoding="utf-8"))
    assert sorted(dependencies - set(rows)) == [], "runtime dependencies missing from THIRD_PARTY_NOTICES.md's table"
    assert sorted(set(rows) - dependencies) == [], "rows in THIRD_PARTY_NOTICES.md's table for packages that are not dependencies"
    assert len(rows) == len(set(rows)), "a package has two rows in THIRD_PARTY_NOTICES.md's table"


# The checks themselves catch what they are for.


def test_a_dependency_without_a_row_is_found():
    notices = f"{DEPENDENCY_SECTION}\n\n| package | licence |\n| --- | --- |\n| `torch` | BSD |\n| `ruamel.yaml` | MIT |\n\n## Next\n| `dvc` | x |\n"
    assert dependency_rows(notices) == ["torch", "ruamel-yaml"]  # a table in a later section does not count
    assert {_requirement_name("Ruamel_Yaml>=0.18"), _requirement_name("dvc==3.67.1")} - set(dependency_rows(notices)) == {"dvc"}


@pytest.mark.parametrize(
    ("spdx", "text", "problems"),
    [
        ("Apache-2.0", "\n      Apache License\n        Version 2.0, January 2004\n  http://...", 0),
        ("MIT", "\n      Apache License\n        Version 2.0, January 2004\n", 1),
        ("Apache-2.0", "MIT License\n\nCopyright (c) 2026\n", 2),
        ("GPL-3.0-only", "GNU GENERAL PUBLIC LICENSE\n", 1),
    ],
)
def test_a_licence_that_disagrees_with_LICENSE_is_found(spdx, text, problems):
    assert len(licence_problems(spdx, text)) == problems
