"""WSGI entry points: ``site`` (the demo third party) and ``sandbox`` (the
embedded PCE custodian), e.g. ``gunicorn -k gthread app:site``.

Both are built from the same layered configuration (see README)."""
from demo.config import load_config
from demo.sandbox import create_app as create_sandbox
from demo.site import create_app as create_site

settings = load_config()
site = create_site(settings)
sandbox = create_sandbox(settings)
