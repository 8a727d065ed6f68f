"""facekit-faiss: approximate nearest-neighbour search with FAISS for facekit galleries.

Registers the search index ``faiss`` (see ``facekit list index``). ``faiss`` itself is
imported only when an index is first built, so loading the plugin costs nothing.
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_indexes(register):  # type: ignore[no-untyped-def]
    from facekit_faiss.index import FaissIndex

    register(FaissIndex)
