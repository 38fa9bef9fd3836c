# MLOps Console — production image. Configure by environment only (see README "Configuration").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MLOPS_DATA_DIR=/var/lib/mlops-console PORT=8501

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY dashboard/ dashboard/
COPY pages/ pages/
COPY services/ services/
COPY deploy/policy.yaml deploy/policy.yaml
COPY .streamlit/config.toml .streamlit/config.toml

RUN useradd --system --home /var/lib/mlops-console --create-home console
USER console
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/_stcore/health')"
CMD ["sh", "-c", "exec python -m streamlit run dashboard/app.py --server.port ${PORT} --server.address 0.0.0.0 --server.headless true"]
