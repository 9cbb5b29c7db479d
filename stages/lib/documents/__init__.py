"""Documents to chunks: the bundled law rendered to PDF, readers for PDF/Markdown/text/DOCX, text
utilities (cleaning, language, tokens), chunking with stable ids, and the chunk file the later stages read.

May import: ``common``.
"""
