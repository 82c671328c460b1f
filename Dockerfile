# Strongroom server image: slim, non-root, no build tools at run time.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/strongroom --create-home strongroom
COPY --from=build /install /usr/local
USER strongroom
WORKDIR /var/lib/strongroom
ENV STRONGROOM_LOG_FORMAT=json
EXPOSE 8300
HEALTHCHECK CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8300/v1/sys/health').status != 200)"]
ENTRYPOINT ["strongroom"]
CMD ["server", "--host", "0.0.0.0", "--port", "8300"]
