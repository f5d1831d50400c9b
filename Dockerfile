FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . .
RUN pip install --no-cache-dir . gunicorn
# Static files are collected into the image: WhiteNoise serves them from the web process (config.settings.production).
ENV DJANGO_STATIC_ROOT=/app/staticfiles
RUN DJANGO_SETTINGS_MODULE=config.settings.production DJANGO_SECRET_KEY=collectstatic-only \
    python manage.py collectstatic --no-input
