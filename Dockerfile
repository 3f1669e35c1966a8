# One image for the web server, both Celery workers and the DICOM listener (docker-compose.yml picks the command).
# Stage 1 builds the viewer/worklist bundle; stage 2 is the Python app with the bundle and static files baked in.
FROM node:22-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN mkdir -p ../webapp/static && npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=webapp.settings.production \
    PIP_NO_CACHE_DIR=1 \
    LUNGSCOPE_VAR_DIR=/data/var \
    LUNGSCOPE_STORAGE_DIR=/data/storage
RUN useradd --create-home --uid 1000 lungscope
WORKDIR /app
# The runtime set only: the test, benchmark and lint tools stay out of the image.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY . .
COPY --from=frontend /src/webapp/static/viewer webapp/static/viewer
# The production settings refuse to start without a key; this one only exists for collectstatic at build time.
RUN DJANGO_SECRET_KEY=collectstatic-only DJANGO_DEBUG=0 python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /data/storage && chown -R lungscope:lungscope /data
USER lungscope
EXPOSE 8000 11112
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--timeout", "300", "--access-logfile", "-"]
