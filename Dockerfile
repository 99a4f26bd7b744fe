# CPU image serving the Gradio chat on the default model (Gemma 3 270M from PyPI packages).
# Build: docker build -t babelbot .    Run: docker run -p 7860:7860 -v babelbot-home:/data babelbot
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BABELBOT_HOME=/data \
    HF_HUB_OFFLINE=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY babelbot ./babelbot
COPY bot ./bot
COPY tuning ./tuning
COPY prompts ./prompts
COPY adapters ./adapters
COPY evals ./evals
COPY bench ./bench
COPY data ./data
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -e .

# Convert the model at build time so a container starts in seconds; a layer of its own so
# that code changes above do not redo the download-free but minute-long conversion.
# hadolint ignore=DL3059
RUN babelbot model prepare
VOLUME ["/data"]
EXPOSE 7860
CMD ["babelbot", "serve", "--host", "0.0.0.0", "--port", "7860"]
