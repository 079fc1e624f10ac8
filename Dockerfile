# One image for every CityEye service; the command picks the part:
#   cityeye gateway | worker | sinks | dispatcher | simulate
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cityeye ./cityeye
COPY ingest ./ingest
COPY streams ./streams
COPY detectors ./detectors
COPY alerts ./alerts
COPY simulators ./simulators
RUN pip install --no-cache-dir . && useradd --system --uid 10001 cityeye && mkdir -p /var/lib/cityeye && chown cityeye /var/lib/cityeye
USER cityeye
ENV CITYEYE_STATE_DIR=/var/lib/cityeye
ENTRYPOINT ["cityeye"]
CMD ["--help"]
