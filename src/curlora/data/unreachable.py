"""The error for a Hugging Face Hub that cannot serve what a run needs (exit 3).

Its own small module, importing nothing, so that the command line can tell it apart from
a config error before any heavy library is imported (``curlora.cli``); the Hub loaders
(``curlora.data.sources.hub``, ``curlora.models.hub``) raise it.
"""

from __future__ import annotations


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub (or its cache) could not serve a dataset or model."""
