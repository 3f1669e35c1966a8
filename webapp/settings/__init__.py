"""lungscope's settings, one module per flavour over ``base``: ``demo`` (the default of manage.py, the WSGI app and
Celery), ``test`` (pytest) and ``production`` (the Docker image sets ``DJANGO_SETTINGS_MODULE`` to it)."""
