# syntax=docker/dockerfile:1
# One image for every service, built from the repository root so contracts/ and libs/ are copied once and
# shared, never duplicated per service:
#
#   docker build -t hybrid-orchestrator .
#   docker run --rm hybrid-orchestrator python -m services.router          # the command picks the service
#   docker run --rm hybrid-orchestrator python -m libs.storage.migrate_all  # the one-shot migration step
#
# No secrets are baked in: every setting comes from the environment at run time (see README).

# Override to pin a digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned dependencies and the project installed as a wheel. ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the runtime lock file alone (every package pinned with its hashes: the image gets
# exactly what `make run` installs), so a code change does not reinstall them.
COPY pyproject.toml requirements/runtime.txt ./
# Where a proxy intercepts TLS, pip must trust the proxy's CA: pass a bundle that includes it as the build
# secret "pip-ca". It is mounted only while pip runs and is stored in no layer; without it pip uses the
# image's own CA certificates.
#   docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt -t hybrid-orchestrator .
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python -m venv /opt/venv && pip install pip==25.3 \
    && pip install --require-hashes -r runtime.txt
COPY contracts/ contracts/
COPY libs/ libs/
COPY services/ services/
# A regular (non-editable) install: the JSON Schemas and every service's migrations/*.sql ship as package
# data, and pip compiles the bytecode now (its default), because the root filesystem is read-only at run time.
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --no-deps .

# --- runtime: the virtualenv on a clean base, run as an unprivileged user. --------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# uid/gid 10001: outside the range of system and typical host users; the manifests' runAsUser matches it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
# An empty working directory: `python -m` puts it first on sys.path, and nothing there may shadow the
# installed packages.
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 8080 gateway HTTP, 8081 liveness/readiness (HEALTH_PORT), 9464 Prometheus metrics (METRICS_PORT).
EXPOSE 8080 8081 9464
# The service is chosen by the command; this default is the public entry point.
CMD ["python", "-m", "services.gateway"]
