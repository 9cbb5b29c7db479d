"""Command: list the laws of the bundled database most related to ``sample.laws``, ready for ``sample.extra_laws``.

    python -m stages.related_laws            # the 8 closest, in the targets' department(s) of law
    python -m stages.related_laws --top 20 --any-department

Related: filed under the same department of law in the database, and close in text (TF-IDF character
bigrams; stages/lib/documents/related_laws.py). It changes nothing: paste the names it prints into
params.yaml. Extra laws are training material only (never searched, never evaluated).
"""

from __future__ import annotations

import argparse

from stages.lib.common.errors import run_stage
from stages.lib.common.params import load_params
from stages.lib.documents.law_pdf import law_database
from stages.lib.documents.related_laws import related_laws


@run_stage("related_laws")
def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.related_laws", description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="how many laws to list (default 8)")
    parser.add_argument("--any-department", action="store_true", help="rank every law, not only the targets' department")
    args = parser.parse_args()
    # 1. The targets: sample.laws.
    targets = load_params().sample.laws
    # 2. Rank the database's other current laws against them.
    ranked = related_laws(law_database(), targets, args.top, same_department=not args.any_department)
    # 3. Print a table and the params.yaml lines.
    for rank, law in enumerate(ranked, 1):
        print(f"{rank:>3}  {law.similarity:.3f}  {law.department:<10} {law.characters:>7} chars  {law.name}")
    print("\nsample:\n  extra_laws:\n" + "".join(f"    - {law.name}\n" for law in ranked), end="")


if __name__ == "__main__":
    main()
