# llm-proxy in a container (design §10), for those who prefer containers to the systemd unit.
#
#   docker build -t llm-proxy .
#   docker run -d --name llm-proxy -p 8080:8080 -v llm-proxy:/var/lib/llm-proxy \
#       -e OPENAI_API_KEY --stop-timeout 40 llm-proxy
#
# The database (and backups, and on the first start the admin's one-time password in
# llm-proxy-initial-admin-password) live in the volume /var/lib/llm-proxy. A config file can be
# mounted and named: -v ./config.toml:/etc/llm-proxy/config.toml:ro -e LLM_PROXY_CONFIG=/etc/llm-proxy/config.toml
# Arguments after the image name are added to `llm-proxy serve` (e.g. --port 9000; the
# HEALTHCHECK below then needs the same port). In-flight calls get server.graceful_timeout_s
# (30 s) after SIGTERM: give `docker stop` more than that (--stop-timeout, stop_grace_period).

# --- build: a venv with the package and its dependencies (all have wheels: no compiler) ---------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/llm-proxy/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy/ proxy/
COPY actors/ actors/
COPY storage/ storage/
COPY web/ web/
RUN /opt/llm-proxy/venv/bin/pip install . \
    && /opt/llm-proxy/venv/bin/python -m compileall -q /opt/llm-proxy/venv

# --- runtime: the same base image (the venv's interpreter path must match), no build tools ------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /var/lib/llm-proxy --shell /usr/sbin/nologin llm-proxy \
    && install -d -o llm-proxy -g llm-proxy -m 0700 /var/lib/llm-proxy
COPY --from=build /opt/llm-proxy/venv /opt/llm-proxy/venv
# STATE_DIRECTORY: a relative server.database (the default llm-proxy.db) lands in the volume,
# exactly as under systemd.
ENV PATH=/opt/llm-proxy/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STATE_DIRECTORY=/var/lib/llm-proxy
WORKDIR /var/lib/llm-proxy
VOLUME ["/var/lib/llm-proxy"]
USER 10001:10001
EXPOSE 8080
# slim has no curl: ask /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-proxy", "serve", "--host", "0.0.0.0"]
