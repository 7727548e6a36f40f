# One image for the server, the consumer and the replay job (compose: observability/compose.yaml).
FROM golang:1.26-bookworm AS native
WORKDIR /src
COPY server/native/ server/native/
RUN cd server/native && go build -buildvcs=false -trimpath -o volspike-server .

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends build-essential make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN python -m venv .venv && .venv/bin/pip install -q -r requirements.txt
COPY . .
COPY --from=native /src/server/native/volspike-server server/native/volspike-server
RUN touch server/native/volspike-server && make models
ENV PATH=/app/.venv/bin:$PATH PYTHONPATH=/app
EXPOSE 50051 8000 8001
CMD ["server/native/volspike-server", "--host", "0.0.0.0"]
