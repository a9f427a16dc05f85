# The chest X-ray explainability viewer on port 8501.
# Research and education use only, not for diagnosis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY .streamlit/ .streamlit/
COPY xai_core/ xai_core/
COPY app/ app/
COPY weights/ weights/
COPY sample_images/ sample_images/

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin viewer
USER 10001

EXPOSE 8501
# Healthy once the model is loaded (app/server.py loads it as the server starts): /api/ready answers 503 until then.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/api/ready', timeout=4)"]

CMD ["streamlit", "run", "app/server.py", "--server.address=0.0.0.0", "--server.port=8501"]
