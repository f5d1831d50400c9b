FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The processes run as an unprivileged user who may write only the media volume and /app/var.
RUN groupadd --system app && useradd --system --gid app --home-dir /app --no-create-home app \
    && mkdir -p /data/media /app/var && chown app:app /data/media /app/var
WORKDIR /app
# The pinned dependencies first (a layer reused until the lock changes), then the project without resolving again.
COPY requirements/production.lock requirements/
RUN pip install --no-cache-dir -r requirements/production.lock
COPY . .
RUN pip install --no-cache-dir --no-deps .
# Static files are collected into the image: WhiteNoise serves them from the web process (config.settings.production).
ENV DJANGO_STATIC_ROOT=/app/staticfiles
RUN DJANGO_SETTINGS_MODULE=config.settings.production DJANGO_SECRET_KEY=collectstatic-only \
    python manage.py collectstatic --no-input
USER app
