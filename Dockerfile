# syntax=docker/dockerfile:1
# The one jangkau image. Servers run `jangkau serve <audience|budget|metrics|sandbox>`,
# the hourly job runs `jangkau rebalance`; the manifests in deploy/k8s pass those as args.
#
#   docker build -t jangkau .                # the runtime image
#   docker build --target dev -t jangkau .   # source owned by the app user (Tilt live update)

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: a virtual environment with the pinned dependencies, then the project.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, from pyproject.toml's exact pins and constraints.txt, so that a
# change to the source rebuilds only the layers below.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --requirement /tmp/requirements.txt --constraint constraints.txt
COPY services/ services/
# Editable, so that the process runs the code in /app/services (the image's source dir,
# which Tilt's live update syncs into); --no-deps: every dependency is installed above.
# Bytecode is compiled here because the root filesystem is read-only at run time.
RUN pip install --no-deps --editable . \
 && python -m compileall -q services \
 && pip uninstall --yes pip

# --- runtime-base: the venv and the source on a fresh slim image; no compiler, no pip.
FROM ${PYTHON_IMAGE} AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 jangkau \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin jangkau
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/services /app/services
WORKDIR /app
USER 10001:10001
# gRPC: audience, budget, metrics, sandbox (jangkau.runtime.config defaults).
EXPOSE 50051 50052 50053 50054
ENTRYPOINT ["jangkau"]
CMD ["serve", "budget"]

# --- dev: the same image with /app owned by the app user, so that Tilt can sync
# source into it and signal restarts (deploy/k8s stays read-only otherwise).
FROM runtime-base AS dev
USER root
RUN chown -R 10001:10001 /app
USER 10001:10001

# --- runtime: the default target.
FROM runtime-base AS runtime
LABEL org.opencontainers.image.title="jangkau" \
      org.opencontainers.image.description="Allocates an election campaign's ad budget across platforms and voter audiences, hour by hour."
