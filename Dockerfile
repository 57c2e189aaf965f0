# GBC Demo: one image for both apps; the command picks app:site (default) or app:sandbox.
#   docker build -t gbc-demo .
# compose.yaml runs the site, the sandbox, PostgreSQL and Redis together (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GBC_INSTANCE_PATH=/data \
    GBC_SITE_HOST=0.0.0.0 \
    GBC_SANDBOX_HOST=0.0.0.0

WORKDIR /app
COPY . .
# the package with its PostgreSQL and Redis drivers. Editable, so that demo/ finds its templates,
# static files and config/ beside it in /app (demo/paths.py), for gunicorn and gbc-demo alike.
RUN pip install -e ".[postgres,redis]" \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin gbc \
    && mkdir -p /data && chown gbc:gbc /data
# runs as a user that can write only /data (the instance folder: a generated secret key, SQLite files)
USER gbc
VOLUME ["/data"]
EXPOSE 5000 5001

# liveness: /healthz on the port this container serves (GBC_BIND, else the site's port)
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = (os.environ.get('GBC_BIND') or ':5000').rsplit(':', 1)[-1]; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status != 200)"]

# SIGTERM (docker stop): gunicorn finishes requests in flight within graceful_timeout, then exits 0.
# Give the container longer than that (compose.yaml: stop_grace_period).
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "app:site"]
