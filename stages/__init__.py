"""DVC stages of embedding-ft: one module per stage, each a thin ``main()``; their library is ``stages.lib``."""

import os

# Libraries draw their own tqdm bars (weight loading, model cards, per-call encoding): one line each,
# many times per stage. tqdm reads this default when it is first imported, hence here, before any
# library is. Our own progress bars (stages.lib.common.progress) are enabled explicitly.
os.environ.setdefault("TQDM_DISABLE", "1")
