# bitbudget: the API and the Celery worker share this image (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BITBUDGET_DATA_DIR=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, then sam2 built against it without CUDA (as the Makefile does)
RUN pip install torch==2.14.1 torchvision==0.29.1 \
    && SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0

COPY pyproject.toml README.md ./
COPY profiling ./profiling
COPY solvers ./solvers
COPY searchsvc ./searchsvc
COPY migrations ./migrations
# editable: the service finds the top-level migrations/ folder next to the package
RUN pip install -e .

RUN useradd --create-home --uid 1000 bitbudget && mkdir -p /data && chown bitbudget /data
USER bitbudget
VOLUME ["/data"]
EXPOSE 8000

CMD ["bitbudget", "serve", "--host", "0.0.0.0", "--port", "8000"]
