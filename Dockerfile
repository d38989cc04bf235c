# A thin image of the service (docs/production.md). No image is built on the project's own
# machines (they have no container runtime); this file is kept in step with scripts/serve, the
# start the production smoke test (tests/production/) runs, so the image starts exactly alike.
FROM python:3.11-slim-bookworm

# lxml and xmlsec are built against the system libxml2 (pyproject.toml [tool.uv]).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential pkg-config libxml2-dev libxmlsec1-dev libxmlsec1-openssl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python -m pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev \
    && useradd --system --home-dir /app app \
    && mkdir -p /app/var \
    && chown app /app/var

USER app
ENV PYTHON=/app/.venv/bin/python \
    WEB_BIND=0.0.0.0:8000 \
    BEAT_SCHEDULE_FILE=/app/var/celerybeat-schedule
EXPOSE 8000
ENTRYPOINT ["scripts/serve"]
CMD ["web"]
