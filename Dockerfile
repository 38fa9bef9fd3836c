# MLOps Console — one image for the console (Streamlit), the prediction-log ingest and the worker
# (`python -m services ingest|worker`, see deploy/). Configure by environment only (README "Configuration").
#
# The base is pinned to an exact tag AND a digest. The digest is the one public Dockerfiles pin for this tag
# (it could not be checked against Docker Hub from the machine this was written on: no registry access).
# BASE_IMAGE may be overridden to build on a mirror of the same image.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLOPS_DATA_DIR=/var/lib/mlops-console \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code and the defaults it reads; owned by root, so the process cannot change them.
COPY dashboard/ dashboard/
COPY pages/ pages/
COPY services/ services/
COPY deploy/policy.yaml deploy/policy.yaml
COPY .streamlit/config.toml .streamlit/config.toml

# A numeric, unprivileged user (Kubernetes' runAsNonRoot can check a number, not a name); its only writable
# place is the data folder (an emptyDir in the cluster, where the root filesystem is read-only).
RUN groupadd --system --gid 10001 console \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin console \
    && mkdir -p /var/lib/mlops-console \
    && chown 10001:10001 /var/lib/mlops-console
USER 10001:10001

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('STREAMLIT_SERVER_PORT', '8501'), timeout=4)"]
# exec form: Python is PID 1 and gets SIGTERM itself. The port and address come from STREAMLIT_SERVER_*.
CMD ["python", "-m", "streamlit", "run", "dashboard/app.py"]
