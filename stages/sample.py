"""Stage ``sample``: write the bundled default documents as PDFs to ``data/sample/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.lib.errors import run_stage
from stages.lib.law_pdf import law_database, read_laws, render_law_pdf
from stages.lib.params import load_params

OUTPUT_DIR = Path("data/sample")


@run_stage("sample")
def main() -> None:
    params = load_params().sample
    laws = read_laws(law_database(), params.laws)
    staging = OUTPUT_DIR.with_name(OUTPUT_DIR.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for law in laws:
        render_law_pdf(law, staging / f"{law.name}.pdf", params.cjk_font, params.latin_font)
    shutil.rmtree(OUTPUT_DIR, ignore_errors=True)
    staging.rename(OUTPUT_DIR)
    total = sum(len(law.articles) for law in laws)
    print(f"[sample] wrote {len(laws)} law(s), {total} articles, to {OUTPUT_DIR}/")


if __name__ == "__main__":
    main()
