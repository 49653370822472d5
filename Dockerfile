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
VOLUME ["/var/lib/tradebus", "/var/log/tradebus"]
# SIGTERM drains every sink before exit: `docker stop -t 30` gives it time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/tradebus/bin/tradebus"]
CMD ["run", "-c", "/etc/tradebus/tradebus.toml"]
