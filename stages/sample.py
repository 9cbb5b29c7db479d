"""Stage ``sample``: write the bundled default documents as PDFs to ``data/sample/``."""

from __future__ import annotations

from pathlib import Path

from stages.lib.errors import run_stage
from stages.lib.files import replacing_directory
from stages.lib.law_pdf import law_database, read_laws, render_law_pdf
from stages.lib.params import load_params

OUTPUT_DIR = Path("data/sample")


@run_stage("sample")
def main() -> None:
    params = load_params().sample
    laws = read_laws(law_database(), params.laws)
    with replacing_directory(OUTPUT_DIR) as staging:
        for law in laws:
            render_law_pdf(law, staging / f"{law.name}.pdf", params.cjk_font, params.latin_font)
    total = sum(len(law.articles) for law in laws)
    print(f"[sample] wrote {len(laws)} law(s), {total} articles, to {OUTPUT_DIR}/")


if __name__ == "__main__":
    main()
