FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/tradebus && /opt/tradebus/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/tradebus --create-home tradebus \
    && mkdir -p /var/log/tradebus /etc/tradebus \
    && chown tradebus /var/log/tradebus
COPY --from=build /opt/tradebus /opt/tradebus
COPY config/production.example.toml /etc/tradebus/tradebus.toml
USER tradebus
# Inside the container the ops endpoint must listen beyond loopback for a published port;
# publish it on the host's loopback only (`-p 127.0.0.1:9464:9464`). Beyond loopback it needs
# a token: `-e TRADEBUS_HTTP_TOKEN=...` (at least 16 characters), else it refuses to start.
ENV PYTHONUNBUFFERED=1 \
    TRADEBUS_HTTP=0.0.0.0:9464
EXPOSE 9464
VOLUME ["/var/lib/tradebus", "/var/log/tradebus"]
# Liveness, not readiness: an upstream outage is not cured by restarting the container.
# `tradebus health` is standard-library urllib, so the slim image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/tradebus/bin/tradebus", "health", "--url", "http://127.0.0.1:9464", "--timeout", "3"]
# SIGTERM drains every sink before exit: `docker stop -t 30` gives it time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/tradebus/bin/tradebus"]
CMD ["run", "-c", "/etc/tradebus/tradebus.toml"]
