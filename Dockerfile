# Same install and server command as `make run`. Production needs SECRET_KEY and
# ALLOWED_HOSTS in the environment (DEBUG is off here).
FROM python:3.11.14-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBUG=0

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY chatproject ./chatproject
COPY rooms ./rooms
# Static files for WhiteNoise; the settings need a key to load, not this one at run time.
RUN SECRET_KEY=collectstatic ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput -v0
RUN useradd --create-home --uid 10001 rooms && chown rooms /app
USER 10001

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python -m rooms.server.workers --host 0.0.0.0 --port 8000"]
