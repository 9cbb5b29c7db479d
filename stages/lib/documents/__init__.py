"""Documents to chunks: the bundled law rendered to PDF, readers for PDF/Markdown/text/DOCX, text
utilities (cleaning, language, tokens), chunking with stable ids, and the chunk file the later stages read;
extra training documents (a second folder, train-only chunks, its manifest) and the related laws of the
bundled database that can fill it.

May import: ``common``.
"""
