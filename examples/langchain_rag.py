"""LangChain retrieval over the bundled corpus with the fine-tuned model, two ways.

1. In this process, from the saved model folder (default ``models/finetuned``): a LangChain ``Embeddings``
   whose ``embed_query`` uses the model's query prompt and ``embed_documents`` its passage prompt.
2. Through the OpenAI-compatible server (``python -m stages.serve``) with langchain-openai's
   ``OpenAIEmbeddings`` pointed at it (``--server http://127.0.0.1:8080/v1``).

Either way the chunks the pipeline wrote (``data/corpus/chunks.jsonl``) go into LangChain's
``InMemoryVectorStore`` and the top hits for a question are printed: rank, cosine, chunk id, text.

Run from the repository root, after ``dvc repro`` (or ``dvc pull``) made the model and the chunks::

    python examples/langchain_rag.py
    python examples/langchain_rag.py --question "Who supervises the Chinese securities market?" --top-k 5

    python -m stages.serve &                                   # serves models/finetuned as "finetuned"
    python examples/langchain_rag.py --server http://127.0.0.1:8080/v1

How the prompt is chosen. The model was trained and evaluated with ``query: `` before questions and
``passage: `` before chunks (its ``config_sentence_transformers.json`` names them ``query`` and
``document``); a text embedded without its prompt, or with the other one, retrieves worse.

* Saved model: ``SentenceTransformer.encode_query`` applies the prompt named ``query`` and
  ``encode_document`` the one named ``document``, read from the folder itself, so nothing is restated here.
  (langchain-huggingface's ``HuggingFaceEmbeddings`` does the same given
  ``encode_kwargs={"prompt_name": "document"}, query_encode_kwargs={"prompt_name": "query"}``, but its
  releases up to 1.2.3 require huggingface_hub below 2, which this project's pin excludes.)
* Server: ``OpenAIEmbeddings`` sends the same request from ``embed_query`` and ``embed_documents``,
  so one instance cannot say which prompt a text needs. The server takes the role from the model name:
  ``finetuned-query`` embeds with the query prompt, ``finetuned-passage`` (and plain ``finetuned``) with
  the passage prompt. ``ServedEmbeddings`` below holds one client per name and routes each call.
  ``check_embedding_ctx_length=False`` sends the texts themselves: by default the client would
  tokenize them with tiktoken (which downloads its vocabulary) and send OpenAI token ids, which this
  server refuses; the server truncates to the model's own window.

Works offline (``HF_HUB_OFFLINE=1`` is set unless already set). The server's API key, if it has one,
is read from ``EMBEDDING_API_KEY`` in the environment or in ``.env``, as the server reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore
except ImportError:
    sys.exit("error: LangChain is not installed. Run `pip install -e '.[examples]'` (langchain-core, langchain-openai).")

DEFAULT_QUESTION = "开一家券商最少要多少注册资本？"  # "What is the least registered capital to open a brokerage?": article 121
API_KEY_VARIABLE = "EMBEDDING_API_KEY"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at run time
    args = _arguments()

    # 1. The chunks, and the model folder when this process embeds (both checked before anything heavy loads).
    chunks = read_chunks(args.chunks, args.max_chunks)
    if not args.server:
        check_model_folder(args.model)

    # 2. The embeddings: the saved model here, or the server's two role names.
    if args.server:
        embeddings = ServedEmbeddings(args.server, args.served_model, _api_key())
        print(f"Embedding through {args.server}: queries as {args.served_model}-query, chunks as {args.served_model}-passage")
    else:
        embeddings = SavedModelEmbeddings(args.model)
        print(f"Embedding with {args.model}: {embeddings.describe_prompts()}")

    # 3. Index the chunks (passage prompt) and search with the question (query prompt).
    store = InMemoryVectorStore(embeddings)
    try:
        store.add_documents([Document(page_content=chunk["text"], id=chunk["id"], metadata={"section": chunk.get("section", "")})
                             for chunk in chunks])
        hits = store.similarity_search_with_score(args.question, k=args.top_k)
    except ServerUnusable as error:
        _fail(str(error))

    # 4. The hits.
    print(f"{len(chunks)} chunks indexed. Top {len(hits)} for: {args.question}")
    for rank, (document, score) in enumerate(hits, start=1):
        print(f"{rank}  {score:.4f}  {document.id}  {' '.join(document.page_content.split())[:90]}")


class SavedModelEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over a sentence-transformers folder, with the prompts saved in it."""

    def __init__(self, folder: Path, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device=device)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode_document(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.model.encode_query(text, normalize_embeddings=True).tolist()

    def describe_prompts(self) -> str:
        prompts = self.model.prompts
        document = next((prompts[name] for name in ("document", "passage", "corpus") if prompts.get(name)), "")
        return f"query prompt {prompts.get('query', '')!r}, passage prompt {document!r}"


class ServerUnusable(Exception):
    """The server cannot be reached or refused the request: one paragraph saying what to do."""


class ServedEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over ``python -m stages.serve``: queries as ``<name>-query``, chunks as ``<name>-passage``.

    Each half is langchain-openai's own ``OpenAIEmbeddings``; only the model name differs, and it is
    what makes the server apply the query or the passage prompt."""

    def __init__(self, base_url: str, served_model: str, api_key: str) -> None:
        from langchain_openai import OpenAIEmbeddings

        def client(role: str) -> OpenAIEmbeddings:
            return OpenAIEmbeddings(model=f"{served_model}-{role}", base_url=base_url, api_key=api_key,
                                    check_embedding_ctx_length=False, max_retries=0)

        self.base_url, self.served_model = base_url, served_model
        self.queries, self.passages = client("query"), client("passage")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._call(self.passages.embed_documents, texts)

    def embed_query(self, text: str) -> list[float]:
        return self._call(self.queries.embed_query, text)

    def _call(self, embed, texts):
        import openai

        try:
            return embed(texts)
        except openai.APIConnectionError:
            raise ServerUnusable(f"No server answers at {self.base_url}. Start it with `python -m stages.serve` (it "
                                 "serves models/finetuned on http://127.0.0.1:8080/v1), or pass its address as --server.") from None
        except openai.AuthenticationError:
            raise ServerUnusable(f"The server at {self.base_url} refused the API key. Set {API_KEY_VARIABLE} (in the "
                                 "environment or .env) to the key the server was started with.") from None
        except openai.NotFoundError:
            raise ServerUnusable(f"The server at {self.base_url} does not serve {self.served_model!r}. `python -m "
                                 "stages.serve` names the model after its folder (models/finetuned: 'finetuned') or "
                                 "--model-name; pass that name as --served-model.") from None
        except openai.APIStatusError as error:
            raise ServerUnusable(f"The server at {self.base_url} answered {error.status_code}: {error.message}") from None


def check_model_folder(folder: Path) -> None:
    if not (folder / "modules.json").is_file():
        what = "is missing" if not folder.exists() else "is not a sentence-transformers folder (no modules.json)"
        _fail(f"{folder} {what}. Run `dvc repro` (or `dvc pull` to fetch a teammate's model) first, or pass --model "
              "FOLDER, or use the server with --server URL.")


def read_chunks(path: Path, limit: int = 0) -> list[dict]:
    """The pipeline's chunks (one JSON object per line with ``id`` and ``text``), the first ``limit`` when above 0."""
    if not path.is_file():
        _fail(f"{path} is missing. Run `dvc repro` (or `dvc pull`) first: the corpus stage writes it. Or pass --chunks "
              "FILE, a JSON-lines file of {\"id\": ..., \"text\": ...} objects.")
    chunks = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not chunks or not all(isinstance(chunk.get("id"), str) and isinstance(chunk.get("text"), str) for chunk in chunks):
        _fail(f"{path} holds no chunks, or a line without a string \"id\" and \"text\".")
    return chunks[:limit] if limit > 0 else chunks


def _api_key() -> str:
    # The OpenAI client insists on some key; the server ignores it unless it was started with one.
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not key and Path(".env").is_file():
        from dotenv import dotenv_values

        key = (dotenv_values(".env").get(API_KEY_VARIABLE) or "").strip()
    return key or "no-key"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/finetuned"),
                        help="the sentence-transformers folder to embed with (default models/finetuned; not used with --server)")
    parser.add_argument("--server", help="embed through this OpenAI-compatible base URL instead, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--served-model", default="finetuned",
                        help="with --server: the served name, without -query/-passage (default finetuned)")
    parser.add_argument("--chunks", type=Path, default=Path("data/corpus/chunks.jsonl"),
                        help="the chunks to search (default data/corpus/chunks.jsonl, the corpus stage's)")
    parser.add_argument("--max-chunks", type=int, default=0, help="index only the first N chunks (default 0: all)")
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="what to search for")
    parser.add_argument("--top-k", type=int, default=3, help="hits to print (default 3)")
    args = parser.parse_args()
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


if __name__ == "__main__":
    main()
