# Strongroom server image: Debian's python3 running the app from a virtualenv, every dependency
# pinned and checked against its hash (requirements/server.lock, `make lock`), uid 10001, tini
# as PID 1, no compiler, no pip. `make test-container` builds and runs it.
#
# Stages: deps (the locked dependencies; rebuilt only when a lock file changes) → venv (the same
# without pip) and app (this checkout's wheel, unpacked) → the image, whose layers keep that
# split: a new version of the app changes one small layer.

FROM debian:bookworm-slim AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM python AS deps
COPY requirements/server.lock requirements/build.lock /tmp/requirements/
# --only-binary: wheels only, so nothing is compiled here and no compiler is needed; what the
# lock names without a wheel for this platform fails the build instead of building from source.
RUN python3 -m venv /opt/strongroom \
    && /opt/strongroom/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/requirements/server.lock \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/requirements/build.lock

# What the server never runs: the installers, botocore's models of the AWS services other
# than KMS (wraps data keys) and STS (the CLI's login): 28 of its 33 MB, and Swagger UI's files
# other than the two that /docs serves (web/docs.py ASSETS; source maps and other bundles,
# 10 of its 12 MB). The last lines prove that both clients still load and both files are there.
FROM deps AS venv
RUN /opt/strongroom/bin/python -m pip uninstall --quiet --yes setuptools pip \
    && rm -f /opt/strongroom/bin/activate* \
    && find /opt/strongroom/lib/python3.11/site-packages/botocore/data -mindepth 1 -maxdepth 1 \
        -type d ! -name kms ! -name sts -exec rm -rf {} + \
    && find /opt/strongroom/lib/python3.11/site-packages/swagger_ui_bundle/vendor -type f \
        ! -name swagger-ui-bundle.js ! -name swagger-ui.css -delete \
    && /opt/strongroom/bin/python -c "import botocore.session; session = botocore.session.get_session(); [session.create_client(name, region_name='us-east-1') for name in ('kms', 'sts')]" \
    && /opt/strongroom/bin/python -c "from swagger_ui_bundle import swagger_ui_path as p; assert all((p / n).is_file() for n in ('swagger-ui-bundle.js', 'swagger-ui.css'))"

FROM deps AS app
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alembic/ alembic/
COPY src/ src/
# The wheel, then its files alone (--target), for the image to lay over the virtualenv; and a
# check that the lock satisfies every requirement the app declares (a stale lock fails here).
RUN /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/strongroom/bin/pip install --quiet --no-deps --target /opt/app /tmp/dist/strongroom-*.whl \
    && mv /opt/app/bin /opt/app-bin \
    && cp -a /opt/app/. /opt/strongroom/lib/python3.11/site-packages/ \
    && /opt/strongroom/bin/pip check

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/strongroom \
        --shell /usr/sbin/nologin strongroom \
    # keys/: where docker-compose.yml's one-shot creates the master key. A named volume
    # mounted there starts as a copy of this directory, owner and mode included.
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/strongroom /var/lib/strongroom/keys
COPY --from=venv /opt/strongroom /opt/strongroom
COPY --from=app /opt/app/ /opt/strongroom/lib/python3.11/site-packages/
COPY --from=app /opt/app-bin/ /opt/strongroom/bin/
ENV PATH=/opt/strongroom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRONGROOM_HOST=0.0.0.0 \
    STRONGROOM_PORT=8300 \
    STRONGROOM_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/strongroom
EXPOSE 8300
# Asks STRONGROOM_HOST/STRONGROOM_PORT, as the server listens on them, over HTTPS when
# STRONGROOM_TLS_CERT_FILE is set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/strongroom/bin/strongroom", "healthcheck"]
# tini forwards signals to the server and reaps what its children leave; -s: also where it is
# not PID 1 (a runtime without a PID namespace of its own, such as `make test-container`).
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/opt/strongroom/bin/strongroom"]
CMD ["server"]
