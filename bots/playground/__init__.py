"""The browser playground: saybot's first web page, reborn on the admin endpoint.

- ``routes``: ``/`` (the page; ``/?token=`` is the login link) and ``/play/…``, over ``SayFlow``
  as platform ``web``.
- ``form``: the page's multipart form, read within bounds, as a ``SayRequest``.
- ``answers``: audio, or the bots' own sentence as JSON, or the consent question.
- ``page``: the server-rendered HTML; ``static/``: its script and stylesheet.
"""

from bots.playground.routes import PLAYGROUND_CSP, install_playground, is_playground_path

__all__ = ["PLAYGROUND_CSP", "install_playground", "is_playground_path"]
