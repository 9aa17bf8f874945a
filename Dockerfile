# The charrnn playground as a Hugging Face Docker Space (README front matter: sdk: docker,
# app_port: 8501). Also runs anywhere else: docker build -t charrnn . && docker run -p 8501:8501 charrnn
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run the container as UID 1000; Streamlit needs a writable $HOME (~/.streamlit).
RUN useradd --create-home --uid 1000 user

WORKDIR /app

# Dependencies first (a cached layer while only the code changes). torch comes from the PyTorch
# CPU index: the PyPI wheel would pull several GB of CUDA libraries that a CPU Space never uses.
# requirements.txt pins torch==2.13.0, which the 2.13.0+cpu wheel already satisfies.
COPY requirements.txt .
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install -r requirements.txt

# The app, owned by root: user 1000 can read it (and the bundled checkpoints) but not change it.
COPY . .

USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    CHARRNN_CACHE=/home/user/.cache/charrnn

# Fetch tiny Shakespeare into the image if the build can reach GitHub; otherwise the app
# downloads it at first use (Spaces allow outbound HTTPS).
RUN python -c "from charrnn.corpus import tiny_shakespeare_path as p; p()" \
    || echo "tiny Shakespeare not cached at build time; it downloads at first use"

EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"

# .streamlit/config.toml holds the serving defaults (headless, no file watcher, viewer toolbar,
# 20 MB uploads). These flags add what only a Space needs: listen on every interface, and an
# XSRF cookie with SameSite=None (Streamlit then marks it Secure; *.hf.space is HTTPS) so that
# uploads work inside the Space page's cross-site iframe instead of failing with 403.
# A bad CHARRNN_* setting stops the container at once with the variable named in its log, rather
# than serving a page that only says so while the health check reports healthy.
CMD ["sh", "-c", "python -c 'import charrnn.limits' && exec streamlit run app.py \
     --server.address=0.0.0.0 --server.port=8501 --server.headless=true \
     --server.fileWatcherType=none --client.toolbarMode=viewer \
     --server.enableXsrfProtection=true --server.xsrfCookieSameSite=none \
     --browser.gatherUsageStats=false"]
