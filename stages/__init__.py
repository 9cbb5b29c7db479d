"""DVC stages of embedding-ft: one module per stage, each a thin ``main()``."""
