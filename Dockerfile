# The pages' charting library, from the npm registry by the committed lock file.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=web /web/node_modules/echarts/dist/echarts.min.js analytics/static/web/vendor/
RUN DEBUG=1 python manage.py collectstatic --noinput
EXPOSE 8000
# gthread workers recycled after about 10,000 requests, drained first: config/gunicorn_conf.py
CMD ["gunicorn", "--config", "config/gunicorn_conf.py", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
