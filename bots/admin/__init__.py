"""The admin endpoint of ``saybot run``: health, readiness, usage, metrics and a dashboard.

- ``app``: the FastAPI factory ``create_admin_app`` and ``serve_admin`` (used by ``run()``).
- ``context``: what the endpoint reads, and ``AdminLifecycle``: starting, running, stopping.
- ``auth``: ``ADMIN_TOKEN`` as bearer header or HttpOnly session cookie (sessions kept in
  Redis, failed logins throttled: ``storage.sessions``); loopback-only without a token.
- ``status``: readiness of Redis, the TTS service and each configured platform.
- ``reports``: the usage counters as JSON.
- ``dashboard``: the server-rendered page with SVG charts; ``static/``: its CSS and icon.
"""

from bots.admin.app import create_admin_app, serve_admin
from bots.admin.auth import AdminAuth, AdminBindRefused, check_admin_bind
from bots.admin.context import AdminContext, AdminLifecycle

__all__ = [
    "AdminAuth",
    "AdminBindRefused",
    "AdminContext",
    "AdminLifecycle",
    "check_admin_bind",
    "create_admin_app",
    "serve_admin",
]
