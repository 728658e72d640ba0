# One image for every Python service: migrate, worker, worker-urgent and one-off `triage` commands.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 triage \
    && mkdir -p /data /models \
    && chown triage:triage /data /models

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY imaging ./imaging
COPY ledger ./ledger
COPY gateway ./gateway
COPY trainer ./trainer
COPY worker ./worker
COPY web ./web
COPY triage ./triage
COPY migrations ./migrations
RUN pip install .

USER triage
ENV TRIAGE_DATA_DIR=/data \
    TRIAGE_MODEL_DIR=/models
CMD ["triage", "--help"]
